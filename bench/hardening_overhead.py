"""What the hardening costs per request, side by side in one run.

1. The gateway's own protocol (gateway.http.protocol: parse errors as
   faults, header deadline, connection cap, the reload trampoline, unknown
   Expect dropped) against aiohttp's plain one: one app configuration, two
   servers, rounds alternating between them; the ratio of throughputs.
2. The header allow-list (gateway.http.header_boundary) against the
   deny-list it replaced (hop-by-hop removal, then every name checked
   against the identity prefixes), on the headers a typical Glance client
   sends: time per request's headers.

    python -m bench.hardening_overhead [--requests 2000] [--concurrency 16] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import timeit
from pathlib import Path

from multidict import CIMultiDict, CIMultiDictProxy

from bench.observability_overhead import alternating_medians, arguments, config, log_to_file
from gateway.app import GATEWAY, build_app
from gateway.authn.dev_tokens import mint_token
from gateway.demo_backend.image_store import create_standin_store_app
from gateway.http.header_boundary import IDENTITY_PREFIXES, HeaderBoundary
from gateway.http.hop_by_hop import end_to_end
from gateway.runtime.server import start_site

CLIENT_HEADERS = CIMultiDictProxy(
    CIMultiDict(
        {
            "Host": "images.example.com",
            "User-Agent": "python-glanceclient",
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "Connection": "keep-alive",
            "X-Auth-Token": "gAAAAABl" + "x" * 180,
            "X-OpenStack-Request-Id": "req-5d3c7a4e-1f2b-4c5d-8e9f-0a1b2c3d4e5f",
            "Content-Type": "application/json",
        }
    )
)


def deny_list(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """What header hygiene did before: drop hop-by-hop, then identity prefixes."""
    kept = end_to_end(headers)
    for name in [n for n in kept if n.lower().startswith(IDENTITY_PREFIXES)]:
        kept.popall(name, None)
    return kept


def header_filters(number: int = 200_000) -> None:
    boundary = HeaderBoundary()
    allow = (
        min(timeit.repeat(lambda: boundary.forwardable(CLIENT_HEADERS), number=number, repeat=5))
        / number
    )
    deny = min(timeit.repeat(lambda: deny_list(CLIENT_HEADERS), number=number, repeat=5)) / number
    print(
        f"header filter: allow-list {allow * 1e6:.2f} µs, deny-list {deny * 1e6:.2f} µs per "
        f"request's {len(CLIENT_HEADERS)} headers, ratio {allow / deny:.2f} (best of 5 x {number})"
    )


async def protocols(args: argparse.Namespace, logs: Path) -> None:
    log_file = log_to_file(logs / "gateway.log")
    store = await start_site(create_standin_store_app(), "127.0.0.1", 0)
    cfg = config(f"http://127.0.0.1:{store.addresses[0][1]}", logs / "audit.jsonl")
    own_app = build_app(cfg)
    own = await start_site(own_app, "127.0.0.1", 0, limits=own_app[GATEWAY].client_limits)
    plain = await start_site(build_app(cfg), "127.0.0.1", 0)
    urls = {
        "gateway protocol": f"http://127.0.0.1:{own.addresses[0][1]}",
        "aiohttp protocol": f"http://127.0.0.1:{plain.addresses[0][1]}",
    }
    headers = {"X-Auth-Token": mint_token(cfg.auth, project="p", user="u", roles=["admin"])}
    try:
        rates = await alternating_medians(urls, headers, args)
        ours, theirs = rates["gateway protocol"], rates["aiohttp protocol"]
        print(
            f"forwarded DELETE: gateway protocol {ours:,.0f} req/s, aiohttp protocol "
            f"{theirs:,.0f} req/s, ratio {ours / theirs:.3f} "
            f"(median of {args.rounds} alternating rounds of {args.requests})"
        )
    finally:
        for runner in (own, plain, store):
            await runner.cleanup()
        log_file.close()


if __name__ == "__main__":
    parsed = arguments(__doc__.splitlines()[0])
    header_filters()
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(protocols(parsed, Path(directory)))
