"""``workers: auto`` counts the cgroup's CPU quota, read from files the tests write.

Each test lays out a cgroup tree under a temporary root as the kernel shows
it (v2's ``cpu.max``, v1's ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``)
and a ``/proc/self/cgroup`` naming the process's own cgroup in it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.config.listen import available_cores
from gateway.cpu_quota import PROC_SELF_CGROUP, cgroup_cpu_limit

AFFINITY = len(os.sched_getaffinity(0))


def cgroup_file(root: Path, cgroup: str, name: str, text: str) -> None:
    directory = root / cgroup.lstrip("/")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text + "\n")


def proc_self_cgroup(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize(
    ("cpu_max", "cpus"),
    [
        ("max 100000", None),
        ("100000 100000", 1),
        ("150000 100000", 2),
        ("50000 100000", 1),  # half a CPU: still one worker
        ("6400000 100000", 64),
        ("max", None),  # not what the kernel writes: no limit read
        ("lots 100000", None),
    ],
)
def test_v2_cpu_max_in_the_process_cgroup(tmp_path: Path, cpu_max: str, cpus: int | None) -> None:
    root = tmp_path / "cgroup"
    cgroup_file(root, "/kubepods/pod-1/sidecar", "cpu.max", cpu_max)
    own = proc_self_cgroup(tmp_path, "0::/kubepods/pod-1/sidecar")
    assert cgroup_cpu_limit(root, own) == cpus


def test_v2_a_parent_limit_bounds_the_child(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    cgroup_file(root, "/kubepods/pod-1", "cpu.max", "100000 100000")
    cgroup_file(root, "/kubepods/pod-1/sidecar", "cpu.max", "400000 100000")
    cgroup_file(root, "/", "cpu.max", "max 100000")
    own = proc_self_cgroup(tmp_path, "0::/kubepods/pod-1/sidecar")
    assert cgroup_cpu_limit(root, own) == 1


def test_v2_inside_a_container_reads_the_mount_root(tmp_path: Path) -> None:
    """The path names the host's cgroup, which the container's mount does not show."""
    root = tmp_path / "cgroup"
    cgroup_file(root, "/", "cpu.max", "200000 100000")
    own = proc_self_cgroup(tmp_path, "0::/system.slice/docker-abc.scope")
    assert cgroup_cpu_limit(root, own) == 2


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [("-1", "100000", None), ("100000", "100000", 1), ("250000", "100000", 3), ("1", "0", None)],
)
def test_v1_cfs_quota_over_period(
    tmp_path: Path, quota: str, period: str, cpus: int | None
) -> None:
    root = tmp_path / "cgroup"
    cgroup_file(root, "/cpu,cpuacct/docker/abc", "cpu.cfs_quota_us", quota)
    cgroup_file(root, "/cpu,cpuacct/docker/abc", "cpu.cfs_period_us", period)
    own = proc_self_cgroup(
        tmp_path, "12:memory:/docker/abc", "4:cpu,cpuacct:/docker/abc", "1:name=systemd:/docker/abc"
    )
    assert cgroup_cpu_limit(root, own) == cpus


def test_v1_through_the_cpu_link_and_a_hybrid_host(tmp_path: Path) -> None:
    """A hybrid host: v1 controllers (cpu on its own), v2 mounted at unified/ without cpu."""
    root = tmp_path / "cgroup"
    cgroup_file(root, "/cpu", "cpu.cfs_quota_us", "150000")
    cgroup_file(root, "/cpu", "cpu.cfs_period_us", "100000")
    cgroup_file(root, "/unified", "cgroup.controllers", "")
    own = proc_self_cgroup(tmp_path, "2:cpuacct:/", "1:cpu:/", "0::/")
    assert cgroup_cpu_limit(root, own) == 2


def test_no_cgroup_files_no_limit(tmp_path: Path) -> None:
    own = proc_self_cgroup(tmp_path, "0::/user.slice")
    assert cgroup_cpu_limit(tmp_path / "empty", own) is None
    assert cgroup_cpu_limit(tmp_path / "empty", tmp_path / "no-such-file") is None


def limit_own_cgroup(root: Path, cpus: int) -> None:
    """Write a quota of ``cpus`` where this process's /proc/self/cgroup points, v2 and v1."""
    for line in PROC_SELF_CGROUP.read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:
            cgroup_file(root, path, "cpu.max", f"{100000 * cpus} 100000")
        elif "cpu" in controllers.split(","):
            cgroup_file(root / controllers, path, "cpu.cfs_quota_us", str(100000 * cpus))
            cgroup_file(root / controllers, path, "cpu.cfs_period_us", "100000")


def test_the_process_own_cgroup_is_found_in_proc_self_cgroup(tmp_path: Path) -> None:
    """Without a path given, the process's own /proc/self/cgroup says where to read."""
    root = tmp_path / "cgroup"
    limit_own_cgroup(root, 3)
    assert cgroup_cpu_limit(root) == 3


def test_auto_workers_are_the_fewer_of_affinity_and_quota(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    assert available_cores(root) == AFFINITY  # nothing written: no quota
    # A quota above the cores the process may run on changes nothing...
    limit_own_cgroup(root, AFFINITY + 8)
    assert available_cores(root) == AFFINITY
    # ...one below them sets the count.
    limit_own_cgroup(root, 1)
    assert available_cores(root) == 1
