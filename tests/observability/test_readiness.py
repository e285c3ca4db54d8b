"""Readiness checks one by one, and the report a load balancer reads.

The probes' end-to-end tests (tests/admin/test_probes.py) show /readyz
through the admin listener; these hold each check to its own rule: any
answer below 500 from the backend is up, 5xx is not, no key is not ready,
a draining process is never ready, and a check that hangs is a failure.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.config import UpstreamConfig
from gateway.http.upstream import UpstreamClient
from gateway.observability.readiness import (
    KeysLoaded,
    Readiness,
    ReadinessResult,
    UpstreamReachable,
)
from tests.support.upstreams import ScriptedUpstream


class Fixed:
    def __init__(self, name: str, ok: bool) -> None:
        self.name = name
        self.ok = ok

    async def __call__(self) -> ReadinessResult:
        return ReadinessResult(self.ok, "as set")


class Hangs:
    name = "stuck"

    async def __call__(self) -> ReadinessResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("status", "ok"),
    [(200, True), (300, True), (401, True), (404, True), (500, False), (503, False)],
)
async def test_the_backend_is_up_when_it_answers_below_500(
    scripted: tuple[ScriptedUpstream, str], status: int, ok: bool
) -> None:
    upstream, url = scripted
    upstream.status = status
    upstream.body = b"{}"
    client = UpstreamClient(UpstreamConfig(url=url))
    await client.open()
    try:
        result = await UpstreamReachable(client)()
    finally:
        await client.close()
    assert result == ReadinessResult(ok, f"GET / answered {status}")
    assert [r.path for r in upstream.received] == ["/"]


@pytest.mark.parametrize(("count", "ok"), [(0, False), (1, True), (3, True)])
async def test_keys_are_loaded_when_at_least_one_can_verify(count: int, ok: bool) -> None:
    assert await KeysLoaded(lambda: count)() == ReadinessResult(
        ok, f"{count} verification key(s) loaded"
    )


async def test_ready_only_when_every_check_passes() -> None:
    passing = Readiness([Fixed("a", True), Fixed("b", True)], timeout=1)
    assert (await passing.report())["ready"] is True
    failing = Readiness([Fixed("a", True), Fixed("b", False)], timeout=1)
    report = await failing.report()
    assert report["ready"] is False
    assert report["checks"] == {
        "a": {"ok": True, "detail": "as set"},
        "b": {"ok": False, "detail": "as set"},
    }


async def test_a_draining_process_is_never_ready() -> None:
    readiness = Readiness([Fixed("a", True)], timeout=1)
    readiness.draining = True
    report = await readiness.report()
    assert report["ready"] is False
    assert report["draining"] is True
    assert report["checks"]["a"]["ok"] is True, "the checks still say what they see"


async def test_a_check_that_does_not_answer_in_time_fails() -> None:
    readiness = Readiness([Fixed("a", True), Hangs()], timeout=0.05)
    report = await readiness.report()
    assert report["ready"] is False
    assert report["checks"]["stuck"] == {"ok": False, "detail": "no answer within 0.05s"}
