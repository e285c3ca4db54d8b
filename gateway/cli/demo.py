"""``image-gateway demo``: the whole chain in front of the stand-in store.

Everything runs in one process: the stand-in store on a free loopback port,
the gateway in front of it with the in-process limiter, a few seeded images
and ready-made tokens, so each status of the API can be seen with curl.
"""

from __future__ import annotations

import asyncio
import logging
from importlib import resources
from pathlib import Path

from aiohttp import web

from gateway.admin.app import build_admin_app, local_sources
from gateway.app import GATEWAY, build_app
from gateway.authn.dev_tokens import mint_token
from gateway.config import GatewayConfig, load_config
from gateway.demo_backend.image_store import add_image, create_standin_store_app
from gateway.http.protocol import GatewayRunner
from gateway.observability.logs import configure_logging
from gateway.runtime.drain import drain
from gateway.runtime.server import stop_on_signals

log = logging.getLogger("gateway.cli.demo")

DEMO_CONFIG = resources.files("gateway.cli").joinpath("demo.yaml")


def demo_config(port: int, upstream_url: str, admin_port: int = 9090) -> GatewayConfig:
    with resources.as_file(DEMO_CONFIG) as path:
        config = load_config(Path(path))
    return config.model_copy(
        update={
            "listen": config.listen.model_copy(update={"port": port}),
            "upstream": config.upstream.model_copy(update={"url": upstream_url}),
            "admin": config.admin.model_copy(update={"port": admin_port}),
        }
    )


DEMO_SHUTDOWN_SECONDS = 3.0


async def _start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    # Ctrl-C stops the demo promptly: a connection still open then gets a
    # few seconds, not aiohttp's default minute.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=DEMO_SHUTDOWN_SECONDS)
    if GATEWAY in app:
        # The gateway on its own protocol, as `run` serves it.
        limits = app[GATEWAY].client_limits
        runner = GatewayRunner(app, limits, access_log=None, shutdown_timeout=DEMO_SHUTDOWN_SECONDS)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])


async def run_demo(port: int, admin_port: int = 9090) -> None:
    stop = stop_on_signals()
    store = create_standin_store_app()
    store_runner, store_port = await _start(store, "127.0.0.1", 0)
    config = demo_config(port, f"http://127.0.0.1:{store_port}", admin_port)
    configure_logging(config.logging.level, config.logging.format)
    gateway_app = build_app(config)
    gateway_runner, gateway_port = await _start(gateway_app, config.listen.host, port)
    admin_app = build_admin_app(config.admin, local_sources(gateway_app))
    admin_runner, admin_port = await _start(admin_app, config.admin.host, admin_port)

    mine = add_image(store, owner="project-a", name="alice-ubuntu")
    protected = add_image(store, owner="project-a", name="alice-golden", protected=True)
    importing = add_image(store, owner="project-a", name="alice-importing", status="importing")
    hidden = add_image(store, owner="project-b", name="bob-private")
    public = add_image(store, owner="project-b", name="bob-public", visibility="public")

    def token(project: str, user: str, *roles: str) -> str:
        return mint_token(config.auth, project=project, user=user, roles=roles)

    alice = token("project-a", "alice", "cloudImages:admin")
    olivia = token("project-a", "olivia", "cloudImages:observer")
    root = token("operations", "root", "admin")
    base = f"http://127.0.0.1:{gateway_port}"
    limit = config.rate_limit.rules[0].value

    def curl(who: str | None, image_id: str) -> str:
        auth = f'-H "X-Auth-Token: ${who}" ' if who else ""
        return f"curl -si -X DELETE {auth}{base}/images/{image_id} | head -1"

    print(
        f"""
image-gateway demo: gateway on {base}, stand-in image store on 127.0.0.1:{store_port}
Dashboard, metrics and probes: http://{config.admin.host}:{admin_port}/

Paste these into a shell (HS256 tokens, kid "demo", valid one hour):
  export ALICE={alice}    # project-a, cloudImages:admin
  export OLIVIA={olivia}  # project-a, cloudImages:observer
  export ROOT={root}      # operations, global admin

Then each line shows the status in front of it:
  204 alice deletes her image     {curl("ALICE", mine.id)}
  404 ... and again               {curl("ALICE", mine.id)}
  401 no token                    {curl(None, mine.id)}
  403 observer may not delete     {curl("OLIVIA", protected.id)}
  403 protected image             {curl("ALICE", protected.id)}
  409 image being imported        {curl("ALICE", importing.id)}
  403 another project's, public   {curl("ALICE", public.id)}
  404 another project's, private  {curl("ALICE", hidden.id)}
  204 global admin deletes any    {curl("ROOT", hidden.id)}
  400 not a UUID                  {curl("ALICE", "nope")}
  405 wrong method                curl -si -X PUT {base}/images/{mine.id} | head -1
  413 over the limit of {limit} deletes a minute for a project, with Retry-After:
      for i in $(seq {limit + 1}); do {curl("ALICE", mine.id)}; done

Ctrl-C stops it.
""",
        flush=True,
    )
    try:
        await stop.wait()
        log.info("stopping the demo")
    finally:
        assert isinstance(gateway_runner, GatewayRunner)
        await drain(gateway_runner, DEMO_SHUTDOWN_SECONDS)
        await admin_runner.cleanup()
        await store_runner.cleanup()


def demo(port: int, admin_port: int = 9090) -> int:
    asyncio.run(run_demo(port, admin_port))
    return 0
