"""The CPU quota a container's cgroup gives this process, in whole CPUs.

``sched_getaffinity`` counts the cores a process may run on, which in a
container is usually every core of the node: a sidecar limited to one CPU on
a 64-core node would start 64 workers that the quota then throttles in turn.
The quota is the cgroup's: ``cpu.max`` (cgroup v2, ``"max 100000"`` or
``"150000 100000"``) or ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``
(cgroup v1, ``-1`` for none). A limit set on a parent cgroup bounds its
children too, so the process's own cgroup and every ancestor are read and
the smallest quota wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path, PurePosixPath

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def cgroup_cpu_limit(
    root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP
) -> int | None:
    """Whole CPUs the quota allows (a fraction rounds up, at least 1), or None without one."""
    try:
        lines = proc_self_cgroup.read_text().splitlines()
    except OSError:  # not on Linux, or no /proc
        return None
    quotas: list[float] = []
    for line in lines:
        # "hierarchy-id:controllers:path"; v2's unified hierarchy is "0::path".
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            # Pure v2 mounts the hierarchy at the root; a hybrid host at unified/.
            for mount in (root, root / "unified"):
                quotas += _along(mount, path, _v2_quota)
        elif "cpu" in controllers.split(","):
            # v1 mounts the controller under its own name ("cpu,cpuacct") and
            # usually links "cpu" to it.
            for mount in dict.fromkeys((root / controllers, root / "cpu")):
                quotas += _along(mount, path, _v1_quota)
    if not quotas:
        return None
    return max(1, math.ceil(min(quotas)))


def _along(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """The quotas set on the cgroup at ``path`` below ``mount`` and on its ancestors.

    Inside a container the process's path names a cgroup of the host that
    the container's mount does not show: its directories are simply missing
    and the mount's own root (the container's cgroup) is what is read.
    """
    quotas = []
    directory = PurePosixPath("/", path)
    for cgroup in (directory, *directory.parents):
        quota = read(mount / str(cgroup).lstrip("/"))
        if quota is not None:
            quotas.append(quota)
    return quotas


def _v2_quota(cgroup: Path) -> float | None:
    """``cpu.max``: ``"$MAX $PERIOD"``, where ``max`` means no limit."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    return _ratio(quota, period)


def _v1_quota(cgroup: Path) -> float | None:
    """``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``; a quota of -1 is no limit."""
    try:
        quota = (cgroup / "cpu.cfs_quota_us").read_text().strip()
        period = (cgroup / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:  # "max", or anything the kernel never writes
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return quota_us / period_us
