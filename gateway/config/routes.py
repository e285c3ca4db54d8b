"""The ``routes`` section: which operations of the image API the gateway serves,
and how large a request body each kind of route may take."""

from __future__ import annotations

from pydantic import field_validator

from gateway.config._base import PositiveInt, _Section
from gateway.http.routes import DEFAULT_ENABLED_ROUTES, check_route_names


def _known(value: list[str]) -> list[str]:
    check_route_names(value)
    return value


class RoutesConfig(_Section):
    # Routes served besides the default set (the image API a Glance client
    # needs), and routes taken out of it. A route not served is not
    # forwarded: its path is 404, or 405 when other methods are served there.
    enable: list[str] = []
    disable: list[str] = []
    # A JSON body (create, PATCH, members, import, tasks) is read and checked
    # before it is forwarded; past this size it is refused with 413.
    max_json_body_bytes: PositiveInt = 65536
    # Image data (upload, stage) larger than this is refused with 413; none
    # is the backend's own limit alone.
    max_image_bytes: PositiveInt | None = None

    _enable_known = field_validator("enable")(_known)
    _disable_known = field_validator("disable")(_known)

    @property
    def enabled(self) -> frozenset[str]:
        return (DEFAULT_ENABLED_ROUTES | set(self.enable)) - set(self.disable)
