# The lab's own Node programs need the npm `nats` client (v1, the lab's API) for the interop test.
# every run: node_modules lives outside .venv (npm install takes half a second once it is there)
set -euo pipefail
if command -v npm >/dev/null 2>&1; then
  (cd tests/node && npm install --no-audit --no-fund --silent >/dev/null 2>&1) \
    || echo "npm install failed: the Node interop test will be skipped"
else
  echo "no npm on this machine: the Node interop test will be skipped"
fi
