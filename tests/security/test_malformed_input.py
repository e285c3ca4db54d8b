"""No input from a client produces a 500 or a traceback.

Each malformed request gets a 400 or 401 in the fault envelope with a
request id; nothing it sent comes back in the answer or goes into the log,
and the log holds no traceback. Parser-level errors (raised by aiohttp
before any middleware runs) are sent to the gateway as served by ``run``,
on its own protocol.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import pytest

from tests.security.conftest import LiveGateway, RawBackend, exchange, parse_response
from tests.support.tokens import ISSUER, TokenFactory

# Stands for a credential in the offending bytes: it must never come back
# or reach the log.
SECRET = "SECRETVALUE-8f3e"
ServeGateway = Callable[..., Awaitable[LiveGateway]]


def assert_clean_fault(raw: bytes, status: int, name: str) -> dict[str, Any]:
    response = parse_response(raw)
    assert response.status == status, raw[:300]
    assert response.headers["content-type"].startswith("application/json")
    request_id = response.headers["x-openstack-request-id"]
    assert request_id.startswith("req-")
    assert response.headers["x-compute-request-id"] == request_id
    assert SECRET.encode() not in raw
    body = json.loads(response.body)
    assert list(body) == [name]
    assert body[name]["code"] == status
    return dict(body[name])


def assert_quiet_log(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert SECRET not in record.getMessage()
        assert record.levelno < logging.ERROR, record.getMessage()


PARSER_CASES = {
    "header line too long": (
        f"GET /limits HTTP/1.1\r\nHost: g\r\nX-Auth-Token: {SECRET}{'a' * 20000}\r\n\r\n"
    ),
    "too many headers": "GET /limits HTTP/1.1\r\nHost: g\r\n"
    + "".join(f"X-H{i}: {SECRET}\r\n" for i in range(200))
    + "\r\n",
    "Content-Length with Transfer-Encoding": (
        "DELETE /v2/images/x HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\n"
        f"Transfer-Encoding: chunked\r\nX-Auth-Token: {SECRET}\r\n\r\n0\r\n\r\n"
    ),
    "duplicate Content-Length": (
        f"DELETE /v2/images/x HTTP/1.1\r\nHost: g\r\nX-Auth-Token: {SECRET}\r\n"
        "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
    ),
    "bad chunk size": (
        "DELETE /v2/images/x HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n"
        f"zz\r\n{SECRET}\r\n0\r\n\r\n"
    ),
    "obs-fold": (f"GET /limits HTTP/1.1\r\nHost: g\r\nX-Auth-Token: {SECRET}\r\n folded\r\n\r\n"),
    "no Host": f"GET /limits HTTP/1.1\r\nX-Auth-Token: {SECRET}\r\n\r\n",
    "garbage request line": f"{SECRET} / HTTP/9\r\n\r\n",
    "control byte in a header": f"GET /limits HTTP/1.1\r\nHost: g\r\nX-A: {SECRET}\x00\r\n\r\n",
}


@pytest.mark.parametrize("case", list(PARSER_CASES))
async def test_parser_errors_get_the_fault_envelope_and_no_traceback(
    serve_gateway: ServeGateway,
    raw_backend: RawBackend,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    gateway = await serve_gateway(raw_backend.url)
    with caplog.at_level(logging.DEBUG):
        raw = await exchange(gateway.port, PARSER_CASES[case].encode())
    body = assert_clean_fault(raw, 400, "badRequest")
    assert body["message"]
    assert_quiet_log(caplog)
    assert any(r.name == "gateway.http" for r in caplog.records), "the refusal is logged"
    assert raw_backend.heads == []


def with_header(token: str) -> Callable[[str], bytes]:
    def request(target: str) -> bytes:
        method = "GET" if target == "/limits" else "DELETE"
        return (
            f"{method} {target} HTTP/1.1\r\nHost: g\r\nX-Auth-Token: {token}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("utf-8", "surrogateescape")

    return request


def signed(token: TokenFactory, header: dict[str, Any] | None = None, **claims: Any) -> str:
    """A token signed with a trusted key, with a hand-made header or claims."""
    if header is None:
        return token(**claims)
    body = jwt.utils.base64url_encode(
        json.dumps({"iss": ISSUER, "sub": "a", "project_id": "p"}).encode()
    ).decode()
    head = jwt.utils.base64url_encode(json.dumps(header).encode()).decode()
    return f"{head}.{body}.c2ln"


TOKEN_CASES: dict[str, Callable[[TokenFactory], str]] = {
    "non-UTF-8 byte": lambda _: f"{SECRET}\udcff\udcfe",
    "alg is a list": lambda t: signed(t, {"alg": ["RS256"], "kid": "rsa"}),
    "alg is an object": lambda t: signed(t, {"alg": {"x": 1}, "kid": "rsa"}),
    "exp of 10**400": lambda t: t(exp=10**400),
    "exp of Infinity": lambda t: t(exp=float("inf")),
    "nbf far past the year 9999": lambda t: t(nbf=10**30),
    "deeply nested header": lambda _: (
        jwt.utils.base64url_encode(b"[" * 4000 + b"]" * 4000).decode() + ".e30.c2ln"
    ),
}


@pytest.mark.parametrize("case", list(TOKEN_CASES))
@pytest.mark.parametrize("target", ["/limits", "/v2/images/{image}"])
async def test_hostile_tokens_are_401_never_500(
    serve_gateway: ServeGateway,
    raw_backend: RawBackend,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
    case: str,
    target: str,
) -> None:
    gateway = await serve_gateway(raw_backend.url)
    request = with_header(TOKEN_CASES[case](token))
    with caplog.at_level(logging.DEBUG):
        raw = await exchange(gateway.port, request(target.format(image=uuid.uuid4())))
    assert_clean_fault(raw, 401, "unauthorized")
    assert_quiet_log(caplog)
    assert raw_backend.requests("DELETE") == []
