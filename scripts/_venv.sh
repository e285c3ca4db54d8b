# Sourced by scripts/demo and scripts/test: a project virtualenv in .venv with
# the package installed editable (and its test extras when asked).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${1:-}"
