"""The ``image-gateway`` command: run, demo, token, check-config."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway import __version__
from gateway.config import ConfigError, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="image-gateway", description="A policy gateway in front of a Glance image API."
    )
    parser.add_argument("--version", action="version", version=f"image-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the gateway")
    run.add_argument("--config", required=True, type=Path, help="the YAML configuration")

    demo = commands.add_parser("demo", help="the gateway in front of a stand-in image store")
    demo.add_argument("--port", type=int, default=8080, help="the gateway's port (default 8080)")
    demo.add_argument("--admin-port", type=int, default=9090, help="dashboard port (default 9090)")

    token = commands.add_parser("token", help="mint a token with the config's dev signing key")
    token.add_argument("--config", required=True, type=Path)
    token.add_argument("--project", required=True)
    token.add_argument("--user", required=True)
    token.add_argument("--roles", default="", help="comma-separated, e.g. cloudImages:admin")
    token.add_argument("--ttl", type=float, default=3600, help="seconds (default 3600)")

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            from gateway.server import run

            return run(args.config)
        if args.command == "demo":
            from gateway.demo import demo

            return demo(args.port, args.admin_port)
        if args.command == "token":
            from gateway.auth.dev_tokens import mint_token

            config = load_config(args.config)
            roles = [r.strip() for r in args.roles.split(",") if r.strip()]
            print(
                mint_token(
                    config.auth, project=args.project, user=args.user, roles=roles, ttl=args.ttl
                )
            )
            return 0
        load_config(args.file)
        print(f"{args.file}: OK")
        return 0
    except ConfigError as exc:
        print(f"image-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"image-gateway: {exc}", file=sys.stderr)
        return 2
