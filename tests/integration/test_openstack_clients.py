"""Real OpenStack clients through the gateway in front of real Glance.

openstacksdk, the ``openstack`` CLI, python-glanceclient and the ``glance``
CLI each take an image through its whole life (create, upload 50 MiB, list,
show, set a property, share with a member who accepts, download and compare
the checksum, deactivate and reactivate, delete), and each meets the
gateway's refusals (another tenant, a reader, over a rate limit) as its own
exception with a clean message. The gateway runs the shipped policy and role
mapping (config/gateway.yaml): tokens carry the Rackspace roles, Glance sees
member and reader. Tokens are JWTs signed with the tests' key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.glance import Glance
from tests.integration.openstack_clients import (
    ImageData,
    client_binary,
    file_md5,
    run_client,
    run_script,
    shipped_sections,
    write_image_data,
)
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.tokens import TokenFactory

IMAGE_BYTES = 50 * (1 << 20)
# What each client's cycle calls, by route, besides the refused calls.
CYCLE_ROUTES = {
    "add_image",
    "upload_image",
    "get_images",
    "get_image",
    "modify_image",
    "add_member",
    "modify_member",
    "get_members",
    "download_image",
    "deactivate",
    "reactivate",
    "delete_image",
}
MEMBER_ROUTES = {"add_member", "modify_member", "get_members"}
# Gateway faults and Glance's messages alike reach the client without these.
UNCLEAN = re.compile(r"<br|<html|\b[1-5]\d\d (Forbidden|Not Found|Request Entity)")


@pytest.fixture(scope="session")
def image_data(tmp_path_factory: pytest.TempPathFactory) -> ImageData:
    return write_image_data(tmp_path_factory.mktemp("data") / "image.raw", IMAGE_BYTES)


class Callers:
    """One project per client, so that the clients' images never meet."""

    def __init__(self, token: TokenFactory, client: str) -> None:
        self.owner_project = f"{client}-a"
        self.member_project = f"{client}-b"
        self.tokens = {
            "owner": token(self.owner_project, "alice", ["cloudImages:admin"]),
            "member": token(self.member_project, "bob", ["cloudImages:admin"]),
            "other": token(f"{client}-c", "carol", ["cloudImages:admin"]),
            "reader": token(self.owner_project, "olivia", ["cloudImages:observer"]),
        }


async def gateway_for(make_gateway: GatewayFactory, glance: Glance, audit: Path) -> Client:
    sections = shipped_sections()
    sections["upstream"].update(read_timeout=60)
    return await make_gateway(
        glance.url,
        **sections,
        audit={"sink": str(audit)},
        rate_limit={
            "rules": [
                # A second image in the hour is over the limit: the refusal each client meets.
                {"name": "image-creates", "routes": ["add_image"], "unit": "hour", "value": 1},
            ]
        },
    )


def gateway_url(gateway: Client) -> str:
    return str(gateway.make_url("/"))


@dataclass
class Cycle:
    """A gateway for one client's cycle, its URL and its audit trail."""

    gateway: Client
    url: str
    audit: Path
    image_data: ImageData
    glance: Glance


@pytest.fixture
async def cycle(
    make_gateway: GatewayFactory, glance: Glance, image_data: ImageData, tmp_path: Path
) -> Cycle:
    audit = tmp_path / "audit.jsonl"
    gateway = await gateway_for(make_gateway, glance, audit)
    return Cycle(gateway, gateway_url(gateway), audit, image_data, glance)


def assert_refused(refusal: dict[str, Any], exception: str, status: int, message: str) -> None:
    assert (refusal["exception"], refusal["status"]) == (exception, status), refusal
    assert re.search(message, refusal["message"]), refusal
    assert not UNCLEAN.search(refusal["message"]), refusal


def audit_records(audit: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in audit.read_text().splitlines()]


async def assert_cycle(seen: dict[str, Any], callers: Callers, cycle: Cycle) -> None:
    image_data, glance, audit = cycle.image_data, cycle.glance, cycle.audit
    image_id = seen["created"]["id"]
    assert image_id in seen["listed"]
    assert seen["shown"]["status"] == "active"
    assert seen["shown"]["size"] == image_data.size
    assert seen["shown"]["property"].startswith("set-by-")
    if "members" in seen:
        assert seen["member_sees"] == image_id
        assert [callers.member_project, "accepted"] in seen["members"]
    assert seen["downloaded_md5"] == image_data.md5
    assert (seen["deactivated"], seen["reactivated"]) == ("deactivated", "active")
    assert not await glance.exists(image_id)
    routes = CYCLE_ROUTES if "members" in seen else CYCLE_ROUTES - MEMBER_ROUTES
    records = audit_records(audit)
    assert routes <= {r["route"] for r in records if r["outcome"] in ("succeeded", "deleted")}
    # The refusals were the gateway's, each audited under its route.
    refusals = {(r["route"], r["user"], r["status"], r["outcome"]) for r in records}
    assert ("delete_image", "olivia", 403, "denied") in refusals
    assert ("add_image", "alice", 413, "limited") in refusals


# Each library's exceptions for 404, 403 and 413.
LIBRARIES = {
    "openstacksdk": ("sdk_cycle.py", "NotFoundException", "ForbiddenException", "HttpException"),
    "glanceclient": ("glanceclient_cycle.py", "HTTPNotFound", "HTTPForbidden", "HTTPOverLimit"),
}


@pytest.mark.parametrize(
    ("script", "not_found", "forbidden", "over_limit"), LIBRARIES.values(), ids=LIBRARIES.keys()
)
async def test_client_library_full_cycle_and_refusals(
    cycle: Cycle,
    token: TokenFactory,
    script: str,
    not_found: str,
    forbidden: str,
    over_limit: str,
) -> None:
    callers = Callers(token, script.removesuffix("_cycle.py"))
    seen = await run_script(
        script,
        {
            "url": cycle.url,
            "tokens": callers.tokens,
            "member": callers.member_project,
            "data": str(cycle.image_data.path),
        },
    )
    if "endpoint" in seen:
        # keystoneauth found v2 through the gateway, at the gateway's address.
        assert seen["endpoint"] == cycle.url + "v2/"
    await assert_cycle(seen, callers, cycle)
    refused, image_id = seen["refused"], seen["created"]["id"]
    # The shipped configuration leaves the owner check to Glance
    # (owner_check: backend): its words for an image the caller may not see.
    hidden = f"(No image found with ID|Failed to find image) {image_id}"
    assert_refused(refused["other_tenant_delete"], not_found, 404, hidden)
    # glanceclient reads the image before patching it: then Glance hides it.
    assert_refused(refused["other_tenant_update"], not_found, 404, hidden)
    assert_refused(refused["reader_delete"], forbidden, 403, "Policy does not allow")
    assert_refused(refused["over_limit"], over_limit, 413, "rate-limited")
    assert_refused(seen["deleted"], not_found, 404, hidden)


async def test_keystoneauth_discovers_v2_through_the_gateway(cycle: Cycle) -> None:
    program = (
        "import json, sys\n"
        "from keystoneauth1 import discover, session\n"
        "d = discover.Discover(session.Session(), sys.argv[1])\n"
        "print(json.dumps({'.'.join(map(str, v['version'])): v['url']\n"
        "                  for v in d.version_data()}))\n"
    )
    finished = await run_client(client_binary("python"), "-c", program, cycle.url)
    versions = finished.json()
    assert versions["2.0"] == cycle.url + "v2/"
    assert all(url.startswith(cycle.url) for url in versions.values())


class Cli:
    """One of the command-line clients, as a user would run it against the gateway."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.env = env

    async def ok(self, *args: str) -> str:
        finished = await run_client(*self.argv, *args, env=self.env)
        assert finished.returncode == 0, (args, finished.stderr[-3000:])
        return finished.stdout

    async def json(self, *args: str) -> Any:
        return json.loads(await self.ok(*args, "-f", "json"))

    async def refused(self, *args: str) -> str:
        """A call the gateway refuses: the client fails and says why on stderr."""
        finished = await run_client(*self.argv, *args, env=self.env)
        assert finished.returncode != 0, args
        assert not UNCLEAN.search(finished.stderr), finished.stderr
        return finished.stderr


def openstack_cli(url: str, token: str) -> Cli:
    # Token auth against the gateway's URL, no Keystone; the image endpoint
    # is the gateway's root, from which the CLI discovers v2.
    argv = [
        str(client_binary("openstack")),
        "--os-auth-type",
        "admin_token",
        "--os-endpoint",
        url,
        "--os-token",
        token,
    ]
    return Cli(argv, {"OS_IMAGE_ENDPOINT_OVERRIDE": url})


async def test_openstack_cli_full_cycle_and_refusals(
    cycle: Cycle, token: TokenFactory, tmp_path: Path
) -> None:
    url, callers = cycle.url, Callers(token, "osc")
    owner = openstack_cli(url, callers.tokens["owner"])
    image = await owner.json(
        "image",
        "create",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--file",
        str(cycle.image_data.path),
        "osc-cycle",
    )
    image_id = image["id"]
    listed = await owner.json("image", "list")
    await owner.ok("image", "set", "--property", "gateway_test=set-by-openstack", image_id)
    shown = await owner.json("image", "show", image_id)
    # Not shared here: `image add project` and `image set --accept` look the
    # project up in Keystone first, and these tokens come from no Keystone.
    downloaded = tmp_path / "downloaded.raw"
    await owner.ok("image", "save", "--file", str(downloaded), image_id)
    await owner.ok("image", "set", "--deactivate", image_id)
    deactivated = (await owner.json("image", "show", image_id))["status"]
    await owner.ok("image", "set", "--activate", image_id)
    reactivated = (await owner.json("image", "show", image_id))["status"]

    other = openstack_cli(url, callers.tokens["other"])
    # The CLI finds the image first; Glance hides it from another project.
    hidden_from_other = await other.refused("image", "set", "--property", "x=y", image_id)
    assert f"No Image found for {image_id}" in hidden_from_other
    reader = openstack_cli(url, callers.tokens["reader"])
    assert "Policy does not allow" in await reader.refused("image", "delete", image_id)
    over = await owner.refused("image", "create", "--disk-format", "raw", "osc-over")
    assert "413" in over
    assert "rate-limited" in over
    await owner.ok("image", "delete", image_id)

    seen = {
        "created": {"id": image_id},
        "listed": [i["ID"] for i in listed],
        "shown": {
            "status": shown["status"],
            "size": shown["size"],
            "property": shown["properties"]["gateway_test"],
        },
        "downloaded_md5": file_md5(downloaded),
        "deactivated": deactivated,
        "reactivated": reactivated,
    }
    await assert_cycle(seen, callers, cycle)


def glance_cli(url: str, token: str) -> Cli:
    argv = [str(client_binary("glance")), "--os-image-url", url, "--os-auth-token", token]
    return Cli(argv)


def table(output: str) -> dict[str, str]:
    """The glance CLI's two-column table (| Property | Value |) as a dict."""
    rows = (line.split("|") for line in output.splitlines() if line.startswith("|"))
    return {cells[1].strip(): cells[2].strip() for cells in rows if len(cells) >= 4}


def column(output: str, index: int) -> list[str]:
    rows = [line.split("|") for line in output.splitlines() if line.startswith("|")]
    return [cells[index + 1].strip() for cells in rows[1:]]


async def test_glance_cli_full_cycle_and_refusals(
    cycle: Cycle, token: TokenFactory, tmp_path: Path
) -> None:
    url, callers = cycle.url, Callers(token, "glancecli")
    owner, member = (glance_cli(url, callers.tokens[k]) for k in ("owner", "member"))
    created = table(
        await owner.ok(
            "image-create",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--name",
            "glance-cli-cycle",
            "--file",
            str(cycle.image_data.path),
        )
    )
    image_id = created["id"]
    listed = column(await owner.ok("image-list"), 0)
    await owner.ok("image-update", "--property", "gateway_test=set-by-glance-cli", image_id)
    shown = table(await owner.ok("image-show", image_id))
    await owner.ok("member-create", image_id, callers.member_project)
    await member.ok("member-update", image_id, callers.member_project, "accepted")
    member_sees = table(await member.ok("image-show", image_id))["id"]
    listed_members = await owner.ok("member-list", "--image-id", image_id)
    downloaded = tmp_path / "downloaded.raw"
    await owner.ok("image-download", "--file", str(downloaded), image_id)
    await owner.ok("image-deactivate", image_id)
    deactivated = table(await owner.ok("image-show", image_id))["status"]
    await owner.ok("image-reactivate", image_id)
    reactivated = table(await owner.ok("image-show", image_id))["status"]

    other = glance_cli(url, callers.tokens["other"])
    # The CLI's own words for the gateway's 404: the image is hidden.
    assert f"No image with an ID of '{image_id}' exists" in await other.refused(
        "image-delete", image_id
    )
    reader = glance_cli(url, callers.tokens["reader"])
    refused = await reader.refused("image-delete", image_id)
    assert f"You are not permitted to delete the image '{image_id}'" in refused
    over = await owner.refused(
        "image-create", "--disk-format", "raw", "--container-format", "bare", "--name", "over"
    )
    assert "rate-limited" in over
    await owner.ok("image-delete", image_id)

    seen = {
        "created": {"id": image_id},
        "listed": listed,
        "shown": {
            "status": shown["status"],
            "size": int(shown["size"]),
            "property": shown["gateway_test"],
        },
        "member_sees": member_sees,
        "members": [
            [row[1], row[2]]
            for row in zip(
                column(listed_members, 0),
                column(listed_members, 1),
                column(listed_members, 2),
                strict=True,
            )
        ],
        "downloaded_md5": file_md5(downloaded),
        "deactivated": deactivated,
        "reactivated": reactivated,
    }
    await assert_cycle(seen, callers, cycle)
