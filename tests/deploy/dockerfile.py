"""deploy/Dockerfile's final stage, read the way a builder reads it.

The deployment files (compose, Kubernetes) are checked against what this
returns, and the image test checks that the built image's configuration says
the same, so a change to the Dockerfile that the manifests do not follow
fails a test.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"


@dataclass(frozen=True)
class FinalStage:
    user: str
    exposed_ports: frozenset[int]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    volumes: tuple[str, ...]
    env: dict[str, str]
    stop_signal: str | None
    healthcheck: tuple[str, ...]

    @property
    def config_path(self) -> Path:
        """The configuration file the default command runs with."""
        return Path(self.cmd[self.cmd.index("--config") + 1])


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        pending += stripped.removesuffix("\\").strip() + " "
        if not stripped.endswith("\\"):
            keyword, _, arguments = pending.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
            pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def _exec_form(arguments: str) -> tuple[str, ...]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"not the exec (JSON) form: {arguments}"
    return tuple(str(v) for v in value)


def read_final_stage(path: Path = DOCKERFILE) -> FinalStage:
    instructions = _instructions(path.read_text())
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    stage = instructions[last_from:]
    found: dict[str, str] = {}
    env: dict[str, str] = {}
    volumes: list[str] = []
    ports: set[int] = set()
    for keyword, arguments in stage:
        if keyword == "ENV":
            for item in shlex.split(arguments):
                name, _, value = item.partition("=")
                env[name] = value
        elif keyword == "VOLUME":
            volumes.extend(_exec_form(arguments))
        elif keyword == "EXPOSE":
            ports.update(int(port.split("/")[0]) for port in arguments.split())
        else:
            found[keyword] = arguments
    _, _, health_command = found.get("HEALTHCHECK", "").partition(" CMD ")
    return FinalStage(
        user=found["USER"],
        exposed_ports=frozenset(ports),
        entrypoint=_exec_form(found.get("ENTRYPOINT", "[]")),
        cmd=_exec_form(found["CMD"]),
        volumes=tuple(volumes),
        env=env,
        stop_signal=found.get("STOPSIGNAL"),
        healthcheck=_exec_form(health_command or "[]"),
    )
