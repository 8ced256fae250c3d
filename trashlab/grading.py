"""``python -m trashlab.grading``: the documented instructor command, kept working; the code lives in
``trashlab_instructor`` (instructor tooling, not part of the student runtime)."""

if __name__ == "__main__":
    from trashlab_instructor.grading import main

    raise SystemExit(main())
