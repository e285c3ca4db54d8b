"""Do the tests catch a realistic bug? Each change in mutants.toml, tried one at a time.

Every entry of ``scripts/mutants.toml`` is a one-line change to the working
tree that a reviewer could miss (a case folded, a bound off by one, a unit
mixed up): the file, the exact original text (found exactly once), its
replacement, and the tests that cover it. For each, this writes the change,
runs ``pytest -x -q`` on those tests with a time limit, and puts the file back
byte for byte, mtime included (in a ``finally``, so Ctrl-C or an error
restores it too). A change the tests fail on is caught; one they pass is a
gap in the suite. A change whose original text is not found once (the code
moved) is stale, and says so.

Run by hand, not in CI (it runs the covering tests once per change):

    .venv/bin/python scripts/mutants.py            # every change
    .venv/bin/python scripts/mutants.py owner lua  # those whose name holds a word
    .venv/bin/python scripts/mutants.py --list     # what is on the list

Exits 0 when every change tried is caught, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
LIST = Path(__file__).with_name("mutants.toml")
PYTHON = ROOT / ".venv" / "bin" / "python"


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    original: str
    replacement: str
    # Test files or node ids, as pytest takes them.
    tests: tuple[str, ...]
    # The bug it stands for, in a reviewer's words.
    why: str


def load(path: Path) -> list[Mutant]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    mutants = [
        Mutant(
            name=entry["name"],
            file=entry["file"],
            original=entry["original"],
            replacement=entry["replacement"],
            tests=tuple(entry["tests"]),
            why=entry["why"],
        )
        for entry in data["mutant"]
    ]
    names = [m.name for m in mutants]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SystemExit(f"{path.name}: names given twice: {', '.join(twice)}")
    for mutant in mutants:
        if "\n" in mutant.original or mutant.original == mutant.replacement:
            raise SystemExit(f"{path.name}: {mutant.name}: not a one-line change")
    return mutants


def _interrupted(signum: int, frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, through the finally that restores the file.
    raise KeyboardInterrupt


def _clean(files: list[str]) -> set[str]:
    """Those of ``files`` git sees no change in."""
    return {
        f
        for f in files
        if subprocess.run(["git", "diff", "--quiet", "--", f], cwd=ROOT).returncode == 0
    }


def try_one(mutant: Mutant, timeout: float) -> tuple[str, float]:
    """The outcome (caught, survived, stale, error, timeout) and the seconds it took."""
    path = ROOT / mutant.file
    original = path.read_bytes()
    stat = path.stat()
    text = original.decode("utf-8")
    found = text.count(mutant.original)
    if found != 1:
        return f"stale (original text found {found} times)", 0.0
    started = time.monotonic()
    try:
        path.write_bytes(text.replace(mutant.original, mutant.replacement).encode("utf-8"))
        command = [str(PYTHON), "-B", "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
        try:
            run = subprocess.run(
                [*command, *mutant.tests],
                cwd=ROOT,
                # No bytecode written: a mutant's .pyc must never outlive it.
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            # A hang is a failing suite too, but say which it was.
            return "caught (timeout)", time.monotonic() - started
    finally:
        path.write_bytes(original)
        # The mtime too, so that bytecode compiled from the original stays valid.
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    seconds = time.monotonic() - started
    if run.returncode == 0:
        return "survived", seconds
    if run.returncode == 1:
        return "caught", seconds
    tail = run.stdout.decode(errors="replace").strip().splitlines()[-3:]
    return f"error (pytest exit {run.returncode}): {' | '.join(tail)}", seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("words", nargs="*", help="only the changes whose name holds one")
    parser.add_argument("--list", action="store_true", help="print the list and stop")
    parser.add_argument("--file", type=Path, default=LIST, help="the list (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per change")
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip running the covering tests on the unchanged tree first",
    )
    args = parser.parse_args(argv)
    mutants = [m for m in load(args.file) if not args.words or any(w in m.name for w in args.words)]
    if not mutants:
        print("no change on the list matches", file=sys.stderr)
        return 2
    if args.list:
        for m in mutants:
            print(f"{m.name:32} {m.file}: {m.why}")
        return 0
    signal.signal(signal.SIGTERM, _interrupted)
    files = sorted({m.file for m in mutants})
    clean = _clean(files)
    if not args.no_baseline:
        # A test that fails anyway would count every change as caught.
        tests = sorted({t for m in mutants for t in m.tests})
        print(f"baseline: {len(tests)} test target(s) on the unchanged tree", flush=True)
        baseline = subprocess.run(
            [str(PYTHON), "-B", "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
            cwd=ROOT,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        if baseline.returncode != 0:
            print("baseline: the covering tests fail on the unchanged tree; nothing tried")
            return 1
    outcomes: dict[str, str] = {}
    width = max(len(m.name) for m in mutants)
    interrupted = False
    try:
        for mutant in mutants:
            outcome, seconds = try_one(mutant, args.timeout)
            outcomes[mutant.name] = outcome
            note = "" if outcome in ("caught", "survived") else f": {outcome}"
            print(f"{outcome.split(' (')[0]:9} {mutant.name:{width}} {mutant.file} "
                  f"({seconds:.1f} s){note}", flush=True)  # fmt: skip
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: the file being changed was put back", flush=True)
    finally:
        # What git sees is the proof that every file is as it was.
        dirty = sorted((set(files) & clean) - _clean(files))
        if dirty:
            print(f"NOT RESTORED (git diff shows changes): {', '.join(dirty)}", file=sys.stderr)
    caught = sum(o.startswith("caught") for o in outcomes.values())
    survived = [n for n, o in outcomes.items() if o == "survived"]
    other = [n for n, o in outcomes.items() if not o.startswith(("caught", "survived"))]
    print(f"{len(outcomes)} changes: {caught} caught, {len(survived)} survived"
          + (f", {len(other)} not tried (stale or error)" if other else ""))  # fmt: skip
    if survived:
        print(f"survived: {', '.join(survived)}")
    if other:
        print(f"not tried: {', '.join(other)}")
    if interrupted:
        return 130
    return 0 if caught == len(outcomes) and not dirty else 1


if __name__ == "__main__":
    sys.exit(main())
