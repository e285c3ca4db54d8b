"""What a byte budget holds, as the gateways report it on GET /limits."""

from __future__ import annotations

import asyncio

import aiohttp


async def settled_use(session: aiohttp.ClientSession, urls: list[str], tok: str) -> int:
    """The bytes the caller's one byte rule counts, as every gateway in ``urls``
    reports it, once refunds have landed (two looks in a row agree)."""
    seen: list[int] = []
    for _ in range(200):
        now = []
        for url in urls:
            async with session.get(f"{url}/limits", headers={"X-Auth-Token": tok}) as response:
                (entry,) = (await response.json())["limits"]["rate"]
                now.append(int(entry["limit"][0]["value"]) - int(entry["limit"][0]["remaining"]))
        if len(set(now)) == 1 and seen[-1:] == now[:1]:
            return now[0]
        seen.append(now[0])
        await asyncio.sleep(0.05)
    raise AssertionError(f"the gateways never agreed on the use: {seen[-5:]}")
