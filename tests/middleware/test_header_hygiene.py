"""The Host check's table of verdicts: the same answers as checking each time, bounded.

(The refusals themselves, through a live gateway: tests/security/test_host_check.py.)
"""

from __future__ import annotations

from gateway.http.header_boundary import HeaderBoundary
from gateway.http.public_links import valid_host
from gateway.middleware.header_hygiene import _HOSTS_KEPT, HeaderHygieneMiddleware


def test_kept_verdicts_agree_with_checking_each_time_and_stay_bounded() -> None:
    step = HeaderHygieneMiddleware(HeaderBoundary())
    # More distinct Hosts than the table keeps, good and bad, each asked twice.
    hosts = [f"host-{n}.example:{n % 70000}" for n in range(3 * _HOSTS_KEPT)]
    hosts += [f"bad host {n}" for n in range(_HOSTS_KEPT)]
    for host in hosts + hosts:
        assert step._valid_host(host) is valid_host(host), host
        assert len(step._hosts) <= _HOSTS_KEPT
