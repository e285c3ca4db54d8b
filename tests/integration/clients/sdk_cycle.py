"""openstacksdk through the gateway: the whole life of an image, then the refusals.

Run by .openstack-venv's Python with one argument, a JSON object of settings
(the gateway's URL, a token per caller, the data file). Prints one JSON
object: what each step saw, and each refusal's exception class and message
as the SDK raised it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from typing import Any

import openstack
from openstack import exceptions


def connect(url: str, token: str) -> Any:
    # No Keystone: the token is used as it is, and the image endpoint is the
    # gateway's root, from which keystoneauth discovers the v2 API.
    return openstack.connection.Connection(
        auth_type="admin_token",
        auth={"endpoint": url, "token": token},
        image_endpoint_override=url,
    )


def refusal(call: Callable[[], object]) -> dict[str, Any]:
    try:
        call()
    except exceptions.SDKException as exc:
        status = getattr(exc, "status_code", None)
        return {"exception": type(exc).__name__, "status": status, "message": str(exc)}
    return {"exception": None}


def main() -> None:
    settings = json.loads(sys.argv[1])
    url, tokens, member_project = settings["url"], settings["tokens"], settings["member"]
    owner, other, reader, member = (
        connect(url, tokens[k]) for k in ("owner", "other", "reader", "member")
    )
    seen: dict[str, Any] = {"endpoint": owner.image.get_endpoint()}

    image = owner.image.create_image(
        "sdk-cycle",
        filename=settings["data"],
        disk_format="raw",
        container_format="bare",
        allow_duplicates=True,
    )
    seen["created"] = {"id": image.id, "status": image.status, "checksum": image.checksum}
    seen["listed"] = [i.id for i in owner.image.images()]
    owner.image.update_image(image, gateway_test="set-by-sdk")
    shown = owner.image.get_image(image)
    seen["shown"] = {
        "status": shown.status,
        "size": shown.size,
        "property": shown.properties.get("gateway_test"),
    }

    owner.image.add_member(image, member_id=member_project)
    member.image.update_member(member_project, image, status="accepted")
    seen["member_sees"] = member.image.get_image(image).id
    seen["members"] = [(m.member_id, m.status) for m in owner.image.members(image)]

    digest = hashlib.md5(usedforsecurity=False)
    response = owner.image.download_image(image, stream=True)
    for chunk in response.iter_content(chunk_size=1 << 20):
        digest.update(chunk)
    seen["downloaded_md5"] = digest.hexdigest()

    owner.image.deactivate_image(image)
    seen["deactivated"] = owner.image.get_image(image).status
    owner.image.reactivate_image(image)
    seen["reactivated"] = owner.image.get_image(image).status

    seen["refused"] = {
        "other_tenant_delete": refusal(
            lambda: other.image.delete_image(image.id, ignore_missing=False)
        ),
        "other_tenant_update": refusal(lambda: other.image.update_image(image.id, x="y")),
        "reader_delete": refusal(lambda: reader.image.delete_image(image.id)),
        "over_limit": refusal(
            lambda: owner.image.create_image(
                "sdk-over", allow_duplicates=True, disk_format="raw", container_format="bare"
            )
        ),
    }
    owner.image.delete_image(image)
    seen["deleted"] = refusal(lambda: owner.image.get_image(image.id))
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
