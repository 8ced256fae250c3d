# The real-browser test (tests/test_browser.py) drives Debian's chromium; playwright itself comes from
# requirements-test.txt and never downloads a browser.
# every run: chromium is the system's, not .venv's (a check that takes no time once it is there)
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo unknown version)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "not root, cannot apt-get install chromium: the browser test will be skipped"
  exit 0
fi
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
  echo "apt-get install chromium failed: the browser test will be skipped"
fi
