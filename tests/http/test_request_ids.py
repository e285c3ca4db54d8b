import uuid

from gateway.http.request_ids import GLOBAL_REQUEST_ID, new_request_id


def test_a_request_id_is_a_version_4_uuid_with_the_openstack_prefix() -> None:
    ids = {new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for request_id in ids:
        assert GLOBAL_REQUEST_ID.match(request_id), request_id
        parsed = uuid.UUID(request_id.removeprefix("req-"))
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == request_id.removeprefix("req-")


def test_every_variant_digit_occurs() -> None:
    # The variant nibble is random in its low two bits: 8, 9, a and b all occur.
    assert {new_request_id()[23] for _ in range(400)} == set("89ab")
