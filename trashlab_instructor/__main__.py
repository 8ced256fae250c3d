"""``python -m trashlab_instructor``: nbgrader orchestration for the course."""

from .grading import main

raise SystemExit(main())
