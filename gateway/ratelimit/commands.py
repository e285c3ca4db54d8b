"""``image-gateway limits set|get|clear``: per-tenant overrides in Redis.

Every gateway sharing the Redis picks a change up within
``rate_limit.redis.overrides_refresh`` seconds, without a restart.
"""

from __future__ import annotations

import argparse
import asyncio

from pydantic import ByteSize

from gateway.config import MAX_BYTES, MAX_LIMIT, GatewayConfig, load_config, parse_byte_size
from gateway.ratelimit.overrides import RedisOverrides
from gateway.redis_connect import REDIS_FAILURES, connect

# An operator at a terminal can wait longer than a request can.
_REDIS_DEADLINE = 5.0


class LimitsAdminError(ValueError):
    """A request the override table must not take; the message says why."""


def add_limits_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    limits = commands.add_parser("limits", help="per-tenant rate-limit overrides in Redis")
    actions = limits.add_subparsers(dest="limits_command", required=True)
    set_ = actions.add_parser("set", help="override a rule's value for one project")
    get = actions.add_parser("get", help="list overrides (of one project)")
    clear = actions.add_parser("clear", help="remove a project's overrides (of one rule)")
    for parser in (set_, get, clear):
        parser.add_argument("--config", required=True, help="the gateway's YAML configuration")
    set_.add_argument("--project", required=True)
    set_.add_argument("--rule", required=True, help="a rule name from rate_limit.rules")
    set_.add_argument(
        "--value",
        required=True,
        help="requests per the rule's unit; for a byte rule, bytes (50GiB, 200MiB)",
    )
    get.add_argument("--project")
    clear.add_argument("--project", required=True)
    clear.add_argument("--rule")


def _validate(config: GatewayConfig, rule: str | None, value: str | None) -> int | None:
    """The value the override table takes, read in the rule's unit."""
    if config.rate_limit.redis is None:
        raise LimitsAdminError("overrides live in Redis: rate_limit.redis is not configured")
    rules = {r.name: r for r in config.rate_limit.rules}
    if rule is not None and rule not in rules:
        known = ", ".join(sorted(rules)) or "none"
        raise LimitsAdminError(f"no rule {rule!r} in rate_limit.rules (known: {known})")
    if rule is not None and rules[rule].by == "global":
        raise LimitsAdminError(f"rule {rule!r} counts all callers together; it has no tenant")
    if value is None or rule is None:
        return None
    if rules[rule].counts_bytes:
        try:
            size = parse_byte_size(value)
        except ValueError as exc:
            raise LimitsAdminError(f"--value of byte rule {rule!r}: {exc}") from None
        if not 0 < size <= MAX_BYTES:
            most = ByteSize(MAX_BYTES).human_readable(separator=" ")
            raise LimitsAdminError(f"--value must be from 1 byte to {most}, not {value}")
        return size
    if not value.strip().isdigit() or not 0 < int(value) <= MAX_LIMIT:
        raise LimitsAdminError(f"--value must be from 1 to {MAX_LIMIT} requests, not {value}")
    return int(value)


def run_limits_command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    args.value = _validate(config, getattr(args, "rule", None), getattr(args, "value", None))
    return asyncio.run(_run(config, args))


async def _run(config: GatewayConfig, args: argparse.Namespace) -> int:
    redis_config = config.rate_limit.redis
    assert redis_config is not None
    client = connect(redis_config)
    byte_rules = frozenset(r.name for r in config.rate_limit.rules if r.counts_bytes)
    overrides = RedisOverrides(client, redis_config, byte_rules)
    try:
        async with asyncio.timeout(_REDIS_DEADLINE):
            return await _apply(overrides, args)
    except REDIS_FAILURES as exc:
        raise LimitsAdminError(f"cannot reach Redis: {exc}") from None
    finally:
        await client.aclose()


async def _apply(overrides: RedisOverrides, args: argparse.Namespace) -> int:
    if args.limits_command == "set":
        await overrides.set(args.project, args.rule, args.value)
        print(f"{args.project} {args.rule} = {_shown(overrides, args.rule, args.value)}")
    elif args.limits_command == "clear":
        removed = await overrides.clear(args.project, args.rule)
        print(f"removed {removed} override(s) of {args.project}")
    else:
        table = await overrides.load()
        for (project, rule), value in sorted(table.items()):
            if args.project in (None, project):
                print(f"{project} {rule} = {_shown(overrides, rule, value)}")
    return 0


def _shown(overrides: RedisOverrides, rule: str, value: int) -> str:
    """A byte rule's value with its size as people read it: 53687091200 (50.0 GiB)."""
    if rule in overrides.byte_rules:
        return f"{value} ({ByteSize(value).human_readable(separator=' ')})"
    return str(value)
