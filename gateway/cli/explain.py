"""``image-gateway explain``: what the chain would decide for one request, and why.

It runs the real chain: the app ``run`` builds (keys and JWKS loaded,
revocations synced), served on a loopback port for this one request, as a
dry run (gateway.app.DryRun). A recorder stands in for the proxy, the rate
limiter names the limits the request would count against without taking
from them, and no audit record is written. The image's owner is looked up
read-only (a GET as the gateway's service identity, exactly as in
production) unless ``--no-owner-lookup`` is given.

The explanation is read off the request context the chain filled in: each
step records what it decided, and a refusal came from the last step the
request entered. Given ``--bytes``, it also says whether the route's byte
rules would hold a body of that size (an upload's, or a download's), and
which would refuse it: asked of the store as a look, nothing reserved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from pydantic import ByteSize
from yarl import URL

from gateway.app import GATEWAY, DryRun, build_app
from gateway.authn.identity import IdentityHeaders
from gateway.authn.keystone.token_body import KeystoneToken
from gateway.authn.tokens import JwtVerifier, VerifiedToken
from gateway.config import GatewayConfig
from gateway.handlers.proxy import upstream_request_headers, upstream_target
from gateway.ratelimit.byte_budget import BudgetRefused
from gateway.ratelimit.limiter import ByteDecision, LimiterUnavailable
from gateway.request_context import RequestContext, context_of

# A step passes (True), refuses (False), or cannot decide offline (None).
Outcome = bool | None
_MARK = {True: "ok  ", False: "STOP", None: "??  "}
# The chain's steps that may refuse, in chain order (gateway.app), by the
# name each records on the request context; the explanation shows a step
# that passed only if it is in SHOWN (a passed loop check says nothing).
CHAIN = ("via", "route", "authentication", "rate limit", "authorization")
SHOWN = CHAIN[1:]


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


@dataclass(frozen=True, slots=True)
class Forwarded:
    """What the proxy would have sent upstream."""

    method: str
    target: str
    headers: CIMultiDict[str]


class Recorder:
    """Stands in for the proxy: keeps what would be forwarded, sends nothing."""

    def __init__(self) -> None:
        self.forwarded: Forwarded | None = None
        # As the proxy makes them, with no role mapping.
        self.identity_headers = IdentityHeaders({})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = context_of(request)
        self.forwarded = Forwarded(
            request.method,
            upstream_target(ctx, request),
            upstream_request_headers(ctx, self.identity_headers),
        )
        return web.Response(status=204)


def _keystone_token_why(verified: KeystoneToken) -> str:
    identity = verified.identity
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(verified.expires_at))
    return (
        f"Keystone token; project {identity.project_id} ({identity.project_name}), "
        f"user {identity.user_id} ({identity.user_name}), "
        f"roles [{', '.join(sorted(identity.roles))}]; expires {expires}; not revoked"
    )


def _token_why(verified: VerifiedToken, verifier: JwtVerifier) -> str:
    claims = next(i for i in verifier.issuers if i.config.issuer == verified.issuer).config.claims
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


def _passed(step: str, ctx: RequestContext, verifier: JwtVerifier) -> tuple[Outcome, str]:
    """What a step the request went through decided, and why."""
    if step == "route":
        assert ctx.route is not None
        shown = ", ".join(f"{k}={v}" for k, v in ctx.params.items())
        return True, f"{ctx.route.name} ({shown})"
    if step == "authentication":
        assert ctx.token is not None
        if isinstance(ctx.token, KeystoneToken):
            return True, _keystone_token_why(ctx.token)
        assert isinstance(ctx.token, VerifiedToken)
        return True, _token_why(ctx.token, verifier)
    if step == "rate limit":
        decision = ctx.rate_limit
        if decision is None:
            return True, "none"
        counted = "; ".join(
            f"{rule.name}: {check.limit}/{rule.unit} as {check.subject}"
            for rule, check in zip(decision.rules, decision.checks, strict=True)
        )
        return True, f"counts against {counted} (not counted now)"
    assert ctx.policy is not None
    policy = ctx.policy
    if policy.status is None:
        return None, f"undecided: rule {policy.rule} = {policy.check}: {policy.reason}"
    shadow = " (shadow mode: logged and counted, it goes through)" if policy.shadow else ""
    status = "allowed" if policy.allowed else str(policy.status)
    return True, f"{status}: rule {policy.rule} = {policy.check}: {policy.reason}{shadow}"


def _refused(step: str, ctx: RequestContext) -> str:
    fault = ctx.fault
    assert fault is not None
    policy = ctx.policy
    if step == "authorization" and policy is not None:
        return f"{fault.status}: rule {policy.rule} = {policy.check}: {policy.reason}"
    what = f"{fault.message} {fault.details}" if fault.details else fault.message
    if step == "authorization":
        what = f"the owner look-up failed: {what}"
    return f"{fault.status}: {what}"


def _size(count: float) -> str:
    return ByteSize(int(count)).human_readable(separator=" ")


def _wait(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


async def byte_step(ctx: RequestContext, size: int) -> Step:
    """Whether the route's byte rules would hold ``size`` bytes, and which would not."""
    budget = ctx.byte_budget
    route = ctx.route.name if ctx.route is not None else "this request"
    if budget is None:
        return Step("bytes", True, f"no byte rule counts {route}")
    try:
        await budget.reserve(size)
    except BudgetRefused as refused:
        return Step("bytes", False, _byte_refusal(refused.decision, size))
    except LimiterUnavailable as exc:
        return Step("bytes", None, f"the byte budgets cannot be asked: {exc}")
    assert budget.decision is not None
    subjects = {check.rule: check.subject for check in budget.decision.checks}
    left = "; ".join(
        f"{limit.rule.name}: {_size(limit.result.remaining)} of {_size(limit.limit)}"
        f"/{limit.rule.unit} left as {subjects[limit.rule.name]}"
        for limit in budget.decision.limits
    )
    return Step("bytes", True, f"{_size(size)} fits: {left}")


def _byte_refusal(decision: ByteDecision, size: int) -> str:
    subjects = {check.rule: check.subject for check in decision.checks}
    why = []
    for limit in decision.limits:
        if limit.rule not in decision.refused:
            continue
        rule, result = limit.rule, limit.result
        when = (
            "it is more than the whole budget"
            if result.retry_after == float("inf")
            else f"room in {_wait(result.retry_after)}"
        )
        why.append(
            f"{rule.name} ({_size(limit.limit)}/{rule.unit} as {subjects[rule.name]}) has "
            f"{_size(result.remaining)} left: {when}"
        )
    return f"413: a {_size(size)} body would be refused by " + "; ".join(why)


def explanation_of(
    ctx: RequestContext,
    forwarded: Forwarded | None,
    verifier: JwtVerifier,
    upstream_url: str,
    bytes_step: Step | None = None,
) -> Explanation:
    out = Explanation()
    reached = CHAIN.index(ctx.step) if ctx.step in CHAIN else -1
    if ctx.step not in CHAIN and ctx.fault is None:
        # Past the deciding steps: at the recorder.
        reached = len(CHAIN) - 1
    refused_at = ctx.step if ctx.fault is not None else None
    for step in CHAIN[: reached + 1]:
        if step == refused_at:
            policy = ctx.policy
            if policy is not None and policy.status is None:
                out.add(
                    step, None, f"undecided: rule {policy.rule} = {policy.check}: {policy.reason}"
                )
            else:
                out.add(step, False, _refused(step, ctx))
            return out
        if step in SHOWN:
            out.add(step, *_passed(step, ctx, verifier))
    if ctx.fault is not None:
        # Refused outside the deciding steps.
        out.add(ctx.step or "gateway", False, _refused(ctx.step, ctx))
        return out
    if bytes_step is not None:
        out.add(bytes_step.name, bytes_step.outcome, bytes_step.why)
        if bytes_step.outcome is False:
            return out
    if forwarded is not None:
        roles = forwarded.headers.get("X-Roles", "")
        project = forwarded.headers.get("X-Project-Id", "")
        target = f"{forwarded.method} {upstream_url}{forwarded.target}"
        out.add("proxy", True, f"{target} as project {project}, roles {roles}")
    elif ctx.route is not None:
        out.add("proxy", True, f"{ctx.route.method} answered by the gateway itself")
    return out


async def explain(
    config: GatewayConfig,
    token: str,
    method: str,
    path: str,
    *,
    owner_lookup: bool = True,
    size: int | None = None,
) -> Explanation:
    recorder = Recorder()
    app = build_app(config, dry_run=DryRun(recorder.handle, owner_lookup=owner_lookup))
    seen: list[RequestContext] = []

    async def keep_context(request: web.Request, response: web.StreamResponse) -> None:
        seen.append(context_of(request))

    app.on_response_prepare.append(keep_context)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = URL(f"http://{host}:{port}{path}", encoded=True)
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method.upper(), url, headers={"X-Auth-Token": token}, allow_redirects=False
            ) as response,
        ):
            await response.read()
        gateway = app[GATEWAY]
        ctx = seen[0]
        bytes_step = None
        if size is not None and ctx.fault is None:
            bytes_step = await byte_step(ctx, size)
        return explanation_of(
            ctx, recorder.forwarded, gateway.verifier, config.upstream.url, bytes_step
        )
    finally:
        await runner.cleanup()
