"""The course's own mind maps, built on :class:`course_lib.mindmap.MindMap`.

Each function takes DataFrames (column names from :mod:`course_lib.columns`) and returns a map
with caps and a legend; the DOT source is the same for the same inputs:

- :func:`why_this_item`: user → interest clusters → recommended products → reasons, each reason's
  contribution on its edge (from :func:`linear_contributions` or any ranker's own numbers);
- :func:`product_association_map`: the category tree with "bought together" and complement links;
- :func:`query_understanding_map`: a query → its intent and attributes → the products it matched;
- :func:`metric_driver_tree`: revenue = visitors × CTR × conversion × order value, per A/B arm.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

import numpy as np
import pandas as pd

from . import columns as C
from .mindmap import MindMap
from .retrieval import ParsedQuery, parse_query
from .taxonomy import LEAVES, complements

__all__ = [
    "EVENT_WEIGHTS", "DRIVERS",
    "linear_contributions", "linear_scores", "user_interests", "why_this_item",
    "co_purchase_pairs", "product_association_map",
    "query_intent", "query_understanding_map",
    "revenue_drivers", "metric_driver_tree",
]

EVENT_WEIGHTS: dict[str, float] = {C.CLICK: 1.0, C.ADD_TO_CART: 2.0, C.PURCHASE: 3.0}
DRIVERS: tuple[str, ...] = (C.VISITORS, C.CTR, C.CONVERSION, C.ORDER_VALUE)


def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs column(s) {', '.join(missing)}; "
                         f"it has: {', '.join(map(str, df.columns))}")


def _money(x: float) -> str:
    return f"${x:,.0f}" if abs(x) >= 1000 else f"${x:,.2f}"


# =========================================================================================
# "why this item": contributions and the map
# =========================================================================================
def _standardised(features: pd.DataFrame, names: Sequence[str],
                  means: Mapping[str, float] | None,
                  stds: Mapping[str, float] | None) -> pd.DataFrame:
    x = features[list(names)].astype("float64")
    mu = pd.Series({n: float(means[n]) if means and n in means else x[n].mean() for n in names})
    sd = pd.Series({n: float(stds[n]) if stds and n in stds else x[n].std(ddof=0) for n in names})
    bad = [n for n in names if not np.isfinite(mu[n]) or not np.isfinite(sd[n]) or sd[n] < 0]
    if bad:
        raise ValueError(f"feature(s) {', '.join(bad)} have no finite mean/std")
    return (x - mu) / sd.where(sd > 0, 1.0)  # a constant feature explains nothing: z = 0


def linear_contributions(features: pd.DataFrame, weights: Mapping[str, float], bias: float = 0.0,
                         feature_means: Mapping[str, float] | None = None,
                         feature_stds: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Per-reason contributions of a linear ranker: ``weight_i × (x_i − mean_i) / std_i``.

    ``features``: product_id plus one column per reason named in ``weights``. Means and stds
    default to the features' own (population std; a constant feature contributes 0). Returns
    product_id, reason, contribution (products in input order, reasons in ``weights`` order);
    per product the contributions sum to its score minus ``bias`` (see :func:`linear_scores`).
    """
    if not weights:
        raise ValueError("weights is empty: give one weight per reason (feature column)")
    _require(features, [C.PRODUCT_ID, *weights], "linear_contributions: features")
    if features.empty:
        raise ValueError("linear_contributions: features is empty")
    names = list(weights)
    z = _standardised(features, names, feature_means, feature_stds)
    contrib = z * pd.Series({n: float(weights[n]) for n in names})
    contrib.insert(0, C.PRODUCT_ID, features[C.PRODUCT_ID].to_numpy())
    long = contrib.melt(id_vars=C.PRODUCT_ID, var_name=C.REASON, value_name=C.CONTRIBUTION)
    order = {pid: i for i, pid in enumerate(dict.fromkeys(features[C.PRODUCT_ID]))}
    long["_p"] = long[C.PRODUCT_ID].map(order)
    long["_r"] = long[C.REASON].map({n: i for i, n in enumerate(names)})
    return (long.sort_values(["_p", "_r"], kind="stable").drop(columns=["_p", "_r"])
            .reset_index(drop=True))


def linear_scores(features: pd.DataFrame, weights: Mapping[str, float], bias: float = 0.0,
                  feature_means: Mapping[str, float] | None = None,
                  feature_stds: Mapping[str, float] | None = None) -> pd.DataFrame:
    """The linear ranker's score per product: ``bias + Σ weight_i × standardised x_i``.

    Returns product_id, score (input order). Same arguments as :func:`linear_contributions`.
    """
    contrib = linear_contributions(features, weights, bias, feature_means, feature_stds)
    scores = contrib.groupby(C.PRODUCT_ID, sort=False)[C.CONTRIBUTION].sum() + float(bias)
    return scores.rename(C.SCORE).reset_index()


def _interactions(events: pd.DataFrame, products: pd.DataFrame,
                  event_types: Iterable[str]) -> pd.DataFrame:
    _require(events, [C.USER_ID, C.EVENT_TYPE, C.PRODUCT_ID], "events")
    _require(products, [C.PRODUCT_ID, C.CATEGORY], "products")
    ev = events[events[C.EVENT_TYPE].isin(list(event_types))]
    return ev.merge(products[[C.PRODUCT_ID, C.CATEGORY]], on=C.PRODUCT_ID, how="inner")


def user_interests(events: pd.DataFrame, products: pd.DataFrame, user_id: str,
                   event_weights: Mapping[str, float] | None = None) -> pd.DataFrame:
    """A user's interest clusters: category, interest (weighted share of their interactions).

    Weights per event type default to :data:`EVENT_WEIGHTS` (click 1, add to cart 2, purchase 3).
    Sorted by interest, then category. Raises ``KeyError`` for a user without interactions.
    """
    weights = dict(event_weights or EVENT_WEIGHTS)
    ev = _interactions(events, products, weights)
    ev = ev[ev[C.USER_ID] == user_id]
    if ev.empty:
        raise KeyError(f"user {user_id!r} has no {'/'.join(weights)} events")
    w = ev[C.EVENT_TYPE].map(weights).astype("float64")
    share = w.groupby(ev[C.CATEGORY].astype(str)).sum() / w.sum()
    out = share.rename(C.INTEREST).rename_axis(C.CATEGORY).reset_index()
    return out.sort_values([C.INTEREST, C.CATEGORY], ascending=[False, True],
                           kind="stable").reset_index(drop=True)


def _interest_map(interests: pd.DataFrame | Mapping[str, float] | None) -> dict[str, float]:
    if interests is None:
        return {}
    if isinstance(interests, pd.DataFrame):
        _require(interests, [C.CATEGORY, C.INTEREST], "interests")
        return dict(zip(interests[C.CATEGORY].astype(str), interests[C.INTEREST].astype(float)))
    return {str(k): float(v) for k, v in interests.items()}


def why_this_item(user_label: str, recommendations: pd.DataFrame, contributions: pd.DataFrame, *,
                  interests: pd.DataFrame | Mapping[str, float] | None = None,
                  top_reasons: int = 3, max_items: int = 6, **options: Any) -> MindMap:
    """"Why this item?": user → interest clusters (categories) → products → reasons.

    ``recommendations``: product_id, category, score (title and price label the product when
    present). ``contributions``: product_id, reason, contribution, e.g. from
    :func:`linear_contributions` or a ranker's own per-feature numbers. Each product shows its
    ``top_reasons`` largest |contributions| on the edges; the rest are summed into one "other
    reasons" node, so a product's edges add up to its score minus the ranker's bias.
    ``interests`` (category → share, e.g. :func:`user_interests`) labels the user → cluster
    edges. At most ``max_items`` products per cluster are shown (highest score first).
    """
    _require(recommendations, [C.PRODUCT_ID, C.CATEGORY, C.SCORE], "why_this_item: recommendations")
    _require(contributions, [C.PRODUCT_ID, C.REASON, C.CONTRIBUTION], "why_this_item: contributions")
    if recommendations.empty:
        raise ValueError("why_this_item: recommendations is empty")
    if top_reasons < 1:
        raise ValueError(f"top_reasons must be >= 1, got {top_reasons}")
    rec_ids = set(recommendations[C.PRODUCT_ID].astype(str))
    unknown = sorted(set(contributions[C.PRODUCT_ID].astype(str)) - rec_ids)
    if unknown:
        raise ValueError(f"contributions name product(s) not recommended: {', '.join(unknown[:5])}")
    shares = _interest_map(interests)
    recs = recommendations.assign(_pid=recommendations[C.PRODUCT_ID].astype(str),
                                  _cat=recommendations[C.CATEGORY].astype(str))
    recs = recs.sort_values([C.SCORE, "_pid"], ascending=[False, True], kind="stable")
    m = MindMap("why_this_item", **{"title": f"Why these items for {user_label}?",
                                   "max_children": max(max_items, top_reasons + 1, 8), **options})
    m.add_node("user", user_label, kind="user")
    first_seen = {cat: i for i, cat in enumerate(dict.fromkeys(recs["_cat"]))}
    clusters = sorted(first_seen, key=lambda c: (-shares.get(c, -1.0), first_seen[c]))
    for cat in clusters:
        cid = m.add_child("user", f"cluster/{cat}", cat, kind="category",
                          weight=shares.get(cat), edge_label=(
                              f"{shares[cat]:.0%} of activity" if cat in shares else None))
        for _, row in recs[recs["_cat"] == cat].head(max_items).iterrows():
            _add_item(m, cid, row, contributions, top_reasons)
    return m


def _add_item(m: MindMap, parent: str, row: pd.Series, contributions: pd.DataFrame,
              top_reasons: int) -> None:
    pid = row["_pid"]
    title = row.get(C.TITLE)
    label = str(title) if isinstance(title, str) and title else pid
    price = row.get(C.PRICE)
    if price is not None and pd.notna(price):
        label += f"\n{_money(float(price))}"
    item = m.add_child(parent, f"item/{pid}", label, kind="product", weight=float(row[C.SCORE]),
                       edge_label=f"score {float(row[C.SCORE]):.3g}")
    mine = contributions[contributions[C.PRODUCT_ID].astype(str) == pid]
    mine = mine.assign(_abs=mine[C.CONTRIBUTION].abs()).sort_values(
        ["_abs", C.REASON], ascending=[False, True], kind="stable")
    for i, (_, r) in enumerate(mine.head(top_reasons).iterrows()):
        value = float(r[C.CONTRIBUTION])
        m.add_child(item, f"reason/{pid}/{i}", str(r[C.REASON]), kind="reason", weight=value,
                    edge_label=f"{value:+.2f}")
    rest = mine.iloc[top_reasons:]
    if len(rest):
        value = float(rest[C.CONTRIBUTION].sum())
        m.add_child(item, f"reason/{pid}/other", f"{len(rest)} other reason" + ("s" if len(rest) > 1 else ""), kind="reason",
                    weight=value, edge_label=f"{value:+.2f}")


# =========================================================================================
# product associations: the category tree with co-purchase and complement links
# =========================================================================================
def co_purchase_pairs(products: pd.DataFrame, events: pd.DataFrame, *, by: str = C.USER_ID,
                      event_types: Sequence[str] = (C.PURCHASE,)) -> pd.DataFrame:
    """Category pairs bought in the same basket (``by``: user_id or session_id).

    Returns category_a < category_b and baskets (how many baskets hold both), most first.
    """
    _require(events, [by], "co_purchase_pairs: events")
    ev = _interactions(events, products, event_types)
    baskets = ev[[by, C.CATEGORY]].astype(str).drop_duplicates()
    pairs = baskets.merge(baskets, on=by, suffixes=("_a", "_b"))
    pairs = pairs[pairs[f"{C.CATEGORY}_a"] < pairs[f"{C.CATEGORY}_b"]]
    counts = (pairs.groupby([f"{C.CATEGORY}_a", f"{C.CATEGORY}_b"]).size()
              .rename(C.BASKETS).reset_index()
              .rename(columns={f"{C.CATEGORY}_a": C.CATEGORY_A, f"{C.CATEGORY}_b": C.CATEGORY_B}))
    return counts.sort_values([C.BASKETS, C.CATEGORY_A, C.CATEGORY_B],
                              ascending=[False, True, True], kind="stable").reset_index(drop=True)


def complement_pairs(categories: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """Complementary leaf-category pairs from the taxonomy, each once as (a, b) with a < b."""
    keep = set(categories) if categories is not None else {leaf.name for leaf in LEAVES}
    pairs = {tuple(sorted((leaf.name, other.name))) for leaf in LEAVES if leaf.name in keep
             for other in complements(leaf) if other.name in keep}
    return sorted(pairs)  # type: ignore[arg-type]


def product_association_map(products: pd.DataFrame, events: pd.DataFrame, *,
                            by: str = C.USER_ID, event_types: Sequence[str] = (C.PURCHASE,),
                            max_links: int = 12, max_complement_links: int = 20,
                            **options: Any) -> MindMap:
    """The category tree (level by level, "(n)" products each) with cross links between leaves:
    orange "bought together" links (the ``max_links`` pairs bought by most ``by`` baskets,
    labelled with the count) and dashed teal complement links from the taxonomy (at most
    ``max_complement_links``, the most co-bought first)."""
    _require(products, [C.PRODUCT_ID, C.CATEGORY, C.CATEGORY_PATH], "product_association_map: products")
    if products.empty:
        raise ValueError("product_association_map: products is empty")
    m = MindMap("product_associations", **{"title": "Categories, bought together and complements",
                                          "max_children": 12, **options})
    m.add_node("catalogue", f"Catalogue ({len(products):,})", kind="root")
    paths = products[C.CATEGORY_PATH].astype(str)
    counts: dict[str, int] = {}
    for path in paths:
        parts = path.split(" > ")
        for depth in range(1, len(parts) + 1):
            key = " > ".join(parts[:depth])
            counts[key] = counts.get(key, 0) + 1
    kinds = {1: "stage", 2: "topic"}
    leaf_node: dict[str, str] = {}
    for key in sorted(counts):
        parts = key.split(" > ")
        parent = "catalogue" if len(parts) == 1 else f"cat/{' > '.join(parts[:-1])}"
        m.add_child(parent, f"cat/{key}", f"{parts[-1]} ({counts[key]:,})",
                    kind=kinds.get(len(parts), "category"))
    for path, leaf in zip(paths, products[C.CATEGORY].astype(str)):
        leaf_node.setdefault(leaf, f"cat/{path}")
    pairs = co_purchase_pairs(products, events, by=by, event_types=event_types)
    pairs = pairs[pairs[C.CATEGORY_A].isin(leaf_node) & pairs[C.CATEGORY_B].isin(leaf_node)]
    noun = "user" if by == C.USER_ID else "session" if by == C.SESSION_ID else by
    shown = pairs.head(max_links)
    top_n = max(shown[C.BASKETS].max(), 1) if len(shown) else 1
    for a, b, n in shown.itertuples(index=False):
        m.add_edge(leaf_node[a], leaf_node[b], f"{n} {noun}" + ("s" if n != 1 else ""),
                   weight=n, kind="cooccur", penwidth=f"{1 + 2 * n / top_n:.2f}")
    bought = {(a, b): n for a, b, n in pairs.itertuples(index=False)}
    comp = sorted(complement_pairs(leaf_node), key=lambda p: (-bought.get(p, 0), p))
    for a, b in comp[:max_complement_links]:
        m.add_edge(leaf_node[a], leaf_node[b], kind="complement")
    return m


# =========================================================================================
# query understanding
# =========================================================================================
def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _words(text: str) -> list[str]:
    return [_singular(w) for w in re.findall(r"[a-z0-9]+", text.lower())]


def query_intent(text: str) -> str | None:
    """The leaf category a query asks for, from the taxonomy's names, nouns and synonyms.

    The longest matching phrase wins ("phone case" over "case"); None when nothing matches.
    """
    words = _words(text)
    joined = f" {' '.join(words)} "
    best: tuple[int, str] | None = None
    for leaf in LEAVES:
        for phrase in (leaf.name, leaf.noun, *leaf.synonyms):
            key = " ".join(_words(phrase))
            if key and f" {key} " in joined and (best is None or len(key) > best[0]):
                best = (len(key), leaf.name)
    return best[1] if best else None


def _attribute_nodes(parsed: ParsedQuery) -> list[tuple[str, str]]:
    nodes = []
    if parsed.color:
        nodes.append(("color", f"colour = {parsed.color}"))
    if parsed.size:
        nodes.append(("size", f"size = {parsed.size}"))
    if parsed.min_price is not None:
        nodes.append(("min_price", f"price ≥ {_money(parsed.min_price)}"))
    if parsed.max_price is not None:
        nodes.append(("max_price", f"price ≤ {_money(parsed.max_price)}"))
    if parsed.cheap:
        nodes.append(("cheap", "wants it cheap"))
    return nodes


def _satisfies(row: pd.Series, attr: str, parsed: ParsedQuery) -> bool:
    """Whether a matched product meets one parsed attribute (False when the column is absent)."""
    def value(col: str) -> Any:
        v = row.get(col)
        return None if v is None or (not isinstance(v, str) and pd.isna(v)) else v
    if attr == "color":
        return value(C.COLOR) is not None and str(value(C.COLOR)).casefold() == parsed.color.casefold()
    if attr == "size":
        return value(C.SIZE) is not None and str(value(C.SIZE)).casefold() == parsed.size.casefold()
    price = value(C.PRICE)
    if price is None:
        return False
    if attr == "min_price":
        return float(price) >= parsed.min_price
    if attr == "max_price":
        return float(price) <= parsed.max_price
    return False


def query_understanding_map(query: str, parsed: ParsedQuery | None = None,
                            matched_products: pd.DataFrame | None = None, *,
                            category: str | None = None, k: int = 5,
                            **options: Any) -> MindMap:
    """A query → its search words, intent (a category) and attributes → the top-k matches.

    ``parsed`` defaults to :func:`course_lib.retrieval.parse_query`; ``category`` to
    :func:`query_intent`, else the matches' most common category. ``matched_products``:
    product_id, score (title, category, price, color, size used when present). Products hang
    under the intent with their score on the edge; dotted links join each attribute to the
    products that meet it.
    """
    parsed = parse_query(query) if parsed is None else parsed
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    top = pd.DataFrame(columns=[C.PRODUCT_ID, C.SCORE])
    if matched_products is not None:
        _require(matched_products, [C.PRODUCT_ID, C.SCORE], "query_understanding_map: matched_products")
        top = matched_products.assign(_pid=matched_products[C.PRODUCT_ID].astype(str)).sort_values(
            [C.SCORE, "_pid"], ascending=[False, True], kind="stable").head(k)
    intent = category or query_intent(parsed.text or query)
    if intent is None and C.CATEGORY in top.columns and len(top):
        intent = str(top[C.CATEGORY].astype(str).value_counts().sort_index()
                     .sort_values(ascending=False, kind="stable").index[0])
    m = MindMap("query_understanding", **{"title": "How the shop reads a query",
                                          "max_children": max(8, k), **options})
    m.add_node("query", f"“{query}”", kind="query")
    m.add_child("query", "words", f"search words: {parsed.text or '(none)'}", kind="concept")
    m.add_child("query", "intent", f"intent: {intent or 'unknown'}", kind="category")
    attrs = _attribute_nodes(parsed)
    for key, label in attrs:
        m.add_child("query", f"attr/{key}", label, kind="attribute")
    for _, row in top.iterrows():
        title = row.get(C.TITLE)
        label = str(title) if isinstance(title, str) and title else row["_pid"]
        extras = [str(row[c]) for c in (C.CATEGORY,) if c in row and pd.notna(row[c])
                  and str(row[c]) != intent]
        if C.PRICE in row and pd.notna(row[C.PRICE]):
            extras.append(_money(float(row[C.PRICE])))
        if extras:
            label += "\n" + " · ".join(extras)
        pid = m.add_child("intent", f"item/{row['_pid']}", label, kind="product",
                          weight=float(row[C.SCORE]), edge_label=f"{float(row[C.SCORE]):.3g}")
        for key, _ in attrs:
            if _satisfies(row, key, parsed):
                m.add_edge(f"attr/{key}", pid, kind="link")
    return m


# =========================================================================================
# metric driver tree
# =========================================================================================
ArmsLike = Union[pd.DataFrame, Mapping[str, Mapping[str, float]]]


def _arms_frame(arms: ArmsLike) -> pd.DataFrame:
    if isinstance(arms, pd.DataFrame):
        df = arms.set_index(C.VARIANT) if C.VARIANT in arms.columns else arms
    elif isinstance(arms, Mapping):
        df = pd.DataFrame.from_dict({str(k): dict(v) for k, v in arms.items()}, orient="index")
    else:
        raise TypeError(f"arms must be a DataFrame or a mapping arm -> drivers, "
                        f"got {type(arms).__name__}")
    if df.empty:
        raise ValueError("metric_driver_tree: no arms given")
    df.index = df.index.map(str)
    return df


def revenue_drivers(arms: ArmsLike, rtol: float = 0.005, atol: float = 0.5) -> pd.DataFrame:
    """Check and complete each arm's revenue drivers.

    ``arms``: a DataFrame (one row per arm, index or a ``variant`` column) or a mapping
    arm → {visitors, ctr, conversion, order_value[, revenue]}. CTR is the share of visitors who
    click, conversion the share of clicking visitors who buy, order value the revenue per order. Returns the four drivers and
    revenue = their product; a given revenue must match it within ``rtol`` (relative) or
    ``atol`` (absolute, for rounding). Raises ``ValueError`` naming the arm and the driver that
    is missing, not a number, negative, a rate above 1, or a revenue that does not add up.
    """
    df = _arms_frame(arms)
    out = pd.DataFrame(index=df.index.rename(C.VARIANT))
    for driver in DRIVERS:
        if driver not in df.columns:
            raise ValueError(f"driver {driver!r} is missing for every arm; "
                             f"revenue = {' × '.join(DRIVERS)}")
        values = pd.to_numeric(df[driver], errors="coerce")
        for arm, value in values.items():
            if pd.isna(value):
                raise ValueError(f"arm {arm!r}: driver {driver!r} is missing or not a number "
                                 f"({df.at[arm, driver]!r})")
            if value < 0:
                raise ValueError(f"arm {arm!r}: driver {driver!r} is negative ({value})")
            if driver in (C.CTR, C.CONVERSION) and value > 1:
                raise ValueError(f"arm {arm!r}: driver {driver!r} is a rate and must be <= 1, "
                                 f"got {value}")
        out[driver] = values.astype("float64")
    product = out[list(DRIVERS)].prod(axis=1)
    if C.REVENUE in df.columns:
        given = pd.to_numeric(df[C.REVENUE], errors="coerce")
        for arm in out.index:
            g, p = given[arm], product[arm]
            if pd.notna(g) and not math.isclose(g, p, rel_tol=rtol, abs_tol=atol):
                raise ValueError(f"arm {arm!r}: visitors × ctr × conversion × order_value = "
                                 f"{p:,.2f} but revenue = {g:,.2f}")
    out[C.REVENUE] = product
    return out


def metric_driver_tree(arms: ArmsLike, *, baseline: str | None = C.CONTROL,
                       rtol: float = 0.005, **options: Any) -> MindMap:
    """Revenue = visitors × CTR × conversion × order value, one branch per arm, with numbers.

    Every other arm shows its change against ``baseline`` (if that arm exists) for the revenue
    and for each driver: the driver whose change is largest is the one that moved revenue.
    Checks the drivers with :func:`revenue_drivers`.
    """
    df = revenue_drivers(arms, rtol=rtol)
    base = df.loc[baseline] if baseline in df.index else None
    m = MindMap("metric_driver_tree", **{
        "title": "Revenue = visitors × CTR × conversion × order value", "max_children": 8,
        **options})
    m.add_node("revenue", "revenue", kind="root")
    fmt = {C.VISITORS: lambda v: f"{v:,.0f}", C.CTR: lambda v: f"{v:.2%}",
           C.CONVERSION: lambda v: f"{v:.2%}", C.ORDER_VALUE: _money}
    names = {C.VISITORS: "visitors", C.CTR: "CTR (visitors who click)",
             C.CONVERSION: "conversion (clickers who buy)", C.ORDER_VALUE: "order value"}
    for arm, row in df.iterrows():
        label = f"{arm}\nrevenue {_money(row[C.REVENUE])}"
        if base is not None and arm != baseline:
            label += f" ({_change(row[C.REVENUE], base[C.REVENUE])} vs {baseline})"
        aid = m.add_child("revenue", f"arm/{arm}", label, kind="stage")
        for driver in DRIVERS:
            text = f"{names[driver]}\n{fmt[driver](row[driver])}"
            if base is not None and arm != baseline:
                text += f" ({_change(row[driver], base[driver])})"
            m.add_child(aid, f"arm/{arm}/{driver}", text, kind="metric", edge_label="×")
    return m


def _change(new: float, old: float) -> str:
    return f"{new / old - 1:+.1%}" if old else "n/a"
