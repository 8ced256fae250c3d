"""Rubrics: how to grade each written answer, and the answer to each ungraded question, per notebook.

They live in ``course/rubrics/<assignment>.md`` (never in ``notebooks/``, never in what students get back),
one section per item::

    ## <grade_id> (<N> points)
    Question: <optional: words of the written question, as the cell before the answer asks it>
    Criteria:
    - 1 point: <what the answer must say>
    - 1 point: <...>
    Partial credit: <when to give part of the points>
    Common wrong answer: <a typical wrong answer and why it is wrong>

    ## question: <short-id>
    Question: <the first words of the question as the notebook asks it>
    Answer: <the answer>

A field may go on over several lines (any line that starts no new field or section). Text before the first
``## `` heading is a preface for the reader and ignored.

**Written answers** are the markdown cells of ``course/source/<a>/<a>.ipynb`` with nbgrader ``solution`` and
``grade`` true; each needs a section named by its ``grade_id``, whose heading and criteria add up to the
cell's ``points``.

**Ungraded questions** are found in the source's markdown cells (solution cells aside) in two shapes:

- the items of a numbered list (``1. ...``) under a ``Check your understanding`` heading (``## ...`` or a line
  starting ``**Check your understanding``), up to the next heading;
- a paragraph starting with a bold ``**Question ...**`` label, anywhere.

A question whose label says it is graded (``*(written, 2 points)*``, ``**Question 1 (2 points, ...)**``: a
parenthesis that says ``written`` or ``N point(s)``) is a written answer's prompt, covered by its grade_id.
A written answer's section may give ``Question:`` too (words of its question, in the markdown cell just before the
answer cell): then a reworded written question is reported, so its rubric is looked at again. Every other question needs a ``## question:`` section whose ``Question:`` is the first words (at least
:data:`MIN_WORDS`) of the question's text after its label, compared without ``*``/``_``/backtick marks, case, line
breaks or punctuation around words. Each question must be matched by exactly one section, and each section by exactly one question, so a
reworded question shows up as both unanswered and stale.

Graders see a written answer's rubric in nbgrader's formgrader: ``nbgrader_config.py`` adds
:class:`trashlab_instructor.rubric_cells.AddRubricCells` to autograding (a read-only markdown cell after each
written answer of the *autograded* copy, which the formgrader renders) and
:class:`~trashlab_instructor.rubric_cells.RemoveRubricCells` to ``generate_feedback`` (students never get it).
``python -m trashlab_instructor rubrics [ASSIGNMENT]`` prints them; ``--check`` lists what is missing;
``--refresh`` rewrites the rubric cells of notebooks already autograded (after a rubric changed).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

#: Where the rubric files live, relative to the repository root.
RUBRICS = Path("course") / "rubrics"
#: The fewest words a ``Question:`` line may give to identify its question.
MIN_WORDS = 3
#: The metadata key marking a rubric cell added to an autograded notebook (``cell.metadata.trashlab.rubric``).
CELL_KEY = "trashlab"
#: Rubric texts shorter than this are not searched for in the student notebooks (a few words may be shared).
LEAK_MIN_CHARS = 40
#: The first words of every rubric cell shown to graders (also searched for in the student notebooks).
BANNER = "Rubric for graders"

_SECTION = re.compile(r"^##\s+(?P<rest>.*?)\s*$")
_WRITTEN = re.compile(r"^(?P<id>[A-Za-z0-9][A-Za-z0-9_.-]*)\s+\((?P<pts>\d+(?:\.\d+)?)\s+points?\)$")
_QUESTION = re.compile(r"^question:\s*(?P<id>[A-Za-z0-9][A-Za-z0-9_.-]*)$", re.IGNORECASE)
_FIELD = re.compile(r"^(?P<name>Criteria|Partial credit|Common wrong answer|Question|Answer):\s*(?P<text>.*)$")
_CRITERION = re.compile(r"^-\s+(?P<pts>\d+(?:\.\d+)?)\s+points?:\s*(?P<text>\S.*)$")
_CHECK_HEADING = re.compile(r"^\s*(?:#{1,6}\s+|\*\*)check your understanding\b", re.IGNORECASE)
_HEADING = re.compile(r"^#{1,6}\s")
_NUMBERED = re.compile(r"^(?P<num>\d+)\.\s+(?P<text>.*)$")
_BOLD_QUESTION = re.compile(r"^\*\*(?P<label>Question\b[^*]*)\*\*\s*(?P<text>.*)$")
_LEADING_LABEL = re.compile(r"^(?:\*\*(?P<bold>[^*]+)\*\*|\*(?P<italic>\([^*]+\))\*|(?P<plain>\([^)]*\)))\s*")
_GRADED_LABEL = re.compile(r"\(\s*(?:written\b|[^)]*\b\d+(?:\.\d+)?\s+points?\b)[^)]*\)", re.IGNORECASE)


class RubricError(Exception):
    """A rubric file cannot be read (missing folder, unreadable notebook)."""


@dataclass(frozen=True)
class Criterion:
    """One line of a rubric's criteria: its points and what the answer must say."""

    points: float
    text: str


@dataclass
class Rubric:
    """How to grade one written answer (``## <grade_id> (<N> points)``)."""

    grade_id: str
    points: float
    line: int
    criteria: List[Criterion] = field(default_factory=list)
    partial: str = ""
    wrong: str = ""
    question: str = ""  # optional: the first words of the written question, checked against the notebook

    def texts(self) -> List[str]:
        """Everything a grader reads and a student must not: criteria, partial credit, common wrong answer."""
        return [c.text for c in self.criteria] + [self.partial, self.wrong]

    def markdown(self) -> str:
        """The rubric as the markdown a grader reads beside the answer."""
        lines = [f"**{BANNER}: `{self.grade_id}` ({self.points:g} points)** "
                 "(added when autograding; not in the student's notebook or feedback)", ""]
        lines += [f"- **{c.points:g} point{'' if c.points == 1 else 's'}:** {c.text}" for c in self.criteria]
        lines += ["", f"**Partial credit:** {self.partial}", "", f"**Common wrong answer:** {self.wrong}"]
        return "\n".join(lines)


@dataclass
class Answer:
    """The answer to one ungraded question (``## question: <short-id>``)."""

    short_id: str
    line: int
    question: str = ""
    answer: str = ""

    def markdown(self, asked: str = "") -> str:
        """The question (as ``asked`` in the notebook, else its first words) and its answer, as markdown."""
        return f"**Question ({self.short_id}):** {asked or self.question + ' …'}\n\n**Answer:** {self.answer}"


@dataclass
class RubricFile:
    """A parsed ``course/rubrics/<assignment>.md``: its rubrics, its answers, and what is wrong with it."""

    path: Path
    rubrics: Dict[str, Rubric] = field(default_factory=dict)
    answers: Dict[str, Answer] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class Written:
    """A written answer cell of a source notebook: ``grade_id``, points, cell index."""

    grade_id: str
    points: float
    cell: int


@dataclass(frozen=True)
class Question:
    """An ungraded question of a source notebook: its text after the label, and the cell index."""

    text: str
    cell: int


def _join(parts: Iterable[str]) -> str:
    return " ".join(p.strip() for p in parts if p.strip())


def parse(text: str, path: Path) -> RubricFile:
    """Parse a rubric file's text; format problems are collected in ``.problems``, one readable line each."""
    result = RubricFile(Path(path))
    name = Path(path).as_posix()
    current: Optional[object] = None
    field_name: Optional[str] = None
    buffer: Dict[str, List[str]] = {}
    criteria: List[Tuple[float, List[str]]] = []

    def close() -> None:
        nonlocal current, field_name, buffer, criteria
        if isinstance(current, Rubric):
            current.criteria = [Criterion(p, _join(words)) for p, words in criteria]
            current.partial = _join(buffer.get("Partial credit", []))
            current.wrong = _join(buffer.get("Common wrong answer", []))
            current.question = _join(buffer.get("Question", []))
            where = f"{name}:{current.line}: section {current.grade_id}"
            if "Criteria" not in buffer:
                result.problems.append(f"{where} has no 'Criteria:' line: add one, then '- 1 point: ...' lines")
            elif not current.criteria:
                result.problems.append(f"{where} lists no criteria: add lines like '- 1 point: <what it must say>'")
            if not current.partial:
                result.problems.append(f"{where} has no 'Partial credit: ...' line: say when to give part of the points")
            if not current.wrong:
                result.problems.append(f"{where} has no 'Common wrong answer: ...' line: give a typical wrong "
                                       "answer and why it is wrong")
            if current.criteria and abs(sum(c.points for c in current.criteria) - current.points) > 1e-9:
                result.problems.append(f"{where}: its criteria add up to {sum(c.points for c in current.criteria):g} "
                                       f"points, its heading says {current.points:g}: make them agree")
            if "Answer" in buffer:
                result.problems.append(f"{where} has an 'Answer:' line: that belongs in a '## question: ...' section")
            if "Question" in buffer and len(_words(current.question)) < MIN_WORDS:
                result.problems.append(f"{where}: 'Question: {current.question}' is too short to identify the "
                                       f"written question: give at least {MIN_WORDS} of its first words")
        elif isinstance(current, Answer):
            current.question = _join(buffer.get("Question", []))
            current.answer = _join(buffer.get("Answer", []))
            where = f"{name}:{current.line}: question {current.short_id}"
            if not current.question:
                result.problems.append(f"{where} has no 'Question: ...' line: give the first words of the question")
            elif len(_words(current.question)) < MIN_WORDS:
                result.problems.append(f"{where}: 'Question: {current.question}' is too short to identify the "
                                       f"question: give at least {MIN_WORDS} of its first words")
            if not current.answer:
                result.problems.append(f"{where} has no 'Answer: ...' line: write the answer")
            for other in ("Criteria", "Partial credit", "Common wrong answer"):
                if other in buffer:
                    result.problems.append(f"{where} has a '{other}:' line: that belongs in a written answer's section")
        current, field_name, buffer, criteria = None, None, {}, []

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        heading = _SECTION.match(line)
        if heading:
            close()
            rest = heading.group("rest")
            written, question = _WRITTEN.match(rest), _QUESTION.match(rest)
            if written:
                gid = written.group("id")
                if gid in result.rubrics:
                    result.problems.append(f"{name}:{number}: a second section for {gid}: keep one")
                current = result.rubrics[gid] = Rubric(gid, float(written.group("pts")), number)
            elif question:
                qid = question.group("id")
                if qid in result.answers:
                    result.problems.append(f"{name}:{number}: a second 'question: {qid}' section: give each its own id")
                current = result.answers[qid] = Answer(qid, number)
            else:
                result.problems.append(f"{name}:{number}: heading '## {rest}' is neither '## <grade_id> (<N> points)' "
                                       "nor '## question: <short-id>'")
            continue
        if current is None or not line.strip():
            continue
        found = _FIELD.match(line.strip())
        if found:
            field_name = found.group("name")
            buffer.setdefault(field_name, [])
            if found.group("text"):
                buffer[field_name].append(found.group("text"))
            continue
        item = _CRITERION.match(line.strip())
        if field_name == "Criteria" and item:
            criteria.append((float(item.group("pts")), [item.group("text")]))
        elif field_name == "Criteria" and line.strip().startswith("-"):
            result.problems.append(f"{name}:{number}: criterion '{line.strip()}' does not start with "
                                   "'- <N> point(s): '")
        elif field_name == "Criteria" and criteria:
            criteria[-1][1].append(line)
        elif field_name is not None:
            buffer[field_name].append(line)
        else:
            result.problems.append(f"{name}:{number}: '{line.strip()[:60]}' belongs to no field: start it with "
                                   "'Criteria:', 'Partial credit:', 'Common wrong answer:', 'Question:' or 'Answer:'")
    close()
    return result


def _words(text: str) -> List[str]:
    """Words of a text compared loosely: no markdown emphasis or code marks (``*``, ``_``, backticks), no case, any
    spacing, no punctuation around a word."""
    words = (w.strip(".,;:!?\"'()[]") for w in re.sub(r"[*_`]", "", text).lower().split())
    return [w for w in words if w]


def _cells(notebook: Path) -> List[dict]:
    try:
        return json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError) as e:
        raise RubricError(f"cannot read {notebook}: {e}") from e


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _nbgrader(cell: dict) -> dict:
    return (cell.get("metadata") or {}).get("nbgrader") or {}


def written_answers(notebook: Path) -> List[Written]:
    """The hand-graded answers of a source notebook: markdown cells with nbgrader ``solution`` and ``grade``."""
    return [Written(_nbgrader(c)["grade_id"], float(_nbgrader(c).get("points", 0)), i)
            for i, c in enumerate(_cells(notebook))
            if c.get("cell_type") == "markdown" and _nbgrader(c).get("solution") and _nbgrader(c).get("grade")]


def _paragraph_items(lines: Sequence[str]) -> List[List[str]]:
    """Split markdown lines into numbered-list items and paragraphs (each a list of its lines)."""
    items: List[List[str]] = []
    current: Optional[List[str]] = None
    for line in lines:
        if not line.strip():
            current = None
        elif _NUMBERED.match(line) or _BOLD_QUESTION.match(line.strip()):
            current = [line.strip()]
            items.append(current)
        elif current is not None and (line.startswith((" ", "\t")) or not _HEADING.match(line)):
            current.append(line.strip())
        else:
            current = [line.strip()]
            items.append(current)
    return items


def _question_of(item: List[str], in_check: bool) -> Optional[Tuple[str, bool]]:
    """``(text after the label, graded?)`` when an item is a question, else None."""
    first = item[0]
    bold = _BOLD_QUESTION.match(first)
    numbered = _NUMBERED.match(first)
    if bold:
        label, rest = bold.group("label"), bold.group("text")
    elif numbered and in_check:
        rest = numbered.group("text")
        lead = _LEADING_LABEL.match(rest)
        label = ""
        if lead:
            label = lead.group("bold") or lead.group("italic") or lead.group("plain") or ""
            rest = rest[lead.end():]
    else:
        return None
    text = _join([rest, *item[1:]])
    return text, bool(_GRADED_LABEL.search(label))


def questions(notebook: Path) -> List[Question]:
    """The ungraded questions posed to the student in a source notebook (see the module's docstring)."""
    return [q for q, graded in _questions(notebook) if not graded]


def _prompt(notebook: Path, answer_cell: int) -> Tuple[int, str]:
    """``(index, text)`` of the markdown cell just before a written answer: where its question is asked."""
    cells = _cells(notebook)
    for i in range(answer_cell - 1, -1, -1):
        if cells[i].get("cell_type") == "markdown" and not _nbgrader(cells[i]).get("solution"):
            return i, _source(cells[i])
    return -1, ""


def _contains(words: List[str], part: List[str]) -> bool:
    """Whether ``part`` occurs in ``words`` as a run of consecutive words."""
    n = len(part)
    return n > 0 and any(words[i:i + n] == part for i in range(len(words) - n + 1))


def _questions(notebook: Path) -> List[Tuple[Question, bool]]:
    found = []
    for i, cell in enumerate(_cells(notebook)):
        if cell.get("cell_type") != "markdown" or _nbgrader(cell).get("solution"):
            continue
        lines = _source(cell).splitlines()
        in_check = False
        section: List[str] = []
        blocks: List[Tuple[bool, List[str]]] = []
        for line in lines:
            if _HEADING.match(line) or _CHECK_HEADING.match(line):
                blocks.append((in_check, section))
                in_check, section = bool(_CHECK_HEADING.match(line)), []
            else:
                section.append(line)
        blocks.append((in_check, section))
        for check, block in blocks:
            for item in _paragraph_items(block):
                q = _question_of(item, check)
                if q:
                    found.append((Question(q[0], i), q[1]))
    return found


def _matches(answer: "Answer | Rubric", question: Question) -> bool:
    want, have = _words(answer.question), _words(question.text)
    return len(want) >= MIN_WORDS and have[:len(want)] == want


def source_notebooks(root: Path) -> Dict[str, Path]:
    """``{assignment: course/source/<a>/<a>.ipynb}`` for every assignment of the course at ``root``."""
    source = Path(root) / "course" / "source"
    if not source.is_dir():
        return {}
    return {p.name: p / f"{p.name}.ipynb" for p in sorted(source.iterdir()) if (p / f"{p.name}.ipynb").is_file()}


def load(root: Path, assignment: str) -> Optional[RubricFile]:
    """The parsed rubric file of an assignment, or None when it has none."""
    path = Path(root) / RUBRICS / f"{assignment}.md"
    if not path.is_file():
        return None
    return parse(path.read_text(encoding="utf-8"), path.relative_to(root) if path.is_absolute() else path)


def coverage_problems(root: Path) -> List[str]:
    """Everything missing or stale between the source notebooks and their rubric files, one line each."""
    root = Path(root)
    problems: List[str] = []
    notebooks = source_notebooks(root)
    folder = root / RUBRICS
    if folder.is_dir():
        for md in sorted(folder.glob("*.md")):
            if md.stem not in notebooks and md.name.lower() != "readme.md":
                problems.append(f"{RUBRICS.as_posix()}/{md.name}: no notebook course/source/{md.stem}/{md.stem}.ipynb: "
                                "rename the file after its assignment or remove it")
    for name, nb in notebooks.items():
        written, asked = written_answers(nb), questions(nb)
        rubric = load(root, name)
        where = f"{RUBRICS.as_posix()}/{name}.md"
        if rubric is None:
            if written or asked:
                problems.append(f"{where} is missing: {len(written)} written answer(s) "
                                f"({', '.join(w.grade_id for w in written) or 'none'}) and {len(asked)} ungraded "
                                f"question(s) of course/source/{name}/{name}.ipynb need their sections")
            continue
        problems += rubric.problems
        ids = {w.grade_id: w for w in written}
        for w in written:
            section = rubric.rubrics.get(w.grade_id)
            if section is None:
                problems.append(f"{where}: no section '## {w.grade_id} ({w.points:g} points)' for the written answer "
                                f"in cell {w.cell} of {name}.ipynb")
            elif abs(section.points - w.points) > 1e-9:
                problems.append(f"{where}:{section.line}: {w.grade_id} says {section.points:g} points, the notebook's "
                                f"cell {w.cell} gives {w.points:g}: make the heading and criteria add up to {w.points:g}")
            if section is not None and section.question:
                cell, text = _prompt(nb, w.cell)
                if not _contains(_words(text), _words(section.question)):
                    problems.append(f"{where}:{section.line}: {w.grade_id}'s 'Question: {_preview(section.question)}' "
                                    f"is not in the cell before the answer (cell {cell}: \"{_preview(_flat(text))}\"): "
                                    "the written question changed, update its rubric")
        for gid, section in rubric.rubrics.items():
            if gid not in ids:
                problems.append(f"{where}:{section.line}: '## {gid}' names no written answer of {name}.ipynb "
                                f"(its written answers: {', '.join(ids) or 'none'}): rename or remove the section")
        matched: Dict[str, List[Question]] = {qid: [] for qid in rubric.answers}
        for q in asked:
            hits = [a for a in rubric.answers.values() if _matches(a, q)]
            if not hits:
                problems.append(f"{where}: no '## question: ...' section answers the question in cell {q.cell} of "
                                f"{name}.ipynb: \"{_preview(q.text)}\" (its 'Question:' must be its first words)")
            elif len(hits) > 1:
                problems.append(f"{where}: sections {', '.join(a.short_id for a in hits)} all match the question in "
                                f"cell {q.cell}: \"{_preview(q.text)}\": give more of its first words")
            for a in hits:
                matched[a.short_id].append(q)
        for qid, qs in matched.items():
            a = rubric.answers[qid]
            if not qs and a.question:
                problems.append(f"{where}:{a.line}: 'question: {qid}' matches no ungraded question of {name}.ipynb "
                                f"(\"{_preview(a.question)}\"): the question changed or is gone: update or remove it")
            elif len(qs) > 1:
                problems.append(f"{where}:{a.line}: 'question: {qid}' matches {len(qs)} questions (cells "
                                f"{', '.join(str(q.cell) for q in qs)}): give more of its first words")
    return problems


def _preview(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def _flat(text: str) -> str:
    return " ".join(text.split())


def secret_texts(root: Path) -> Dict[str, str]:
    """``{text: where}``: every rubric text long enough to be searched for in what students get."""
    out: Dict[str, str] = {}
    for name in source_notebooks(root):
        rubric = load(root, name)
        if rubric is None:
            continue
        for r in rubric.rubrics.values():
            for t in r.texts():
                if len(_flat(t)) >= LEAK_MIN_CHARS:
                    out[_flat(t)] = f"{name}.md, {r.grade_id}"
        for a in rubric.answers.values():
            if len(_flat(a.answer)) >= LEAK_MIN_CHARS:
                out[_flat(a.answer)] = f"{name}.md, question {a.short_id}"
    return out


def student_copies(root: Path) -> List[Path]:
    """The notebooks students get: ``notebooks/*.ipynb`` and nbgrader's ``course/release/*/*.ipynb`` (if generated)."""
    root = Path(root)
    return sorted([*(root / "notebooks").glob("*.ipynb"), *(root / "course" / "release").glob("*/*.ipynb")])


def leaks(root: Path, places: Optional[Sequence[Path]] = None) -> List[str]:
    """Rubric text (or a rubric cell) found in the students' notebooks, one line per finding."""
    root = Path(root)
    secrets = secret_texts(root)
    found = []
    for nb in places if places is not None else student_copies(root):
        try:
            cells = _cells(nb)
        except RubricError as e:
            found.append(str(e))
            continue
        shown = nb.relative_to(root) if nb.is_relative_to(root) else nb
        for i, cell in enumerate(cells):
            text = _flat(_source(cell))
            if CELL_KEY in (cell.get("metadata") or {}) or BANNER in text:
                found.append(f"{shown}: cell {i} is a rubric cell ({BANNER}): students must never get it")
            for secret, where in secrets.items():
                if secret in text:
                    found.append(f"{shown}: cell {i} contains rubric text from {where}: \"{_preview(secret)}\"")
    return found


def describe(root: Path, assignment: str) -> str:
    """An assignment's rubrics and answers as markdown, in the notebook's order (what ``rubrics`` prints)."""
    root = Path(root)
    notebooks = source_notebooks(root)
    if assignment not in notebooks:
        raise RubricError(f"no assignment {assignment!r}: choose one of {', '.join(notebooks)}")
    rubric = load(root, assignment)
    out = [f"# {assignment}", ""]
    if rubric is None:
        return "\n".join(out + [f"(no {RUBRICS.as_posix()}/{assignment}.md)", ""])
    for w in written_answers(notebooks[assignment]):
        section = rubric.rubrics.get(w.grade_id)
        out += [section.markdown() if section else f"**{w.grade_id}: no rubric yet**", ""]
    for q in questions(notebooks[assignment]):
        hits = [a for a in rubric.answers.values() if _matches(a, q)]
        out += [hits[0].markdown(q.text) if hits else f"**No answer yet for:** {q.text}", ""]
    for line in rubric.problems:
        out += [f"(problem: {line})"]
    return "\n".join(out)


def annotate(cells: list, rubric: Optional[RubricFile], new_cell) -> int:
    """Put a rubric cell after each written answer in a notebook's cell list (old rubric cells removed first);
    ``new_cell(source, metadata)`` makes a markdown cell. Returns how many were added."""
    cells[:] = [c for c in cells if CELL_KEY not in (c.get("metadata") or {})]
    added = 0
    for i in range(len(cells) - 1, -1, -1):
        meta = _nbgrader(cells[i])
        if cells[i].get("cell_type") != "markdown" or not (meta.get("solution") and meta.get("grade")):
            continue
        gid = meta.get("grade_id", "")
        section = rubric.rubrics.get(gid) if rubric else None
        text = section.markdown() if section else (f"**{BANNER}: `{gid}`**: none found in "
                                                   f"`{RUBRICS.as_posix()}/<assignment>.md`: add one")
        cells.insert(i + 1, new_cell(text, {CELL_KEY: {"rubric": gid}, "editable": False, "deletable": False}))
        added += 1
    return added


def strip(cells: list) -> int:
    """Remove the rubric cells from a notebook's cell list; how many there were."""
    before = len(cells)
    cells[:] = [c for c in cells if CELL_KEY not in (c.get("metadata") or {})]
    return before - len(cells)


def refresh(root: Path) -> List[Path]:
    """Rewrite the rubric cells of every autograded notebook from the rubric files as they are now (no autograding
    again); the autograded notebooks changed."""
    import nbformat

    root = Path(root)
    changed: List[Path] = []
    if not (root / RUBRICS).is_dir():
        return changed
    for nb_path in sorted((root / "course" / "autograded").glob("*/*/*.ipynb")):
        assignment = nb_path.parent.name
        if nb_path.stem != assignment:
            continue
        nb = nbformat.read(nb_path, as_version=4)
        before = [c.get("source") for c in nb.cells]
        annotate(nb.cells, load(root, assignment),
                 lambda source, metadata: nbformat.v4.new_markdown_cell(source, metadata=metadata))
        if [c.get("source") for c in nb.cells] != before:
            mode = nb_path.stat().st_mode
            nb_path.chmod(mode | 0o200)  # nbgrader leaves autograded notebooks read-only (444)
            try:
                nbformat.write(nb, nb_path)
            finally:
                nb_path.chmod(mode)
            changed.append(nb_path)
    return changed


def command(assignment: Optional[str], check: bool, root: Path, refresh_cells: bool = False) -> int:
    """``python -m trashlab_instructor rubrics [ASSIGNMENT] [--check | --refresh]``: print them, list what is
    missing, or rewrite the rubric cells of the autograded notebooks."""
    if refresh_cells:
        changed = refresh(root)
        for path in changed:
            print(f"rubrics updated in {path.relative_to(root)}")
        print(f"{len(changed)} autograded notebook(s) updated" if changed else "the autograded notebooks' rubrics "
              "were already up to date")
        return 0
    if check:
        problems = coverage_problems(root) + leaks(root)
        for line in problems:
            print(line)
        print(f"{len(problems)} problem(s) in {RUBRICS.as_posix()}" if problems else
              "every written answer has its rubric and every ungraded question its answer; none reaches students")
        return 1 if problems else 0
    names = [assignment] if assignment else list(source_notebooks(root))
    try:
        sys.stdout.write("\n".join(describe(root, n) for n in names) + "\n")
    except RubricError as e:
        print(f"RubricError: {e}", file=sys.stderr)
        return 1
    return 0
