#!/usr/bin/env bash
# nbgrader is a test/instructor tool: keep its JupyterLab and server extensions out of the JupyterLab
# that tests drive, so it looks exactly like a student's (INSTRUCTORS.md, "Student images").
set -euo pipefail
python -m trashlab_instructor disable-extensions
