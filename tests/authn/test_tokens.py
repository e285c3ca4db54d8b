"""The JWT decision (gateway/authn/tokens.py): each refusal for its own reason.

The middleware's tests prove every bad token is a 401 that reaches nothing;
these prove it is refused by the check meant to refuse it (the algorithm pin,
exp, nbf, aud, the exact id grammar), so a check that stops working is seen
even where another one happens to refuse the same token.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.authn.tokens import InvalidToken, JwtVerifier
from gateway.config import parse_config
from tests.middleware.test_authentication import bad_tokens
from tests.support.gateway_config import config_data
from tests.support.tokens import Keys, TokenFactory

MALFORMED = "The token is malformed."
ALGORITHM = "The token's signing algorithm is not accepted."
SIGNATURE = "The token's signature does not verify."
UNKNOWN_KEY = "The token was signed with an unknown key."
KID = "The token's key id is malformed."
ID_GRAMMAR = (
    "The token's project or user id is not 1-255 of A-Z a-z 0-9 and ._~@:+=-"
    " (starting with a letter, digit or _)."
)
ROLE = "A role in the token is empty or holds a comma or control character."

REASONS = {
    "garbage": MALFORMED,
    "truncated": MALFORMED,
    "alg none": ALGORITHM,
    "alg None": ALGORITHM,
    "alg NONE": ALGORITHM,
    "alg nOnE": ALGORITHM,
    "signature stripped": SIGNATURE,
    "tampered payload": SIGNATURE,
    "bad base64": MALFORMED,
    "hs256 with rsa public key": UNKNOWN_KEY,
    "wrong alg for kid": ALGORITHM,
    "expired": "The token has expired.",
    "nbf in future": "The token is not valid yet.",
    "wrong issuer": "The token's issuer is not trusted.",
    "wrong audience": "The token is not meant for this service.",
    "missing exp": "The token lacks the 'exp' claim.",
    "unknown kid": KID,
    "kid with control chars": KID,
    "jku ignored": UNKNOWN_KEY,
    "x5u ignored": UNKNOWN_KEY,
    "kid with a trailing newline": KID,
    "no project": "The token is not scoped to a project.",
    "project with CRLF": ID_GRAMMAR,
    "user with NUL": ID_GRAMMAR,
    "role with a comma": ROLE,
    "empty role": ROLE,
    "roles not a list": "The token's roles are not a list of strings.",
    "oversized": "The token is too large.",
    "wrong secret": SIGNATURE,
}


def verifier(keys: Keys, /, **auth: object) -> JwtVerifier:
    """A verifier for the suite's issuer, its keys, and these ``auth`` settings."""
    return JwtVerifier(parse_config(config_data("http://127.0.0.1:1", keys, auth=auth)).auth)


async def refusal(checker: JwtVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as refused:
        await checker.inspect(token)
    return str(refused.value)


@pytest.mark.parametrize("case", sorted(REASONS))
async def test_each_bad_token_is_refused_for_its_own_reason(
    keys: Keys, token: TokenFactory, case: str
) -> None:
    assert await refusal(verifier(keys), bad_tokens(keys, token)[case]) == REASONS[case]


def test_every_bad_token_of_the_middleware_tests_has_its_reason_here(
    keys: Keys, token: TokenFactory
) -> None:
    assert set(bad_tokens(keys, token)) == set(REASONS)


@pytest.mark.parametrize(
    "claims",
    [
        {"project_id": "project-a/../images"},
        {"project_id": "project-a\n"},
        {"project_id": "project-a?x=1"},
        {"sub": "alice\n"},
        {"sub": "alice/../bob"},
    ],
)
async def test_ids_are_checked_whole_not_by_their_start(
    keys: Keys, token: TokenFactory, claims: dict[str, Any]
) -> None:
    assert await refusal(verifier(keys), token(**claims)) == ID_GRAMMAR


async def test_a_value_ending_in_a_newline_never_reaches_a_header(
    keys: Keys, token: TokenFactory
) -> None:
    """``$`` would match before a final newline; every value is checked to its very end."""
    checker = verifier(keys, claims={"project_name": "project_name"})
    named = await refusal(checker, token(project_name="Project A\n"))
    assert named == "The token's project_name claim is not a plain string."
    assert await refusal(checker, token(roles=["cloudImages:admin\n"])) == ROLE
    identity = (await checker.inspect(token(project_name="Project A"))).identity
    assert identity.project_name == "Project A"


async def test_a_pinned_algorithm_refuses_a_token_signed_with_another(
    keys: Keys, token: TokenFactory
) -> None:
    """Only RS256 configured: an HS256 token (even one with a valid HMAC) is refused
    for its algorithm, before any key is tried."""
    rsa_only = [{"kid": "rsa", "algorithm": "RS256", "public_key": keys.rsa_public_pem}]
    checker = verifier(keys, keys=rsa_only)
    assert await refusal(checker, token(kid="hs")) == ALGORITHM
    assert (await checker.inspect(token(kid="rsa"))).identity.project_id == "project-a"
