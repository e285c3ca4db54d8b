"""One structured access line per request, and never the token in it."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
from aiohttp import web

from gateway.demo_backend.image_store import add_image
from gateway.observability.access_log import AccessLog, sole_json_handler
from gateway.observability.logs import JsonFormatter, LoopBatchedHandler, RequestIdDefault
from tests.support.faults import delete
from tests.support.observed import Observed, ObservedFactory, delete_new_image, sample_record
from tests.support.tokens import TokenFactory


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    """Each access record as the JSON log line a shipper would read."""
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(record))
        for record in caplog.records
        if record.name == "gateway.access"
    ]


@pytest.fixture
async def observed(observe_standin: ObservedFactory, caplog: pytest.LogCaptureFixture) -> Observed:
    caplog.set_level(logging.INFO, logger="gateway.access")
    return await observe_standin()


async def test_one_json_access_line_per_request_with_the_outcome(
    observed: Observed,
    store_app: web.Application,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    image = add_image(store_app, owner="project-a")
    tok = token(project="project-a", user="alice")
    deleted = await delete(observed.gateway, image.id, tok)
    refused = await delete(observed.gateway, image.id, tok)
    assert (deleted.status, refused.status) == (204, 404)

    first, second = access_lines(caplog)
    assert first["request_id"] == deleted.headers["X-OpenStack-Request-Id"]
    assert second["request_id"] == refused.headers["X-OpenStack-Request-Id"]
    assert (first["level"], first["logger"]) == ("INFO", "gateway.access")
    assert str(first["time"]).endswith("+00:00")
    for name, value in {
        "method": "DELETE",
        "route": "delete_image",
        "image_id": image.id,
        "project": "project-a",
        "user": "alice",
        "status": 204,
        "decision": "forwarded",
        "upstream_status": 204,
        "limiter": "allowed",
    }.items():
        assert first[name] == value, name
    assert 0 < float(str(first["upstream_ms"])) <= float(str(first["duration_ms"]))
    # The owner look-up found no such image: the gateway refused it itself.
    assert (second["status"], second["decision"], second["upstream_status"]) == (
        404,
        "denied",
        None,
    )
    assert second["reason"] == f"No image found with ID {image.id}."


async def test_the_token_never_reaches_the_log(
    observed: Observed,
    store_app: web.Application,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    image = add_image(store_app, owner="project-a")
    good, expired = token(), token(ttl=-60)
    assert (await delete(observed.gateway, image.id, expired)).status == 401
    response = await observed.gateway.delete(
        f"/v2/images/{image.id}", headers={"Authorization": f"Bearer {good}"}
    )
    assert response.status == 204
    lines = access_lines(caplog)
    assert [line["decision"] for line in lines] == ["unauthenticated", "forwarded"]
    everything = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    for secret in (good, expired, good.split(".")[2]):
        assert secret not in everything


async def test_a_refused_request_says_why(
    observed: Observed,
    store_app: web.Application,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    observer = token(roles=["cloudImages:observer"])
    assert (await delete_new_image(observed, store_app, observer)).status == 403
    (line,) = access_lines(caplog)
    assert (line["status"], line["decision"]) == (403, "denied")
    assert line["reason"] == "Policy does not allow this operation."
    assert (line["upstream_status"], line["upstream_ms"]) == (None, None)


def access_logger(name: str, stream: io.StringIO) -> tuple[logging.Logger, LoopBatchedHandler]:
    """A logger set up as configure_logging sets up the root: one JSON handler."""
    handler = LoopBatchedHandler(stream)
    handler.addFilter(RequestIdDefault())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    return logger, handler


class Kept(logging.Handler):
    """A second handler: it keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_with_the_json_handler_alone_the_line_skips_logging_and_reads_the_same() -> None:
    stream = io.StringIO()
    logger, handler = access_logger("test.access.direct", stream)
    assert sole_json_handler(logger) is handler
    record = sample_record("req-direct")
    AccessLog(logger).write(record)
    await asyncio.sleep(0)  # the handler writes at the end of the loop turn
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]

    # The same line the formatter writes for an ordinary log record of it.
    kept = Kept()
    logger.addHandler(kept)
    assert sole_json_handler(logger) is None
    AccessLog(logger).write(record)
    (logged,) = kept.records
    formatted = json.loads(JsonFormatter().format(logged))
    assert {k: v for k, v in line.items() if k != "time"} == {
        k: v for k, v in formatted.items() if k != "time"
    }
    assert line["message"] == "DELETE /v2/images/x 204 forwarded"
    assert (line["request_id"], line["outcome"], line["logger"]) == (
        "req-direct",
        "deleted",
        "test.access.direct",
    )


async def test_a_filter_or_a_higher_level_is_honoured() -> None:
    stream = io.StringIO()
    logger, handler = access_logger("test.access.filtered", stream)
    logger.addFilter(lambda record: False)
    assert sole_json_handler(logger) is None
    AccessLog(logger).write(sample_record("req-filtered"))
    logger.filters.clear()
    logger.setLevel(logging.WARNING)
    AccessLog(logger).write(sample_record("req-quiet"))
    handler.flush()
    assert stream.getvalue() == ""
