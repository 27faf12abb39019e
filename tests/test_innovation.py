"""Tests for course_lib.innovation: every workshop figure against a hand computation on tiny tables."""
from __future__ import annotations

import math
from itertools import product as cartesian

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import columns as C
from course_lib import innovation as I
from course_lib.cleaning import load_clean
from course_lib.exercises import check, solution_for, stub, wrong_answers_for
from test_mindmap import edges, real_nodes

PRODUCTS = pd.DataFrame({
    C.PRODUCT_ID: ["P1", "P2", "P3", "P4", "P5", "P6"],
    C.CATEGORY: ["Laptops", "Laptops", "Mice", "Mice", "Pillows", "Pillows"],
    C.PRICE: [1000.0, 800.0, 20.0, 30.0, 25.0, 40.0],
})
_EV = [  # (user, session, event type, product)
    ("u1", "s1", "impression", "P1"), ("u1", "s1", "impression", "P1"), ("u1", "s1", "click", "P1"),
    ("u1", "s1", "add_to_cart", "P1"), ("u1", "s1", "purchase", "P1"),
    ("u1", "s2", "impression", "P3"), ("u1", "s2", "click", "P3"), ("u1", "s2", "purchase", "P3"),
    ("u2", "s3", "impression", "P2"), ("u2", "s3", "impression", "P2"), ("u2", "s3", "click", "P2"),
    ("u2", "s3", "purchase", "P2"),
    ("u2", "s4", "impression", "P4"), ("u2", "s4", "purchase", "P4"),
    ("u3", "s5", "impression", "P1"), ("u3", "s5", "impression", "P1"), ("u3", "s5", "click", "P1"),
    ("u3", "s6", "impression", "P3"), ("u3", "s6", "impression", "P3"),
    ("u4", "s7", "search", ""), ("u4", "s7", "impression", "P5"), ("u4", "s7", "click", "P5"),
    ("u4", "s7", "purchase", "P5"),
]
EVENTS = pd.DataFrame(_EV, columns=[C.USER_ID, C.SESSION_ID, C.EVENT_TYPE, C.PRODUCT_ID])


@pytest.fixture(scope="module")
def activity() -> pd.DataFrame:
    return I.product_activity(PRODUCTS, EVENTS)


def test_product_activity_counts(activity):
    a = activity.set_index(C.PRODUCT_ID)
    assert a[C.IMPRESSIONS].tolist() == [4, 2, 3, 1, 1, 0]
    assert a[C.CLICKS].tolist() == [2, 1, 1, 0, 1, 0]
    assert a[C.INTERACTIONS].tolist() == [4, 2, 2, 1, 2, 0]  # P1: 2 clicks, 1 cart, 1 purchase
    assert a[C.PURCHASES].tolist() == [1, 1, 1, 1, 1, 0]
    assert a[C.REVENUE].tolist() == [1000.0, 800.0, 20.0, 30.0, 25.0, 0.0]
    with pytest.raises(ValueError, match="price"):
        I.product_activity(PRODUCTS.drop(columns=[C.PRICE]), EVENTS)


def _gini_by_pairs(x: list[float]) -> float:
    """The textbook definition: mean absolute difference over twice the mean."""
    n, mean = len(x), sum(x) / len(x)
    return sum(abs(a - b) for a, b in cartesian(x, x)) / (2 * n * n * mean)


def test_gini_and_head_share_by_hand():
    assert I.gini([0, 0, 0, 10]) == pytest.approx(0.75)
    assert I.gini([3, 3, 3]) == 0.0 and I.gini([0, 0]) == 0.0
    assert I.gini([0, 0, 1, 1, 1, 2]) == pytest.approx(13 / 30)
    assert I.head_share([0, 0, 1, 1, 1, 2], 0.2) == pytest.approx(3 / 5)  # ceil(1.2) = 2 products
    assert I.head_share([1] * 15, 0.2) == pytest.approx(3 / 15)  # 0.2 × 15 is 3, not 4
    assert I.head_share([0, 0, 0]) == 0.0
    with pytest.raises(ValueError, match="finite"):
        I.gini([1, -1])
    with pytest.raises(ValueError, match="no values"):
        I.head_share([])


@settings(max_examples=40, deadline=None, database=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=25))
def test_gini_matches_the_pairwise_definition(values):
    expected = _gini_by_pairs(values) if sum(values) else 0.0
    assert I.gini(values) == pytest.approx(expected, abs=1e-12)


def test_long_tail_by_hand(activity):
    lt = I.long_tail(activity, few=1, top=0.2)
    assert lt["products"] == 6
    assert lt["never_shown"] == pytest.approx(1 / 6)           # P6
    assert lt["never_clicked"] == pytest.approx(2 / 6)         # P4, P6
    assert lt["tail_products"] == pytest.approx(5 / 6)         # at most one click: all but P1
    assert lt["tail_impressions"] == pytest.approx(7 / 11)
    assert lt["tail_clicks"] == pytest.approx(3 / 5)
    assert lt["head_clicks"] == pytest.approx(3 / 5)           # P1 (2) and one product with 1
    assert lt["gini_clicks"] == pytest.approx(13 / 30)


def test_cold_start_by_hand(activity):
    cold = I.cold_start_categories(activity)
    assert cold[C.CATEGORY].tolist() == ["Pillows", "Laptops", "Mice"]
    assert cold[C.PRODUCTS_COUNT].tolist() == [2, 2, 2]
    assert cold[C.NO_INTERACTION].tolist() == [1, 0, 0]
    assert cold["share"].tolist() == [0.5, 0.0, 0.0]


def test_bundle_rules_by_hand():
    # purchase baskets per user: u1 {Laptops, Mice}, u2 {Laptops, Mice}, u4 {Pillows}: 3 baskets
    rules = I.bundle_rules(PRODUCTS, EVENTS)
    assert list(zip(rules[C.CATEGORY_A], rules[C.CATEGORY_B])) == [("Laptops", "Mice"),
                                                                    ("Mice", "Laptops")]
    assert rules[C.BASKETS].tolist() == [2, 2]
    np.testing.assert_allclose(rules[C.SUPPORT], [2 / 3, 2 / 3])
    np.testing.assert_allclose(rules[C.CONFIDENCE], [2 / 2, 2 / 2])
    np.testing.assert_allclose(rules[C.LIFT], [(2 / 3) / ((2 / 3) * (2 / 3))] * 2)  # 1.5
    assert rules[C.COMPLEMENT].tolist() == [True, True]  # a mouse complements a laptop
    assert I.bundle_rules(PRODUCTS, EVENTS, by=C.SESSION_ID).empty  # one category per session
    assert I.bundle_rules(PRODUCTS, EVENTS, min_baskets=3).empty
    assert I.lift(2, 2, 2, 3) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="positive"):
        I.lift(1, 0, 2, 3)


def test_bundle_rules_on_a_larger_hand_table():
    # 10 users; Laptops bought by 5, Mice by 4, both by 3; Pillows by 2 (one with a Laptop)
    rows = []
    for i in range(10):
        u = f"u{i}"
        if i < 5:
            rows.append((u, f"s{i}a", "purchase", "P1"))
        if 2 <= i < 6:
            rows.append((u, f"s{i}b", "purchase", "P3"))
        if i in (4, 9):
            rows.append((u, f"s{i}c", "purchase", "P5"))
        if i == 8:
            rows.append((u, f"s{i}d", "click", "P1"))
    ev = pd.DataFrame(rows, columns=EVENTS.columns)
    rules = I.bundle_rules(PRODUCTS, ev).set_index([C.CATEGORY_A, C.CATEGORY_B])
    n = 7  # users 0-5 and 9 bought something (user 8 only clicked)
    lm = rules.loc[("Laptops", "Mice")]
    assert lm[C.BASKETS] == 3
    assert lm[C.SUPPORT] == pytest.approx(3 / n)
    assert lm[C.CONFIDENCE] == pytest.approx(3 / 5)
    assert rules.loc[("Mice", "Laptops"), C.CONFIDENCE] == pytest.approx(3 / 4)
    assert lm[C.LIFT] == pytest.approx((3 / n) / ((5 / n) * (4 / n)))
    assert not rules.loc[("Laptops", "Pillows"), C.COMPLEMENT]
    only = I.bundle_rules(PRODUCTS, ev, complements_only=True)
    assert set(only[C.CATEGORY_A]) == {"Laptops", "Mice"} and only[C.COMPLEMENT].all()


@settings(max_examples=30, deadline=None, database=None)
@given(st.lists(st.floats(1, 1000, allow_nan=False), min_size=4, max_size=40, unique=True),
       st.integers(2, 5))
def test_price_band_agrees_with_pandas_qcut(prices, n_bands):
    expected = pd.qcut(prices, n_bands, labels=False).tolist()
    assert I.price_band(prices, n_bands).tolist() == expected


def test_price_bands_by_hand(activity):
    # within each category the cheaper product is band 0: P2, P3, P5; band 1: P1, P4, P6
    table = I.price_bands(activity, n_bands=2)
    laptops0 = table[(table[C.CATEGORY] == "Laptops") & (table[C.PRICE_BAND] == 0)].iloc[0]
    assert laptops0[C.PRODUCTS_COUNT] == 1 and laptops0["price_max"] == 800.0
    assert laptops0[C.CTR] == pytest.approx(1 / 2) and laptops0[C.CONVERSION] == 1.0
    pillows1 = table[(table[C.CATEGORY] == "Pillows") & (table[C.PRICE_BAND] == 1)].iloc[0]
    assert pillows1[C.IMPRESSIONS] == 0 and math.isnan(pillows1[C.CTR])
    pooled = I.price_bands(activity, n_bands=2, by_category=False).set_index(C.PRICE_BAND)
    assert pooled[C.PRODUCTS_COUNT].tolist() == [3, 3]
    assert pooled[C.IMPRESSIONS].tolist() == [2 + 3 + 1, 4 + 1 + 0]
    assert pooled[C.CLICKS].tolist() == [3, 2]
    assert pooled[C.PURCHASES].tolist() == [3, 2]
    np.testing.assert_allclose(pooled[C.CTR], [3 / 6, 2 / 5])
    np.testing.assert_allclose(pooled[C.CONVERSION], [3 / 3, 2 / 2])
    np.testing.assert_allclose(pooled[C.REVENUE], [800 + 20 + 25, 1000 + 30])
    with pytest.raises(ValueError, match="n_bands"):
        I.price_band([1.0, 2.0], 0)


def test_revenue_baseline_and_what_if_by_hand():
    d = I.revenue_baseline(PRODUCTS, EVENTS)
    assert d[C.VISITORS] == 7                       # sessions s1..s7
    assert d[C.CTR] == pytest.approx(5 / 7)         # s1 s2 s3 s5 s7 clicked
    assert d[C.CONVERSION] == pytest.approx(5 / 5)  # s1 s2 s3 s4 s7 bought
    assert d[C.REVENUE] == pytest.approx(1000 + 20 + 800 + 30 + 25)
    assert d[C.ORDER_VALUE] == pytest.approx(1875 / 5)
    assert math.prod(d[k] for k in (C.VISITORS, C.CTR, C.CONVERSION, C.ORDER_VALUE)) == \
        pytest.approx(d[C.REVENUE])
    up = I.what_if(d, ctr=0.1)
    assert up[C.CTR] == pytest.approx(d[C.CTR] * 1.1)
    assert up[C.REVENUE] == pytest.approx(d[C.REVENUE] * 1.1)
    with pytest.raises(KeyError, match="clicks"):
        I.what_if(d, clicks=0.1)


# -- the idea maps ----------------------------------------------------------------------------
def _children(src: str, parent: str) -> list[str]:
    return [dst for (s, dst) in edges(src) if s == parent]


def test_template_map_has_empty_idea_branches():
    src = I.template_map().source
    labels = real_nodes(src)
    assert _children(src, I.ROOT) == list(I.BRANCHES)
    for branch, (title, question) in I.BRANCHES.items():
        assert labels[branch] == title
        assert _children(src, branch) == [f"{branch}/question"]
        assert labels[f"{branch}/question"] == question
    assert "__legend_kind_placeholder" in src and "__legend_kind_figure" not in src


def test_add_idea_backs_each_idea_with_a_number():
    m = I.template_map()
    assert I.add_idea(m, "bundles", "lift of Laptops -> Mice", 1.4194) == "bundles/idea1"
    assert I.add_idea(m, "bundles", "users", 12_345) == "bundles/idea2"
    assert I.add_idea(m, "long_tail", "never clicked", 0.36, "{:.0%}") == "long_tail/idea1"
    labels = real_nodes(m.source)
    assert labels["bundles/idea1"] == "lift of Laptops -> Mice: 1.419"
    assert labels["bundles/idea2"] == "users: 12,345"
    assert labels["long_tail/idea1"] == "never clicked: 36%"
    for bad in (float("nan"), float("inf"), None, "many"):
        with pytest.raises(ValueError, match="needs a finite number"):
            I.add_idea(m, "bundles", "x", bad)
    with pytest.raises(KeyError, match="nowhere"):
        I.add_idea(m, "nowhere", "x", 1.0)


def test_opportunity_map_on_smoke_data_shows_the_hand_computed_numbers():
    tables = load_clean("smoke")
    products, ev = tables[C.PRODUCTS], tables[C.EVENTS]
    opps = I.find_opportunities(products, ev)
    src = I.opportunity_map(opps, top=3).source
    assert src == I.opportunity_map(I.find_opportunities(products, ev), top=3).source
    labels = real_nodes(src)
    clicked = set(ev.loc[ev[C.EVENT_TYPE] == C.CLICK, C.PRODUCT_ID])
    never = sum(pid not in clicked for pid in products[C.PRODUCT_ID]) / len(products)
    assert labels["long_tail/idea1"] == f"products never clicked: {never:.0%}"
    touched = set(ev.loc[ev[C.EVENT_TYPE].isin(C.INTERACTION_TYPES), C.PRODUCT_ID])
    cold = {}
    for pid, cat in zip(products[C.PRODUCT_ID], products[C.CATEGORY]):
        n, k = cold.get(cat, (0, 0))
        cold[cat] = (n + 1, k + (pid not in touched))
    ranked = sorted(cold.items(), key=lambda kv: (-kv[1][1], -kv[1][1] / kv[1][0], kv[0]))
    for i, (cat, (n, k)) in enumerate(ranked[:3], start=1):
        assert labels[f"cold_start/idea{i}"] == f"{cat}: products without interaction: {k:,} of {n}"
    for branch in I.BRANCHES:
        assert _children(src, branch), branch  # every idea has at least one number
    revenue = sum(dict(zip(products[C.PRODUCT_ID], products[C.PRICE]))[p]
                  for p in ev.loc[ev[C.EVENT_TYPE] == C.PURCHASE, C.PRODUCT_ID])
    assert labels["your_idea/idea1"] == f"today's revenue: ${revenue:,.0f}"
    figures = opps.key_figures()
    assert figures["share of products never clicked"] == round(never, 4)
    assert figures["top cold-start category"] == ranked[0][0]


# -- lesson 07's exercises ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["07.lift", "07.head_share", "07.price_band", "07.add_idea"])
def test_exercise_07_accepts_the_solution_and_rejects_wrong_answers(name, capsys):
    assert check(name, solution_for(name)) is True
    assert check(name, stub) is False
    wrong = wrong_answers_for(name)
    assert len(wrong) >= 3
    for answer in wrong:
        assert check(name, answer) is False, answer.__doc__
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"✅ {name}: correct!" and all(line.startswith(("❌", "⏭")) for line in out[1:])
