"""python-glanceclient through the gateway: the whole life of an image, then
the refusals. Run and read as sdk_cycle.py is."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from typing import Any

from glanceclient import Client, exc


def refusal(call: Callable[[], object]) -> dict[str, Any]:
    try:
        call()
    except exc.HTTPException as error:
        return {"exception": type(error).__name__, "status": error.code, "message": str(error)}
    return {"exception": None}


def main() -> None:
    settings = json.loads(sys.argv[1])
    url, tokens, member_project = settings["url"], settings["tokens"], settings["member"]
    owner, other, reader, member = (
        Client("2", endpoint=url, token=tokens[k]) for k in ("owner", "other", "reader", "member")
    )
    seen: dict[str, Any] = {}

    image = owner.images.create(
        name="glanceclient-cycle", disk_format="raw", container_format="bare"
    )
    seen["created"] = {"id": image.id, "status": image.status}
    with open(settings["data"], "rb") as data:
        # glanceclient sends the file chunked, without a Content-Length.
        owner.images.upload(image.id, data)
    seen["listed"] = [i.id for i in owner.images.list()]
    owner.images.update(image.id, gateway_test="set-by-glanceclient")
    shown = owner.images.get(image.id)
    seen["shown"] = {
        "status": shown.status,
        "size": shown.size,
        "property": shown.get("gateway_test"),
    }

    owner.image_members.create(image.id, member_project)
    member.image_members.update(image.id, member_project, "accepted")
    seen["member_sees"] = member.images.get(image.id).id
    seen["members"] = [(m.member_id, m.status) for m in owner.image_members.list(image.id)]

    digest = hashlib.md5(usedforsecurity=False)
    # glanceclient checks the downloaded bytes against Glance's checksum too.
    for chunk in owner.images.data(image.id):
        digest.update(chunk)
    seen["downloaded_md5"] = digest.hexdigest()

    owner.images.deactivate(image.id)
    seen["deactivated"] = owner.images.get(image.id).status
    owner.images.reactivate(image.id)
    seen["reactivated"] = owner.images.get(image.id).status

    seen["refused"] = {
        "other_tenant_delete": refusal(lambda: other.images.delete(image.id)),
        "other_tenant_update": refusal(lambda: other.images.update(image.id, x="y")),
        "reader_delete": refusal(lambda: reader.images.delete(image.id)),
        "over_limit": refusal(
            lambda: owner.images.create(
                name="glanceclient-over", disk_format="raw", container_format="bare"
            )
        ),
    }
    owner.images.delete(image.id)
    seen["deleted"] = refusal(lambda: owner.images.get(image.id))
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
