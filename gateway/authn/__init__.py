"""Authentication: token verification (JWT keys, JWKS, issuers), revocation,
and the identity a verified token yields, with the identity-header contract
sent upstream."""
