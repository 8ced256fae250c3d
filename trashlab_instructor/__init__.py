"""Instructor tooling for the trashlab course (nbgrader orchestration); never imported by ``trashlab``.

Students do not need it: it drives nbgrader, which the course runtime does not depend on.
Run it as ``python -m trashlab_instructor COMMAND`` (the deprecated ``python -m trashlab.grading`` runs it).
"""
