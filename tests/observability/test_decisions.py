"""The dashboard's log: batches kept as they came, read back as records."""

from __future__ import annotations

import logging

import pytest

from gateway.observability.batch import Batch, RecordBatch
from gateway.observability.decisions import DecisionLog, Record
from gateway.observability.records import RequestRecord
from tests.support.observed import sample_record


def batch(*records: RequestRecord) -> Batch:
    gathered = RecordBatch()
    for record in records:
        gathered.add(record)
    return gathered.batch()


def ids(records: list[Record]) -> list[str]:
    return [record["request_id"] for record in records]


def test_the_newest_records_are_kept_across_batches() -> None:
    log = DecisionLog(3)
    # Deletes are audited, listings are not: the two are kept apart in a batch.
    log.add(batch(sample_record("req-1"), sample_record("req-2", route="images:list")))
    log.add(batch(sample_record("req-3", route="images:list"), sample_record("req-4")))
    log.add(batch(sample_record("req-5"), sample_record("req-6", route="images:list")))
    assert len(log) == 3
    assert ids(log.search()) == ["req-6", "req-5", "req-4"]
    assert ids(log.search(limit=2)) == ["req-6", "req-5"]
    assert ids(log.audit_trail()) == ["req-5", "req-4", "req-1"]
    assert log.overview(now=log.search()[0]["time"])["requests"] == 3


def test_the_audit_trail_keeps_its_own_newest() -> None:
    log = DecisionLog(2)
    log.add(batch(*(sample_record(f"req-{n}") for n in range(3))))
    log.add(batch(*(sample_record(f"req-list-{n}", route="images:list") for n in range(3))))
    assert ids(log.audit_trail()) == ["req-2", "req-1"]
    assert ids(log.search()) == ["req-list-2", "req-list-1"]


def test_search_finds_what_the_raw_text_spells_otherwise() -> None:
    log = DecisionLog(10)
    quoted, kelvin, plain = sample_record("req-1"), sample_record("req-2"), sample_record("req-3")
    quoted.fields["project"] = 'team "a"'
    # KELVIN SIGN: lower() makes it a plain "k", which its UTF-8 bytes are not.
    kelvin.fields["project"] = "\u212a-team"
    for record in (quoted, kelvin, plain):
        log.add(batch(record))
    assert ids(log.search('"A"')) == ["req-1"]
    assert ids(log.search("K-TEAM")) == ["req-2"]
    assert ids(log.search("req-3")) == ["req-3"]
    assert log.search("nobody") == []


def test_a_text_that_does_not_parse_is_left_out_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = DecisionLog(10)
    good = batch(sample_record("req-1"))
    good.audited_texts = b"not json\n"
    log.add(good)
    log.add(batch(sample_record("req-2")))
    assert ids(log.search()) == ["req-2"]
    assert ids(log.audit_trail()) == ["req-2"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "does not parse" in w]) == 2
