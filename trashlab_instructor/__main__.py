"""``python -m trashlab_instructor``: the same as ``python -m trashlab.grading``."""

from .grading import main

raise SystemExit(main())
