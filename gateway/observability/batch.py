"""Records as the dashboard's log takes them: a batch of JSON texts and a
digest of what the log needs of them, gathered where the records are made.

The digest holds, per record, what the overview counts (time, duration,
status, decision) and which records are audited; and the rate-limit states
the batch leaves, already folded per caller and rule with how often each
was limited. The texts come as two blocks, the audit records' and the
others', each text ending with a newline (a JSON text has no raw newline,
so splitting needs no parsing). So the log keeps the blocks as they came
and splits and parses a text only when the dashboard shows it: the admin
process, which takes every worker's batches, makes no object per record
but the digest's values.

On the wire a batch is one frame: a header line ``{"batch": n, "bytes": b}``
then ``b`` bytes: the digest's JSON on one line (it says how long the audit
block is), the audit block, the other block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.observability.records import LimitState, RequestRecord

# One value per record, in the order of the texts, and the types each may be.
_RECORD_COLUMNS: dict[str, set[type]] = {
    "times": {float, int},
    "durations": {float, int},
    "statuses": {int},
    "decisions": {str},
}
# One value per limit update (LimitUpdate's fields, in order).
_LIMIT_COLUMNS: dict[str, set[type]] = {
    "subjects": {str},
    "rules": {str},
    "limits": {int},
    "periods": {int},
    "remaining": {int},
    "at": {float, int},
    "limited": {bool},
    "limited_counts": {int},
    "counts": {str},
}

# Where one caller stood against one rule after its last request in a
# batch, and how many of the batch's requests that rule limited: subject,
# rule, limit, period, remaining, at (that request's time), limited (that
# request was refused by this rule), limited count, and what the rule
# counts ("requests" or "bytes").
LimitUpdate = tuple[str, str, int, int, int, float, bool, int, str]


@dataclass(slots=True)
class Batch:
    times: list[float]
    durations: list[float]
    statuses: list[int]
    decisions: list[str]
    # Positions of the audit records, ascending.
    audited: list[int]
    # The audit records' texts, then the others', in order, each ending with a newline.
    audited_texts: bytes
    other_texts: bytes
    limits: list[LimitUpdate]

    def __len__(self) -> int:
        return len(self.times)


class RecordBatch:
    """What a worker gathers between two sends: the records themselves, read
    only when the batch is sent (one pass per field beats one per record)."""

    __slots__ = ("chars", "records")

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        # About the texts' length: what decides an early send.
        self.chars = 0

    def __len__(self) -> int:
        return len(self.records)

    def add(self, record: RequestRecord) -> None:
        self.records.append(record)
        self.chars += len(record.fields_json)

    def batch(self) -> Batch:
        """The batch as the log takes it."""
        records = self.records
        fields = [record.fields for record in records]
        audited = [n for n, one in enumerate(fields) if "outcome" in one]
        texts = [record.json() for record in records]
        audited_texts = [texts[n] for n in audited]
        other_texts = [
            text for one, text in zip(fields, texts, strict=True) if "outcome" not in one
        ]
        return Batch(
            [record.time for record in records],
            [one["duration_ms"] for one in fields],
            [one["status"] for one in fields],
            [one["decision"] for one in fields],
            audited,
            _block(audited_texts),
            _block(other_texts),
            _fold_limits(records),
        )

    def frame(self) -> bytes:
        batch = self.batch()
        columns = list(zip(*batch.limits, strict=True)) or [()] * len(_LIMIT_COLUMNS)
        digest = orjson.dumps(
            {
                "records": {
                    "times": batch.times,
                    "durations": batch.durations,
                    "statuses": batch.statuses,
                    "decisions": batch.decisions,
                },
                "audited": batch.audited,
                "audited_bytes": len(batch.audited_texts),
                "limits": dict(zip(_LIMIT_COLUMNS, columns, strict=True)),
            }
        )
        body = b"%s\n%s%s" % (digest, batch.audited_texts, batch.other_texts)
        return b'{"batch":%d,"bytes":%d}\n%s' % (len(self), len(body), body)


def _fold_limits(records: list[RequestRecord]) -> list[LimitUpdate]:
    """Each caller and rule as the batch's last request for it left it, the
    callers seen last coming last."""
    latest: dict[tuple[str, str], tuple[LimitState, float, bool]] = {}
    limited_counts: dict[tuple[str, str], int] = {}
    for record in reversed(records):
        states = record.fields["limits"]
        if not states:
            continue
        refused = record.fields["limiter"] == "limited"
        for state in states:
            key = (state["subject"], state["rule"])
            limited = refused and (state["remaining"] == 0 or state.get("refused", False))
            if limited:
                limited_counts[key] = limited_counts.get(key, 0) + 1
            if key not in latest:
                latest[key] = (state, record.time, limited)
    return [
        (
            subject,
            rule,
            state["limit"],
            state["period"],
            state["remaining"],
            at,
            limited,
            limited_counts.get((subject, rule), 0),
            state.get("counts", "requests"),
        )
        for (subject, rule), (state, at, limited) in reversed(latest.items())
    ]


def _block(texts: list[str]) -> bytes:
    return ("\n".join(texts) + "\n").encode() if texts else b""


def parse_frame(body: bytes, count: int) -> Batch:
    """A frame's ``body`` back into a batch; ValueError if it is not one of ``count`` records.

    Only the digest is parsed, and checked by C-level calls over its
    columns: no Python step per record.
    """
    end = body.find(b"\n")
    digest = orjson.loads(memoryview(body)[: max(end, 0)])
    if not isinstance(digest, dict):
        raise ValueError("the digest is not an object")
    times, durations, statuses, decisions = _columns(digest, "records", _RECORD_COLUMNS, count)
    (audited,) = _columns(digest, None, {"audited": {int}}, None)
    if audited and not (
        audited[0] >= 0 and audited[-1] < count and audited == sorted(set(audited))
    ):
        raise ValueError("the audited positions are not the batch's, in order")
    split = digest.get("audited_bytes")
    if type(split) is not int or not 0 <= split <= len(body) - end - 1:
        raise ValueError(f"the digest's audited_bytes is {split!r:.50}")
    audited_texts = body[end + 1 : end + 1 + split]
    other_texts = body[end + 1 + split :]
    for block, texts in ((audited_texts, len(audited)), (other_texts, count - len(audited))):
        # As many newlines as texts, the last at the end: as many texts.
        if block.count(b"\n") != texts or block[-1:] != (b"\n" if texts else b""):
            raise ValueError(f"a block of texts is not {texts} lines")
    limits = _columns(digest, "limits", _LIMIT_COLUMNS, None)
    if limits[0] and not (min(limits[2]) > 0 and min(limits[3]) > 0):
        raise ValueError("a limit or period that is not positive")
    updates: list[LimitUpdate] = list(zip(*limits, strict=True))
    return Batch(
        times, durations, statuses, decisions, audited, audited_texts, other_texts, updates
    )


def _columns(
    digest: dict[str, Any], name: str | None, types: dict[str, set[type]], length: int | None
) -> list[list[Any]]:
    """The lists ``digest[name]`` holds (or ``digest``'s own), of one length and
    each of its types."""
    holder = digest if name is None else digest.get(name)
    if not isinstance(holder, dict):
        raise ValueError(f"the digest's {name} is not an object")
    columns: list[list[Any]] = []
    for column in types:
        values = holder.get(column)
        if not isinstance(values, list):
            raise ValueError(f"the digest's {column} is not a list")
        # C-level over the values: no Python step per record.
        if not set(map(type, values)) <= types[column]:
            raise ValueError(f"the digest's {column} holds a value of the wrong type")
        length = len(values) if length is None else length
        if len(values) != length:
            raise ValueError(f"the digest's {column} has {len(values)} values, not {length}")
        columns.append(values)
    return columns
