# nbgrader configuration for the trashlab course (nbgrader 0.9.x). Run nbgrader from the repository root.
#
#   course/source/<notebook>/<notebook>.ipynb   the instructor version with solutions: the ONE source of truth (committed)
#   notebooks/*.ipynb           the student version, generated from it: python -m trashlab_instructor generate
#   course/release, submitted, autograded, feedback, gradebook.db, exchange: working state, never committed
#
# See INSTRUCTORS.md for the three commands from source to grades.
import os

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "trashlab"
# Absolute, so nbgrader finds the course wherever it is started from.
c.CourseDirectory.root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "course")

# Notebooks start real nats-server processes; a cell waits a few seconds at most, but give slow CI room.
c.Execute.timeout = 120
# nbgrader fails a whole notebook when a cell's output arrives more than iopub_timeout (default 4 s) after
# the cell finished: on a busy 2-core machine the drills' plots can take longer.
c.Execute.iopub_timeout = 30

# Rubrics (course/rubrics/<assignment>.md, INSTRUCTORS.md "Rubrics"): autograding adds a read-only cell with each
# written answer's rubric after it in the *autograded* copy, where the formgrader shows it to the grader; the feedback
# students get is made without those cells. Plain nbgrader commands and the formgrader's buttons do the same.
from nbgrader.converters import Autograde, GenerateFeedback  # noqa: E402 (nbgrader is what loads this file)

c.AddRubricCells.folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "course", "rubrics")
c.Autograde.autograde_preprocessors = [*Autograde.class_traits()["autograde_preprocessors"].default(),
                                       "trashlab_instructor.rubric_cells.AddRubricCells"]
c.GenerateFeedback.preprocessors = ["trashlab_instructor.rubric_cells.RemoveRubricCells",
                                    *GenerateFeedback.class_traits()["preprocessors"].default()]
