"""Exercise checkers of lesson 00 (orientation)."""
from __future__ import annotations

import pandas as pd

from . import columns as C
from .exercises import exercise


def click_through_rate(events: pd.DataFrame) -> float:
    """Clicks per impression in an event log; raw event types may come in mixed case or padded."""
    kinds = events[C.EVENT_TYPE].astype(str).str.strip().str.lower()
    impressions = int((kinds == C.IMPRESSION).sum())
    if impressions == 0:
        raise ValueError("no impressions in the events: the click-through rate is undefined")
    return int((kinds == C.CLICK).sum()) / impressions


def _naive_ctr(events: pd.DataFrame) -> float:
    kinds = events[C.EVENT_TYPE]
    return float((kinds == C.CLICK).sum() / (kinds == C.IMPRESSION).sum())


def _inverted_ctr(events: pd.DataFrame) -> float:
    kinds = events[C.EVENT_TYPE].str.strip().str.lower()
    return float((kinds == C.IMPRESSION).sum() / max((kinds == C.CLICK).sum(), 1))


def _events(types: list[str]) -> pd.DataFrame:
    return pd.DataFrame({C.EVENT_TYPE: types})


@exercise("00.click_through_rate", solution=click_through_rate, wrong=[_naive_ctr, _inverted_ctr],
          hint="count impressions and clicks after normalising case and spaces")
def _check_ctr(fn) -> None:
    clean = _events(["impression"] * 8 + ["click"] * 2 + ["search"])
    got = fn(clean)
    if abs(got - 0.25) > 1e-9:
        raise AssertionError(f"8 impressions and 2 clicks should give 0.25, got {got!r}")
    raw = _events(["impression"] * 3 + ["Impression", " impression "] + ["CLICK", "click"] + ["purchase"])
    got = fn(raw)
    if abs(got - 0.4) > 1e-9:
        raise AssertionError(
            "raw event types come as 'CLICK', 'Impression' or ' impression ': normalise them "
            f"(strip, lower) first. 5 impressions and 2 clicks should give 0.4, got {got!r}")
