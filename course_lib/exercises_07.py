"""Exercise checkers of lesson 07 (business innovation workshop).

One section per exercise: the reference answer, plausible wrong answers, then the checker.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import numpy as np

from . import innovation
from .exercises import expect_close, expect_equal, exercise

# -- 07.lift --------------------------------------------------------------------------------
# lift(n_both, n_a, n_b, n): baskets with both, with a, with b, and all baskets.


def _confidence(n_both: float, n_a: float, n_b: float, n: float) -> float:
    """Wrong: the confidence of a -> b, not the lift."""
    return n_both / n_a


def _support(n_both: float, n_a: float, n_b: float, n: float) -> float:
    """Wrong: the support of the pair."""
    return n_both / n


def _lift_forgets_n(n_both: float, n_a: float, n_b: float, n: float) -> float:
    """Wrong: counts instead of shares, so the number of baskets is lost."""
    return n_both / (n_a * n_b)


def _jaccard(n_both: float, n_a: float, n_b: float, n: float) -> float:
    """Wrong: the Jaccard overlap of the two basket sets."""
    return n_both / (n_a + n_b - n_both)


# (n_both, n_a, n_b, n, lift)
_LIFT_CASES = [(3, 10, 6, 100, 5.0), (2, 4, 5, 10, 1.0), (0, 5, 5, 50, 0.0), (6, 12, 20, 40, 1.0),
               (1, 8, 9, 24, 1 / 3)]


@exercise(
    "07.lift",
    solution=innovation.lift,
    wrong=[_confidence, _support, _lift_forgets_n, _jaccard],
    hint="lift = support(a and b) / (support(a) × support(b)), where support = baskets / all "
         "baskets; so lift = n_both × n / (n_a × n_b).",
)
def _check_lift(fn: Callable[..., Any]) -> None:
    for n_both, n_a, n_b, n, expected in _LIFT_CASES:
        expect_close(fn(n_both, n_a, n_b, n), expected, f"lift({n_both}, {n_a}, {n_b}, {n})")


# -- 07.head_share --------------------------------------------------------------------------
# head_share(values, top=0.2): share of the total held by the ceil(top × n) largest values.


def _head_floor(values: list[float], top: float = 0.2) -> float:
    """Wrong: int(top × n) rounds down (and can keep no product at all)."""
    x = sorted(values, reverse=True)
    return sum(x[:int(top * len(x))]) / sum(x) if sum(x) else 0.0


def _head_unsorted(values: list[float], top: float = 0.2) -> float:
    """Wrong: takes the first products in the given order, not the most clicked."""
    k = max(1, math.ceil(top * len(values) - 1e-9))
    return sum(values[:k]) / sum(values) if sum(values) else 0.0


def _head_bottom(values: list[float], top: float = 0.2) -> float:
    """Wrong: sorts ascending, so it measures the tail, not the head."""
    x = sorted(values)
    k = max(1, math.ceil(top * len(x) - 1e-9))
    return sum(x[:k]) / sum(x) if sum(x) else 0.0


def _head_zero_division(values: list[float], top: float = 0.2) -> float:
    """Wrong: divides by a zero total when nothing was clicked."""
    x = sorted(values, reverse=True)
    return sum(x[:max(1, math.ceil(top * len(x) - 1e-9))]) / sum(x)


# (values, top, expected)
_HEAD_CASES = [
    ([5, 1, 0, 0, 4, 10, 0, 0, 0, 0], 0.2, 0.75),        # top 2 of 10: 10 + 5 of 20
    ([1, 2, 3, 4, 5, 6, 9], 0.2, 15 / 30),               # ceil(1.4) = 2: 9 + 6 of 30
    ([2, 2, 6], 0.2, 0.6),                               # ceil(0.6) = 1: 6 of 10
    ([3, 1, 4, 1, 5], 0.5, 12 / 14),                     # ceil(2.5) = 3: 5 + 4 + 3 of 14
    ([0, 0, 0, 0], 0.2, 0.0),                            # nothing clicked
]


@exercise(
    "07.head_share",
    solution=innovation.head_share,
    wrong=[_head_floor, _head_unsorted, _head_bottom, _head_zero_division],
    hint="sort the values from largest to smallest, keep the first ceil(top × n) (at least one), "
         "divide their sum by the total; return 0.0 when the total is 0.",
)
def _check_head_share(fn: Callable[..., Any]) -> None:
    for values, top, expected in _HEAD_CASES:
        expect_close(fn(list(values), top), expected, f"head_share({values}, top={top})")


# -- 07.price_band --------------------------------------------------------------------------
# price_band(prices, n_bands=3) -> one int per price, 0 = cheapest, like pd.qcut(labels=False).


def _band_equal_width(prices: list[float], n_bands: int = 3) -> np.ndarray:
    """Wrong: equal-width bins between min and max (pd.cut), not quantiles."""
    x = np.asarray(prices, dtype=float)
    edges = np.linspace(x.min(), x.max(), n_bands + 1)[1:-1]
    return np.searchsorted(edges, x, side="left")


def _band_edge_up(prices: list[float], n_bands: int = 3) -> np.ndarray:
    """Wrong: a price equal to an edge goes to the upper band."""
    x = np.asarray(prices, dtype=float)
    edges = np.quantile(x, np.linspace(0, 1, n_bands + 1)[1:-1])
    return np.searchsorted(edges, x, side="right")


def _band_by_rank(prices: list[float], n_bands: int = 3) -> np.ndarray:
    """Wrong: splits the sorted list into equal counts, so equal prices land in different bands."""
    x = np.asarray(prices, dtype=float)
    ranks = np.argsort(np.argsort(x, kind="stable"), kind="stable")
    return ranks * n_bands // len(x)


def _band_one_based(prices: list[float], n_bands: int = 3) -> np.ndarray:
    """Wrong: bands 1..n instead of 0..n-1."""
    return innovation.price_band(prices, n_bands) + 1


# (prices, n_bands): the expected bands come from pd.qcut, worked out by hand in the comments
_BAND_CASES = [
    ([60.0, 10.0, 40.0, 20.0, 50.0, 30.0], 3, [2, 0, 1, 0, 2, 1]),  # edges 26.67 and 43.33
    ([1.0, 2.0, 3.0, 4.0, 100.0], 2, [0, 0, 0, 1, 1]),              # median 3 stays in band 0
    ([5.0, 5.0, 5.0, 5.0], 2, [0, 0, 0, 0]),                        # equal prices, one band
    ([9.99, 19.99, 4.99, 14.99], 4, [1, 3, 0, 2]),                  # quartiles, shuffled order
]


@exercise(
    "07.price_band",
    solution=innovation.price_band,
    wrong=[_band_equal_width, _band_edge_up, _band_by_rank, _band_one_based],
    hint="edges = np.quantile(prices, [1/n, 2/n, …, (n-1)/n]); a price's band is the number of "
         "edges strictly below it (np.searchsorted(edges, prices, side='left')), as "
         "pd.qcut(prices, n, labels=False) does.",
)
def _check_price_band(fn: Callable[..., Any]) -> None:
    for prices, n_bands, expected in _BAND_CASES:
        got = fn(list(prices), n_bands)
        got = [int(v) for v in np.asarray(got).ravel()] if got is not None else None
        expect_equal(got, expected, f"price_band({prices}, {n_bands})")


# -- 07.add_idea ----------------------------------------------------------------------------
# add_idea(m, branch, idea, figure) -> the new node id: a "figure" node under `branch` labelled
# f"{idea}: {round(figure, 3):,}", id f"{branch}/idea{k}" (k = 1, 2, ...); a figure that is not a
# finite number raises ValueError.


def _idea_under_root(m, branch: str, idea: str, figure: float) -> str:
    """Wrong: hangs the idea on the root, not on its branch."""
    innovation.add_idea(m, innovation.ROOT, idea, figure)
    return max((n for n in m.nodes if n.startswith(f"{innovation.ROOT}/idea")), key=len)


def _idea_without_number(m, branch: str, idea: str, figure: float) -> str:
    """Wrong: the node has no number, so nothing backs the idea."""
    k = 1
    while f"{branch}/idea{k}" in m.nodes:
        k += 1
    return m.add_child(branch, f"{branch}/idea{k}", idea, kind="figure")


def _idea_accepts_nan(m, branch: str, idea: str, figure: float) -> str:
    """Wrong: accepts NaN, an idea without a number."""
    k = 1
    while f"{branch}/idea{k}" in m.nodes:
        k += 1
    return m.add_child(branch, f"{branch}/idea{k}", f"{idea}: {round(figure, 3):,}", kind="figure")


def _idea_fixed_id(m, branch: str, idea: str, figure: float) -> str:
    """Wrong: always the same id, so a second idea on the branch fails."""
    if not isinstance(figure, numbers.Real) or not math.isfinite(figure):
        raise ValueError("need a number")
    return m.add_child(branch, f"{branch}/idea1", f"{idea}: {round(figure, 3):,}", kind="figure")


def _tree_parent(m, node_id: str) -> str | None:
    return next((e.src for e in m.edges if e.kind == "tree" and e.dst == node_id), None)


@exercise(
    "07.add_idea",
    solution=innovation.add_idea,
    wrong=[_idea_under_root, _idea_without_number, _idea_accepts_nan, _idea_fixed_id],
    hint="check that the figure is a finite number (else raise ValueError), find the first free "
         "id f'{branch}/idea{k}', then m.add_child(branch, id, f'{idea}: {round(figure, 3):,}', "
         "kind='figure') and return the id.",
)
def _check_add_idea(fn: Callable[..., Any]) -> None:
    m = innovation.template_map()
    for k, (idea, figure) in enumerate([("products never clicked", 0.3636),
                                        ("tail products", 2764)], start=1):
        call = f"add_idea(m, 'long_tail', {idea!r}, {figure})"
        node = fn(m, "long_tail", idea, figure)
        expect_equal(node, f"long_tail/idea{k}", call)
        expect_equal(_tree_parent(m, node), "long_tail", f"the parent of the node of {call}")
        expect_equal(m.nodes[node].label, f"{idea}: {round(figure, 3):,}", f"the label of the node of {call}")
        expect_equal(m.nodes[node].kind, "figure", f"the kind of the node of {call}")
    before = len(m.nodes)
    try:
        fn(m, "bundles", "lift of Laptops -> Mice", float("nan"))
    except ValueError:
        pass
    else:
        raise AssertionError("add_idea(m, 'bundles', ..., nan) should raise ValueError: "
                             "an idea needs a number.")
    expect_equal(len(m.nodes), before, "the number of nodes after the refused NaN idea")
