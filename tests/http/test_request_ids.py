import uuid
from collections.abc import Callable

import pytest

from gateway.http.request_ids import GLOBAL_REQUEST_ID, RequestIds, new_request_id

# One id at a time from the system, and from a pool refilled every 3 ids (so
# that a run of 2000 crosses hundreds of refills).
MAKERS = pytest.mark.parametrize(
    "make", [new_request_id, RequestIds(), RequestIds(batch=3)], ids=["one", "pool", "small-pool"]
)


@MAKERS
def test_a_request_id_is_a_version_4_uuid_with_the_openstack_prefix(
    make: Callable[[], str],
) -> None:
    ids = {make() for _ in range(2000)}
    assert len(ids) == 2000
    for request_id in ids:
        assert GLOBAL_REQUEST_ID.match(request_id), request_id
        parsed = uuid.UUID(request_id.removeprefix("req-"))
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == request_id.removeprefix("req-")


@MAKERS
def test_every_variant_digit_occurs(make: Callable[[], str]) -> None:
    # The variant nibble is random in its low two bits: 8, 9, a and b all occur.
    assert {make()[23] for _ in range(400)} == set("89ab")


def test_two_pools_share_no_id() -> None:
    first, second = RequestIds(), RequestIds()
    assert not {first() for _ in range(1000)} & {second() for _ in range(1000)}
