"""Tests for course_lib.maps: each map's DOT source against numbers computed here from the data."""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections import Counter
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from course_lib import columns as C
from course_lib import maps
from course_lib.cleaning import load_clean
from course_lib.mindmap import NEGATIVE_COLOR, dot_available, to_svg
from course_lib.retrieval import parse_query
from course_lib.taxonomy import LEAVES, LEAF_BY_NOUN
from test_mindmap import _EDGE_RE, SVG_NS, _QUOTED, _unquote, edges, real_nodes

needs_dot = pytest.mark.skipif(not dot_available(), reason="Graphviz 'dot' is not installed")


def edge_label(attrs: str) -> str | None:
    match = re.search(rf'\blabel=({_QUOTED}|[^ \]]+)', attrs)
    return _unquote(match.group(1)) if match else None


def edge_list(source: str) -> list[tuple[str, str, str]]:
    """Every edge (a pair of nodes may have several: bought together and complements)."""
    found = [(_unquote(a), _unquote(b), attrs) for a, b, attrs in _EDGE_RE.findall(source)]
    return [e for e in found if not e[0].startswith("__legend")]


@pytest.fixture(scope="module")
def world() -> dict[str, pd.DataFrame]:
    return load_clean("smoke")


# -- linear contributions -------------------------------------------------------------------
def test_linear_contributions_by_hand():
    feats = pd.DataFrame({C.PRODUCT_ID: ["a", "b", "c"], "sim": [1.0, 2.0, 3.0],
                          "pop": [10.0, 10.0, 40.0], "flat": [5.0, 5.0, 5.0]})
    weights = {"sim": 2.0, "pop": -0.5, "flat": 3.0}
    out = maps.linear_contributions(feats, weights, bias=0.25)
    assert out.columns.tolist() == [C.PRODUCT_ID, C.REASON, C.CONTRIBUTION]
    assert out[C.PRODUCT_ID].tolist() == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert out[C.REASON].tolist() == ["sim", "pop", "flat"] * 3
    sd_sim, sd_pop = math.sqrt(2 / 3), math.sqrt(200)  # population stds
    expected = [2 * (1 - 2) / sd_sim, -0.5 * (10 - 20) / sd_pop, 0.0,
                0.0, -0.5 * (10 - 20) / sd_pop, 0.0,
                2 * (3 - 2) / sd_sim, -0.5 * (40 - 20) / sd_pop, 0.0]
    np.testing.assert_allclose(out[C.CONTRIBUTION], expected)
    scores = maps.linear_scores(feats, weights, bias=0.25)
    sums = [sum(expected[i:i + 3]) + 0.25 for i in (0, 3, 6)]
    np.testing.assert_allclose(scores[C.SCORE], sums)
    # given training statistics are used as they are
    fixed = maps.linear_contributions(feats, {"sim": 1.0}, feature_means={"sim": 0.0},
                                      feature_stds={"sim": 2.0})
    assert fixed[C.CONTRIBUTION].tolist() == [0.5, 1.0, 1.5]


def test_linear_contributions_name_bad_input():
    feats = pd.DataFrame({C.PRODUCT_ID: ["a"], "sim": [1.0]})
    with pytest.raises(ValueError, match="price_fit"):
        maps.linear_contributions(feats, {"sim": 1.0, "price_fit": 1.0})
    with pytest.raises(ValueError, match="weights is empty"):
        maps.linear_contributions(feats, {})
    with pytest.raises(ValueError, match="empty"):
        maps.linear_contributions(feats.iloc[:0], {"sim": 1.0})


def test_top_reason_is_faithful_removing_it_costs_the_most():
    rng = np.random.default_rng(7)
    names = ["similarity to your history", "matches your last query", "popular with similar users",
             "same category as items you bought", "price fits your usual spend"]
    feats = pd.DataFrame(rng.normal(size=(16, 5)) * [1, 2, 5, 1, 3] + [0, 1, 10, 0, 2],
                         columns=names)
    feats.insert(0, C.PRODUCT_ID, [f"p{i}" for i in range(16)])
    weights = dict(zip(names, [1.5, 0.8, 0.3, 1.1, -0.6]))
    means = feats[names].mean().to_dict()
    stds = feats[names].std(ddof=0).to_dict()
    contrib = maps.linear_contributions(feats, weights, 0.1, means, stds)
    score = maps.linear_scores(feats, weights, 0.1, means, stds).set_index(C.PRODUCT_ID)[C.SCORE]
    checked = 0
    for pid, group in contrib.groupby(C.PRODUCT_ID):
        top = group.loc[group[C.CONTRIBUTION].idxmax()]
        if top[C.CONTRIBUTION] <= 0:
            continue
        row = feats[feats[C.PRODUCT_ID] == pid]
        drops = {}
        for name in names:  # "remove" a reason: set its feature to the mean
            ablated = row.assign(**{name: means[name]})
            new = maps.linear_scores(ablated, weights, 0.1, means, stds)[C.SCORE].iloc[0]
            drops[name] = score[pid] - new
        assert max(drops, key=drops.get) == top[C.REASON]
        assert drops[top[C.REASON]] == pytest.approx(top[C.CONTRIBUTION])
        checked += 1
    assert checked >= 12


# -- why this item --------------------------------------------------------------------------
def test_user_interests_by_hand(world):
    ev, products = world[C.EVENTS], world[C.PRODUCTS]
    category = dict(zip(products[C.PRODUCT_ID], products[C.CATEGORY]))
    weight = {"click": 1, "add_to_cart": 2, "purchase": 3}
    per_user: dict[str, Counter] = {}
    for user, etype, pid in zip(ev[C.USER_ID], ev[C.EVENT_TYPE], ev[C.PRODUCT_ID]):
        if etype in weight:
            per_user.setdefault(user, Counter())[category[pid]] += weight[etype]
    user = max(sorted(per_user), key=lambda u: sum(per_user[u].values()))
    got = maps.user_interests(ev, products, user)
    total = sum(per_user[user].values())
    expected = sorted(per_user[user].items(), key=lambda kv: (-kv[1], kv[0]))
    assert got[C.CATEGORY].tolist() == [c for c, _ in expected]
    np.testing.assert_allclose(got[C.INTEREST], [w / total for _, w in expected])
    with pytest.raises(KeyError, match="nobody"):
        maps.user_interests(ev, products, "nobody")


def _recommendations(world, user):
    products = world[C.PRODUCTS]
    interests = maps.user_interests(world[C.EVENTS], products, user)
    cats = interests[C.CATEGORY].head(2).tolist()
    picked = (products[products[C.CATEGORY].isin(cats)].sort_values(C.PRODUCT_ID)
              .groupby(C.CATEGORY).head(3).reset_index(drop=True))
    rng = np.random.default_rng(42)
    names = ["similarity to your history", "matches your last query", "popular with similar users",
             "same category as items you bought", "price fits your usual spend"]
    feats = pd.DataFrame(rng.normal(size=(len(picked), 5)), columns=names)
    feats.insert(0, C.PRODUCT_ID, picked[C.PRODUCT_ID].to_numpy())
    weights = dict(zip(names, [1.2, 0.7, 0.4, 0.9, 0.5]))
    contrib = maps.linear_contributions(feats, weights, bias=0.3)
    scores = maps.linear_scores(feats, weights, bias=0.3)
    recs = picked.merge(scores, on=C.PRODUCT_ID)
    return interests, recs, contrib


def test_why_this_item_on_smoke_data(world):
    user = sorted(world[C.EVENTS][C.USER_ID].unique())[0]
    interests, recs, contrib = _recommendations(world, user)
    m = maps.why_this_item("Ann", recs, contrib, interests=interests, top_reasons=3)
    src = m.source
    assert src == maps.why_this_item("Ann", recs, contrib, interests=interests, top_reasons=3).source
    labels, links = real_nodes(src), edges(src)
    assert labels["user"] == "Ann"
    share = dict(zip(interests[C.CATEGORY], interests[C.INTEREST]))
    for cat in recs[C.CATEGORY].unique():
        assert labels[f"cluster/{cat}"] == cat
        assert edge_label(links[("user", f"cluster/{cat}")]) == f"{share[cat]:.0%} of activity"
    for _, rec in recs.iterrows():
        pid = rec[C.PRODUCT_ID]
        assert (f"cluster/{rec[C.CATEGORY]}", f"item/{pid}") in links
        assert labels[f"item/{pid}"].startswith(" ".join(rec[C.TITLE].split())[:15])
        mine = contrib[contrib[C.PRODUCT_ID] == pid]
        by_size = sorted(zip(mine[C.REASON], mine[C.CONTRIBUTION]), key=lambda rc: -abs(rc[1]))
        shown = 0.0
        for i, (reason, value) in enumerate(by_size[:3]):
            attrs = links[(f"item/{pid}", f"reason/{pid}/{i}")]
            assert labels[f"reason/{pid}/{i}"] == reason
            assert edge_label(attrs) == f"{value:+.2f}"
            assert (NEGATIVE_COLOR in attrs) == (value < 0)
            shown += value
        rest = sum(v for _, v in by_size[3:])
        assert labels[f"reason/{pid}/other"] == "2 other reasons"
        assert edge_label(links[(f"item/{pid}", f"reason/{pid}/other")]) == f"{rest:+.2f}"
        assert shown + rest + 0.3 == pytest.approx(rec[C.SCORE])  # the edges explain the score


def test_why_this_item_with_a_hand_built_table():
    recs = pd.DataFrame({C.PRODUCT_ID: ["p1", "p2"], C.CATEGORY: ["Laptops", "Mice"],
                         C.SCORE: [0.9, 0.4], C.TITLE: ["Zentro 14 in Laptop", "Silent Mouse"]})
    contrib = pd.DataFrame({
        C.PRODUCT_ID: ["p1", "p1", "p2"],
        C.REASON: ["similarity to your history", "price fits your usual spend",
                   "same category as items you bought"],
        C.CONTRIBUTION: [0.7, -0.1, 0.4]})
    src = maps.why_this_item("Ann", recs, contrib).source
    labels, links = real_nodes(src), edges(src)
    assert labels["reason/p1/0"] == "similarity to your history"
    assert labels["reason/p1/1"] == "price fits your usual spend"
    assert NEGATIVE_COLOR in links[("item/p1", "reason/p1/1")]
    assert "reason/p1/other" not in labels and ("user", "cluster/Laptops") in links
    assert "__legend_kind_reason" in src
    bad = contrib.assign(**{C.PRODUCT_ID: ["p1", "p1", "p9"]})
    with pytest.raises(ValueError, match="p9"):
        maps.why_this_item("Ann", recs, bad)
    with pytest.raises(ValueError, match="contribution"):
        maps.why_this_item("Ann", recs, contrib.drop(columns=[C.CONTRIBUTION]))


# -- product associations -------------------------------------------------------------------
def test_product_association_map_on_smoke_data(world):
    products, ev = world[C.PRODUCTS], world[C.EVENTS]
    m = maps.product_association_map(products, ev, max_links=5, max_complement_links=100)
    src = m.source
    labels, links = real_nodes(src), edges(src)
    # the tree: every level with its product count
    counts = Counter()
    for path in products[C.CATEGORY_PATH]:
        parts = path.split(" > ")
        for d in range(1, len(parts) + 1):
            counts[" > ".join(parts[:d])] += 1
    assert labels["catalogue"] == f"Catalogue ({len(products)})"
    for key, n in counts.items():
        assert labels[f"cat/{key}"] == f"{key.split(' > ')[-1]} ({n:,})"
        parent = "catalogue" if " > " not in key else "cat/" + key.rsplit(" > ", 1)[0]
        assert (parent, f"cat/{key}") in links
    # co-purchase links: users who bought in both leaf categories, counted here by hand
    category = dict(zip(products[C.PRODUCT_ID], products[C.CATEGORY]))
    path_of = dict(zip(products[C.CATEGORY], products[C.CATEGORY_PATH]))
    bought: dict[str, set] = {}
    for user, etype, pid in zip(ev[C.USER_ID], ev[C.EVENT_TYPE], ev[C.PRODUCT_ID]):
        if etype == "purchase":
            bought.setdefault(user, set()).add(category[pid])
    pairs = Counter(p for cats in bought.values() for p in combinations(sorted(cats), 2))
    top = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    bought_links = {(a, b): v for a, b, v in edge_list(src) if "#d07a00" in v}
    assert len(bought_links) == len(top) > 0
    for (a, b), n in top:
        attrs = bought_links[(f"cat/{path_of[a]}", f"cat/{path_of[b]}")]
        assert edge_label(attrs) == (f"{n} users" if n > 1 else "1 user") and "dir=none" in attrs
    # complement links: the taxonomy's pairs whose two leaves are in the catalogue
    present = set(products[C.CATEGORY])
    comp = {tuple(sorted((leaf.name, LEAF_BY_NOUN[noun].name))) for leaf in LEAVES
            for noun in leaf.complements if leaf.name in present and LEAF_BY_NOUN[noun].name in present}
    dashed = {(a, b) for a, b, v in edge_list(src) if "#2a7f7f" in v and "style=dashed" in v}
    assert dashed == {(f"cat/{path_of[a]}", f"cat/{path_of[b]}") for a, b in comp}
    assert ("cat/" + path_of["Laptops"], "cat/" + path_of["Mice"]) in dashed
    assert "cooccur: bought together" in src and "complement: complements" in src


def test_co_purchase_pairs_by_session_and_caps(world):
    products, ev = world[C.PRODUCTS], world[C.EVENTS]
    by_session = maps.co_purchase_pairs(products, ev, by=C.SESSION_ID)
    assert by_session.empty  # a session of this world browses one category
    m = maps.product_association_map(products, ev, max_links=2, max_complement_links=3)
    links = edge_list(m.source)
    assert sum("#d07a00" in v for _, _, v in links) == 2
    assert sum("#2a7f7f" in v for _, _, v in links) == 3


# -- query understanding --------------------------------------------------------------------
def test_query_intent_from_the_taxonomy():
    assert maps.query_intent("earbuds") == "In-Ear Headphones"
    assert maps.query_intent("red dresses") == "Dresses"
    assert maps.query_intent("shockproof phone case") == "Phone Cases"
    assert maps.query_intent("skillet for eggs") == "Frying Pans"
    assert maps.query_intent("something else entirely") is None


def test_query_understanding_map_on_smoke_data(world):
    products = world[C.PRODUCTS]
    dresses = products[products[C.CATEGORY] == "Dresses"].sort_values(C.PRODUCT_ID).head(8)
    matched = dresses.assign(**{C.SCORE: np.linspace(0.9, 0.2, len(dresses))})
    query = "cheap red dress under $50"
    m = maps.query_understanding_map(query, parse_query(query), matched, k=5)
    labels, links = real_nodes(m.source), edges(m.source)
    assert labels["query"] == f"“{query}”"
    assert labels["words"] == "search words: red dress"
    assert labels["intent"] == "intent: Dresses"
    assert labels["attr/color"] == "colour = Red"
    assert labels["attr/max_price"] == "price ≤ $50.00"
    assert labels["attr/cheap"] == "wants it cheap"
    assert "attr/size" not in labels and "attr/min_price" not in labels
    top5 = matched.head(5)
    items = [dst for (src, dst) in links if src == "intent"]
    assert items == [f"item/{p}" for p in top5[C.PRODUCT_ID]]
    for _, row in top5.iterrows():
        node = f"item/{row[C.PRODUCT_ID]}"
        assert edge_label(links[("intent", node)]) == f"{row[C.SCORE]:.3g}"
        assert labels[node].endswith(f"${row[C.PRICE]:,.2f}")
        assert (("attr/color", node) in links) == (row[C.COLOR] == "Red")
        assert (("attr/max_price", node) in links) == (row[C.PRICE] <= 50)
    assert not any(src == "attr/cheap" for src, _ in links)


def test_query_map_without_matches_infers_nothing_it_cannot():
    m = maps.query_understanding_map("gift for dad between $20 and $40")
    labels = real_nodes(m.source)
    assert labels["intent"] == "intent: unknown"
    assert labels["attr/min_price"] == "price ≥ $20.00" and labels["attr/max_price"] == "price ≤ $40.00"


# -- metric driver tree ---------------------------------------------------------------------
ARMS = {
    "control": {C.VISITORS: 10_000, C.CTR: 0.12, C.CONVERSION: 0.25, C.ORDER_VALUE: 48.0},
    "treatment": {C.VISITORS: 10_000, C.CTR: 0.13, C.CONVERSION: 0.25, C.ORDER_VALUE: 47.0},
}


def test_metric_driver_tree_numbers_and_product():
    table = maps.revenue_drivers(ARMS)
    assert table.loc["control", C.REVENUE] == pytest.approx(10_000 * 0.12 * 0.25 * 48.0)  # 14,400
    assert table.loc["treatment", C.REVENUE] == pytest.approx(10_000 * 0.13 * 0.25 * 47.0)  # 15,275
    labels = real_nodes(maps.metric_driver_tree(ARMS).source)
    assert labels["revenue"] == "revenue"
    assert labels["arm/control"] == "control revenue $14,400"
    assert labels["arm/treatment"] == "treatment revenue $15,275 (+6.1% vs control)"
    assert labels["arm/control/visitors"] == "visitors 10,000"
    assert labels["arm/control/ctr"] == "CTR (visitors who click) 12.00%"
    assert labels["arm/treatment/ctr"] == "CTR (visitors who click) 13.00% (+8.3%)"
    assert labels["arm/treatment/order_value"] == "order value $47.00 (-2.1%)"
    links = edges(maps.metric_driver_tree(ARMS).source)
    kids = [dst for (src, dst) in links if src == "arm/control"]
    assert kids == [f"arm/control/{d}" for d in maps.DRIVERS]


def test_revenue_given_must_equal_the_product_to_rounding():
    frame = pd.DataFrame({C.VARIANT: ["control", "treatment"], C.VISITORS: [5000, 5100],
                          C.CTR: [0.1234, 0.1301], C.CONVERSION: [0.2, 0.21],
                          C.ORDER_VALUE: [51.27, 50.93]})
    exact = frame[C.VISITORS] * frame[C.CTR] * frame[C.CONVERSION] * frame[C.ORDER_VALUE]
    ok = frame.assign(**{C.REVENUE: exact.round(0)})  # revenue reported in whole dollars
    np.testing.assert_allclose(maps.revenue_drivers(ok)[C.REVENUE], exact)
    bad = frame.assign(**{C.REVENUE: exact * [1.0, 1.05]})
    with pytest.raises(ValueError, match="arm 'treatment'.*revenue"):
        maps.metric_driver_tree(bad)


@pytest.mark.parametrize("change, message", [
    ({C.CTR: None}, "arm 'treatment': driver 'ctr' is missing"),
    ({C.ORDER_VALUE: -3.0}, "arm 'treatment': driver 'order_value' is negative"),
    ({C.CONVERSION: 1.5}, "arm 'treatment': driver 'conversion' is a rate"),
    ({C.VISITORS: "many"}, "arm 'treatment': driver 'visitors' is missing or not a number"),
])
def test_bad_drivers_are_named(change, message):
    arms = {"control": dict(ARMS["control"]), "treatment": {**ARMS["treatment"], **change}}
    with pytest.raises(ValueError, match=re.escape(message)):
        maps.metric_driver_tree(arms)


def test_a_missing_driver_column_is_named():
    arms = {k: {d: v for d, v in drivers.items() if d != C.ORDER_VALUE} for k, drivers in ARMS.items()}
    with pytest.raises(ValueError, match="'order_value' is missing"):
        maps.metric_driver_tree(arms)
    with pytest.raises(ValueError, match="no arms"):
        maps.metric_driver_tree({})


# -- drawing a course map -------------------------------------------------------------------
@needs_dot
def test_course_maps_draw_as_valid_svg(world):
    products, ev = world[C.PRODUCTS], world[C.EVENTS]
    for m in (maps.product_association_map(products, ev), maps.metric_driver_tree(ARMS),
              maps.query_understanding_map("red dress size M under $50")):
        root = ET.fromstring(to_svg(m).encode("utf-8"))
        assert root.tag == f"{SVG_NS}svg"
        assert sum(g.get("class") == "node" for g in root.iter(f"{SVG_NS}g")) >= len(real_nodes(m.source))
