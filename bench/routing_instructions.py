"""Instructions of the routing step alone, per request, counted by callgrind: HEAD against REF.

bench/gateway_instructions.py counts whole requests, and on a loaded machine
its per-request figure moves by several percent between runs (the fewer
requests a process serves in its window, the larger its share of timers and
background work). A change to one step is measured better alone: this runs
the routing step (gateway/middleware/routing.py, the route table as shipped)
on ``DELETE /v2/images/<uuid>``, the same request object each time with a
fresh request context, ``--requests`` times in one process, and once with
none; the difference over the count is the step's instructions per request,
start-up cancelled. Each tree runs under ``valgrind --tool=callgrind`` with
``PYTHONHASHSEED=0``, so that a run repeats to the instruction.

    apt-get install -y valgrind
    python -m bench.routing_instructions [--requests 20000] [--baseline main]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness import REPO
from bench.harness.processes import checkout

DRIVER = """
import asyncio, sys, uuid
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from gateway.config import RoutesConfig
from gateway.http.routes import RouteTable
from gateway.middleware.routing import RoutingMiddleware
from gateway.request_context import CONTEXT, RequestContext

async def main(count):
    app = web.Application()
    table = RouteTable()
    async def handler(request):
        return web.Response(status=204)
    table.register(app.router, handler, {"limits:read": handler})
    app.freeze()
    step = RoutingMiddleware(table, RoutesConfig())
    path = f"/v2/images/{uuid.uuid4()}"
    match = await app.router.resolve(make_mocked_request("DELETE", path, app=app))
    request = make_mocked_request("DELETE", path, app=app, match_info=match)
    for _ in range(count):
        request[CONTEXT] = RequestContext("req-bench")
        await step(request, handler)

asyncio.run(main(int(sys.argv[1])))
"""


def instructions(tree: Path, requests: int, out: Path) -> int:
    """All the instructions of one run of the driver over ``tree``'s gateway."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(tree)}
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         sys.executable, "-c", DRIVER, str(requests)],
        check=True, capture_output=True, env=env, cwd=tree,
    )  # fmt: skip
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"callgrind wrote no total to {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--baseline", metavar="REF", help="also count this commit's step")
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        print("missing: valgrind (apt-get install valgrind)")
        return 2
    with tempfile.TemporaryDirectory(prefix="routing-instructions-") as tmpdir:
        tmp = Path(tmpdir)
        trees = {"HEAD": REPO}
        if args.baseline:
            trees[args.baseline] = checkout(args.baseline, tmp)
        per_request: dict[str, float] = {}
        for name, tree in trees.items():
            base = instructions(tree, 0, tmp / f"{len(per_request)}-none.out")
            total = instructions(tree, args.requests, tmp / f"{len(per_request)}-all.out")
            per_request[name] = (total - base) / args.requests
            line = f"{name:<12} {per_request[name]:10.1f} instructions/request"
            print(f"{line} (start-up {base}, with {args.requests}: {total})", flush=True)
    if args.baseline:
        head, before = per_request["HEAD"], per_request[args.baseline]
        print(f"HEAD - {args.baseline}: {head - before:+.1f} instructions/request "
              f"({head / before:.4f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
