"""What the benchmarks share, each in its own module.

- ``processes``: free ports, starting the servers of a run and stopping them,
  and a commit's tree to run a baseline from.
- ``services``: the backing services every proxy stands in front of (an nginx
  upstream, Redis).
- ``gateway``: the shipped configuration changed only where a run must, the
  bench's RS256 tokens, and warming a gateway's token cache.
- ``wrk``: the wrk runner and its request script, and one measured round.
- ``cpu``: CPU time and memory of a process tree, from /proc.
"""

from pathlib import Path

# The checkout the benchmarks run from, and the tree a gateway runs from by default.
REPO = Path(__file__).resolve().parents[2]
