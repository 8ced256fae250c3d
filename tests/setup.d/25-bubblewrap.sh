# Autograde runs each submission in a bubblewrap sandbox (trashlab_instructor/sandbox.py; INSTRUCTORS.md):
# the grading tests need Debian's bubblewrap. A fresh CI machine does not have it.
# every run: bwrap is the system's, not .venv's (a check that takes no time once it is there)
set -euo pipefail
if command -v bwrap >/dev/null; then
  echo "bubblewrap present: $(bwrap --version 2>/dev/null || echo unknown version)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "not root, cannot apt-get install bubblewrap: install it (sudo apt-get install bubblewrap), or the grading tests fail"
  exit 0
fi
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null; }; then
  echo "apt-get install bubblewrap failed: the grading tests will fail (autograde refuses without a sandbox)"
fi
