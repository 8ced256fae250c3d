"""Text that a notebook shows like a terminal (:class:`Lines`)."""

from __future__ import annotations



class Lines(list):
    """A list of output lines that displays as the lines themselves (like a terminal), not as a Python list."""

    def __repr__(self) -> str:
        return "\n".join(str(line) for line in self) if self else "(no lines)"

    def _repr_pretty_(self, p, cycle: bool) -> None:  # IPython's display of a cell's value
        p.text(repr(self))

    def __getitem__(self, index):
        got = super().__getitem__(index)
        return Lines(got) if isinstance(index, slice) else got

    def __str__(self) -> str:
        return "\n".join(str(line) for line in self)
