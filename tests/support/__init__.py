"""What the tests share, each in its own module; fixtures stay in the conftest files.

- ``gateway_process``: ``python -m gateway`` as an operator runs it, started,
  waited for and stopped one way.
- ``gateway_app``: the gateway app in the test's own process, behind aiohttp's
  test client.
- ``gateway_config``: a valid configuration to start from, and writing one to a file.
- ``tokens``: the test signing keys and the JWTs made with them.
- ``observed``: a gateway and its admin listener side by side, and reading /metrics.
- ``upstreams``: a scripted upstream that records what reaches it.
- ``redis_servers``: real ``redis-server`` processes on free ports.
- ``faults``: what every fault answer and request id must look like.
- ``ports`` and ``waiting``: free ports, and polling for a state with a deadline.
"""

from pathlib import Path

# The checkout: the working directory of every ``python -m gateway`` the tests run.
REPO = Path(__file__).resolve().parents[2]
