"""The gateway as a benchmark runs it: the shipped configuration changed only where
it must be, the RS256 tokens every request carries, and a warm token cache."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.harness import REPO
from bench.harness.services import PROJECT
from bench.harness.wrk import run_wrk
from gateway.config import MAX_LIMIT

ISSUER = "https://bench.identity.test"
AUDIENCE = "image-api"
TOKENS = 1000


def gateway_conf(
    tmp: Path,
    name: str,
    port: int,
    upstream: int,
    workers: int,
    redis_url: str,
    public_pem: Path,
    admin_port: int,
    tree: Path = REPO,
    owner_check: str | None = None,
    memory_limiter: bool = False,
    tracing: str | None = None,
) -> Path:
    """``tree``'s config/gateway.yaml, changed only where it must be to run here;
    ``owner_check`` by default from ``name`` (``gw-backend``, ``gw-gateway@REF``);
    ``memory_limiter``: the in-process limiter in place of Redis; ``tracing``: an
    OTLP/HTTP endpoint every request's spans are exported to (sample ratio 1.0)."""
    data: dict[str, Any] = yaml.safe_load((tree / "config" / "gateway.yaml").read_text())
    data["listen"].update(host="127.0.0.1", port=port, workers=workers)
    data["upstream"]["url"] = f"http://127.0.0.1:{upstream}"
    issuer = data["auth"]["issuers"][0]
    issuer.update(issuer=ISSUER, audience=AUDIENCE)
    issuer["keys"] = [{"kid": "bench", "algorithm": "RS256", "public_key_file": str(public_pem)}]
    issuer.pop("jwks")
    data["authorization"]["policy_file"] = str(tree / "config" / "policy.yaml")
    data["authorization"]["owner_check"] = owner_check or name.removeprefix("gw-").split("@")[0]
    data["revocation"]["redis"]["url"] = redis_url
    data["rate_limit"]["redis"]["url"] = redis_url
    if memory_limiter:
        data["rate_limit"]["store"] = "memory"
        data["rate_limit"].pop("redis")
    # Every request is counted, none refused: a run makes far fewer than this.
    for rule in data["rate_limit"]["rules"]:
        rule["value"] = MAX_LIMIT
    if tracing is not None:
        # An export when a batch of 512 spans fills, as under load, not every
        # 2 s: at the few requests a second of a run under callgrind, a timed
        # export per second or two would be most of what a request is charged.
        data["tracing"] = {"endpoint": tracing, "sample_ratio": 1.0, "schedule_delay": 60}
    data["admin"]["port"] = admin_port
    data["audit"]["sink"] = str(tmp / f"{name}-audit.jsonl")
    path = tmp / f"{name.replace('@', '-at-')}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def make_tokens(tmp: Path, count: int = TOKENS) -> tuple[Path, Path]:
    """An RS256 key's public half, and a file of ``count`` tokens it signed."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp / "bench-public.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "project_id": PROJECT,
        "roles": ["cloudImages:admin"],
        "iat": now,
        "exp": now + 3600,
    }
    tokens = [
        jwt.encode({**claims, "sub": f"user-{i}"}, key, algorithm="RS256", headers={"kid": "bench"})
        for i in range(count)
    ]
    token_file = tmp / "tokens.txt"
    token_file.write_text("\n".join(tokens) + "\n")
    return public, token_file


def token_cache(admin_port: int) -> tuple[float, float]:
    """The gateway's verified-token cache hits and misses so far, from /metrics."""
    url = f"http://127.0.0.1:{admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    counts = dict.fromkeys(("hit", "miss"), 0.0)
    sample = r'gateway_token_cache_lookups_total\{result="(\w+)"\} ([\d.e+]+)'
    for match in re.finditer(sample, text):
        counts[match.group(1)] = float(match.group(2))
    return counts["hit"], counts["miss"]


def warm_gateway(url: str, admin_port: int, script: Path, connections: int) -> None:
    """Until each worker's token cache holds (almost) every token, as in a long run.

    The cache is per worker and a connection lands on either, so it takes a
    few runs; the measured rounds then report what hit rate they saw.
    """
    for _ in range(8):
        _, missed = token_cache(admin_port)
        served = run_wrk(url, script, 3, connections)["requests"]
        if token_cache(admin_port)[1] - missed < 0.005 * served:
            return
