"""The gateway's own Keystone session: its service token, renewed before it expires."""

from __future__ import annotations

import time

from gateway.authn.keystone.client import KeystoneClient
from tests.support.scripted_keystone import SERVICE_TOKEN, ScriptedKeystone


async def test_the_service_token_is_kept_until_renew_before_its_expiry(
    keystone: ScriptedKeystone,
) -> None:
    client = KeystoneClient(keystone.config(service_token_renew_before=120))
    await client.open()
    try:
        for _ in range(3):
            assert await client.service_token() == SERVICE_TOKEN
        assert keystone.issued == 1
        expires_at = client.service_token_expires_at
        assert expires_at is not None
        assert 3590 < expires_at - time.time() <= 3600
    finally:
        await client.close()


async def test_a_service_token_inside_its_renewal_margin_is_renewed_before_use(
    keystone: ScriptedKeystone,
) -> None:
    """Valid 100 s more with renewal 120 s before expiry: every use renews it,
    so no validation goes out with a token about to lapse."""
    keystone.service_token_life = 100
    client = KeystoneClient(keystone.config(service_token_renew_before=120))
    await client.open()
    try:
        assert keystone.issued == 1
        await client.service_token()
        await client.service_token()
        assert keystone.issued == 3
        assert client.service_token_issued == 3
    finally:
        await client.close()
