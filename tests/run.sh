#!/usr/bin/env bash
# The test command (README.md, docs/testing.md): builds .venv, installs the course and the test tools, runs every test.
# Extra set-up steps (node modules for interop, a browser...) live in tests/setup.d/*.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
export PATH="$PWD/.venv/bin:$PATH"
python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-test.txt
for step in tests/setup.d/*.sh; do
  [ -e "$step" ] || continue
  echo "== set-up: $step"
  bash "$step"
done
exec python -m pytest "$@"
