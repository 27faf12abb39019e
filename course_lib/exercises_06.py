"""Exercise checkers of lesson 06 (mind maps and explanations).

One section per exercise: the reference answer, plausible wrong answers, then the checker.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from .exercises import exercise

FEATURES = ["category_affinity", "popularity", "price_fit", "sim_attention"]


def _as_series(got: Any, index: list[str], call: str) -> pd.Series:
    """The learner's answer as a float Series on ``index`` (an array is taken in that order)."""
    if isinstance(got, pd.Series):
        missing = [i for i in index if i not in got.index]
        if missing:
            raise AssertionError(f"{call} should return a Series indexed by {index}; {missing} are missing.")
        return got.reindex(index).astype(float)
    arr = np.asarray(got, dtype=float) if got is not None else np.array([])
    if arr.shape != (len(index),):
        raise AssertionError(f"{call} should return a Series of {len(index)} numbers (one per "
                             f"{index[0]!r}...), got {type(got).__name__} {got!r}.")
    return pd.Series(arr, index=index)


def _first_match(got: pd.Series, mistakes: list[tuple[Callable[..., Any], str]], *args: Any) -> str:
    for wrong, why in mistakes:
        try:
            expected = pd.Series(wrong(*args)).reindex(got.index).astype(float)
        except Exception:
            continue
        if np.allclose(got.to_numpy(), expected.to_numpy(), atol=1e-6):
            return " " + why[0].upper() + why[1:]
    return ""


# -- 06.logistic_contribution ------------------------------------------------------------------
# contribution_i = w_i × (x_i − mean_i) / std_i: the logistic ranker's logit minus its bias, per feature.


def logistic_contribution(weights: pd.Series, mean: pd.Series, std: pd.Series, x: pd.Series) -> pd.Series:
    """``w × (x − mean) / std`` per feature (Series indexed by feature)."""
    return weights * (x - mean) / std


def _contrib_raw(weights, mean, std, x):
    """Wrong: weight × raw feature (no standardisation)."""
    return weights * x


def _contrib_no_std(weights, mean, std, x):
    """Wrong: centred but not divided by the std."""
    return weights * (x - mean)


def _contrib_no_mean(weights, mean, std, x):
    """Wrong: divided by the std but not centred."""
    return weights * x / std


def _contrib_no_weight(weights, mean, std, x):
    """Wrong: the standardised feature alone."""
    return (x - mean) / std


_CONTRIB_MISTAKES = [
    (_contrib_raw, "standardise the feature first: (x - mean) / std, as the ranker did in training."),
    (_contrib_no_std, "divide by the training std too: the weights apply to standardised features."),
    (_contrib_no_mean, "subtract the training mean: an average candidate must contribute 0."),
    (_contrib_no_weight, "multiply the standardised feature by its weight."),
]


@exercise("06.logistic_contribution", solution=logistic_contribution,
          wrong=[_contrib_raw, _contrib_no_std, _contrib_no_mean, _contrib_no_weight],
          hint="contribution = weight × (x − mean) / std, feature by feature")
def _check_logistic_contribution(fn: Callable[..., Any]) -> None:
    weights = pd.Series([0.8, 0.5, -0.3, 1.2], index=FEATURES)
    mean = pd.Series([0.2, 1.5, 0.4, 0.6], index=FEATURES)
    std = pd.Series([0.1, 2.0, 0.5, 0.25], index=FEATURES)
    for values in ([0.5, 3.5, 0.1, 0.7], [0.2, 0.0, 1.4, 0.35]):
        x = pd.Series(values, index=FEATURES)
        call = f"logistic_contribution(weights, mean, std, x={values})"
        expected = logistic_contribution(weights, mean, std, x)
        got = _as_series(fn(weights.copy(), mean.copy(), std.copy(), x.copy()), FEATURES, call)
        if not np.allclose(got.to_numpy(), expected.to_numpy(), atol=1e-6):
            why = _first_match(got, _CONTRIB_MISTAKES, weights, mean, std, x)
            raise AssertionError(f"{call} should be {expected.round(3).to_dict()}, got "
                                 f"{got.round(3).to_dict()}.{why}")


# -- 06.group_reasons --------------------------------------------------------------------------
# A reason's contribution is the SUM of its features' contributions (signs kept).

REASONS = {"in a category you like": ["category_affinity"], "popular right now": ["popularity"],
           "fits your usual price": ["price_fit"], "similar to products you viewed": ["sim_attention", "sim_mean"]}


def group_reasons(contributions: pd.Series, reasons: dict[str, list[str]]) -> pd.Series:
    """Sum the per-feature ``contributions`` (index: feature) of each reason's features."""
    return pd.Series({reason: float(contributions.reindex(features).fillna(0.0).sum())
                      for reason, features in reasons.items()})


def _group_mean(contributions, reasons):
    """Wrong: averages the features of a reason."""
    return pd.Series({r: float(contributions.reindex(f).mean()) for r, f in reasons.items()})


def _group_abs(contributions, reasons):
    """Wrong: sums absolute values (a negative feature then adds to the reason)."""
    return pd.Series({r: float(contributions.reindex(f).abs().sum()) for r, f in reasons.items()})


def _group_max(contributions, reasons):
    """Wrong: keeps the largest feature only."""
    return pd.Series({r: float(contributions.reindex(f).max()) for r, f in reasons.items()})


def _group_first(contributions, reasons):
    """Wrong: keeps the first feature only."""
    return pd.Series({r: float(contributions[f[0]]) for r, f in reasons.items()})


_GROUP_MISTAKES = [
    (_group_mean, "add the features' contributions up, do not average them: together they make the score."),
    (_group_abs, "keep the signs: a feature that lowers the score must lower its reason too."),
    (_group_max, "every feature of the reason counts: sum them all."),
    (_group_first, "every feature of the reason counts, not only its first one."),
]


@exercise("06.group_reasons", solution=group_reasons,
          wrong=[_group_mean, _group_abs, _group_max, _group_first],
          hint="for each reason, add up the contributions of its features (keep the signs)")
def _check_group_reasons(fn: Callable[..., Any]) -> None:
    names = ["category_affinity", "popularity", "price_fit", "sim_attention", "sim_mean"]
    for values in ([0.9, 0.4, -0.2, 0.6, -0.25], [-0.1, 1.3, 0.05, -0.4, 0.1]):
        contributions = pd.Series(values, index=names)
        call = f"group_reasons({contributions.to_dict()}, REASONS)"
        expected = group_reasons(contributions, REASONS)
        got = _as_series(fn(contributions.copy(), {r: list(f) for r, f in REASONS.items()}), list(REASONS), call)
        if not np.allclose(got.to_numpy(), expected.to_numpy(), atol=1e-6):
            why = _first_match(got, _GROUP_MISTAKES, contributions, REASONS)
            raise AssertionError(f"{call} should be {expected.round(3).to_dict()}, got "
                                 f"{got.round(3).to_dict()}.{why}")


# -- 06.top_reason -----------------------------------------------------------------------------
# The top reason pushes the item UP the most: the largest contribution, not the largest |contribution|.


def top_reason(reasons: pd.Series) -> str:
    """The reason with the largest (most positive) contribution."""
    return str(reasons.idxmax())


def _top_abs(reasons):
    """Wrong: the largest absolute value (may be a reason that pulls the item DOWN)."""
    return str(reasons.abs().idxmax())


def _top_min(reasons):
    """Wrong: the smallest contribution."""
    return str(reasons.idxmin())


def _top_first(reasons):
    """Wrong: the first reason listed."""
    return str(reasons.index[0])


@exercise("06.top_reason", solution=top_reason, wrong=[_top_abs, _top_min, _top_first],
          hint="the top reason is the one with the largest contribution (idxmax), signs included")
def _check_top_reason(fn: Callable[..., Any]) -> None:
    cases = [
        pd.Series({"popular right now": 0.3, "in a category you like": 0.9, "fits your usual price": -0.2}),
        pd.Series({"in a category you like": -1.4, "matches your last search": 0.6, "popular right now": 0.5}),
        pd.Series({"new in the shop": 0.05, "a brand you like": -0.01, "popular with similar shoppers": 0.7}),
    ]
    for reasons in cases:
        call = f"top_reason({reasons.to_dict()})"
        expected = top_reason(reasons)
        got = fn(reasons.copy())
        if got != expected:
            why = ""
            if got == _top_abs(reasons):
                why = (f" {got!r} has the largest size but it is negative: it pulls the item down. "
                       "Take the largest contribution, signs included.")
            elif got == _top_min(reasons):
                why = " That is the smallest contribution; take the largest."
            raise AssertionError(f"{call} should return {expected!r}, got {got!r}.{why}")


# -- 06.outside_interests ----------------------------------------------------------------------
# Flag recommended items whose category is not one of the user's interest clusters.


def outside_interests(categories: list[str], interests: dict[str, float], min_share: float = 0.05) -> list[bool]:
    """True for each category the user spends less than ``min_share`` of their activity on."""
    return [interests.get(c, 0.0) < min_share for c in categories]


def _outside_membership(categories, interests, min_share=0.05):
    """Wrong: only checks whether the category occurs at all (ignores min_share)."""
    return [c not in interests for c in categories]


def _outside_inverted(categories, interests, min_share=0.05):
    """Wrong: flags the categories the user likes."""
    return [interests.get(c, 0.0) >= min_share for c in categories]


def _outside_not_top(categories, interests, min_share=0.05):
    """Wrong: flags everything but the user's favourite category."""
    best = max(interests, key=interests.get)
    return [c != best for c in categories]


@exercise("06.outside_interests", solution=outside_interests,
          wrong=[_outside_membership, _outside_inverted, _outside_not_top],
          hint="look up each category's share of the user's activity (0 if absent) and flag it when below min_share")
def _check_outside_interests(fn: Callable[..., Any]) -> None:
    interests = {"Laptops": 0.6, "Computer Mice": 0.3, "Desk Lamps": 0.08, "Yoga Mats": 0.02}
    categories = ["Laptops", "Yoga Mats", "Desk Lamps", "Frying Pans", "Computer Mice"]
    for min_share in (0.05, 0.1):
        call = f"outside_interests({categories}, {interests}, min_share={min_share})"
        expected = outside_interests(categories, interests, min_share)
        got = fn(list(categories), dict(interests), min_share)
        got_list = [bool(g) for g in got] if isinstance(got, (list, tuple, np.ndarray, pd.Series)) else got
        if got_list != expected:
            why = ""
            if got_list == _outside_membership(categories, interests, min_share):
                why = " A category with a tiny share (Yoga Mats: 2%) is outside the interests too: compare with min_share."
            elif got_list == _outside_inverted(categories, interests, min_share):
                why = " It is the other way round: flag the categories BELOW min_share."
            elif got_list == _outside_not_top(categories, interests, min_share):
                why = " A user can have several interests: flag only categories below min_share."
            raise AssertionError(f"{call} should return {expected}, got {got!r}.{why}")

