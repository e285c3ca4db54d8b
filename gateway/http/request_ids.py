"""The gateway's request ids: ``req-<uuid4>``, as OpenStack services write them."""

from __future__ import annotations

import os
import re

# The headers a response carries its id in (nova's and the rest of OpenStack's).
RESPONSE_HEADERS = ("X-Compute-Request-Id", "X-OpenStack-Request-Id")
# What an inbound X-OpenStack-Request-Id must look like to be kept for correlation.
GLOBAL_REQUEST_ID = re.compile(
    r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
# RFC 9562 variant bits (10xx) over a random nibble.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_request_id() -> str:
    """A random (version 4) UUID with the ``req-`` prefix.

    Formatted from 16 random bytes directly: a third of what ``uuid.uuid4()``
    and its ``str`` cost, paid on every request.
    """
    h = os.urandom(16).hex()
    return f"req-{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
