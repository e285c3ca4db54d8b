"""A tree of this repository with the request path's modules compiled by mypyc.

An experiment, not a build the gateway ships: it answers "what would
compiling the chain buy?" with a figure measured beside the gateway as it
runs today. bench/gateway_vs_haproxy.py runs it as ``gw-backend+mypyc``
with ``--mypyc``.

mypyc (part of mypy, which already checks this code with ``--strict``)
turns typed modules into C extensions. The modules below are the ones a
request passes through; the rest (configuration, CLI, runtime supervisor)
stay Python. The extensions are built in place in a copy of the tree, so
the copy's ``python -m gateway`` imports them ahead of the sources.

Needs a C compiler and Python's headers (build-essential; pyenv and the
python.org builds bring the headers).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# What a DELETE passes through, and what those modules' classes must be
# compiled with (an interpreted class may not inherit from a compiled one:
# the admin app's middlewares inherit the chain's base).
HOT_MODULES = (
    "gateway/middleware/*.py",
    "gateway/admin/auth.py",
    "gateway/admin/host.py",
    "gateway/http/client.py",
    "gateway/handlers/proxy.py",
    "gateway/request_context.py",
    "gateway/http/header_boundary.py",
    "gateway/http/hop_by_hop.py",
    "gateway/http/request_ids.py",
    "gateway/http/request_target.py",
    "gateway/http/public_links.py",
    "gateway/http/client_ip.py",
    "gateway/http/routes.py",
    "gateway/http/upstream.py",
    "gateway/http/request_body.py",
    "gateway/ratelimit/limiter.py",
    "gateway/ratelimit/redis_store.py",
    "gateway/redis_pipe.py",
    "gateway/ratelimit/breaker.py",
    "gateway/ratelimit/store.py",
    "gateway/observability/records.py",
    "gateway/observability/batch.py",
    "gateway/observability/feed.py",
    "gateway/observability/access_log.py",
    "gateway/observability/audit.py",
    "gateway/observability/metric_types.py",
    "gateway/observability/metrics.py",
    "gateway/authn/tokens.py",
    "gateway/authn/identity.py",
    "gateway/authn/authenticator.py",
    "gateway/authz/policy.py",
    "gateway/authz/ownership.py",
    "gateway/expiring_lru.py",
)

# argv: -c build_ext --inplace -jN MODULE...; setup() must see only the command.
_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify
modules, sys.argv = sys.argv[4:], sys.argv[:4]
setup(name="gateway-compiled", packages=[], ext_modules=mypycify(modules, separate=True))
"""


def compile_tree(tree: Path) -> None:
    """Build HOT_MODULES of ``tree`` in place (a few minutes on two cores)."""
    modules = [str(p.relative_to(tree)) for m in HOT_MODULES for p in sorted(tree.glob(m))]
    jobs = str(os.cpu_count() or 1)
    subprocess.run(
        [sys.executable, "-c", _SETUP, "build_ext", "--inplace", f"-j{jobs}", *modules],
        cwd=tree,
        check=True,
        stdout=subprocess.DEVNULL,
    )
