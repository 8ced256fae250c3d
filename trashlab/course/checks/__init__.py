"""Exercise checks: each prints ✔ when an answer is right, or raises :class:`CheckFailed` with a ✘ line.

Graded test cells call these, and so can students while they work. A check never hangs (every
wait is bounded), never shows a traceback wall (in Jupyter a failed check is one red line), and
always says what was expected. Answers are usually functions the student writes, so a check can
call them on the notebook's data and tell apart "not written yet", "raised an error" and "wrong".

    from trashlab import checks
    await checks.check_publish_readings(publish_readings)   # ✔ await publish_readings(nc, 5, 0.1): 5 readings ...
    await checks.check_responder(serve_levels)               # ✘ request '17' on 'trash-report.level': no reply ...

One module per notebook (``broker`` 02, ``simulator`` 03, ``report`` 04, ``cluster`` 05, ``jetstream`` 05b,
``cleanup`` 06, ``rates`` 07, ``fanout`` 08); their checks are re-exported here. What they share is in
three private modules, one way to do each thing:

- ``_answer``: calling the student's function (``require_function``, ``call``, ``answer``: missing,
  not written, not ``async def``, an exception, a hang, a forgotten ``await``: one ✘ line each) and
  ``graded``, the decorator on every check that keeps stderr clean while it runs;
- ``_live``: the check's own private broker, its connections, bounded waits (checks of NATS code
  compare with what that broker carried, never with the student's own output);
- ``_truth``: the server's own view of the student's connection (its monitoring port's ``/connz``).

A graded test cell takes its check module through ``_fresh.reloaded(name)`` (after reloading ``_fresh``
itself): the helpers above, then the check, re-executed from their files, so nothing an answer cell
rebound or monkeypatched in them counts.

Under nbgrader a test cell earns its points when it ends without an error; anything it writes to
stderr, or a value it leaves as the cell's result, would count too, so checks print ✔ to stdout and
return nothing.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd

from ...errors import CheckFailed


def passed(text: str) -> None:
    """Print a ✔ line (and return nothing: a value left in a graded cell would be read as partial credit)."""
    print(f"✔ {text}")


def failed(text: str) -> CheckFailed:
    """The exception a failed check raises: its message is the ✘ line (what was wrong, what to do)."""
    return CheckFailed(f"✘ {text}")


def _short(value: Any, limit: int = 70) -> str:
    if isinstance(value, (pd.DataFrame, pd.Series)):  # one line, not the table's printout
        return f"a {type(value).__name__} of {len(value)} rows"
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def need_data(data: Any, columns: Sequence[str], what: str, run: str) -> pd.DataFrame:
    """``data`` as a DataFrame with ``columns``, or the ✘ line saying which cells to run first
    (a check never shows a library traceback because the notebook's data is missing or empty)."""
    if data is None or data is Ellipsis:
        raise failed(f"there is no {what} yet: {run}")
    if not isinstance(data, pd.DataFrame):
        raise failed(f"the {what} should be a DataFrame, got {_short(data)}: {run}")
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise failed(f"the {what} has no column {', '.join(missing)} (columns: {', '.join(map(str, data.columns))}): "
                     f"{run}")
    return data


def _equal(actual: Any, expected: Any) -> bool:
    """``actual == expected`` for any values, tables included (never 'truth value is ambiguous')."""
    if isinstance(actual, (pd.DataFrame, pd.Series)) or isinstance(expected, (pd.DataFrame, pd.Series)):
        return type(actual) is type(expected) and actual.equals(expected)
    try:
        return bool(actual == expected)
    except (TypeError, ValueError):
        return False


# ----- generic comparisons --------------------------------------------------------------------
def check_equal(actual: Any, expected: Any, what: str, hint: str = "") -> None:
    """✔ if ``actual == expected``, else ✘ showing both (and the hint)."""
    if actual is None or actual is Ellipsis:
        raise failed(f"{what} has no answer yet: write it in the exercise cell and run it")
    if isinstance(actual, bool) != isinstance(expected, bool):
        raise failed(f"{what} is {_short(actual)}, expected {_short(expected)}" + (f": {hint}" if hint else ""))
    if _equal(actual, expected):
        return passed(f"{what} = {_short(actual)}")
    raise failed(f"{what} is {_short(actual)}, expected {_short(expected)}" + (f": {hint}" if hint else ""))


def check_close(actual: Any, expected: float, what: str, tol: float = 1e-6, hint: str = "") -> None:
    """✔ if ``actual`` is a number within ``tol`` of ``expected``, else ✘ showing both."""
    if actual is None or actual is Ellipsis:
        raise failed(f"{what} has no answer yet: write it in the exercise cell and run it")
    try:
        number = float(actual)
    except (TypeError, ValueError):
        raise failed(f"{what} should be a number, got {_short(actual)}") from None  # a ✘ line for the student; the value is in it
    if isinstance(actual, bool) or not math.isfinite(number):
        raise failed(f"{what} should be a finite number, got {_short(actual)}")
    if abs(number - expected) <= tol:
        return passed(f"{what} = {number:.6g}")
    raise failed(f"{what} is {number:.6g}, expected {expected:.6g} (± {tol:g})" + (f": {hint}" if hint else ""))


# calling the student's function (imported after the helpers above, which it uses)
from ._answer import call as call

# the checks of each notebook (imported last: they use the helpers above)
from .broker import check_client_names as check_client_names, check_hello as check_hello
from .simulator import (check_publish_readings as check_publish_readings, check_sim_program as check_sim_program,
                        check_wildcard as check_wildcard)
from .report import (check_latest_levels as check_latest_levels, check_rep_levels as check_rep_levels,
                     check_rep_reports as check_rep_reports, check_rep_unknown as check_rep_unknown,
                     check_requester as check_requester, check_responder as check_responder)
from .cluster import check_outage as check_outage
from .jetstream import (check_follow_levels as check_follow_levels, check_levels_kept as check_levels_kept,
                        check_make_stream as check_make_stream, check_publish_acked as check_publish_acked,
                        check_publish_once as check_publish_once, check_read_acked as check_read_acked,
                        check_replay as check_replay)
from .cleanup import (check_git_commit as check_git_commit, check_rep_drain as check_rep_drain,
                      check_shut_down as check_shut_down, check_sim_stop as check_sim_stop)
from .rates import check_rate as check_rate
from .fanout import (check_queue_member as check_queue_member, check_rep_queue as check_rep_queue,
                     check_rep_queue_answers as check_rep_queue_answers)
