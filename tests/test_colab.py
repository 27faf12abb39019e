"""Colab: every notebook opens with a badge to itself and a set-up cell that acts only in Colab.

tests/test_notebooks.py checks the solutions' first cell (title, objectives, time, a Colab link
to solutions/NAME). Here: the exact link (the repository of ``config.GITHUB_REPO``) in solutions
*and* lessons, and what the second cell, the set-up cell, does inside and outside Colab.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

from course_lib import notebooks
from course_lib.config import GITHUB_REPO, colab_url

BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
CLONE_DIR = "/content/course-kit"

NOTEBOOKS = [(folder, path) for folder, directory in (("solutions", notebooks.SOLUTIONS_DIR),
                                                      ("lessons", notebooks.LESSONS_DIR))
             for path in notebooks.numbered_notebooks(directory)]
IDS = [f"{folder}/{path.name}" for folder, path in NOTEBOOKS]


def _cells(path: Path) -> list:
    return nbformat.read(path, as_version=4).cells


def setup_source(path: Path) -> str:
    cell = _cells(path)[1]
    assert cell.cell_type == "code", f"{path.name}: the second cell must be the Colab set-up code"
    return cell.source


@pytest.mark.parametrize("folder, path", NOTEBOOKS, ids=IDS)
def test_badge_opens_this_notebook(folder, path):
    first = _cells(path)[0]
    assert first.cell_type == "markdown"
    # make_lesson rewrites the first cell's solutions/ links to lessons/: a lesson opens itself
    badge = f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(path.name, folder)})"
    assert badge in first.source, f"{folder}/{path.name}: expected the badge {badge}"


@pytest.mark.parametrize("folder, path", NOTEBOOKS, ids=IDS)
def test_second_cell_is_the_colab_setup(folder, path):
    source = setup_source(path)
    assert '"google.colab" in sys.modules' in source, "the set-up must be guarded by Colab's module"
    assert "course_lib" not in source, "the set-up runs before course_lib is importable"
    assert f"https://github.com/{GITHUB_REPO}" in source, "it must clone the repository of the badge"


# the set-up cell outside Colab: a fresh interpreter, anything that starts a process is fatal
_OUTSIDE = r"""
import json, os, subprocess, sys
def refuse(*args, **kwargs):
    raise SystemExit("started a process: %r" % (args,))
for name in ("run", "Popen", "call", "check_call", "check_output"):
    setattr(subprocess, name, refuse)
os.system = refuse
source = open(sys.argv[1], encoding="utf-8").read()
assert "google.colab" not in sys.modules
path_before, files_before = list(sys.path), sorted(os.listdir("."))
exec(compile(source, "setup-cell", "exec"), {"__name__": "__main__"})
print(json.dumps({"path_same": sys.path == path_before,
                  "files_same": sorted(os.listdir(".")) == files_before}))
"""


def _distinct_setups() -> dict[str, str]:
    sources: dict[str, str] = {}
    for folder, path in NOTEBOOKS:
        sources.setdefault(setup_source(path), f"{folder}/{path.name}")
    return {name: source for source, name in sources.items()}


SETUPS = _distinct_setups() if NOTEBOOKS else {}


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_setup_does_nothing_outside_colab(name, tmp_path):
    cell = tmp_path / "cell.py"
    cell.write_text(SETUPS[name], encoding="utf-8")
    work = tmp_path / "cwd"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "COLAB_RELEASE_TAG"}
    proc = subprocess.run([sys.executable, "-I", "-c", _OUTSIDE, str(cell)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{name}: {proc.stdout}{proc.stderr}"
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"path_same": True, "files_same": True}
    assert list(work.iterdir()) == []


@pytest.fixture
def in_colab(monkeypatch):
    """A fake ``google.colab`` module, a recorded ``subprocess.run`` and a throwaway sys.path."""
    google = types.ModuleType("google")
    google.colab = types.ModuleType("google.colab")
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google.colab)
    monkeypatch.setattr(sys, "path", list(sys.path))
    calls: list[tuple[list, dict]] = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append((list(cmd), kw)))
    return calls


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_setup_clones_and_installs_in_colab(name, in_colab, monkeypatch):
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: False if p == CLONE_DIR else real_isdir(p))
    exec(compile(SETUPS[name], name, "exec"), {"__name__": "__main__"})
    commands = [cmd for cmd, _ in in_colab]
    assert commands == [
        ["git", "clone", "--depth", "1", f"https://github.com/{GITHUB_REPO}", CLONE_DIR],
        [sys.executable, "-m", "pip", "install", "-q", "-e", CLONE_DIR],
    ]
    assert all(kw.get("check") is True for _, kw in in_colab), "a failed install must stop the cell"
    assert sys.path[0] == CLONE_DIR


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_setup_is_not_repeated_once_the_kit_is_there(name, in_colab, monkeypatch):
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: True if p == CLONE_DIR else real_isdir(p))
    exec(compile(SETUPS[name], name, "exec"), {"__name__": "__main__"})
    assert in_colab == []
