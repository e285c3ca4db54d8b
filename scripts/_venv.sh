# Sourced by scripts/demo and scripts/test: a project virtualenv in .venv with
# the package installed editable; $1 names extras (e.g. "[test]"), and must be
# given, even empty, or the caller's own arguments would be taken for it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${1:-}"
