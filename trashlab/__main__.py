"""``python -m trashlab``: the same as the ``trashlab`` command."""

from .cli import main

raise SystemExit(main())
