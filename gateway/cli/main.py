"""The ``image-gateway`` command: run, demo, token, limits, check-config, explain, revoke."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway import __version__
from gateway.config import ConfigError, GatewayConfig, load_config, parse_byte_size
from gateway.ratelimit.commands import add_limits_commands, run_limits_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="image-gateway", description="A policy gateway in front of a Glance image API."
    )
    parser.add_argument("--version", action="version", version=f"image-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the gateway")
    run.add_argument("--config", required=True, type=Path, help="the YAML configuration")
    run.add_argument(
        "--workers", help="processes, or auto for one per core (default: listen.workers)"
    )

    demo = commands.add_parser("demo", help="the gateway in front of a stand-in image store")
    demo.add_argument("--port", type=int, default=8080, help="the gateway's port (default 8080)")
    demo.add_argument("--admin-port", type=int, default=9090, help="dashboard port (default 9090)")

    token = commands.add_parser("token", help="mint a token with the config's dev signing key")
    token.add_argument("--config", required=True, type=Path)
    token.add_argument("--project", required=True)
    token.add_argument("--user", required=True)
    token.add_argument("--roles", default="", help="comma-separated, e.g. cloudImages:admin")
    token.add_argument("--ttl", type=float, default=3600, help="seconds (default 3600)")

    add_limits_commands(commands)

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", type=Path)

    explain = commands.add_parser(
        "explain",
        help="each step's decision for a request, without forwarding it",
        epilog="Exit status: 0 would be forwarded, 1 refused, 3 undecided, 2 bad configuration.",
    )
    explain.add_argument("--config", required=True, type=Path)
    explain.add_argument("--token", required=True, help="the caller's token")
    explain.add_argument(
        "--no-owner-lookup",
        action="store_true",
        help="do not ask the backend who owns the image (read-only GET otherwise)",
    )
    explain.add_argument(
        "--bytes",
        metavar="SIZE",
        help="the size of the image data it moves (4GiB): which byte rule would refuse it",
    )
    explain.add_argument("method", help="e.g. DELETE")
    explain.add_argument("path", help="e.g. /v2/images/<id>")

    revoke = commands.add_parser(
        "revoke", help="refuse a token (by jti), or a user's or project's tokens, everywhere"
    )
    revoke.add_argument("--config", required=True, type=Path)
    whom = revoke.add_mutually_exclusive_group(required=True)
    whom.add_argument("--jti", help="the token's jti claim")
    whom.add_argument(
        "--token",
        help="a Keystone token (kept as its keyed hash; needs auth.keystone.shared_cache)",
    )
    whom.add_argument("--user", help="every token of this user issued until now")
    whom.add_argument("--project", help="every token of this project issued until now")
    revoke.add_argument(
        "--expires-at",
        type=float,
        help="the token's exp (epoch seconds): the revocation ends with the token",
    )
    revoke.add_argument(
        "--ttl", type=float, help="seconds to keep it (default and cap: revocation.max_ttl)"
    )
    return parser


def _explain(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from gateway.cli.explain import explain

    config = load_config(args.config)
    # The explanation says what failed (the owner look-up, say); the chain's
    # warnings about the same (the backend's outage line) would repeat it.
    logging.getLogger("gateway").setLevel(logging.ERROR)
    owner_lookup = not args.no_owner_lookup
    size = None
    if args.bytes is not None:
        try:
            size = parse_byte_size(args.bytes)
        except ValueError as exc:
            raise ValueError(f"--bytes: {exc}") from None
    result = asyncio.run(
        explain(config, args.token, args.method, args.path, owner_lookup=owner_lookup, size=size)
    )
    print(result.render())
    return {True: 0, False: 1, None: 3}[result.outcome]


def _keystone_token_hash(config: GatewayConfig, token: str) -> str:
    """The keyed hash every gateway sharing the Keystone cache secret checks tokens by."""
    from gateway.authn.keystone.sealing import TokenSealer

    keystone = config.auth.keystone
    if keystone is None or keystone.shared_cache is None:
        raise ValueError(
            "--token revokes a Keystone token by its keyed hash, whose key is"
            " auth.keystone.shared_cache.secret: configure it"
        )
    secret = keystone.shared_cache.secret.get_secret_value().encode()
    return TokenSealer(secret).digest(token.strip()).hex()


def _revoke(args: argparse.Namespace) -> int:
    import asyncio

    from redis.exceptions import RedisError

    from gateway.authn.revocation import KINDS, make_revocation_store, revocation_for

    config = load_config(args.config)
    if config.revocation.store != "redis":
        raise ValueError(
            "revocation.store is memory: only the gateway process itself holds its"
            " revocations; set revocation.store: redis to revoke from the command line"
        )
    kind = next(k for k in KINDS if getattr(args, k) is not None)
    subject = getattr(args, kind)
    if kind == "token":
        subject = _keystone_token_hash(config, subject)
    expires_at = None if args.expires_at is None else args.expires_at + config.auth.leeway
    revocation = revocation_for(
        kind, subject, config.revocation, expires_at=expires_at, ttl=args.ttl
    )

    async def write() -> None:
        store = make_revocation_store(config.revocation)
        try:
            await store.revoke(revocation)
        finally:
            await store.close()

    try:
        asyncio.run(write())
    except RedisError as exc:
        print(f"image-gateway: the revocation was not written: {exc}", file=sys.stderr)
        return 1
    until = revocation.expires_at - revocation.revoked_at
    shown = "(hash) " + subject[:16] if kind == "token" else subject
    print(f"revoked {kind} {shown} for {until:.0f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            from gateway.runtime.supervisor import run

            return run(args.config, workers=args.workers)
        if args.command == "demo":
            from gateway.cli.demo import demo

            return demo(args.port, args.admin_port)
        if args.command == "limits":
            return run_limits_command(args)
        if args.command == "token":
            from gateway.authn.dev_tokens import mint_token

            config = load_config(args.config)
            roles = [r.strip() for r in args.roles.split(",") if r.strip()]
            print(
                mint_token(
                    config.auth, project=args.project, user=args.user, roles=roles, ttl=args.ttl
                )
            )
            return 0
        if args.command == "explain":
            return _explain(args)
        if args.command == "revoke":
            return _revoke(args)
        load_config(args.file)
        print(f"{args.file}: OK")
        return 0
    except ConfigError as exc:
        print(f"image-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"image-gateway: {exc}", file=sys.stderr)
        return 2
