"""``image-gateway explain``: what the chain would decide for one request, and why.

It builds the same gateway ``run`` builds (keys and JWKS loaded, revocations
synced) and asks each step's own decision code, in chain order, stopping at
the first refusal. Nothing is forwarded and nothing is counted: the rate
limit step names the limits the request would count against without taking
from them, and the image's owner is looked up read-only (a GET as the
gateway's service identity, exactly as the authorization step does) unless
``--no-owner-lookup`` is given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.app import GATEWAY, Gateway, build_app
from gateway.authn.tokens import InvalidToken, VerifiedToken
from gateway.config import ClaimPaths, GatewayConfig
from gateway.http.faults import GatewayFault
from gateway.http.routes import UUID_PATTERN, Route, RouteTable

# A step passes (True), refuses (False), or cannot decide offline (None).
Outcome = bool | None
_MARK = {True: "ok  ", False: "STOP", None: "??  "}


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    outcome: Outcome
    why: str


class Explanation:
    def __init__(self) -> None:
        self.steps: list[Step] = []

    def add(self, name: str, outcome: Outcome, why: str) -> Outcome:
        self.steps.append(Step(name, outcome, why))
        return outcome

    @property
    def outcome(self) -> Outcome:
        """Forwarded (True), refused (False) or undecided (None)."""
        outcomes = [s.outcome for s in self.steps]
        if False in outcomes:
            return False
        return None if None in outcomes else True

    def render(self) -> str:
        width = max(len(s.name) for s in self.steps)
        lines = [f"{s.name:<{width}}  {_MARK[s.outcome]}  {s.why}" for s in self.steps]
        verdict = {True: "would be forwarded", False: "would be refused", None: "undecided"}
        result = f"{verdict[self.outcome]} (nothing was sent)"
        return "\n".join([*lines, f"{'result':<{width}}  {_MARK[self.outcome]}  {result}"])


def _token_why(verified: VerifiedToken, claims: ClaimPaths) -> str:
    key = verified.key
    kid = f"kid {key.kid}" if key.kid is not None else "no kid"
    identity = verified.identity
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(verified.expires_at))
    return (
        f"issuer {verified.issuer or '(any)'}, key {kid} {key.algorithm} from {key.source}; "
        f"project {identity.project_id} (claim {claims.project}), "
        f"user {identity.user_id} (claim {claims.user}), "
        f"roles [{', '.join(sorted(identity.roles))}] (claim {claims.roles}); "
        f"expires {expires}; not revoked"
    )


async def _explain_with(
    gateway: Gateway, token: str, method: str, path: str, owner_lookup: bool
) -> Explanation:
    out = Explanation()
    matched = RouteTable().match(method, path)
    if matched is None:
        out.add("route", False, f"404: no route for {path}")
        return out
    if isinstance(matched, list):
        out.add("route", False, f"405: {method} not allowed; Allow: {', '.join(matched)}")
        return out
    route, params = matched
    bad = [name for name in route.uuid_params if not UUID_PATTERN.fullmatch(params[name])]
    if not out.add("route", not bad, _route_why(route, params, bad)):
        return out
    # Canonical, as the chain has them: cache, audit and upstream see one spelling.
    params = {k: v.lower() if k in route.uuid_params else v for k, v in params.items()}

    try:
        verified = await gateway.verifier.inspect(token)
    except InvalidToken as exc:
        out.add("authentication", False, f"401: {exc}")
        return out
    issuer = next(i for i in gateway.verifier.issuers if i.config.issuer == verified.issuer)
    out.add("authentication", True, _token_why(verified, issuer.config.claims))

    identity = verified.identity
    rules = gateway.limiter.matching(method.upper(), path)
    limiter = gateway.limiter
    # The limit the limiter would enforce: a project's override included.
    counted = "; ".join(
        f"{r.name}: {limiter.limit_of(r, identity)}/{r.unit} as "
        f"{limiter.subject(r, identity, 'client-ip')}"
        for r in rules
    )
    out.add("rate limit", True, f"counts against {counted} (not counted now)" if rules else "none")

    owners = gateway.owners if owner_lookup else None
    try:
        decision = await gateway.policy.decide(
            route.name, identity, params.get("image_id", "").lower() or None, owners, "explain"
        )
    except GatewayFault as fault:
        out.add("authorization", False, f"{fault.status}: the owner look-up failed: {fault}")
        return out
    outcome: Outcome = None if decision.status is None else decision.allowed or decision.shadow
    status = "allowed" if decision.allowed else str(decision.status or "undecided")
    shadow = " (shadow mode: logged and counted, it goes through)" if decision.shadow else ""
    why = f"{status}: rule {decision.rule} = {decision.check}: {decision.reason}{shadow}"
    out.add("authorization", outcome, why)
    if out.outcome and route.upstream_path is None:
        out.add("proxy", True, f"{route.method} answered by the gateway itself")
    elif out.outcome and route.upstream_path is not None:
        upstream = route.upstream_path.format(**{k: v.lower() for k, v in params.items()})
        roles = ",".join(sorted(identity.roles))
        target = f"{route.method} {gateway.config.upstream.url}{upstream}"
        out.add("proxy", True, f"{target} as project {identity.project_id}, roles {roles}")
    return out


def _route_why(route: Route, params: dict[str, str], bad: list[str]) -> str:
    if bad:
        return f"400: {bad[0]} {params[bad[0]][:64]!r} is not a UUID"
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"{route.name} ({shown})"


async def explain(
    config: GatewayConfig, token: str, method: str, path: str, *, owner_lookup: bool = True
) -> Explanation:
    app = build_app(config)
    app.freeze()
    await app.startup()
    try:
        return await _explain_with(app[GATEWAY], token, method.upper(), path, owner_lookup)
    finally:
        await app.cleanup()
