"""nbgrader preprocessors that show graders the rubrics and keep them from students (``nbgrader_config.py``).

- :class:`AddRubricCells` runs last in ``nbgrader autograde``: after each written answer of the *autograded* copy
  it puts a read-only markdown cell with that answer's rubric from ``course/rubrics/<assignment>.md``, which
  nbgrader's formgrader renders under the answer it is grading. The student's submission is not touched.
- :class:`RemoveRubricCells` runs first in ``nbgrader generate_feedback``: the feedback students get is made
  from the autograded copy, without those cells.

Both are named in ``nbgrader_config.py``, so plain ``nbgrader`` commands and the formgrader's own buttons do the
same as ``python -m trashlab_instructor``. This module imports nbconvert: import it only where nbgrader runs.
"""

from __future__ import annotations

from pathlib import Path

from nbconvert.preprocessors import Preprocessor
from nbformat.v4 import new_markdown_cell
from traitlets import Bool, Unicode

from . import rubrics


class AddRubricCells(Preprocessor):
    """Autograde: a read-only rubric cell after each written answer of the autograded notebook."""

    enabled = Bool(True, help="nbconvert runs a preprocessor only when enabled (nbgrader's own default)").tag(config=True)

    folder = Unicode("", help="The folder of <assignment>.md rubric files (course/rubrics); empty: none").tag(config=True)

    def preprocess(self, nb, resources):
        """Add the rubric cells for ``resources['nbgrader']['assignment']``; nothing without a rubric folder."""
        assignment = (resources.get("nbgrader") or {}).get("assignment")
        folder = Path(self.folder) if self.folder else None
        if not assignment or folder is None or not folder.is_dir():
            self.log.info("no rubric folder %r: no rubric cells for graders", self.folder)
            return nb, resources
        path = folder / f"{assignment}.md"
        parsed = rubrics.parse(path.read_text(encoding="utf-8"), path) if path.is_file() else None
        added = rubrics.annotate(nb.cells, parsed,
                                 lambda source, metadata: new_markdown_cell(source, metadata=metadata))
        self.log.info("added %d rubric cell(s) for graders from %s", added, path)
        return nb, resources


class RemoveRubricCells(Preprocessor):
    """Feedback: the rubric cells removed before the student's feedback is rendered."""

    enabled = Bool(True, help="nbconvert runs a preprocessor only when enabled (nbgrader's own default)").tag(config=True)

    def preprocess(self, nb, resources):
        """Drop every rubric cell (``metadata.trashlab``)."""
        removed = rubrics.strip(nb.cells)
        if removed:
            self.log.info("left %d rubric cell(s) out of the feedback", removed)
        return nb, resources
