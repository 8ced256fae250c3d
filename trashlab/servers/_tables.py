"""A table of command lines that shows every character: pandas cuts cells at 50 characters, a command cut short is useless.

:class:`FullTable` is a plain pandas DataFrame (columns, ``tolist()``, ``iloc`` work as usual); only its
display differs: in Jupyter, left-aligned cells that wrap at spaces, in monospace, nothing cut; as text,
every cell in full.
"""

from __future__ import annotations

import html

import pandas as pd

_STYLE = ("border-collapse:collapse;table-layout:auto;max-width:100%",
          "text-align:left;vertical-align:top;white-space:pre-wrap;overflow-wrap:anywhere;"
          "font-family:monospace;padding:2px 8px;border-bottom:1px solid #ddd")


class FullTable(pd.DataFrame):
    """A DataFrame shown in full: no cell is cut short, long cells wrap (the docker commands of notebooks 01-06)."""

    @property
    def _constructor(self):  # a slice or copy of it shows in full too
        return FullTable

    def _repr_html_(self) -> str:
        table, cell = _STYLE
        head = "".join(f'<th style="{cell}">{html.escape(str(c))}</th>' for c in self.columns)
        rows = "".join("<tr>" + "".join(f'<td style="{cell}">{html.escape(str(v))}</td>' for v in row) + "</tr>"
                       for row in self.itertuples(index=False))
        return f'<table class="trashlab-full" style="{table}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", None, "display.width", 0, "display.max_rows", None):
            return self.to_string(index=False)

    def to_text(self) -> str:
        """Every row, every cell in full, as plain text (what ``print`` shows)."""
        return repr(self)

    __str__ = __repr__
