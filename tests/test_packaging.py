"""pyproject.toml and environment.yml declare the same packages with the same ranges."""
from __future__ import annotations

import re
import tomllib

import yaml

from course_lib.config import REPO_ROOT


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = {_norm(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "conda-forge" in env["channels"]
    assert "graphviz" in conda, "conda-forge's graphviz brings the dot binary"
    pip_reqs = {_norm(r) for r in pip if not r.startswith("-e")}
    assert pip_reqs == declared, (
        f"only in pyproject: {sorted(declared - pip_reqs)}; only in environment.yml: {sorted(pip_reqs - declared)}")


def test_dependencies_are_ranges_not_pins():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pinned = [r for r in project["dependencies"] if "==" in r]
    assert not pinned, f"pin-free ranges expected, got {pinned}"


def test_ci_calls_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    head = "\n".join(readme.splitlines()[:25])
    assert "make test" in head and "make course" in head
    assert re.search(r"^make test$", ci, re.M)
