"""Lesson generation, outputs recorded for nbval, whole-course runs, and the real notebooks."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course_lib import notebooks
from course_lib.config import REPO_ROOT
from course_lib.notebooks import (
    RAISE_LINE, generate_lessons, main, make_lesson, record_outputs, run_course,
)
from course_lib.report import KEY_FIGURES_MIME, extract_key_figures, show_key_figures

BADGE = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
         "(https://colab.research.google.com/github/org/course/blob/main/solutions/{name})")
KERNELSPEC = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def notebook(*cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=list(cells), metadata=dict(KERNELSPEC))
    for index, cell in enumerate(nb.cells):
        cell.id = f"c{index}"
    return nb


def write(path: Path, nb: nbformat.NotebookNode) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def code(source: str, outputs=(), count=None, tags=()) -> nbformat.NotebookNode:
    cell = new_code_cell(source, outputs=list(outputs), execution_count=count)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


STREAM = new_output("stream", name="stdout", text="42\n")

# -- make_lesson -----------------------------------------------------------------------------


def test_markers_become_raise_at_their_indentation():
    source = (
        "def parse_price(text: str) -> float:\n"
        '    """Turn "$1,299" into 1299.0."""\n'
        "    ### BEGIN SOLUTION\n"
        "    cleaned = text.replace('$', '').replace(',', '')\n"
        "    return float(cleaned)\n"
        "    ### END SOLUTION\n"
        "\n"
        "class Scorer:\n"
        "    def score(self):\n"
        "        ### BEGIN SOLUTION  \n"
        "        return 1\n"
        "        ### END SOLUTION\n"
        "    name = 'scorer'"
    )
    lesson = make_lesson(notebook(code(source)), "01_x.ipynb")
    got = lesson.cells[0].source
    assert got == (
        "def parse_price(text: str) -> float:\n"
        '    """Turn "$1,299" into 1299.0."""\n'
        f"    {RAISE_LINE}\n"
        "\n"
        "class Scorer:\n"
        "    def score(self):\n"
        f"        {RAISE_LINE}\n"
        "    name = 'scorer'"
    )
    namespace: dict = {}
    exec(compile(got, "lesson-cell", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="Exercise: write this part"):
        namespace["parse_price"]("$3")
    assert namespace["Scorer"].name == "scorer"


def test_markdown_answer_region():
    md = new_markdown_cell(
        "Why does BM25 miss synonyms?\n### BEGIN SOLUTION\nIt matches words.\n### END SOLUTION\n"
        "Next.\n  <!-- ### BEGIN SOLUTION -->\n  hidden\n  <!-- ### END SOLUTION -->"
    )
    lesson = make_lesson(notebook(md))
    assert lesson.cells[0].source == (
        "Why does BM25 miss synonyms?\n*Write your answer here.*\n"
        "Next.\n  *Write your answer here.*"
    )


def test_outputs_cleared_except_checked_cells_without_markers():
    nb = notebook(
        code("print(42)", [STREAM], 1),
        code("# NBVAL_CHECK_OUTPUT\nprint(42)", [STREAM], 2),
        code("# NBVAL_CHECK_OUTPUT\ndef f():\n    ### BEGIN SOLUTION\n    print(42)\n"
             "    ### END SOLUTION\nf()", [STREAM], 3),
        code("print(42)", [STREAM], 4, tags=["nbval-check-output"]),
    )
    cells = make_lesson(nb).cells
    assert (cells[0].outputs, cells[0].execution_count) == ([], None)
    assert (cells[1].outputs, cells[1].execution_count) == ([STREAM], 2)
    assert (cells[2].outputs, cells[2].execution_count) == ([], None)
    assert (cells[3].outputs, cells[3].execution_count) == ([STREAM], 4)
    assert nb.cells[0].outputs == [STREAM]  # the solution is not modified


@pytest.mark.parametrize("source, message", [
    ("x = 1\n### END SOLUTION", r"cell 1, line 2: '### END SOLUTION' without"),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1", r"cell 1, line 2: .* never closed"),
    ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    ### END SOLUTION",
     r"cell 1, line 3: nested"),
    ("def f():\n    ## BEGIN SOLUTION\n    return 1\n    ## END SOLUTION",
     r"cell 1, line 2: malformed"),
])
def test_bad_markers_name_the_cell(source, message):
    nb = notebook(new_markdown_cell("# T"), code(source))
    with pytest.raises(ValueError, match=message) as info:
        make_lesson(nb, "03_bad.ipynb")
    assert str(info.value).startswith("03_bad.ipynb: cell 1")


def test_solution_only_cells_removed_metadata_and_badge():
    nb = notebook(
        new_markdown_cell("# Title\n" + BADGE.format(name="02_x.ipynb")),
        code("secret = 1", tags=["solution-only"]),
        new_markdown_cell(BADGE.format(name="02_x.ipynb")),
    )
    lesson = make_lesson(nb, "02_x.ipynb")
    assert [c.id for c in lesson.cells] == ["c0", "c2"]
    assert "blob/main/lessons/02_x.ipynb)" in lesson.cells[0].source
    assert "/solutions/" not in lesson.cells[0].source
    assert "blob/main/solutions/02_x.ipynb)" in lesson.cells[1].source  # only the first cell
    assert lesson.metadata["course"] == {"generated_from": "solutions/02_x.ipynb"}
    assert lesson.metadata["kernelspec"]["name"] == "python3"


# -- generate_lessons and the CLI ------------------------------------------------------------


def make_dirs(tmp_path: Path) -> tuple[Path, Path]:
    sols, lessons = tmp_path / "solutions", tmp_path / "lessons"
    write(sols / "00_intro.ipynb",
          notebook(new_markdown_cell("# Intro"), code("x = 1", [STREAM], 1)))
    write(sols / "01_ex.ipynb", notebook(
        code("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION")))
    (sols / "notes.ipynb").write_text("not a lesson")  # not NN_*: ignored
    return sols, lessons


def test_generate_lessons_is_deterministic_and_syncs(tmp_path):
    sols, lessons = make_dirs(tmp_path)
    write(lessons / "07_orphan.ipynb", notebook())
    everything = ["00_intro.ipynb", "01_ex.ipynb", "07_orphan.ipynb"]
    assert generate_lessons(sols, lessons, check=True) == everything
    assert sorted(p.name for p in lessons.iterdir()) == ["07_orphan.ipynb"]  # check wrote nothing

    assert generate_lessons(sols, lessons) == everything
    assert sorted(p.name for p in lessons.iterdir()) == ["00_intro.ipynb", "01_ex.ipynb"]
    first = (lessons / "01_ex.ipynb").read_bytes()
    assert first.endswith(b"}\n")
    assert generate_lessons(sols, lessons) == []
    assert generate_lessons(sols, lessons, check=True) == []
    assert (lessons / "01_ex.ipynb").read_bytes() == first
    lesson = nbformat.read(lessons / "01_ex.ipynb", as_version=4)
    nbformat.validate(lesson)
    assert lesson.cells[0].id == "c0" and RAISE_LINE in lesson.cells[0].source
    assert lesson.cells[0].source.count("\n") == 1  # one raise line in place of the body


def test_cli_lessons_check(tmp_path, capsys):
    sols, lessons = make_dirs(tmp_path)
    args = ["lessons", "--solutions-dir", str(sols), "--lessons-dir", str(lessons)]
    assert main([*args, "--check"]) == 1
    out = capsys.readouterr().out
    assert "00_intro.ipynb" in out and "01_ex.ipynb" in out
    assert main(args) == 0
    assert main([*args, "--check"]) == 0
    assert "in sync" in capsys.readouterr().out


def test_repo_lessons_in_sync_with_solutions():
    differing = generate_lessons(check=True)
    assert differing == [], (
        f"lessons/ differ from solutions/: {differing}; "
        "run `python -m course_lib.notebooks lessons`"
    )


# -- key figures -----------------------------------------------------------------------------


def test_show_key_figures_outside_ipython_prints_table(capsys):
    show_key_figures({"ndcg@10": 0.123456789, "n_products": 600, "model": "bert-mini"}, lesson="02")
    assert capsys.readouterr().out == (
        "Key figures — lesson 02\n"
        "  ndcg@10     0.1235\n"
        "  n_products  600\n"
        "  model       bert-mini\n"
    )
    with pytest.raises(TypeError, match="'bad'"):
        show_key_figures({"bad": [1, 2]})


def test_extract_key_figures_merges_outputs():
    out1 = new_output("display_data",
                      data={"text/plain": "t", KEY_FIGURES_MIME: {"a": 1, "b": 2.5}})
    out2 = new_output("display_data", data={KEY_FIGURES_MIME: {"b": 3}})
    nb = notebook(code("", [out1, STREAM]), new_markdown_cell("x"), code("", [out2]))
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)  # JSON round trip keeps the dict
    assert extract_key_figures(nb) == {"a": 1, "b": 3}


# -- executing notebooks ---------------------------------------------------------------------


def test_run_course_records_failures_and_goes_on(tmp_path):
    sols, build = tmp_path / "solutions", tmp_path / "build"
    write(sols / "00_fails.ipynb", notebook(
        code("from course_lib.report import show_key_figures\nshow_key_figures({'before': 1})"),
        code("raise ValueError('boom')"),
        code("show_key_figures({'after': 2})"),
    ))
    write(sols / "01_ok.ipynb", notebook(
        code("import os\nfrom course_lib.report import show_key_figures\n"
             "show_key_figures({'profile': os.environ['COURSE_PROFILE'], 'pi': 3.14159265,"
             " 'cwd': os.path.basename(os.getcwd())}, lesson='01')"),
        code("show_key_figures({'pi': 3.0})"),
        code("# a slow cell\nimport time\ntime.sleep(0.5)"),
    ))
    summary = run_course("smoke", sols, build, timeout=60)

    failed, ok = summary["lessons"]
    assert (failed["name"], failed["status"]) == ("00_fails.ipynb", "failed")
    assert failed["error"] == "ValueError: boom"
    assert failed["key_figures"] == {"before": 1}
    assert (ok["name"], ok["status"], "error" in ok) == ("01_ok.ipynb", "ok", False)
    assert ok["key_figures"] == {"profile": "smoke", "pi": 3.0, "cwd": "solutions"}
    assert summary["failed"] == ["00_fails.ipynb"] and summary["profile"] == "smoke"
    assert all(entry["seconds"] > 0 for entry in summary["lessons"])
    assert summary["total_seconds"] >= ok["seconds"] + failed["seconds"]
    slowest = ok["slowest_cells"]
    assert [c["cell"] for c in slowest][:1] == [2] and slowest[0]["source"] == "import time"
    assert slowest[0]["seconds"] >= 0.5 and len(slowest) == 3
    assert [c["seconds"] for c in slowest] == sorted((c["seconds"] for c in slowest), reverse=True)

    assert json.loads((build / "summary.json").read_text()) == summary
    md = (build / "summary.md").read_text()
    assert "| 00_fails.ipynb | ❌ failed |" in md and "ValueError: boom" in md
    assert "profile=smoke, pi=3.0, cwd=solutions" in md
    assert "| 01_ok.ipynb | 2 |" in md and "`import time`" in md
    executed = nbformat.read(build / "notebooks" / "01_ok.ipynb", as_version=4)
    assert extract_key_figures(executed) == ok["key_figures"]
    html = (build / "html" / "01_ok.html").read_text()
    assert "<html" in html and "Key figures — lesson 01" in html
    assert (build / "html" / "00_fails.html").exists()
    assert not list(build.rglob("*.tmp"))


def test_record_outputs_then_nbval_checks_them(tmp_path):
    """record keeps checked outputs only; nbval (with the root conftest.py) passes them and
    catches a wrong stored output."""
    sols, lessons = tmp_path / "solutions", tmp_path / "lessons"
    write(sols / "00_demo.ipynb", notebook(
        new_markdown_cell("# Demo"),
        code("N = 3", tags=["parameters"]),
        code("from course_lib.exercises import check\n\ndef add(a, b):\n"
             "    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION"),
        code('check("00.add", add)'),
        code("# NBVAL_CHECK_OUTPUT\nimport os\nprint(os.environ['COURSE_PROFILE'], N)"),
        code("# NBVAL_CHECK_OUTPUT\nfrom course_lib.report import show_key_figures\n"
             "show_key_figures({'n': N, 'third': 1 / 3}, lesson='00')"),
        code("print('unchecked')", [STREAM], 9),
    ))
    assert record_outputs(sols, lessons, timeout=60) == ["00_demo.ipynb"]
    solution = nbformat.read(sols / "00_demo.ipynb", as_version=4)
    assert [len(c.outputs) for c in solution.cells if c.cell_type == "code"] == [0, 0, 0, 1, 1, 0]
    assert solution.cells[4].outputs[0].text == "smoke 3\n"
    assert extract_key_figures(solution) == {"n": 3, "third": 1 / 3}
    assert generate_lessons(sols, lessons, check=True) == []  # record regenerated lessons
    assert record_outputs(sols, lessons, timeout=60) == []  # nothing changes on a re-run

    tampered = tmp_path / "tampered" / "00_demo.ipynb"
    solution.cells[4].outputs[0].text = "workshop 3\n"
    write(tampered, solution)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_PROFILE", "PYTHONPATH")}
    env["PYTHONPATH"] = str(REPO_ROOT)  # so that `-p conftest` loads the root conftest.py
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-c",
         str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), "--nbval-lax", "-v",
         str(sols), str(lessons), str(tampered.parent)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    results = re.findall(r"^(\w+)/00_demo\S*::(Cell \d+) (PASSED|FAILED)", proc.stdout, re.M)
    assert len(results) == 3 * 6, proc.stdout + proc.stderr  # nbval numbers code cells from 0
    failed = [(folder, cell) for folder, cell, outcome in results if outcome == "FAILED"]
    assert failed == [("tampered", "Cell 3")], proc.stdout
    assert proc.returncode == 1


# -- the real solution notebooks ---------------------------------------------------------------

SOLUTIONS = notebooks.numbered_notebooks(notebooks.SOLUTIONS_DIR)
TIME_ESTIMATE = re.compile(
    r"\b\d+\s*(?:[-–]\s*\d+\s*)?(?:min(?:ute)?s?|h(?:ou)?rs?|hours?)\b", re.I)


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_solution_notebook_structure(path):
    from IPython.core.inputtransformer2 import TransformerManager

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "kernelspec must be python3"
    first = nb.cells[0]
    assert first.cell_type == "markdown", "the first cell must be markdown"
    assert re.search(r"^# \S", first.source, re.M), "first cell: no level-1 title"
    assert "learning objectives" in first.source.lower(), "first cell: no 'Learning objectives'"
    assert TIME_ESTIMATE.search(first.source), "first cell: no time estimate (e.g. '45 minutes')"
    assert re.search(r"open in colab", first.source, re.I), "first cell: no 'Open in Colab' badge"
    link = rf"\(https://colab\.research\.google\.com/github/\S+/solutions/{re.escape(path.name)}\)"
    assert re.search(link, first.source), "first cell: the Colab link must open this notebook"
    tags = [tag for c in nb.cells for tag in c.metadata.get("tags", [])]
    assert "parameters" in tags, "no cell tagged 'parameters'"

    lesson = make_lesson(nb, path.name)  # markers balanced
    transform = TransformerManager().transform_cell
    for cell in lesson.cells:
        if cell.cell_type == "code":
            compile(transform(cell.source), f"{path.name} cell {cell.id}", "exec")
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "### BEGIN SOLUTION" not in cell.source:
            continue
        assert re.search(r"^[ \t]+### BEGIN SOLUTION", cell.source, re.M), (
            f"cell {index}: put the solution inside a function body, or the lesson cell raises")
        following = nb.cells[index + 1:index + 3]
        assert any(c.cell_type == "code" and "check(" in c.source for c in following), (
            f"cell {index}: an exercise must be followed by a cell calling check(...)")


def test_structure_check_accepts_a_good_notebook_and_rejects_a_bad_one(tmp_path):
    path = tmp_path / "solutions" / "00_sample.ipynb"
    nb = notebook(
        new_markdown_cell("# Sample\n\n**Learning objectives**: add.\n\nTime: about 20 minutes.\n\n"
                          + BADGE.format(name="00_sample.ipynb")),
        code("if False:\n    %pip install course-kit"),
        code("N = 1", tags=["parameters"]),
        code("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION"),
        code("check('00.add', add)"),
    )
    test_solution_notebook_structure(write(path, nb))
    del nb.cells[4]
    with pytest.raises(AssertionError, match="followed by a cell calling check"):
        test_solution_notebook_structure(write(path, nb))
    nb.cells[0].source = nb.cells[0].source.replace("20 minutes", "a while")
    with pytest.raises(AssertionError, match="time estimate"):
        test_solution_notebook_structure(write(path, nb))
