"""Exercise checkers of lesson 04 (recommendation and ranking).

One section per exercise: the reference answer, plausible wrong answers, then the checker.
"""
from __future__ import annotations

import math
import numbers
from collections import Counter
from itertools import combinations
from typing import Any, Callable

import numpy as np

from .exercises import exercise
from .recommend import attention_interest, intra_list_diversity

# -- 04.attention_interest ---------------------------------------------------------------------
# The learner writes attention_interest(history [n, dim], target [dim], temperature) -> [dim]:
# weights = softmax(cos(history_i, target) / temperature), interest = normalise(sum_i w_i h_i).


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, float) / np.linalg.norm(x, axis=-1, keepdims=True)


def _attention_no_temperature(history, target, temperature=0.1):
    """Wrong: forgets to divide the similarities by the temperature."""
    w = _softmax(_unit(history) @ _unit(target))
    return _unit(w @ np.asarray(history, float))


def _attention_times_temperature(history, target, temperature=0.1):
    """Wrong: multiplies by the temperature (a low temperature then flattens the weights)."""
    w = _softmax(_unit(history) @ _unit(target) * temperature)
    return _unit(w @ np.asarray(history, float))


def _attention_not_normalised(history, target, temperature=0.1):
    """Wrong: the weighted sum is returned without L2-normalising it."""
    w = _softmax(_unit(history) @ _unit(target) / temperature)
    return w @ np.asarray(history, float)


def _attention_mean(history, target, temperature=0.1):
    """Wrong: ignores the target (plain mean interest)."""
    return _unit(np.asarray(history, float).mean(axis=0))


def _attention_dot_not_cosine(history, target, temperature=0.1):
    """Wrong: raw dot products instead of cosine similarities: long vectors dominate."""
    h = np.asarray(history, float)
    w = _softmax(h @ np.asarray(target, float) / temperature)
    return _unit(w @ h)


_ATTENTION_MISTAKES = [
    (_attention_no_temperature, "divide the similarities by the temperature before the softmax."),
    (_attention_times_temperature, "divide by the temperature; do not multiply."),
    (_attention_not_normalised, "L2-normalise the weighted sum (interest vectors have length 1)."),
    (_attention_mean, "the weights must depend on the target: softmax(similarity / temperature)."),
    (_attention_dot_not_cosine, "use cosine similarity: normalise the history vectors and the target first."),
]


def _attention_cases() -> list[tuple[np.ndarray, np.ndarray, float]]:
    history = np.array([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.6, 0.8], [1.0, 1.0, 0.0]])
    return [(history, np.array([0.0, 2.0, 0.1]), 0.1),
            (history, np.array([1.0, 0.0, 0.0]), 0.5),
            (history, np.array([0.2, 0.3, 1.0]), 5.0)]


@exercise("04.attention_interest", solution=attention_interest,
          wrong=[_attention_no_temperature, _attention_times_temperature, _attention_not_normalised,
                 _attention_mean, _attention_dot_not_cosine],
          hint="w = softmax(cos(h_i, target) / temperature); interest = normalise(sum_i w_i h_i)")
def _check_attention_interest(fn: Callable[..., Any]) -> None:
    for history, target, temperature in _attention_cases():
        call = f"attention_interest(history, target={target.tolist()}, temperature={temperature})"
        expected = attention_interest(history, target, temperature).astype(float)
        got = np.asarray(fn(history.copy(), target.copy(), temperature), dtype=float)
        if got.shape != expected.shape:
            raise AssertionError(f"{call} should return a vector of shape {expected.shape}, got shape {got.shape}.")
        if not np.allclose(got, expected, atol=1e-5):
            why = next((hint for wrong, hint in _ATTENTION_MISTAKES
                        if np.allclose(got, wrong(history, target, temperature), atol=1e-5)), "")
            raise AssertionError(f"{call} should be about {np.round(expected, 4).tolist()}, got "
                                 f"{np.round(got, 4).tolist()}." + (f" {why[0].upper()}{why[1:]}" if why else ""))


# -- 04.intra_list_diversity -------------------------------------------------------------------
# The learner writes intra_list_diversity(vectors [n, dim]) -> 1 - mean cosine over pairs i != j.


def _diversity_with_diagonal(vectors):
    """Wrong: averages over all n*n pairs, including each item with itself (cosine 1)."""
    v = _unit(vectors)
    return float(1.0 - (v @ v.T).mean())


def _diversity_dot(vectors):
    """Wrong: dot products of unnormalised vectors instead of cosines."""
    v = np.asarray(vectors, float)
    n = len(v)
    s = v @ v.T
    return float(1.0 - (s.sum() - np.trace(s)) / (n * (n - 1)))


def _diversity_mean_similarity(vectors):
    """Wrong: returns the mean pairwise similarity, not one minus it."""
    return 1.0 - intra_list_diversity(vectors)


_DIVERSITY_MISTAKES = [
    (_diversity_with_diagonal, "leave out the pairs of an item with itself (i != j): their cosine is always 1."),
    (_diversity_dot, "use cosine similarity: normalise each vector first."),
    (_diversity_mean_similarity, "diversity is 1 minus the mean pairwise cosine similarity."),
]


@exercise("04.intra_list_diversity", solution=intra_list_diversity,
          wrong=[_diversity_with_diagonal, _diversity_dot, _diversity_mean_similarity],
          hint="normalise the vectors, take the cosine of every pair i != j, return 1 - their mean")
def _check_diversity(fn: Callable[..., Any]) -> None:
    cases = [np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]),
             np.array([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0]]),
             np.array([[1.0, 2.0, 0.5], [-1.0, 0.5, 0.0], [0.0, 0.0, 4.0], [1.0, 1.0, 1.0]])]
    for vectors in cases:
        call = f"intra_list_diversity({vectors.tolist()})"
        expected = intra_list_diversity(vectors)
        got = fn(vectors.copy())
        ok = isinstance(got, numbers.Real) and not isinstance(got, bool) and math.isclose(
            float(got), expected, abs_tol=1e-6)
        if not ok:
            why = next((hint for wrong, hint in _DIVERSITY_MISTAKES
                        if isinstance(got, numbers.Real) and math.isclose(float(got), wrong(vectors), abs_tol=1e-6)),
                       "")
            shown = float(got) if isinstance(got, numbers.Real) else got
            raise AssertionError(f"{call} should return about {expected:.4f}, got {shown!r}."
                                 + (f" {why[0].upper()}{why[1:]}" if why else ""))


# -- 04.cooccurrence ---------------------------------------------------------------------------
# The learner writes cooccurrence(baskets: list[list[str]]) -> dict[(a, b), int] with a < b:
# in how many baskets (users or sessions) both a and b occur. Repeats inside a basket count once.


def cooccurrence(baskets: list[list[str]]) -> dict[tuple[str, str], int]:
    """``{(a, b): number of baskets containing both}`` for every pair with ``a < b``."""
    counts: Counter = Counter()
    for basket in baskets:
        counts.update(combinations(sorted(set(basket)), 2))
    return dict(counts)


def _cooc_no_dedupe(baskets):
    """Wrong: a product clicked twice in one basket counts twice."""
    counts: Counter = Counter()
    for basket in baskets:
        items = sorted(basket)
        counts.update((a, b) for a, b in combinations(items, 2) if a != b)
    return dict(counts)


def _cooc_both_orders(baskets):
    """Wrong: counts (a, b) and (b, a) as two keys."""
    counts: Counter = Counter()
    for basket in baskets:
        items = set(basket)
        counts.update((a, b) for a in items for b in items if a != b)
    return dict(counts)


def _cooc_self_pairs(baskets):
    """Wrong: counts a product with itself."""
    counts: Counter = Counter()
    for basket in baskets:
        items = sorted(set(basket))
        counts.update((a, b) for i, a in enumerate(items) for b in items[i:])
    return dict(counts)


def _cooc_adjacent_only(baskets):
    """Wrong: only neighbours in the basket's order are counted."""
    counts: Counter = Counter()
    for basket in baskets:
        for a, b in zip(basket, basket[1:]):
            if a != b:
                counts[tuple(sorted((a, b)))] += 1
    return dict(counts)


@exercise("04.cooccurrence", solution=cooccurrence,
          wrong=[_cooc_no_dedupe, _cooc_both_orders, _cooc_self_pairs, _cooc_adjacent_only],
          hint="for each basket take its set of products and count every pair (a, b) with a < b once")
def _check_cooccurrence(fn: Callable[..., Any]) -> None:
    baskets = [["p3", "p1", "p2"], ["p1", "p2", "p1"], ["p2", "p4"], ["p5"]]
    expected = cooccurrence(baskets)
    got = fn([list(b) for b in baskets])
    if not isinstance(got, dict):
        raise AssertionError(f"cooccurrence(baskets) should return a dict, got {type(got).__name__}.")
    got = {k: v for k, v in got.items() if v}
    if got == expected:
        return
    keys = set(got)
    if any(isinstance(k, tuple) and len(k) == 2 and k[0] == k[1] for k in keys):
        why = "A product does not co-occur with itself: count pairs of two different products."
    elif any(isinstance(k, tuple) and len(k) == 2 and k[0] > k[1] for k in keys):
        why = "Count each pair once, as (a, b) with a < b (sort the products)."
    elif ("p2", "p3") not in got:
        why = "Every pair in a basket co-occurs, not only neighbours."
    elif got.get(("p1", "p2"), 0) > expected[("p1", "p2")]:
        why = "p1 appears twice in the second basket; a basket counts once per pair (use a set)."
    else:
        why = ""
    raise AssertionError(f"cooccurrence({baskets}) should return {expected}, got {got}. {why}".strip())
