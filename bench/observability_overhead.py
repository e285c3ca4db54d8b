"""What observability costs per request: the gateway with and without it.

Two gateway apps built from one configuration, in front of one stand-in
store, the second with the observability middleware taken out of its
chain. Rounds alternate between them so that drift (CPU frequency, other
load) falls on both alike; the ratio of their throughputs is printed.
Log lines (JSON) and audit records go to files in a temporary directory,
as they would to a log collector's pipe or an audit file, not a terminal.

    python -m bench.observability_overhead [--requests 2000] [--concurrency 16] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web

from gateway.app import build_app
from gateway.authn.dev_tokens import mint_token
from gateway.config import GatewayConfig, parse_config
from gateway.demo_backend.image_store import create_standin_store_app
from gateway.middleware.observability import ObservabilityMiddleware
from gateway.observability.logs import configure_logging
from gateway.runtime.server import start_site

SECRET = "bench-secret-that-is-long-enough-0123456789"


def config(upstream: str, audit_file: Path) -> GatewayConfig:
    key = {"kid": "bench", "algorithm": "HS256", "secret": SECRET}
    rule = {"name": "deletes", "path": "^/(v2/)?images/", "unit": "second", "value": 10**6}
    return parse_config(
        {
            "upstream": {"url": upstream},
            "auth": {"keys": [key], "dev_signing_key": key},
            "rate_limit": {"rules": [rule]},
            "audit": {"sink": str(audit_file)},
        }
    )


def without_observability(app: web.Application) -> web.Application:
    for middleware in list(app.middlewares):
        if isinstance(middleware, ObservabilityMiddleware):
            app.middlewares.remove(middleware)
    return app


async def drive(url: str, headers: dict[str, str], requests: int, concurrency: int) -> float:
    """Requests per second for ``requests`` DELETEs over ``concurrency`` connections."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as client:
        remaining = iter(range(requests))

        async def worker() -> None:
            for _ in remaining:
                async with client.delete(f"{url}/v2/images/{uuid.uuid4()}", headers=headers) as r:
                    await r.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return requests / (time.perf_counter() - started)


def log_to_file(path: Path) -> TextIO:
    """JSON log lines to a file, as to a log collector's pipe, not a terminal."""
    log_file = path.open("w")
    sys.stderr = log_file  # configure_logging's handler writes to sys.stderr
    configure_logging("INFO", "json")
    sys.stderr = sys.__stderr__
    return log_file


async def alternating_medians(
    urls: dict[str, str], headers: dict[str, str], args: argparse.Namespace
) -> dict[str, float]:
    """Requests per second for each url: the median of rounds that alternate
    between them, so that drift falls on all alike."""
    rates: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(args.rounds):
        for name, url in urls.items():
            rates[name].append(await drive(url, headers, args.requests, args.concurrency))
    return {name: statistics.median(found) for name, found in rates.items()}


async def main(args: argparse.Namespace, logs: Path) -> None:
    log_file = log_to_file(logs / "gateway.log")
    store = await start_site(create_standin_store_app(), "127.0.0.1", 0)
    cfg = config(f"http://127.0.0.1:{store.addresses[0][1]}", logs / "audit.jsonl")
    observed = await start_site(build_app(cfg), "127.0.0.1", 0)
    bare = await start_site(without_observability(build_app(cfg)), "127.0.0.1", 0)
    urls = {
        "observed": f"http://127.0.0.1:{observed.addresses[0][1]}",
        "bare": f"http://127.0.0.1:{bare.addresses[0][1]}",
    }
    admin = mint_token(cfg.auth, project="p", user="u", roles=["admin"])
    paths: dict[str, dict[str, str]] = {
        "forwarded (backend answers 404)": {"X-Auth-Token": admin},
        "refused by the gateway (401)": {},
    }
    try:
        for path, headers in paths.items():
            rates = await alternating_medians(urls, headers, args)
            observed_rate, bare_rate = rates["observed"], rates["bare"]
            print(
                f"{path}: with observability {observed_rate:,.0f} req/s, "
                f"without {bare_rate:,.0f} req/s, ratio {observed_rate / bare_rate:.3f} "
                f"(median of {args.rounds} alternating rounds of {args.requests})"
            )
    finally:
        for runner in (observed, bare, store):
            await runner.cleanup()
        log_file.close()


def arguments(description: str = __doc__.splitlines()[0]) -> Any:
    """The load both benchmarks drive: requests per round, connections, rounds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    return parser.parse_args()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(main(arguments(), Path(directory)))
