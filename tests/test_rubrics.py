"""Rubrics (course/rubrics/<assignment>.md): every written answer has one, every ungraded question its answer,
students never see them, graders do (in nbgrader's formgrader), and the feedback students get leaves them out.

The quick tests read the course as it is (whatever notebooks 01-09 hold today) and prove on a small course of their
own that each kind of defect is reported. ``test_formgrader_shows_the_rubric_and_feedback_does_not`` (tier course)
autogrades a real submission with nbgrader and reads the formgrader's page over HTTP and in headless Chromium.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from pathlib import Path

import pytest

from sessions import formgrader
from trashlab_instructor import grading, rubrics

REPO = Path(__file__).resolve().parent.parent


# ----- the course as it is ---------------------------------------------------------------------
@pytest.mark.quick
def test_every_written_answer_and_ungraded_question_has_its_rubric():
    problems = rubrics.coverage_problems(REPO)
    assert not problems, (f"{len(problems)} rubric problem(s) (format: trashlab_instructor/rubrics.py; list them with "
                          "`python -m trashlab_instructor rubrics --check`):\n" + "\n".join(problems))


@pytest.mark.quick
def test_the_course_has_rubrics_to_check():
    """The checks above see the written answers and questions: a parser that found none would pass anything."""
    notebooks = rubrics.source_notebooks(REPO)
    written = {n: rubrics.written_answers(nb) for n, nb in notebooks.items()}
    asked = {n: rubrics.questions(nb) for n, nb in notebooks.items()}
    assert sum(map(len, written.values())) >= 8, written
    assert sum(map(len, asked.values())) >= 8, {n: [q.text[:40] for q in qs] for n, qs in asked.items()}
    for name in notebooks:
        rubric = rubrics.load(REPO, name)
        if rubric is not None:
            assert set(rubric.rubrics) == {w.grade_id for w in written[name]}, name


@pytest.mark.quick
def test_no_rubric_text_reaches_students():
    """Neither notebooks/ nor nbgrader's release (when generated) holds a rubric cell or a rubric's text."""
    assert rubrics.secret_texts(REPO), "no rubric text found to look for"
    found = rubrics.leaks(REPO)
    assert not found, "rubric text in what students get:\n" + "\n".join(found)


@pytest.mark.quick
def test_rubrics_command_prints_every_section(capsys):
    name = next(n for n in rubrics.source_notebooks(REPO) if rubrics.load(REPO, n))
    assert grading.main(["rubrics", name]) == 0
    out = capsys.readouterr().out
    rubric = rubrics.load(REPO, name)
    assert rubric is not None
    for gid, section in rubric.rubrics.items():
        assert gid in out and section.criteria[0].text in out and section.wrong in out, out
    for answer in rubric.answers.values():
        assert answer.answer in out, out
    assert grading.main(["rubrics", "--check"]) == 0
    assert grading.main(["rubrics", "no-such-notebook"]) == 1
    assert "no assignment 'no-such-notebook'" in capsys.readouterr().err


# ----- a small course of our own: each defect is reported ---------------------------------------
def _cell(kind: str, source: str, **nbgrader) -> dict:
    cell = {"cell_type": kind, "metadata": {"nbgrader": nbgrader} if nbgrader else {}, "source": source}
    if kind == "code":
        cell.update(outputs=[], execution_count=None)
    return cell


QUESTIONS = """## Check your understanding

1. Why does the broker forget a message
   nobody subscribed to?
2. *(written, 2 points)* Explain at-most-once delivery.
"""
EXTRA = "**Question 3 (not graded).** Which subject catches\nevery district's readings?"
WRITTEN = "### BEGIN SOLUTION\nThe example answer.\n### END SOLUTION"
GOOD = """# Rubrics: demo

## why-lost (2 points)
Question: Explain at-most-once delivery.
Criteria:
- 1 point: says that core NATS stores nothing for a subscriber that is not there
- 1 point: names JetStream as what keeps messages
  for absent consumers
Partial credit: 1 point for either half.
Common wrong answer: "the broker queues it until someone subscribes": core NATS keeps nothing.

## question: forget
Question: Why does the broker forget
Answer: It delivers each message to the subscriptions present when it arrives and keeps nothing afterwards.

## question: wildcard
Question: Which subject catches every district's
Answer: trash.*.level, where the star stands for exactly one token of the subject.
"""


def _course(tmp_path: Path, rubric: "str | None" = GOOD, points: float = 2, extra: str = EXTRA,
            questions: str = QUESTIONS) -> Path:
    root = tmp_path / "course-root"
    folder = root / "course" / "source" / "demo"
    folder.mkdir(parents=True)
    cells = [_cell("markdown", "# Demo"), _cell("markdown", questions),
             _cell("markdown", WRITTEN, solution=True, grade=True, locked=False, points=points, grade_id="why-lost",
                   schema_version=3),
             _cell("markdown", extra)]
    (folder / "demo.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                                   "nbformat_minor": 5}))
    (root / "notebooks").mkdir()
    student = [dict(c, source="YOUR ANSWER HERE") if c["metadata"].get("nbgrader") else c for c in cells]
    (root / "notebooks" / "demo.ipynb").write_text(json.dumps({"cells": student, "metadata": {}, "nbformat": 4,
                                                               "nbformat_minor": 5}))
    if rubric is not None:
        (root / rubrics.RUBRICS).mkdir(parents=True)
        (root / rubrics.RUBRICS / "demo.md").write_text(rubric)
    return root


@pytest.mark.quick
def test_a_complete_rubric_file_passes(tmp_path):
    root = _course(tmp_path)
    assert rubrics.coverage_problems(root) == [] and rubrics.leaks(root) == []
    found = rubrics.questions(root / "course" / "source" / "demo" / "demo.ipynb")
    assert [q.text for q in found] == ["Why does the broker forget a message nobody subscribed to?",
                                       "Which subject catches every district's readings?"], found
    parsed = rubrics.load(root, "demo")
    assert parsed is not None
    section = parsed.rubrics["why-lost"]
    assert [c.points for c in section.criteria] == [1, 1]
    assert section.criteria[1].text == "names JetStream as what keeps messages for absent consumers"


DEFECTS = {
    "no rubric file": (None, {}, r"demo\.md is missing: 1 written answer\(s\) \(why-lost\) and 2 ungraded"),
    "no section for a written answer": (GOOD.replace("## why-lost (2 points)", "## why-gone (2 points)"), {},
                                        r"no section '## why-lost \(2 points\)'.*cell 2 of demo\.ipynb"),
    "a section naming no grade_id": (GOOD.replace("## why-lost (2 points)", "## why-gone (2 points)"), {},
                                     r"'## why-gone' names no written answer of demo\.ipynb"),
    "criteria not adding up": (GOOD.replace("- 1 point: names", "- 2 points: names"), {},
                               r"criteria add up to 3 points, its heading says 2"),
    "points not the cell's": (GOOD, {"points": 3}, r"why-lost says 2 points, the notebook's cell 2 gives 3"),
    "no criteria": (re.sub(r"Criteria:\n(- .*\n(  .*\n)?)+", "", GOOD), {}, r"has no 'Criteria:' line"),
    "no criterion lines": (re.sub(r"(Criteria:\n)(- .*\n(  .*\n)?)+", r"\1", GOOD), {}, r"lists no criteria"),
    "no partial credit": (GOOD.replace("Partial credit: 1 point for either half.\n", ""), {},
                          r"no 'Partial credit: \.\.\.' line"),
    "no common wrong answer": (re.sub(r"Common wrong answer: .*\n", "", GOOD), {},
                               r"no 'Common wrong answer: \.\.\.' line"),
    "a malformed criterion": (GOOD.replace("- 1 point: says", "- one point: says"), {},
                              r"does not start with '- <N> point\(s\): '"),
    "an unanswered question": (GOOD.replace("Question: Which subject catches every district's",
                                            "Question: Which subject catches every street's"), {},
                               r"no '## question: \.\.\.' section answers the question in cell 3"),
    "a stale answer": (GOOD.replace("Question: Why does the broker forget", "Question: Why does the server forget"),
                       {}, r"'question: forget' matches no ungraded question"),
    "a reworded question": (GOOD, {"extra": "**Question 3 (not graded).** Which stream keeps readings?"},
                            r"'question: wildcard' matches no ungraded question"),
    "an answer too short to identify": (GOOD.replace("Question: Why does the broker forget", "Question: Why"), {},
                                        r"'Question: Why' is too short"),
    "(no defect) an answer starting on the next line": (GOOD.replace("Answer: trash.*.level, where", "Answer:\nWhere"),
                                                        {}, None),
    "an empty answer": (re.sub(r"Answer: trash.*\n", "", GOOD), {}, r"question wildcard has no 'Answer: \.\.\.' line"),
    "a reworded written question": (GOOD, {"questions": QUESTIONS.replace("Explain at-most-once delivery",
                                                                        "Explain at-least-once delivery")},
                                    r"why-lost's 'Question: Explain at-most-once delivery\.' is not in the cell before "
                                    r"the answer \(cell 1: \"## Check your understanding"),
    "(no defect) a written section without Question:": (GOOD.replace("Question: Explain at-most-once delivery.\n", ""),
                                                        {"questions": QUESTIONS.replace("Explain", "Describe")}, None),
    "an answer in a written section": (GOOD.replace("Partial credit:", "Answer: x\nPartial credit:"), {},
                                       r"section why-lost has an 'Answer:' line"),
    "an unknown heading": (GOOD + "\n## Notes\nsomething\n", {}, r"heading '## Notes' is neither"),
    "a duplicated section": (GOOD + "\n## why-lost (2 points)\nCriteria:\n- 2 points: x\nPartial credit: y\n"
                             "Common wrong answer: z\n", {}, r"a second section for why-lost"),
}


@pytest.mark.quick
@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_is_reported(tmp_path, defect):
    text, options, expected = DEFECTS[defect]
    root = _course(tmp_path, text, **options)
    problems = rubrics.coverage_problems(root)
    if expected is None:  # an answer that goes on over the next line is still an answer
        assert problems == [], problems
        return
    assert any(re.search(expected, p) for p in problems), f"expected /{expected}/ among:\n" + "\n".join(problems)


@pytest.mark.quick
def test_rubric_text_in_a_student_notebook_is_reported(tmp_path):
    root = _course(tmp_path)
    nb = root / "notebooks" / "demo.ipynb"
    data = json.loads(nb.read_text())
    data["cells"].append(_cell("markdown", "Hint: It delivers each message to the subscriptions present when it\n"
                                           "arrives and keeps nothing afterwards."))
    nb.write_text(json.dumps(data))
    found = rubrics.leaks(root)
    assert len(found) == 1 and "notebooks/demo.ipynb: cell 4 contains rubric text from demo.md, question forget" \
        in found[0], found
    release = root / "course" / "release" / "demo"
    release.mkdir(parents=True)
    cells = [dict(c) for c in json.loads((root / "course" / "source" / "demo" / "demo.ipynb").read_text())["cells"]]
    rubrics.annotate(cells, rubrics.load(root, "demo"), lambda source, metadata: _cell("markdown", source) | {
        "metadata": metadata})
    (release / "demo.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    found = rubrics.leaks(root)
    assert any("course/release/demo/demo.ipynb: cell 3 is a rubric cell" in f for f in found), found
    assert any("course/release/demo/demo.ipynb: cell 3 contains rubric text from demo.md, why-lost" in f
               for f in found), found


@pytest.mark.quick
def test_questions_under_a_bold_check_heading_count_too(tmp_path):
    root = _course(tmp_path)
    nb = root / "course" / "source" / "demo" / "demo.ipynb"
    data = json.loads(nb.read_text())
    data["cells"][1]["source"] = QUESTIONS.replace("## Check your understanding", "**Check your understanding**")
    data["cells"].append(_cell("markdown", "## Clean up\n\n1. Stop the broker.\n"))  # a list under another heading
    nb.write_text(json.dumps(data))
    assert [q.text[:20] for q in rubrics.questions(nb)] == ["Why does the broker ", "Which subject catche"]
    assert rubrics.coverage_problems(root) == []


@pytest.mark.quick
def test_annotate_puts_each_rubric_after_its_answer_once(tmp_path):
    root = _course(tmp_path)
    cells = json.loads((root / "course" / "source" / "demo" / "demo.ipynb").read_text())["cells"]

    def new(source, metadata):
        return {"cell_type": "markdown", "metadata": metadata, "source": source}

    parsed = rubrics.load(root, "demo")
    assert rubrics.annotate(cells, parsed, new) == 1 and rubrics.annotate(cells, parsed, new) == 1  # idempotent
    assert len(cells) == 5 and cells[3]["metadata"] == {"trashlab": {"rubric": "why-lost"}, "editable": False,
                                                        "deletable": False}
    assert "names JetStream as what keeps messages for absent consumers" in cells[3]["source"]
    assert "Common wrong answer" in cells[3]["source"] and rubrics.BANNER in cells[3]["source"]
    assert rubrics.strip(cells) == 1 and len(cells) == 4 and rubrics.strip(cells) == 0
    rubrics.annotate(cells, None, new)  # no rubric file: the grader is told so, under the answer
    assert "none found" in cells[3]["source"]


# ----- graders see it in the formgrader, students not in their feedback -------------------------
@pytest.mark.course
def test_formgrader_shows_the_rubric_and_feedback_does_not(tmp_path):
    """A real submission of 01 autograded by nbgrader (with ``nbgrader_config.py`` as committed): the autograded copy
    holds the rubric right after the written answer, the formgrader's page for that submission shows it to the
    grader, the student's submission is untouched, and ``generate_feedback`` leaves it out."""
    name = "01-private-network"
    root = tmp_path / "course-root"
    root.mkdir()
    shutil.copy2(REPO / grading.CONFIG, root / grading.CONFIG)
    shutil.copytree(REPO / "course" / "source" / name, root / "course" / "source" / name, ignore=grading.IGNORED)
    shutil.copytree(REPO / rubrics.RUBRICS, root / rubrics.RUBRICS)
    grading._run(grading.api(root).generate_assignment(name, force=True, create=True), f"generate_assignment {name}")
    rubric = rubrics.load(root, name)
    assert rubric is not None
    (gid, section), = rubric.rubrics.items()
    student_answer = "Docker keeps networks apart at the IP layer; accounts keep subjects apart. (alice's answer)"
    release = json.loads((root / "course" / "release" / name / f"{name}.ipynb").read_text())
    for cell in release["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == gid:
            cell["source"] = student_answer
    submitted = tmp_path / "subs" / "alice" / f"{name}.ipynb"
    submitted.parent.mkdir(parents=True)
    submitted.write_text(json.dumps(release))
    grading.autograde(tmp_path / "subs", root, jobs=1)

    cells = json.loads((root / "course" / "autograded" / "alice" / name / f"{name}.ipynb").read_text())["cells"]
    at = next(i for i, c in enumerate(cells) if c["metadata"].get("nbgrader", {}).get("grade_id") == gid)
    assert "".join(cells[at]["source"]) == student_answer
    assert cells[at + 1]["metadata"].get("trashlab") == {"rubric": gid}, cells[at + 1]
    assert section.criteria[0].text in "".join(cells[at + 1]["source"])
    assert rubrics.BANNER not in (root / "course" / "submitted" / "alice" / name / f"{name}.ipynb").read_text()

    # a rubric edited after autograding: `rubrics --refresh` rewrites the cell, no re-run
    path = root / rubrics.RUBRICS / f"{name}.md"
    text = path.read_text()
    path.write_text(text.replace("Common wrong answer: ", "Common wrong answer: Edited after autograding: ", 1))
    mode = (root / "course" / "autograded" / "alice" / name / f"{name}.ipynb").stat().st_mode
    assert rubrics.refresh(root) == [root / "course" / "autograded" / "alice" / name / f"{name}.ipynb"]
    assert rubrics.refresh(root) == []  # already up to date
    assert (root / "course" / "autograded" / "alice" / name / f"{name}.ipynb").stat().st_mode == mode
    rubric = rubrics.load(root, name)
    assert rubric is not None
    section = rubric.rubrics[gid]
    assert section.wrong.startswith("Edited after autograding: ")

    html = _formgrader_page(root, name, "alice", tmp_path, student_answer)
    shown = re.sub(r"<[^>]+>", "", html)
    assert _plain(student_answer) in _plain(shown), f"the formgrader's page lacks the answer: {html[-2000:]}"
    for text in (rubrics.BANNER, section.criteria[0].text.split("`")[0][:60], section.wrong[:50]):
        assert _plain(text) in _plain(shown), f"the formgrader's page does not show {text!r}"
    assert _plain(shown).index(_plain(student_answer)) < _plain(shown).index(rubrics.BANNER), \
        "the rubric should come right after the student's answer"

    feedback = grading.feedback(root) / "alice" / name / f"{name}.html"
    page = feedback.read_text()
    assert "alice" in page and "Docker keeps networks apart" in page, "the feedback should show the student's answer"
    for text in [rubrics.BANNER, *(t for t in section.texts() if len(t) > 20)]:
        assert _plain(text)[:50] not in _plain(re.sub(r"<[^>]+>", "", page)), f"the feedback shows {text!r}"


def _plain(text: str) -> str:
    """Text as HTML shows it, compared loosely: no markup characters, entities decoded, single spaces."""
    import html as html_lib

    return " ".join(re.sub(r"[`*]", "", html_lib.unescape(text)).split())


def _formgrader_page(root: Path, name: str, student: str, tmp_path: Path, answer: str) -> str:
    """The formgrader's page for a student's submission of ``name``, from the command INSTRUCTORS.md gives
    (``python -m trashlab_instructor formgrader``): fetched over HTTP, and opened in headless Chromium, where the
    rubric must be visible below the student's answer (screenshot in test-artifacts/formgrader-rubric.png)."""
    from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, sync_api

    with grading.api(root).gradebook as gb:
        submission_id = gb.find_submission_notebook(name, name, student).id
    with formgrader(root, tmp_path) as (base, token, _log):
        url = f"{base}/submissions/{submission_id}/?token={token}"
        with urllib.request.urlopen(url, timeout=60) as page:
            assert page.status == 200, page.status
            html = page.read().decode()
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                tab = browser.new_page(viewport={"width": 1280, "height": 900})
                tab.goto(url, timeout=60_000)
                rubric, said = tab.get_by_text(rubrics.BANNER).first, tab.get_by_text(answer[:40]).first
                rubric.scroll_into_view_if_needed()
                ARTIFACTS.mkdir(exist_ok=True)
                tab.screenshot(path=str(ARTIFACTS / "formgrader-rubric.png"))
                assert rubric.is_visible() and said.is_visible(), "the rubric or the answer is hidden on the page"
                below = rubric.bounding_box()["y"] - said.bounding_box()["y"]
                assert below > 0, f"the rubric should be below the student's answer ({below:.0f} px)"
            finally:
                browser.close()
    return html
