"""From the data to opportunities: the numbers behind lesson 07's business ideas.

Every idea of the workshop is backed by a number computed from the clean tables:

- **long tail**: how many products are never shown or clicked, the head share and Gini of clicks
  (:func:`long_tail`, :func:`head_share`, :func:`gini`);
- **cold start**: the categories with the most products nobody interacted with
  (:func:`cold_start_categories`);
- **bundles**: category rules "a → b" bought by the same user, with support, confidence and lift,
  complements flagged (:func:`bundle_rules`, :func:`lift`);
- **price bands**: CTR, conversion and revenue by price band within each category
  (:func:`price_bands`, :func:`price_band`);
- **sizing**: revenue = visitors × CTR × conversion × order value (:func:`revenue_baseline`,
  :func:`what_if`), drawn by :func:`course_lib.maps.metric_driver_tree`.

:func:`find_opportunities` computes all of them; :func:`opportunity_map` draws the ideas mind map,
and :func:`template_map` is the empty map learners start from (:func:`add_idea` fills it).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import columns as C
from .maps import DRIVERS, complement_pairs, co_purchase_pairs, revenue_drivers
from .mindmap import MindMap

__all__ = [
    "BRANCHES", "product_activity", "gini", "head_share", "long_tail", "cold_start_categories",
    "lift", "bundle_rules", "price_band", "price_bands", "revenue_baseline", "what_if",
    "Opportunities", "find_opportunities", "template_map", "opportunity_map", "add_idea",
]

# the idea branches of the workshop map: id -> (title, the question that finds the number)
BRANCHES: dict[str, tuple[str, str]] = {
    "long_tail": ("Long tail: show more of the catalogue",
                  "How much of the catalogue is never clicked?"),
    "cold_start": ("Cold start: help new products be found",
                   "Which categories have the most products without interactions?"),
    "bundles": ("Bundles: sell complements together",
                "Which complementary categories does the same user buy?"),
    "price_bands": ("Price bands: price where people buy",
                    "Which price band converts best in a category?"),
    "your_idea": ("Your idea", "What number would convince your manager?"),
}
ROOT = "opportunities"


def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs column(s) {', '.join(missing)}; "
                         f"it has: {', '.join(map(str, df.columns))}")


def _numbers(values: Any, what: str) -> np.ndarray:
    x = np.asarray(values, dtype="float64").ravel()
    if x.size == 0:
        raise ValueError(f"{what}: no values given")
    if not np.isfinite(x).all() or (x < 0).any():
        raise ValueError(f"{what}: values must be finite and >= 0")
    return x


# =========================================================================================
# activity per product
# =========================================================================================
def product_activity(products: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """One row per product: product_id, category, price, impressions, clicks, interactions
    (clicks + add-to-carts + purchases), purchases, revenue (purchases × price). Products
    without events get zeros; events of unknown products are ignored."""
    _require(products, [C.PRODUCT_ID, C.CATEGORY, C.PRICE], "product_activity: products")
    _require(events, [C.EVENT_TYPE, C.PRODUCT_ID], "product_activity: events")
    counts = pd.crosstab(events[C.PRODUCT_ID], events[C.EVENT_TYPE])
    out = products[[C.PRODUCT_ID, C.CATEGORY, C.PRICE]].copy()

    def count(event_type: str) -> np.ndarray:
        col = counts[event_type] if event_type in counts.columns else pd.Series(dtype="int64")
        return out[C.PRODUCT_ID].map(col).fillna(0).astype("int64").to_numpy()

    out[C.IMPRESSIONS] = count(C.IMPRESSION)
    out[C.CLICKS] = count(C.CLICK)
    out[C.INTERACTIONS] = sum(count(t) for t in C.INTERACTION_TYPES)
    out[C.PURCHASES] = count(C.PURCHASE)
    out[C.REVENUE] = out[C.PURCHASES] * out[C.PRICE].astype("float64")
    return out.reset_index(drop=True)


# =========================================================================================
# long tail
# =========================================================================================
def gini(values: Sequence[float] | np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 = all equal, → 1 = one item has everything.

    ``G = Σ (2i − n − 1) x_(i) / (n Σ x)`` over the values sorted ascending (i from 1).
    All zeros give 0.
    """
    x = np.sort(_numbers(values, "gini"))
    total = x.sum()
    if total == 0:
        return 0.0
    n = len(x)
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def head_share(values: Sequence[float] | np.ndarray, top: float = 0.2) -> float:
    """Share of the total held by the top ``ceil(top × n)`` values (at least one).

    ``head_share(clicks, 0.2)``: the share of clicks that goes to the 20% most clicked
    products. 0.0 when the total is 0.
    """
    if not 0 < top <= 1:
        raise ValueError(f"top must be in (0, 1], got {top}")
    x = np.sort(_numbers(values, "head_share"))[::-1]
    total = x.sum()
    if total == 0:
        return 0.0
    k = max(1, math.ceil(top * len(x) - 1e-9))
    return float(x[:k].sum() / total)


def long_tail(activity: pd.DataFrame, few: int = 1, top: float = 0.2) -> dict[str, float]:
    """Long-tail figures from :func:`product_activity`:

    products; never_shown / never_clicked (share of products with 0 impressions / clicks);
    tail_products (share with at most ``few`` clicks) and the tail's share of all impressions
    (tail_impressions) and clicks (tail_clicks); head_clicks (share of clicks of the top ``top``
    products, :func:`head_share`); gini_clicks (:func:`gini`).
    """
    _require(activity, [C.IMPRESSIONS, C.CLICKS], "long_tail: activity")
    if activity.empty:
        raise ValueError("long_tail: activity is empty")
    imp = activity[C.IMPRESSIONS].to_numpy("float64")
    clk = activity[C.CLICKS].to_numpy("float64")
    tail = clk <= few
    return {
        "products": int(len(activity)),
        "never_shown": float((imp == 0).mean()),
        "never_clicked": float((clk == 0).mean()),
        "tail_products": float(tail.mean()),
        "tail_impressions": float(imp[tail].sum() / imp.sum()) if imp.sum() else 0.0,
        "tail_clicks": float(clk[tail].sum() / clk.sum()) if clk.sum() else 0.0,
        "head_clicks": head_share(clk, top),
        "gini_clicks": gini(clk),
    }


# =========================================================================================
# cold start
# =========================================================================================
def cold_start_categories(activity: pd.DataFrame) -> pd.DataFrame:
    """Per category: products, no_interaction (products without any click, add-to-cart or
    purchase) and share (no_interaction / products); most products without interaction first."""
    _require(activity, [C.CATEGORY, C.INTERACTIONS], "cold_start_categories: activity")
    cold = activity[C.INTERACTIONS].to_numpy() == 0
    out = (pd.DataFrame({C.CATEGORY: activity[C.CATEGORY].astype(str), "_cold": cold})
           .groupby(C.CATEGORY)["_cold"].agg(["size", "sum"])
           .rename(columns={"size": C.PRODUCTS_COUNT, "sum": C.NO_INTERACTION}).reset_index())
    out[C.NO_INTERACTION] = out[C.NO_INTERACTION].astype("int64")
    out["share"] = out[C.NO_INTERACTION] / out[C.PRODUCTS_COUNT]
    return out.sort_values([C.NO_INTERACTION, "share", C.CATEGORY], ascending=[False, False, True],
                           kind="stable").reset_index(drop=True)


# =========================================================================================
# bundles
# =========================================================================================
def lift(n_both: float, n_a: float, n_b: float, n: float) -> float:
    """Lift of the rule a → b from basket counts: ``(n_both / n) / ((n_a / n) × (n_b / n))``.

    1 means "bought together as often as by chance"; above 1, more often.
    """
    if min(n_a, n_b, n) <= 0:
        raise ValueError(f"lift needs positive basket counts, got n_a={n_a}, n_b={n_b}, n={n}")
    return float(n_both * n / (n_a * n_b))


def bundle_rules(products: pd.DataFrame, events: pd.DataFrame, *, by: str = C.USER_ID,
                 event_types: Sequence[str] = (C.PURCHASE,), complements_only: bool = False,
                 min_baskets: int = 1) -> pd.DataFrame:
    """Association rules between categories bought in the same basket (``by``: user or session).

    One row per direction: category_a → category_b, baskets (holding both), support
    (baskets / all baskets), confidence (baskets / baskets with a), lift (:func:`lift`) and
    complement (the taxonomy lists the pair as complements). Rules bought in fewer than
    ``min_baskets`` baskets are dropped; the most baskets first, then the highest lift.
    """
    pairs = co_purchase_pairs(products, events, by=by, event_types=event_types)
    ev = events[events[C.EVENT_TYPE].isin(list(event_types))].merge(
        products[[C.PRODUCT_ID, C.CATEGORY]], on=C.PRODUCT_ID)
    baskets = ev[[by, C.CATEGORY]].astype(str).drop_duplicates()
    n = baskets[by].nunique()
    per_cat = baskets.groupby(C.CATEGORY)[by].nunique()
    both = pd.concat([pairs, pairs.rename(columns={C.CATEGORY_A: C.CATEGORY_B,
                                                    C.CATEGORY_B: C.CATEGORY_A})])
    both = both[both[C.BASKETS] >= min_baskets]
    n_a = both[C.CATEGORY_A].map(per_cat).to_numpy("float64")
    n_b = both[C.CATEGORY_B].map(per_cat).to_numpy("float64")
    k = both[C.BASKETS].to_numpy("float64")
    comp = set(complement_pairs())
    out = both.assign(**{
        C.SUPPORT: k / n if n else np.nan,
        C.CONFIDENCE: k / n_a,
        C.LIFT: k * n / (n_a * n_b),
        C.COMPLEMENT: [tuple(sorted(p)) in comp
                       for p in zip(both[C.CATEGORY_A], both[C.CATEGORY_B])],
    })
    if complements_only:
        out = out[out[C.COMPLEMENT]]
    return out.sort_values([C.BASKETS, C.LIFT, C.CATEGORY_A, C.CATEGORY_B],
                           ascending=[False, False, True, True], kind="stable").reset_index(drop=True)


# =========================================================================================
# price bands
# =========================================================================================
def price_band(prices: Sequence[float] | np.ndarray, n_bands: int = 3) -> np.ndarray:
    """Quantile band of each price, 0 = cheapest … ``n_bands − 1``, like
    ``pd.qcut(prices, n_bands, labels=False)``: the band edges are the 1/n, 2/n… quantiles
    and a price equal to an edge belongs to the lower band. Input order is kept."""
    if n_bands < 1:
        raise ValueError(f"n_bands must be >= 1, got {n_bands}")
    x = np.asarray(prices, dtype="float64").ravel()
    if x.size == 0 or not np.isfinite(x).all():
        raise ValueError("price_band: prices must be a non-empty list of finite numbers")
    edges = np.quantile(x, np.linspace(0, 1, n_bands + 1)[1:-1])
    return np.searchsorted(edges, x, side="left").astype("int64")


def price_bands(activity: pd.DataFrame, n_bands: int = 3, by_category: bool = True) -> pd.DataFrame:
    """CTR, conversion and revenue by price band; bands are quantiles *within* each category.

    Returns category, price_band, products, price_min, price_max, impressions, clicks,
    purchases, ctr (clicks / impressions), conversion (purchases / clicks), revenue and
    revenue_per_product. ``by_category=False`` pools the categories per band ("are products
    that are cheap for their category bought more?"), without category and price range.
    """
    _require(activity, [C.CATEGORY, C.PRICE, C.IMPRESSIONS, C.CLICKS, C.PURCHASES, C.REVENUE],
             "price_bands: activity")
    if activity.empty:
        raise ValueError("price_bands: activity is empty")
    df = activity.copy()
    df[C.CATEGORY] = df[C.CATEGORY].astype(str)
    df[C.PRICE_BAND] = 0
    for _, idx in df.groupby(C.CATEGORY).groups.items():
        df.loc[idx, C.PRICE_BAND] = price_band(df.loc[idx, C.PRICE], n_bands)
    keys = [C.CATEGORY, C.PRICE_BAND] if by_category else [C.PRICE_BAND]
    out = df.groupby(keys).agg(**{
        C.PRODUCTS_COUNT: (C.PRICE, "size"), "price_min": (C.PRICE, "min"),
        "price_max": (C.PRICE, "max"), C.IMPRESSIONS: (C.IMPRESSIONS, "sum"),
        C.CLICKS: (C.CLICKS, "sum"), C.PURCHASES: (C.PURCHASES, "sum"),
        C.REVENUE: (C.REVENUE, "sum")}).reset_index()
    with np.errstate(divide="ignore", invalid="ignore"):
        out[C.CTR] = out[C.CLICKS] / out[C.IMPRESSIONS].replace(0, np.nan)
        out[C.CONVERSION] = out[C.PURCHASES] / out[C.CLICKS].replace(0, np.nan)
    out["revenue_per_product"] = out[C.REVENUE] / out[C.PRODUCTS_COUNT]
    return out if by_category else out.drop(columns=["price_min", "price_max"])


# =========================================================================================
# sizing: revenue drivers
# =========================================================================================
def revenue_baseline(products: pd.DataFrame, events: pd.DataFrame, by: str = C.SESSION_ID
                     ) -> dict[str, float]:
    """Today's revenue drivers, one visitor = one ``by`` (a session by default):

    visitors; ctr (share of visitors who click); conversion (share of clicking visitors who
    buy); order_value (revenue per buying visitor); revenue (Σ price of purchases). The four
    drivers multiply to the revenue exactly.
    """
    _require(events, [by, C.EVENT_TYPE, C.PRODUCT_ID], "revenue_baseline: events")
    visitors = events[by].nunique()
    if visitors == 0:
        raise ValueError("revenue_baseline: events is empty")
    clickers = events.loc[events[C.EVENT_TYPE] == C.CLICK, by].nunique()
    bought = events[events[C.EVENT_TYPE] == C.PURCHASE].merge(
        products[[C.PRODUCT_ID, C.PRICE]], on=C.PRODUCT_ID)
    buyers = bought[by].nunique()
    revenue = float(bought[C.PRICE].sum())
    return {C.VISITORS: float(visitors), C.CTR: clickers / visitors,
            C.CONVERSION: buyers / clickers if clickers else 0.0,
            C.ORDER_VALUE: revenue / buyers if buyers else 0.0, C.REVENUE: revenue}


def what_if(drivers: Mapping[str, float], **changes: float) -> dict[str, float]:
    """The drivers after relative changes, e.g. ``what_if(base, ctr=0.05)`` (+5% CTR), with
    the revenue recomputed. Unknown driver names raise ``KeyError``."""
    unknown = sorted(set(changes) - set(DRIVERS))
    if unknown:
        raise KeyError(f"unknown driver(s) {', '.join(unknown)}; drivers: {', '.join(DRIVERS)}")
    out = {d: float(drivers[d]) * (1 + float(changes.get(d, 0.0))) for d in DRIVERS}
    out[C.REVENUE] = float(revenue_drivers({"arm": out}).loc["arm", C.REVENUE])
    return out


# =========================================================================================
# all figures, and the idea maps
# =========================================================================================
@dataclass
class Opportunities:
    """The workshop's figures: long_tail (dict), cold_start, bundles, price_bands (by category),
    price_bands_pooled (DataFrames) and drivers (today's revenue drivers)."""

    long_tail: dict[str, float]
    cold_start: pd.DataFrame
    bundles: pd.DataFrame
    price_bands: pd.DataFrame
    price_bands_pooled: pd.DataFrame
    drivers: dict[str, float]

    def key_figures(self) -> dict[str, float | int | str]:
        """A flat dict of the headline numbers (for ``show_key_figures``)."""
        lt, cold, comp = self.long_tail, self.cold_start, self.bundles
        pooled = self.price_bands_pooled
        best = pooled.loc[pooled[C.CONVERSION].idxmax()] if pooled[C.CONVERSION].notna().any() else None
        figures: dict[str, float | int | str] = {
            "products": lt["products"],
            "share of products never clicked": round(lt["never_clicked"], 4),
            "head share of clicks (top 20%)": round(lt["head_clicks"], 4),
            "gini of clicks": round(lt["gini_clicks"], 4),
            "top cold-start category": str(cold.iloc[0][C.CATEGORY]) if len(cold) else "none",
            "complementary rules bought together": int(len(comp)),
        }
        if len(comp):
            figures["best complement rule"] = f"{comp.iloc[0][C.CATEGORY_A]} -> {comp.iloc[0][C.CATEGORY_B]}"
            figures["its lift"] = round(float(comp.iloc[0][C.LIFT]), 4)
        if best is not None:
            figures["best-converting price band"] = int(best[C.PRICE_BAND])
        figures["revenue"] = round(self.drivers[C.REVENUE], 2)
        return figures


def find_opportunities(products: pd.DataFrame, events: pd.DataFrame, *, few: int = 1,
                       top: float = 0.2, n_bands: int = 3, by: str = C.USER_ID,
                       event_types: Sequence[str] = (C.PURCHASE,)) -> Opportunities:
    """Every figure of the workshop from the clean products and events (bundles: complementary
    rules only, bought in the same ``by`` basket)."""
    activity = product_activity(products, events)
    return Opportunities(
        long_tail=long_tail(activity, few=few, top=top),
        cold_start=cold_start_categories(activity),
        bundles=bundle_rules(products, events, by=by, event_types=event_types,
                             complements_only=True),
        price_bands=price_bands(activity, n_bands),
        price_bands_pooled=price_bands(activity, n_bands, by_category=False),
        drivers=revenue_baseline(products, events),
    )


def _idea_map(name: str, title: str, **options: Any) -> MindMap:
    m = MindMap(name, **{"title": title, "wrap_width": 30, "max_children": 6, **options})
    m.add_node(ROOT, "Opportunities in our data", kind="root")
    for branch, (label, _) in BRANCHES.items():
        m.add_child(ROOT, branch, label, kind="idea")
    return m


def template_map(**options: Any) -> MindMap:
    """The empty workshop map: one branch per idea, each with the question that finds its number."""
    m = _idea_map("idea_template", "From the data to opportunities (your map)", **options)
    for branch, (_, question) in BRANCHES.items():
        m.add_child(branch, f"{branch}/question", question, kind="placeholder")
    return m


def add_idea(m: MindMap, branch: str, idea: str, figure: float, fmt: str | None = None) -> str:
    """Add a data-backed node ``"<idea>: <figure>"`` (kind "figure") under ``branch``.

    The figure is written ``fmt.format(figure)``, by default ``f"{round(figure, 3):,}"``
    (3 decimals at most, thousands separated).
    The id is ``"<branch>/idea<k>"`` (k = 1, 2… per branch). Raises ``ValueError`` when the
    figure is not a finite number (an idea needs its number) and ``KeyError`` for an unknown
    branch. Returns the new id.
    """
    if isinstance(figure, bool) or not isinstance(figure, numbers.Real) or not math.isfinite(figure):
        raise ValueError(f"idea {idea!r} needs a finite number, got {figure!r}")
    if branch not in m.nodes:
        raise KeyError(f"unknown branch {branch!r}; branches: {', '.join(BRANCHES)}")
    k = 1
    while f"{branch}/idea{k}" in m.nodes:
        k += 1
    return m.add_child(branch, f"{branch}/idea{k}", f"{idea}: {_fmt(figure, fmt)}", kind="figure")


def _fmt(figure: float, fmt: str | None) -> str:
    return f"{round(figure, 3):,}" if fmt is None else fmt.format(figure)


def opportunity_map(opps: Opportunities, top: int = 3, **options: Any) -> MindMap:
    """The ideas mind map, every node backed by its number (``top`` rows per table)."""
    m = _idea_map("opportunity_map", "From the data to opportunities", **options)
    lt = opps.long_tail
    add_idea(m, "long_tail", "products never clicked", lt["never_clicked"], "{:.0%}")
    add_idea(m, "long_tail", "products never shown", lt["never_shown"], "{:.0%}")
    add_idea(m, "long_tail", "clicks going to the top 20% of products", lt["head_clicks"], "{:.0%}")
    add_idea(m, "long_tail", "Gini of clicks", lt["gini_clicks"], "{:.2f}")
    for _, row in opps.cold_start.head(top).iterrows():
        add_idea(m, "cold_start", f"{row[C.CATEGORY]}: products without interaction",
                 int(row[C.NO_INTERACTION]), f"{{:,}} of {int(row[C.PRODUCTS_COUNT])}")
    if len(opps.bundles):
        for _, row in opps.bundles.head(top).iterrows():
            add_idea(m, "bundles", f"{row[C.CATEGORY_A]} → {row[C.CATEGORY_B]} "
                     f"({int(row[C.BASKETS])} users, confidence {row[C.CONFIDENCE]:.0%}): lift",
                     float(row[C.LIFT]), "{:.2f}")
    else:
        add_idea(m, "bundles", "complementary rules bought together", 0, "{}")
    for _, row in opps.price_bands_pooled.iterrows():
        conv = row[C.CONVERSION]
        if pd.notna(conv):
            add_idea(m, "price_bands", f"band {int(row[C.PRICE_BAND])} "
                     f"(revenue ${row[C.REVENUE]:,.0f}): conversion", float(conv), "{:.1%}")
    d = opps.drivers
    add_idea(m, "your_idea", "today's revenue", d[C.REVENUE], "${:,.0f}")
    add_idea(m, "your_idea", "revenue of +5% CTR",
             what_if(d, **{C.CTR: 0.05})[C.REVENUE] - d[C.REVENUE], "+${:,.0f}")
    return m
