"""``python -m trashlab.grading``: deprecated, use ``python -m trashlab_instructor`` (same commands).

The instructor tooling sits outside the student package: trashlab never imports it, so this old
command runs the new one as a program of its own.
"""

if __name__ == "__main__":
    import subprocess
    import sys
    import warnings

    warnings.warn("`python -m trashlab.grading` is deprecated: run `python -m trashlab_instructor` (same commands)",
                  FutureWarning, stacklevel=1)
    raise SystemExit(subprocess.call([sys.executable, "-m", "trashlab_instructor", *sys.argv[1:]]))
