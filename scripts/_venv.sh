# Sourced by scripts/demo and scripts/test: a project virtualenv in .venv with
# the locked dependencies of requirements/$1.txt ("test" or "runtime", written
# by scripts/lock; every file checked against its hash), then the package itself,
# editable, without resolving anything again. Skipped while the lock and
# pyproject.toml are unchanged.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
lock="requirements/${1:?name the lock: test or runtime}.txt"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp="$(cat "$lock" pyproject.toml | sha256sum | cut -c1-16)"
if [ "$(cat .venv/installed-lock 2>/dev/null)" != "$stamp" ]; then
  pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
  "${pip[@]}" --require-hashes -r "$lock"
  "${pip[@]}" --no-deps -e .
  echo "$stamp" > .venv/installed-lock
fi
