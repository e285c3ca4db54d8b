"""Running the limiter's Lua scripts: by SHA, loaded again where Redis forgot them.

On a standalone or Sentinel-managed Redis a call goes over the limiter's own
connection (gateway/redis_pipe.py); on a Redis Cluster, calls go in one
redis-py cluster pipeline, each to the node of its keys' slot.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any, NamedTuple

from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError

from gateway.ratelimit.store import StoreFault, StoreUnavailable
from gateway.redis_connect import RedisClient
from gateway.redis_pipe import RedisPipe, pack_command

# One script call: its keys and its arguments.
ScriptCall = tuple[list[str], list[str | int | bytes]]


def _is_script_error(reply: Exception) -> bool:
    """Redis ran the script and it failed (a bug, or a key of the wrong type),
    as opposed to Redis being unable to run it (read-only replica, OOM, …)."""
    if isinstance(reply, NoScriptError | ReadOnlyError) or not isinstance(reply, ResponseError):
        return False
    return "script" in str(reply).lower()


def script_failure(exc: Exception) -> Exception:
    """What the callers of a failed round trip get: one exception for them all,
    so the breaker counts the round trip once."""
    if _is_script_error(exc):
        return StoreFault(f"redis: {exc}")
    if isinstance(exc, ResponseError):
        return StoreUnavailable(f"redis: {exc}")
    return StoreUnavailable(f"redis: {type(exc).__name__}: {exc}")


class LuaScript(NamedTuple):
    text: str
    sha: str


def lua_script(name: str) -> LuaScript:
    """A script of this package, by file name."""
    text = resources.files("gateway.ratelimit").joinpath(name).read_text()
    return LuaScript(text, hashlib.sha1(text.encode()).hexdigest())


class ScriptRunner:
    def __init__(self, client: RedisClient, pipe: RedisPipe | None) -> None:
        self.client = client
        self.pipe = pipe

    async def call(
        self,
        script: LuaScript,
        keys: list[str],
        args: list[str | int | bytes],
        *,
        load_first: bool = False,
    ) -> Any:
        """One call over the limiter's connection (standalone or Sentinel);
        ``load_first`` when Redis just said it forgot the script."""
        assert self.pipe is not None
        command = pack_command("EVALSHA", script.sha, len(keys), *keys, *args)
        if load_first:
            await self.pipe.call(pack_command("SCRIPT", "LOAD", script.text))
        try:
            return await self.pipe.call(command)
        except NoScriptError:
            # A restarted or failed-over Redis has forgotten the script.
            await self.pipe.call(pack_command("SCRIPT", "LOAD", script.text))
            return await self.pipe.call(command)

    async def run(self, script: LuaScript, calls: list[ScriptCall]) -> list[Any]:
        """Every call in one pipeline, each reply or its error in order (a Cluster)."""
        replies = await self._pipeline(script, calls)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            # A node that restarted or failed over has forgotten the script:
            # load it everywhere and run again only the calls that did not run.
            await self.client.script_load(script.text)
            again = await self._pipeline(script, [calls[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, script: LuaScript, calls: list[ScriptCall]) -> list[Any]:
        # The pipeline's context hands its connection back to the pool even
        # when the caller's timeout cancels it half-way.
        async with self.client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                # Not pipe.evalsha: redis-py's cluster pipeline refuses that
                # method by name, though it routes the command by its keys.
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))
