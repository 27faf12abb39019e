"""course_lib.config: profiles, seeds, devices."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from course_lib import config


def test_default_profile_is_workshop(monkeypatch):
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    assert config.get_settings().profile == "workshop"


def test_env_var_picks_the_profile(monkeypatch):
    monkeypatch.setenv(config.PROFILE_ENV, "full")
    assert config.get_settings().profile == "full"
    assert config.get_settings("smoke").profile == "smoke"  # an explicit argument wins


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown profile 'huge'.*smoke, workshop, full"):
        config.get_settings("huge")


def test_overrides_and_unknown_setting():
    assert config.get_settings("smoke", seed=7).seed == 7
    with pytest.raises(ValueError, match="n_productz"):
        config.get_settings("smoke", n_productz=1)


def test_profiles_scale_up():
    smoke, workshop, full = (config.get_settings(p) for p in ("smoke", "workshop", "full"))
    assert smoke.n_products < workshop.n_products < full.n_products
    assert workshop.n_products >= 5000 and full.n_products >= 50000
    assert full.mixed_precision and not workshop.mixed_precision


def test_set_seed_repeats_python_numpy_and_torch():
    def draw():
        config.set_seed(123)
        return random.random(), np.random.rand(), torch.rand(1).item()

    first, second = draw(), draw()
    assert first == second
    config.set_seed(124)
    assert random.random() != first[0]


def test_device_choice_on_this_machine():
    device = config.try_gpu()
    expected = "cuda" if torch.cuda.is_available() else device.type
    assert device.type == expected
    assert config.try_gpu("cpu").type == "cpu"
    summary = config.device_summary(torch.device("cpu"))
    assert summary.startswith("device: cpu (") and "threads" in summary


def test_environment_report_lists_packages_device_and_profile(monkeypatch):
    monkeypatch.setenv(config.PROFILE_ENV, "smoke")
    report = config.environment_report().set_index("component")["found"]
    assert report["torch"] == torch.__version__.split("+")[0] or report["torch"].startswith(torch.__version__[:4])
    assert report["profile"] == "smoke"
    assert report["device"].startswith("cpu") or report["device"].startswith("cuda")
    assert report["dot (graphviz binary)"] in ("found", "missing")


def test_colab_url_points_at_the_notebook():
    url = config.colab_url("00_orientation.ipynb")
    assert url.startswith("https://colab.research.google.com/github/")
    assert url.endswith("/lessons/00_orientation.ipynb")
