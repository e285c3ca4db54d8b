"""wrk, the load generator every HTTP benchmark here drives, and one measured round."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.harness.cpu import cpu_seconds, process_tree

# DELETE /v2/images/<random uuid>, each with one of the tokens in the file
# named where %s stands.
WRK_SCRIPT = """
local tokens = {}
for line in io.lines("%s") do tokens[#tokens + 1] = line end
local r = math.random
-- init runs in the thread's own Lua state, where the requests are made.
function init(args) math.randomseed(os.time() + math.floor(os.clock() * 1e6)) end
local function uuid4()
  return string.format("%%04x%%04x-%%04x-4%%03x-a%%03x-%%04x%%04x%%04x",
    r(0, 65535), r(0, 65535), r(0, 65535), r(0, 4095), r(0, 4095),
    r(0, 65535), r(0, 65535), r(0, 65535))
end
request = function()
  return wrk.format("DELETE", "/v2/images/" .. uuid4(),
    {["X-Auth-Token"] = tokens[r(#tokens)]})
end
"""


@dataclass
class Round:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    cpu_us: float
    # Of cpu_us, the kernel's (system calls, the loopback network); the
    # rest is the proxy's own code.
    system_us: float
    redis_cpu_us: float


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, out)
        if match is None:
            raise SystemExit(f"wrk printed no {pattern!r}:\n{out}")
        return match

    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": float(find(r"Requests/sec:\s+([\d.]+)").group(1)),
        "p50": _ms(*find(r"50%\s+([\d.]+)(us|ms|s)").groups()),
        "p99": _ms(*find(r"99%\s+([\d.]+)(us|ms|s)").groups()),
        "requests": int(find(r"(\d+) requests in").group(1)),
        "non_2xx": int(bad.group(1)) if bad else 0,
    }


def measure(
    url: str, root: int, redis_pid: int, script: Path, seconds: int, connections: int
) -> Round:
    pids = process_tree(root)
    (user0, system0), redis0 = cpu_seconds(pids), sum(cpu_seconds([redis_pid]))
    result = run_wrk(url, script, seconds, connections)
    (user1, system1), redis1 = cpu_seconds(pids), sum(cpu_seconds([redis_pid]))
    per_request = 1e6 / max(int(result["requests"]), 1)
    return Round(
        result["rps"],
        result["p50"],
        result["p99"],
        int(result["requests"]),
        int(result["non_2xx"]),
        (user1 - user0 + system1 - system0) * per_request,
        (system1 - system0) * per_request,
        (redis1 - redis0) * per_request,
    )
