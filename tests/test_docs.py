"""The docs' commands work as printed, their configurations pass check-config,
and the README's chain table is the chain ``build_app`` builds.

A fenced block whose info string is ``sh runnable`` is run as printed, from
the repository's root, after the quick start: with ``image-gateway demo``
running (started here on free ports, which replace 8080 and 9090 in the
block) and the three tokens it prints exported. A command followed by
``# prints X`` must print exactly X. A block whose info string is
``yaml config-example`` must pass ``check-config``: as a whole file when it
names ``upstream.url``, otherwise as sections laid over
config/gateway.yaml; when its first line is ``# from config/NAME.yaml`` its
values must be that file's. docs/development.md describes the marks.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.app import build_app
from gateway.cli.demo import demo_config
from gateway.cli.main import main
from gateway.handlers.proxy import Proxy
from tests.cli.test_demo import RunningDemo, running_demo
from tests.support import REPO
from tests.support.ports import free_port
from tests.support.waiting import DEADLINE

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CONFIG = REPO / "config"
FENCE = "```"
# The demo's own ports, as the docs print them (the quick start's defaults).
DEMO_PORT, DEMO_ADMIN_PORT = 8080, 9090
EXPECTED_OUTPUT = re.compile(r"^(?P<command>.*?)\s+# prints (?P<output>.+)$")
DEMO_EXPORT = re.compile(r"^\s*export (?P<name>[A-Z]+)=(?P<value>\S+)", re.M)
# "  204 alice deletes her image     curl -si ... | head -1"
DEMO_LINE = re.compile(r"^\s+(?P<status>\d{3}) .*?\s{2,}(?P<command>curl .*)$", re.M)
DEMO_LOOP = re.compile(r"^\s+(?P<command>for i in .*; done)$", re.M)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, from 1
    info: str
    text: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file (our docs open fences at column 0)."""
    blocks: list[Block] = []
    body: list[str] = []
    opened, info = 0, ""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not opened and line.startswith(FENCE):
            opened, info, body = number, line[len(FENCE) :].strip(), []
        elif opened and line.strip() == FENCE:
            blocks.append(Block(path, opened, info, "\n".join(body) + "\n"))
            opened = 0
        elif opened:
            body.append(line)
    assert not opened, f"{path}:{opened}: a fence is never closed"
    return blocks


def marked(info: str) -> list[Block]:
    return [block for path in DOCS for block in fenced_blocks(path) if block.info == info]


RUNNABLE = marked("sh runnable")
CONFIG_EXAMPLES = marked("yaml config-example")


def logical_lines(text: str) -> list[str]:
    """The block's lines, those continued with a trailing backslash joined."""
    lines: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        lines.append(pending + line)
        pending = ""
    return lines


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def as_script(block: Block) -> str:
    """The block as one bash script that stops at the first failing command
    and checks each ``# prints`` against what its command printed."""
    script = ["set -euo pipefail"]
    for number, line in enumerate(logical_lines(block.text), start=1):
        expected = EXPECTED_OUTPUT.match(line)
        if expected is None:
            script.append(line)
            continue
        want = expected["output"].strip()
        script.append(f"__printed=$({expected['command']})")
        script.append(
            f'[ "$__printed" = {_quoted(want)} ] || {{ echo "{block} command {number}:'
            f' printed $__printed, the docs say {want}" >&2; exit 1; }}'
        )
    return "\n".join(script) + "\n"


def uses_demo(block: Block) -> bool:
    return bool(
        re.search(rf":({DEMO_PORT}|{DEMO_ADMIN_PORT})\b|\$(ALICE|OLIVIA|ROOT)\b", block.text)
    )


def on_ports(script: str, demo: RunningDemo) -> str:
    script = re.sub(rf"(127\.0\.0\.1|localhost):{DEMO_PORT}\b", rf"\g<1>:{demo.port}", script)
    return re.sub(
        rf"(127\.0\.0\.1|localhost):{DEMO_ADMIN_PORT}\b", rf"\g<1>:{demo.admin_port}", script
    )


def demo_environment(demo: RunningDemo) -> dict[str, str]:
    """The environment after pasting the demo's ``export`` lines."""
    exported = {m["name"]: m["value"] for m in DEMO_EXPORT.finditer(demo.banner)}
    assert set(exported) == {"ALICE", "OLIVIA", "ROOT"}, demo.banner
    return exported


def run_bash(script: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run(
        [bash, "-c", script],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), **environment},
        capture_output=True,
        text=True,
        timeout=DEADLINE * 4,
        check=False,
    )


def test_the_docs_mark_runnable_blocks_and_config_examples() -> None:
    # A mark misspelled would leave a block untested without a word.
    assert len(RUNNABLE) >= 5, [str(b) for b in RUNNABLE]
    assert len(CONFIG_EXAMPLES) >= 3, [str(b) for b in CONFIG_EXAMPLES]
    infos = {block.info for path in DOCS for block in fenced_blocks(path)}
    assert not {i for i in infos if "runnable" in i or "config-example" in i} - {
        "sh runnable",
        "yaml config-example",
    }


@pytest.mark.parametrize("block", RUNNABLE, ids=str)
async def test_a_runnable_block_runs_as_printed(block: Block) -> None:
    if not uses_demo(block):
        result = run_bash(as_script(block), {})
    else:
        async with running_demo() as demo:
            result = run_bash(on_ports(as_script(block), demo), demo_environment(demo))
    assert result.returncode == 0, f"{block}:\n{block.text}\n{result.stdout}\n{result.stderr}"


async def test_the_demo_prints_curl_lines_that_answer_the_status_before_them() -> None:
    async with running_demo() as demo:
        environment = demo_environment(demo)
        lines = list(DEMO_LINE.finditer(demo.banner))
        assert len(lines) >= 10, demo.banner
        for line in lines:
            # Each line pipes to `head -1`: the status line alone.
            printed = run_bash(line["command"], environment).stdout
            assert printed.startswith(f"HTTP/1.1 {line['status']} "), (line[0], printed)
        loop = DEMO_LOOP.search(demo.banner)
        assert loop is not None, demo.banner
        statuses = run_bash(loop["command"], environment).stdout.splitlines()
        assert statuses[-1].startswith("HTTP/1.1 413 "), statuses


def _laid_over(base: dict[str, Any], sections: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _laid_over(merged[key], value)
        else:
            merged[key] = value
    return merged


def _within(part: Any, whole: Any, where: str) -> None:
    if isinstance(part, dict):
        assert isinstance(whole, dict), where
        for key, value in part.items():
            assert key in whole, f"{where}.{key} is not in the file"
            _within(value, whole[key], f"{where}.{key}")
    else:
        assert part == whole, f"{where}: {part!r} here, {whole!r} in the file"


def check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check-config", str(path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out == f"{path}: OK\n"


@pytest.mark.parametrize("block", CONFIG_EXAMPLES, ids=str)
def test_a_config_example_passes_check_config(
    block: Block, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = yaml.safe_load(block.text)
    assert isinstance(example, dict), block
    source = re.match(r"# from (?P<file>config/\S+\.yaml)\n", block.text)
    if source is not None:
        _within(example, yaml.safe_load((REPO / source["file"]).read_text()), source["file"])
    if "url" not in example.get("upstream", {}):
        example = _laid_over(yaml.safe_load((CONFIG / "gateway.yaml").read_text()), example)
    # Beside the shipped files, so that the relative paths the examples use
    # (policy.yaml, keys/) resolve as they would in config/.
    shutil.copytree(CONFIG, tmp_path / "config")
    path = tmp_path / "config" / "example.yaml"
    path.write_text(yaml.safe_dump(example))
    check_config(path, capsys)


def _is_gateway_config(path: Path) -> bool:
    # Policy files beside them are maps of rule names to rules.
    return "upstream" in yaml.safe_load(path.read_text())


def test_every_shipped_configuration_passes_check_config(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shipped = [p for p in sorted(CONFIG.glob("*.yaml")) if _is_gateway_config(p)]
    assert {p.name for p in shipped} >= {"gateway.yaml", "keystone-example.yaml"}
    for path in [*shipped, REPO / "gateway" / "cli" / "demo.yaml"]:
        check_config(path, capsys)


def _chain_table() -> list[str]:
    """The module column of the README's chain table, in its order."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## The chain\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \d+b? \|", line)]
    return [row.split("|")[2].strip().strip("`") for row in rows]


async def test_the_readme_chain_table_is_the_middleware_order_of_build_app() -> None:
    app = build_app(demo_config(free_port(), "http://127.0.0.1:9"))
    modules = [type(m).__module__ for m in app.middlewares]
    assert all(m.startswith("gateway.middleware.") for m in modules), modules
    *middlewares, handler = _chain_table()
    assert middlewares == [m.removeprefix("gateway.middleware.") + ".py" for m in modules]
    # Every proxied route is answered by the proxy's bound method.
    handlers = {type(getattr(r.handler, "__self__", None)) for r in app.router.routes()}
    assert Proxy in handlers, handlers
    assert handler == Proxy.__module__.replace(".", "/") + ".py"
