"""What every proxy a benchmark measures stands in front of: an nginx upstream and Redis."""

from __future__ import annotations

from pathlib import Path

# The project that owns every image the upstream describes, and every bench token's.
PROJECT = "bench"


def nginx_upstream_conf(tmp: Path, port: int) -> Path:
    document = f'{{"id": "x", "owner": "{PROJECT}", "visibility": "private"}}'
    path = tmp / "upstream.conf"
    path.write_text(
        f"""daemon off;
worker_processes 1;
pid {tmp}/upstream.pid;
error_log stderr error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      default_type application/json;
      if ($request_method = GET) {{ return 200 '{document}'; }}
      return 204;
    }}
  }}
}}
"""
    )
    return path


def backing_services(tmp: Path, upstream: int, redis: int) -> dict[str, tuple[list[str], int]]:
    """The commands of what every proxy here stands in front of: the nginx
    upstream (``upstream``) and Redis (``redis``), by port."""
    # fmt: off
    # One service a row, each flag beside its value.
    return {
        "upstream": (["nginx", "-p", str(tmp), "-e", "stderr",
                      "-c", str(nginx_upstream_conf(tmp, upstream))], upstream),
        "redis": (["redis-server", "--port", str(redis), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no"], redis),
    }
    # fmt: on
