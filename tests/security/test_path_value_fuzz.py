"""Hostile path values on every parameter of every route, against a recording backend.

For each route of the table (all enabled) and each of its parameters, the
value is replaced by hostile spellings (dot segments, encoded ``/`` ``\\``
and ``.``, double encoding, NUL and control characters, over-long values,
Unicode that folds to ``/`` or ``.``, invalid UTF-8, ``?`` ``#`` ``;``) and
by seeded random mixtures of them, each sent as raw bytes to the gateway
served as ``run`` serves it, as a global admin whom every rule allows.
Whatever is sent, one of two things happens:

- a fault (400, or 404/405 where the router finds no route), and nothing
  with that request's id reaches the backend;
- the backend receives a path that is the template of the route the
  gateway authorized (per the audit record) filled with that request's
  values, with no dot segment, no encoded ``/``, ``\\`` or ``%``, and that a
  hop which decodes, folds Unicode and resolves dot segments reads as the
  same segments.

FUZZ_SEED and PATH_FUZZ_VALUES change the seed and the random values per parameter.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from gateway.app import GATEWAY
from gateway.http.routes import GLANCE_ROUTES, ROUTE_NAMES, Route
from tests.http.conftest import RACKSPACE_POLICY
from tests.http.test_image_routes import EXAMPLE_PARAMS
from tests.security.conftest import RawBackend, ServeGateway, exchange, parse_response
from tests.support.tokens import TokenFactory

SEED = int(os.environ.get("FUZZ_SEED", "20261206"))
RANDOM_VALUES = int(os.environ.get("PATH_FUZZ_VALUES", "20"))
CONCURRENCY = 16

# Raw, as they go on the wire in the request target.
HOSTILE = [
    ".", "..", "%2e", "%2E%2e", ".%2e", "%2e.", "...", "..;", ".;x", "..%3B",
    "..%2F..%2Fx", "%2F", "a%2Fb", "%2f..", "..%5C..%5Cx", "%5C", "a%5cb",
    "%252F", "%252e%252e", "..%252F..%252Fx", "%25", "%25%32%65", "%%32%65",
    "a%00b", "%00", "%0a", "%0d%0aX-Roles:%20admin", "%09", "%7f", "%C2%85", "%20",
    "a%3Fb", "..%3F", "%23", "a%23..", "..%23",
    "%E2%80%AE", "%E2%80%8B", "%EF%BB%BF", "%E2%80%A8", "%EF%BC%8F", "%EF%BC%BC",
    "%EF%BC%8E%EF%BC%8E", "%E2%80%A5", "%EF%B9%92", "a%EF%BC%85", "%F3%A0%80%81",
    "%C0%AE%C0%AE", "%C0%AF", "%FF", "%ED%A0%80", "%u002e%u002e",
    "a" * 81, "a" * 256, "%C3%BC" * 256, "x" * 2000,
]  # fmt: skip
# What random values are made of: the hostile pieces and harmless ones.
PIECES = [
    ".", "..", "%2e", "%2F", "%2f", "%5C", "%25", "%252f", "%00", "%0a", "%7f", "%C2%85",
    "%3F", "%23", ";", "%3B", "%EF%BC%8F", "%EF%BC%8E", "%E2%80%AE", "%FF", "%C0%AE",
    "a", "Z", "0", "-", "_", "~", "@", ":", "+", "=", "%20", "%C3%BC", "%E6%97%A5",
]  # fmt: skip
UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Probe:
    route: Route
    param: str
    raw_value: str
    target: str


def hostile_values(rng: random.Random) -> list[str]:
    values = list(HOSTILE)
    for _ in range(RANDOM_VALUES):
        values.append("".join(rng.choice(PIECES) for _ in range(rng.randrange(1, 7))))
    return values


def probes(rng: random.Random) -> list[Probe]:
    made = []
    for route in GLANCE_ROUTES:
        assert route.upstream_path is not None
        for param in route.grammar:
            # A value that must pass, to show the route is reached at all.
            control = EXAMPLE_PARAMS[param]
            if param == "image_id":
                control = control.upper()  # forwarded in lower case
            for raw in [quote(control, safe=":"), *hostile_values(rng)]:
                values = {name: quote(EXAMPLE_PARAMS[name], safe=":") for name in route.grammar}
                values[param] = raw
                made.append(Probe(route, param, raw, route.upstream_path.format(**values)))
    return made


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, on a path whose segments are already decoded."""
    out: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/".join(out)


def as_a_hop_reads(path: str) -> list[str]:
    """The segments a hop that decodes, folds Unicode, merges slashes and
    resolves dot segments would read (nginx and friends, the worst of each)."""
    decoded = unicodedata.normalize("NFKC", unquote(unquote(path))).replace("\\", "/")
    decoded = re.split(r"[?#;]", decoded, maxsplit=1)[0]
    return remove_dot_segments(re.sub("/+", "/", decoded)).split("/")


def request_id_of(head: bytes) -> str | None:
    found = re.search(rb"(?im)^x-openstack-request-id:\s*(\S+)\s*$", head)
    return found.group(1).decode() if found else None


def filled(route: Route, path: str) -> dict[str, str] | None:
    """``path``'s values if it is ``route``'s upstream template filled, else None."""
    assert route.upstream_path is not None
    template, segments = route.upstream_path.split("/"), path.split("/")
    if len(template) != len(segments):
        return None
    values = {}
    for part, segment in zip(template, segments, strict=True):
        name = _PLACEHOLDER.fullmatch(part)
        if name is None:
            if part != segment:
                return None
        else:
            values[name.group(1)] = segment
    return values


def check_forwarded(probe: Probe, line: bytes, record: dict[str, Any]) -> None:
    method, path, _ = line.decode("latin-1").split(" ")
    assert method == probe.route.method
    lowered = path.lower()
    for encoded in ("%2f", "%5c", "%25", "%00"):
        assert encoded not in lowered, (probe, path)
    raw_segments = path.split("/")
    assert "" not in raw_segments[1:], (probe, path)
    assert not {".", ".."} & {unquote(s) for s in raw_segments}, (probe, path)
    # A hop that normalizes every way reads the same segments as were sent
    # (each folded as it folds Unicode, which may name another tag, never
    # another place in the path).
    folded = [unicodedata.normalize("NFKC", unquote(s)) for s in raw_segments]
    assert as_a_hop_reads(path) == folded, (probe, path)
    # What was forwarded is the template of the route that was authorized,
    # filled with values its grammars hold, each quoted as one segment.
    [(authorized, values)] = [
        (route, values)
        for route in GLANCE_ROUTES
        if route.name == record["route"] and route.method == method
        and (values := filled(route, path)) is not None
    ]  # fmt: skip
    for name, segment in values.items():
        value = unquote(segment)
        assert authorized.grammar[name].holds(value), (probe, name, value)
        assert segment == quote(value, safe=""), (probe, segment)
    if not {".", ".."} & {unquote(s) for s in probe.target.split("/")}:
        # No step in the client's path: the route and value are the ones sent.
        assert authorized is probe.route, (probe, path)
        sent = unquote(probe.raw_value)
        assert values[probe.param] == quote(
            sent.lower() if UUID_TEXT.fullmatch(sent) else sent, safe=""
        ), (probe, path)


async def test_no_path_value_reaches_the_backend_as_another_resource(
    serve_gateway: ServeGateway,
    raw_backend: RawBackend,
    token: TokenFactory,
    tmp_path: Path,
) -> None:
    audit = tmp_path / "audit.jsonl"
    gateway = await serve_gateway(
        raw_backend.url,
        routes={"enable": sorted(ROUTE_NAMES)},
        authorization={"policy_file": str(RACKSPACE_POLICY)},
        rate_limit={"rules": []},
        audit={"sink": str(audit)},
    )
    admin = token("operations", "root", ["admin"])
    rng = random.Random(SEED)
    sent = probes(rng)
    slots = asyncio.Semaphore(CONCURRENCY)

    async def send(probe: Probe) -> tuple[int, str | None]:
        request = (
            f"{probe.route.method} {probe.target} HTTP/1.1\r\nHost: gateway\r\n"
            f"X-Auth-Token: {admin}\r\nConnection: close\r\n\r\n"
        ).encode("latin-1")
        async with slots:
            response = parse_response(await exchange(gateway.port, request))
        return response.status, response.headers.get("x-openstack-request-id")

    answers = await asyncio.gather(*(send(probe) for probe in sent))
    gateway.app[GATEWAY].audit.flush()
    # One record a line, split on "\n" alone: a path may hold U+2028 or U+0085,
    # which JSON leaves as they are and str.splitlines() would split on.
    lines = audit.read_text().split("\n")
    records = {r["request_id"]: r for r in map(json.loads, filter(None, lines))}
    forwarded = {request_id_of(head): head.split(b"\r\n", 1)[0] for head in raw_backend.heads}

    reached: set[tuple[str, str]] = set()
    refused: set[tuple[str, str]] = set()
    for probe, (status, request_id) in zip(sent, answers, strict=True):
        key = (probe.route.name, probe.param)
        assert request_id is not None, probe
        if status in (400, 404, 405):
            assert request_id not in forwarded, (probe, status, forwarded.get(request_id))
            refused.add(key)
            continue
        assert status in (200, 204), (probe, status)
        check_forwarded(probe, forwarded[request_id], records[request_id])
        reached.add(key)
    every = {(route.name, param) for route in GLANCE_ROUTES for param in route.grammar}
    # Each parameter of each route was both reached (its control value) and defended.
    assert reached == every
    assert refused == every
