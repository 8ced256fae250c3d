#!/usr/bin/env bash
# The test command (README.md, docs/testing.md): builds .venv, installs the course and the test tools,
# runs every test (every tier) on four pytest-xdist workers. Extra arguments go to pytest:
# `bash tests/run.sh -m "quick or nats"`.
# Extra set-up steps (node modules for interop, a browser...) live in tests/setup.d/*.sh.
#
# The install is skipped when its inputs did not change: the requirement files, pyproject.toml, the
# set-up steps and the Python version are hashed, and the hash of the last complete install is kept
# in .venv/.trashlab-install. A clean clone (no .venv) installs everything; TRASHLAB_REINSTALL=1 forces it.
# Set-up steps whose result lives outside .venv (tests/node/node_modules, the system's chromium) say
# "# every run" and run each time; each is quick when its work is done already.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else f"tests/run.sh: trashlab needs Python 3.11 or newer, {sys.executable} is {sys.version.split()[0]}: run PYTHON=python3.11 bash tests/run.sh")'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
export PATH="$PWD/.venv/bin:$PATH"

stamp=.venv/.trashlab-install
inputs=$( { python -c 'import sys; print(sys.version)'
            sha256sum requirements.txt requirements-test.txt pyproject.toml tests/setup.d/*.sh; } \
          | sha256sum | cut -d' ' -f1)
started=$SECONDS
if [ "${TRASHLAB_REINSTALL:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ]; then
  echo "== install: inputs unchanged since the last install ($stamp), skipped"
  every_run_only=1
else
  rm -f "$stamp"
  python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-test.txt
  every_run_only=0
fi
for step in tests/setup.d/*.sh; do
  [ -e "$step" ] || continue
  if [ "$every_run_only" = 1 ] && ! grep -q '^# every run' "$step"; then continue; fi
  echo "== set-up: $step"
  bash "$step"
done
[ "$every_run_only" = 1 ] || echo "$inputs" > "$stamp"
echo "== install and set-up: $((SECONDS - started)) s"
# Most tests wait (on servers, kernels, publish intervals): four workers keep two cores busy.
# TRASHLAB_TEST_WORKERS=0 runs everything in this one process.
exec python -m pytest -n "${TRASHLAB_TEST_WORKERS:-4}" --durations=25 "$@"
