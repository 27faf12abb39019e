"""Test set-up shared by pytest and nbval.

Sets ``COURSE_PROFILE=smoke`` (unless already set) and puts the repository root on
``PYTHONPATH`` at import time, so the Jupyter kernels that nbval starts for
``pytest`` (tests, solutions and lessons, or a single notebook) inherit the small profile and can import
``course_lib`` without an install.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = str(Path(__file__).resolve().parent)

os.environ.setdefault("COURSE_PROFILE", "smoke")
if REPO_ROOT not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))
