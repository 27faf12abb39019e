"""Lessons from solutions, reference outputs for nbval, and whole-course runs.

::

    python -m course_lib.notebooks lessons [--check]   # solutions/NN_*.ipynb -> lessons/NN_*.ipynb
    python -m course_lib.notebooks record              # smoke-run solutions, keep checked outputs
    python -m course_lib.notebooks course [--profile workshop] [--build-dir build] [--only 00,01]

In a solution notebook an exercise sits between a line ``### BEGIN SOLUTION`` and a line
``### END SOLUTION`` (in markdown also ``<!-- ### BEGIN SOLUTION -->``); the lesson gets a
stub in its place. Cells tagged ``solution-only`` are left out of the lesson. Only cells
marked ``# NBVAL_CHECK_OUTPUT`` keep outputs, so nbval can compare them.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import nbformat
from nbformat import NotebookNode

from course_lib.config import BUILD_DIR, PROFILE_ENV, PROFILES, REPO_ROOT
from course_lib.report import extract_key_figures

SOLUTIONS_DIR = REPO_ROOT / "solutions"
LESSONS_DIR = REPO_ROOT / "lessons"
DEFAULT_TIMEOUT = 1800  # seconds per cell
KERNEL_NAME = "python3"
RAISE_LINE = ('raise NotImplementedError('
              '"Exercise: write this part, then run the checker cell below.")')
ANSWER_LINE = "*Write your answer here.*"
SOLUTION_ONLY_TAG = "solution-only"
CHECK_OUTPUT_MARKER = "NBVAL_CHECK_OUTPUT"

_SUSPECT_MARKER = re.compile(r"^\s*(#+|<!--)\s*(BEGIN|END)\s+SOLUTION", re.IGNORECASE)
_COLAB_SOLUTIONS = re.compile(
    r"(https://colab\.research\.google\.com/github/[^\s)\"'>]*?)/solutions/")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# -- lessons from solutions ------------------------------------------------------------------

def _marker(line: str, which: str, markdown: bool) -> str | None:
    """The indentation of ``line`` if it is the marker ``### <which> SOLUTION``, else None."""
    body = rf"### {which} SOLUTION"
    if markdown:
        body = rf"(?:<!--[ \t]*)?{body}(?:[ \t]*-->)?"
    match = re.fullmatch(rf"([ \t]*){body}[ \t]*", line)
    return match.group(1) if match else None


def _strip_solution(source: str, markdown: bool, where: str) -> tuple[str, bool]:
    """Replace each marked region of ``source``; return the new source and whether any was found."""
    out: list[str] = []
    indent: str | None = None
    begin_line = 0
    found = False
    for number, line in enumerate(source.split("\n"), start=1):
        begin, end = _marker(line, "BEGIN", markdown), _marker(line, "END", markdown)
        if begin is None and end is None and _SUSPECT_MARKER.match(line):
            raise ValueError(f"{where}, line {number}: malformed solution marker {line.strip()!r}; "
                             "write '### BEGIN SOLUTION' / '### END SOLUTION' alone on a line")
        if begin is not None:
            if indent is not None:
                raise ValueError(f"{where}, line {number}: nested '### BEGIN SOLUTION' "
                                 f"(the one on line {begin_line} is not closed yet)")
            indent, begin_line, found = begin, number, True
        elif end is not None:
            if indent is None:
                raise ValueError(f"{where}, line {number}: '### END SOLUTION' without "
                                 "a '### BEGIN SOLUTION' before it")
            out.append(indent + (ANSWER_LINE if markdown else RAISE_LINE))
            indent = None
        elif indent is None:
            out.append(line)
    if indent is not None:
        raise ValueError(f"{where}, line {begin_line}: '### BEGIN SOLUTION' is never closed "
                         "by '### END SOLUTION'")
    return "\n".join(out), found


def checks_output(cell: NotebookNode) -> bool:
    """True if nbval compares this cell's output (``# NBVAL_CHECK_OUTPUT`` or its tag)."""
    if cell.get("cell_type") != "code":
        return False
    if "nbval-check-output" in cell.get("metadata", {}).get("tags", []):
        return True
    lines = (line.strip() for line in _source(cell).splitlines())
    return any(line.startswith("#") and line.lstrip("#").strip() == CHECK_OUTPUT_MARKER
               for line in lines)


def _source(cell: NotebookNode) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def make_lesson(solution: NotebookNode, name: str | None = None) -> NotebookNode:
    """The lesson for ``solution`` (file ``name``, e.g. "01_cleaning.ipynb"): exercises stubbed.

    Unbalanced or nested markers raise ``ValueError`` naming the cell index (from 0).
    """
    where = f"{name or 'notebook'}: cell"
    lesson = copy.deepcopy(solution)
    cells = []
    for index, original in enumerate(solution.cells):
        if SOLUTION_ONLY_TAG in original.get("metadata", {}).get("tags", []):
            continue
        cell = copy.deepcopy(original)
        cell["id"] = original.get("id") or f"cell-{index}"
        cell.setdefault("metadata", nbformat.NotebookNode()).pop("execution", None)
        cell.source, found = _strip_solution(_source(cell), cell.cell_type != "code",
                                             f"{where} {index}")
        if cell.cell_type == "code" and (found or not checks_output(original)):
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    if cells:
        cells[0].source = _COLAB_SOLUTIONS.sub(r"\1/lessons/", cells[0].source)
    lesson.cells = cells
    lesson.nbformat, lesson.nbformat_minor = 4, max(5, solution.get("nbformat_minor", 0))
    course = dict(lesson.metadata.get("course", {}))
    course["generated_from"] = f"solutions/{name}" if name else "solutions"
    lesson.metadata["course"] = course
    return lesson


def dumps(nb: NotebookNode) -> str:
    """The exact file text of ``nb``, as ``nbformat.write`` writes it (trailing newline)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` newlines) to ``path`` via a temp file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def numbered_notebooks(directory: Path, only: Iterable[str] | None = None) -> list[Path]:
    """``directory/NN_*.ipynb`` in order; ``only`` keeps the given ``NN`` prefixes."""
    paths = sorted(p for p in Path(directory).glob("[0-9][0-9]_*.ipynb") if p.is_file())
    if only is None:
        return paths
    wanted = set(only)
    missing = wanted - {p.name[:2] for p in paths}
    if missing:
        raise ValueError(f"no notebook {', '.join(sorted(missing))}_*.ipynb in {directory}")
    return [p for p in paths if p.name[:2] in wanted]


def generate_lessons(solutions_dir: Path | str | None = None, lessons_dir: Path | str | None = None,
                     check: bool = False) -> list[str]:
    """Write ``lessons/NN_*.ipynb`` for every solution; delete lessons without a solution.

    Returns the names that changed; with ``check=True`` nothing is written and the names that
    would change are returned.
    """
    sdir = Path(solutions_dir or SOLUTIONS_DIR)
    ldir = Path(lessons_dir or LESSONS_DIR)
    changed: list[str] = []
    names = set()
    for path in numbered_notebooks(sdir):
        names.add(path.name)
        text = dumps(make_lesson(nbformat.read(path, as_version=4), path.name))
        target = ldir / path.name
        if not target.is_file() or target.read_bytes() != text.encode("utf-8"):
            changed.append(path.name)
            if not check:
                atomic_write(target, text)
    for path in numbered_notebooks(ldir):
        if path.name not in names:
            changed.append(path.name)
            if not check:
                path.unlink()
    return sorted(changed)


# -- execution ------------------------------------------------------------------------------

def _execute(nb: NotebookNode, cwd: Path, profile: str, timeout: int, timing: bool = False) -> None:
    """Run ``nb`` in place in a fresh ``python3`` kernel with ``COURSE_PROFILE=profile``; with
    ``timing``, each cell's ``metadata.execution`` records when it started and finished."""
    from nbclient import NotebookClient

    env = dict(os.environ)
    env[PROFILE_ENV] = profile
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL_NAME, record_timing=timing,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)


def _error_line(err: BaseException) -> str:
    """The last line of a cell's traceback (``ename: evalue``), or the error's own first line."""
    ename = getattr(err, "ename", None)
    if ename:
        evalue = getattr(err, "evalue", "")
        return f"{ename}: {evalue}" if evalue else ename
    lines = [line.strip() for line in _ANSI.sub("", str(err)).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def _keep_checked_outputs(original: NotebookNode, executed: NotebookNode) -> NotebookNode:
    """``original`` with the outputs of ``executed`` in checked cells only."""
    recorded = copy.deepcopy(original)
    for cell, ran in zip(recorded.cells, executed.cells):
        if cell.cell_type != "code":
            continue
        keep = checks_output(cell)
        cell.outputs = ran.outputs if keep else []
        cell.execution_count = ran.execution_count if keep else None
    return recorded


def record_outputs(solutions_dir: Path | str | None = None,
                   lessons_dir: Path | str | None = None, *,
                   only: Iterable[str] | None = None,
                   timeout: int = DEFAULT_TIMEOUT) -> list[str]:
    """Run each solution with the ``smoke`` profile and store the outputs of checked cells only.

    All other outputs are cleared; lessons are regenerated afterwards. Returns the solutions
    that changed; raises ``RuntimeError`` naming the notebooks that failed to run.
    """
    sdir = Path(solutions_dir or SOLUTIONS_DIR)
    changed, failed = [], []
    for path in numbered_notebooks(sdir, only):
        original = nbformat.read(path, as_version=4)
        executed = copy.deepcopy(original)
        start = time.perf_counter()
        try:
            _execute(executed, sdir, "smoke", timeout)
        except Exception as err:  # noqa: BLE001 - reported below, the others still run
            failed.append(f"{path.name}: {_error_line(err)}")
            print(f"{path.name:<40} {time.perf_counter() - start:8.1f} s  failed", flush=True)
            continue
        text = dumps(_keep_checked_outputs(original, executed))
        status = "unchanged"
        if path.read_bytes() != text.encode("utf-8"):
            atomic_write(path, text)
            changed.append(path.name)
            status = "recorded"
        print(f"{path.name:<40} {time.perf_counter() - start:8.1f} s  {status}", flush=True)
    generate_lessons(sdir, lessons_dir)
    if failed:
        raise RuntimeError("could not record: " + "; ".join(failed))
    return changed


def run_course(profile: str = "workshop", solutions_dir: Path | str | None = None,
               build_dir: Path | str | None = None, timeout: int = DEFAULT_TIMEOUT,
               only: Iterable[str] | None = None) -> dict[str, Any]:
    """Execute every solution in order; write executed notebooks, HTML and a summary.

    Writes ``build/notebooks/NN_*.ipynb``, ``build/html/NN_*.html``, ``build/summary.json`` and
    ``build/summary.md``. A failing lesson is recorded and the run goes on. Returns the summary.
    """
    from nbconvert import HTMLExporter

    sdir = Path(solutions_dir or SOLUTIONS_DIR)
    bdir = Path(build_dir or BUILD_DIR)
    exporter = HTMLExporter()
    lessons = []
    started = time.perf_counter()
    for path in numbered_notebooks(sdir, only):
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        error = None
        try:
            _execute(nb, sdir, profile, timeout, timing=True)   # build/ shows which cells are slow
        except Exception as err:  # noqa: BLE001 - a failing lesson must not stop the course
            error = _error_line(err)
        seconds = round(time.perf_counter() - start, 2)
        atomic_write(bdir / "notebooks" / path.name, dumps(nb))
        try:
            atomic_write(bdir / "html" / f"{path.stem}.html", exporter.from_notebook_node(nb)[0])
        except Exception as err:  # noqa: BLE001
            error = error or f"HTML export: {_error_line(err)}"
        entry: dict[str, Any] = {"name": path.name, "status": "failed" if error else "ok",
                                 "seconds": seconds, "key_figures": extract_key_figures(nb),
                                 "slowest_cells": slowest_cells(nb)}
        if error:
            entry["error"] = error
        lessons.append(entry)
        print(f"{path.name:<40} {seconds:8.1f} s  {entry['status']}"
              + (f"  ({error})" if error else ""), flush=True)
    summary = {
        "profile": profile,
        "total_seconds": round(time.perf_counter() - started, 2),
        "failed": [entry["name"] for entry in lessons if entry["status"] != "ok"],
        "lessons": lessons,
    }
    atomic_write(bdir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    atomic_write(bdir / "summary.md", summary_markdown(summary))
    return summary


def slowest_cells(nb: NotebookNode, n: int = 3) -> list[dict[str, Any]]:
    """The ``n`` slowest code cells of an executed notebook, slowest first: ``cell`` (its index
    among all cells, as nbval counts), ``seconds`` and ``source`` (its first line). Needs the
    ``metadata.execution`` timestamps that ``run_course`` records; cells without them are skipped."""
    from datetime import datetime

    timed = []
    for index, cell in enumerate(nb.cells):
        stamps = cell.get("metadata", {}).get("execution", {})
        start, end = stamps.get("iopub.execute_input"), stamps.get("shell.execute_reply")
        if cell.cell_type != "code" or not (start and end):
            continue
        seconds = (datetime.fromisoformat(end.replace("Z", "+00:00"))
                   - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
        first = next((line.strip() for line in cell.source.splitlines()
                      if line.strip() and not line.lstrip().startswith("#")), "")
        timed.append({"cell": index, "seconds": round(seconds, 2), "source": first[:80]})
    return sorted(timed, key=lambda c: -c["seconds"])[:n]


def summary_markdown(summary: dict[str, Any]) -> str:
    """The course summary as a Markdown table."""
    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    def figures(values: dict[str, Any]) -> str:
        return ", ".join(f"{k}={round(v, 4) if isinstance(v, float) else v}"
                         for k, v in values.items())

    lines = [f"# Course run — profile `{summary['profile']}`", "",
             "| lesson | status | seconds | key figures | error |", "|---|---|---:|---|---|"]
    for entry in summary["lessons"]:
        mark = "✅ ok" if entry["status"] == "ok" else "❌ failed"
        lines.append(f"| {cell(entry['name'])} | {mark} | {entry['seconds']:.1f} | "
                     f"{cell(figures(entry['key_figures']))} | {cell(entry.get('error', ''))} |")
    lines += ["", f"Total: {summary['total_seconds']:.1f} s; "
                  f"{len(summary['failed'])} of {len(summary['lessons'])} lessons failed.",
              "", "## Slowest cells", "", "| lesson | cell | seconds | first line |", "|---|---:|---:|---|"]
    for entry in summary["lessons"]:
        for slow in entry.get("slowest_cells", []):
            lines.append(f"| {cell(entry['name'])} | {slow['cell']} | {slow['seconds']:.1f} | "
                         f"`{cell(slow['source']).replace('`', '')}` |")
    return "\n".join(lines) + "\n"


# -- command line ---------------------------------------------------------------------------

def _only(value: str) -> list[str]:
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts or not all(re.fullmatch(r"\d\d", part) for part in parts):
        raise argparse.ArgumentTypeError(f"--only wants lesson numbers like 00,01; got {value!r}")
    return parts


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m course_lib.notebooks",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lessons = sub.add_parser("lessons", help="generate lessons/ from solutions/")
    lessons.add_argument("--check", action="store_true",
                         help="write nothing; exit 1 if any lesson differs")
    record = sub.add_parser("record", help="smoke-run solutions and store the outputs nbval checks")
    course = sub.add_parser("course",
                            help="run every lesson; write build/ notebooks, HTML, summary")
    course.add_argument("--profile", default="workshop", choices=sorted(PROFILES))
    course.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    for command in (lessons, record, course):
        command.add_argument("--solutions-dir", type=Path, default=SOLUTIONS_DIR)
    for command in (lessons, record):
        command.add_argument("--lessons-dir", type=Path, default=LESSONS_DIR)
    for command in (record, course):
        command.add_argument("--only", type=_only, default=None, help="lesson numbers, e.g. 00,01")
        command.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT,
                             help="seconds per cell")
    args = parser.parse_args(argv)

    try:
        if args.command == "lessons":
            changed = generate_lessons(args.solutions_dir, args.lessons_dir, check=args.check)
            if args.check and changed:
                print("lessons differ from solutions "
                      "(run: python -m course_lib.notebooks lessons):")
                print("\n".join(f"  {name}" for name in changed))
                return 1
            for name in changed:
                print(f"updated {Path(args.lessons_dir) / name}")
            if not changed:
                print("lessons are in sync with solutions")
            return 0
        if args.command == "record":
            changed = record_outputs(args.solutions_dir, args.lessons_dir, only=args.only,
                                     timeout=args.timeout)
            print(f"recorded outputs of {len(changed)} solution notebook(s)")
            return 0
        summary = run_course(args.profile, args.solutions_dir, args.build_dir, args.timeout,
                             args.only)
        failed = ", ".join(summary["failed"]) or "none"
        print(f"total {summary['total_seconds']:.1f} s; failed: {failed}")
        return 1 if summary["failed"] else 0
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
