"""Faithful explanations: a recommendation's reasons and their weights come from the ranker itself.

A *reason* is a group of ranking features (:data:`REASONS`: "similar to products you viewed" =
the four similarity features and the similarity source flag, ...). Its *contribution* is the part
of the ranker's logit that those features are responsible for, measured against the *baseline*:
an average candidate, every feature at its training mean (standardised value 0).

- ``logistic`` ranker (method ``exact``): feature ``i`` contributes ``w_i × z_i``, with ``z_i`` the
  standardised feature. This is an exact decomposition: the contributions add up to the logit
  minus the bias, and resetting a reason's features to their training mean lowers the score by
  exactly that reason's contribution.
- ``mlp`` ranker (method ``occlusion``, the default): each reason gets ``score − score with that
  reason's features reset to their training mean``, exactly what removing the reason costs (the
  deletion test holds by construction), but a net has interactions, so the reasons need not add
  up to ``score − baseline score`` (:func:`additivity` measures the gap). Method
  ``integrated_gradients`` (Sundararajan et al., 2017: ``z_i ×`` the mean gradient along the
  straight path from the baseline to ``z``, 64 midpoints) adds up to within a small numerical
  gap, but its top reason is not always the one whose removal costs most
  (:func:`faithfulness` counts how often it is). No method is both for a non-linear model; the
  logistic ranker is both.

A reason's contribution is the sum of its features' (occlusion removes the group at once)::

    contrib = explain(ranker, rows)                    # product_id, reason, contribution
    maps.why_this_item("Ann", recs, contrib)           # the "why this item?" mind map
    why_this_item_for(user_id, ranker, features, products, history=step.history)

:func:`fit_recommender` runs lesson 04's pipeline (split, steps, candidates, features, a click
model) on a sample of users; :class:`ExplainedRecommender` answers "recommend", "explain" and
"search" for one user or query, and draws their maps.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import columns as C
from . import maps
from .mindmap import MindMap
from .recommend import CachedEncoder, Catalog, _l2, interactions, leave_last_out
from .recommend_rank import (
    FEATURES, Ranker, Step, add_labels, check_features, generate_candidates, make_step, ranking_features,
    sample_training_rows, train_ranker,
)

SIMILAR, SEARCH, SHOPPERS = "similar to products you viewed", "matches your last search", "popular with similar shoppers"
CATEGORY, BRAND, PRICE = "in a category you like", "a brand you like", "fits your usual price"
POPULAR, NEW = "popular right now", "new in the shop"

REASONS: dict[str, tuple[str, ...]] = {
    SIMILAR: ("sim_mean", "sim_recency", "sim_attention", "sim_last", "from_similarity"),
    SEARCH: ("score_query", "from_query"),
    SHOPPERS: ("score_cooccurrence", "from_cooccurrence"),
    CATEGORY: ("category_affinity", "same_category_as_last"),
    BRAND: ("brand_affinity",),
    PRICE: ("price_fit", "relative_price", "relative_price_fit"),
    POPULAR: ("popularity", "recency", "from_popularity"),
    NEW: ("item_age",),
}
METHODS = ("exact", "integrated_gradients", "occlusion")
FEATURE = "feature"
DROP = "drop"
IG_STEPS = 64
_KEYS = (C.USER_ID, C.PRODUCT_ID)


# =========================================================================================
# features -> reasons
# =========================================================================================
def reason_table(features: Sequence[str] = FEATURES,
                 reasons: Mapping[str, Sequence[str]] = REASONS) -> pd.DataFrame:
    """``feature, reason`` for each of ``features`` (a feature in no reason is its own reason).
    ``ValueError`` names a feature listed under two reasons."""
    owner: dict[str, str] = {}
    for reason, names in reasons.items():
        for name in names:
            if name in owner:
                raise ValueError(f"feature {name!r} is under two reasons: {owner[name]!r} and {reason!r}")
            owner[name] = reason
    return pd.DataFrame({FEATURE: list(features), C.REASON: [owner.get(f, f) for f in features]})


def _groups(ranker: Ranker, reasons: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """Reason -> the column positions of its features in ``ranker.features`` (reasons order)."""
    table = reason_table(ranker.features, reasons)
    order = list(dict.fromkeys([r for r in reasons if r in set(table[C.REASON])] + table[C.REASON].tolist()))
    return {r: np.flatnonzero(table[C.REASON].to_numpy() == r) for r in order}


def group_contributions(feature_contributions: pd.DataFrame,
                        reasons: Mapping[str, Sequence[str]] = REASONS) -> pd.DataFrame:
    """Sum long per-feature contributions (``[user_id,] product_id, feature, contribution``) into
    reasons: ``[user_id,] product_id, reason, contribution``, rows in input order, reasons in
    ``reasons`` order."""
    need = [C.PRODUCT_ID, FEATURE, C.CONTRIBUTION]
    missing = [c for c in need if c not in feature_contributions.columns]
    if missing:
        raise ValueError(f"group_contributions needs column(s) {missing}; it has {list(feature_contributions.columns)}")
    df = feature_contributions
    table = reason_table(list(dict.fromkeys(df[FEATURE])), reasons)
    keys = [k for k in _KEYS if k in df.columns]
    df = df.assign(**{C.REASON: df[FEATURE].map(dict(zip(table[FEATURE], table[C.REASON])))})
    order = list(dict.fromkeys([r for r in reasons if r in set(df[C.REASON])] + df[C.REASON].tolist()))
    df[C.REASON] = pd.Categorical(df[C.REASON], categories=order, ordered=True)
    out = df.groupby([*keys, C.REASON], sort=False, observed=True)[C.CONTRIBUTION].sum().reset_index()
    first = {key: i for i, key in enumerate(dict.fromkeys(map(tuple, df[keys].to_numpy())))}
    out["_row"] = [first[tuple(k)] for k in out[keys].to_numpy()]
    out = out.sort_values(["_row", C.REASON], kind="stable").drop(columns="_row")
    out[C.REASON] = out[C.REASON].astype(str)
    return out.reset_index(drop=True)


# =========================================================================================
# the ranker's numbers
# =========================================================================================
def _z(ranker: Ranker, rows: pd.DataFrame) -> np.ndarray:
    check_features(rows, ranker.features)
    if rows.empty:
        raise ValueError("no rows to explain (the feature table is empty)")
    return ((rows[list(ranker.features)].to_numpy(np.float32) - ranker.mean) / ranker.std).astype(np.float32)


def _net(ranker: Ranker, z: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return ranker.net(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))).squeeze(-1).double().numpy()


def baseline_score(ranker: Ranker) -> float:
    """The ranker's logit for an average candidate (every feature at its training mean); for the
    logistic ranker this is its bias."""
    return float(_net(ranker, np.zeros((1, len(ranker.features)), np.float32))[0])


def _method(ranker: Ranker, method: str) -> str:
    if method == "auto":
        return "exact" if ranker.kind == "logistic" else "occlusion"
    if method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}; choose 'auto' or one of {METHODS}")
    if method == "exact" and ranker.kind != "logistic":
        raise ValueError(f"method 'exact' needs a logistic ranker, got a {ranker.kind} one "
                         "(use 'integrated_gradients' or 'occlusion')")
    return method


def _integrated_gradients(ranker: Ranker, z: np.ndarray, steps: int = IG_STEPS, chunk: int = 256) -> np.ndarray:
    """``z × mean gradient`` along the path ``alpha × z`` (midpoint rule), for each row."""
    import torch

    alphas = torch.tensor((np.arange(steps) + 0.5) / steps, dtype=torch.float32)
    out = np.empty_like(z, dtype=np.float64)
    for start in range(0, len(z), chunk):
        x = torch.from_numpy(z[start:start + chunk])
        path = (alphas[:, None, None] * x[None]).reshape(-1, x.shape[1]).requires_grad_(True)
        ranker.net(path).sum().backward()
        grads = path.grad.reshape(steps, len(x), x.shape[1]).mean(dim=0)
        out[start:start + len(x)] = (x * grads).double().numpy()
    return out


def _feature_matrix(ranker: Ranker, z: np.ndarray, method: str) -> np.ndarray:
    """Per-row, per-feature contributions ``[rows, features]`` (exact or integrated gradients)."""
    if method == "exact":
        return z.astype(np.float64) * ranker.weights().to_numpy(np.float64)
    return _integrated_gradients(ranker, z)


def _occlude(ranker: Ranker, z: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """The logits with ``columns`` reset to the training mean (standardised 0)."""
    removed = z.copy()
    removed[:, columns] = 0.0
    return _net(ranker, removed)


def _long(rows: pd.DataFrame, names: Sequence[str], values: np.ndarray, column: str, value: str) -> pd.DataFrame:
    keys = [k for k in _KEYS if k in rows.columns]
    if C.PRODUCT_ID not in keys:
        raise ValueError(f"the rows need a {C.PRODUCT_ID!r} column; they have {list(rows.columns)}")
    n, m = values.shape
    out = pd.DataFrame({k: np.repeat(rows[k].to_numpy(), m) for k in keys})
    out[column] = np.tile(np.asarray(names, dtype=object), n)
    out[value] = values.ravel()
    return out


def feature_contributions(ranker: Ranker, rows: pd.DataFrame, method: str = "auto") -> pd.DataFrame:
    """Per-feature contributions: ``[user_id,] product_id, feature, contribution`` (``method``
    ``exact`` or ``integrated_gradients``; ``occlusion`` resets one feature at a time)."""
    method = _method(ranker, method)
    z = _z(ranker, rows)
    if method == "occlusion":
        score = _net(ranker, z)
        values = np.column_stack([score - _occlude(ranker, z, np.array([i])) for i in range(z.shape[1])])
    else:
        values = _feature_matrix(ranker, z, method)
    return _long(rows, ranker.features, values, FEATURE, C.CONTRIBUTION)


def explain(ranker: Ranker, rows: pd.DataFrame | pd.Series, *, reasons: Mapping[str, Sequence[str]] = REASONS,
            method: str = "auto") -> pd.DataFrame:
    """Each row's reasons and their contributions to the ranker's logit: ``[user_id,] product_id,
    reason, contribution`` (rows in input order, reasons in ``reasons`` order), ready for
    :func:`course_lib.maps.why_this_item`.

    ``rows``: ranking features (one row as a Series, or a frame) with ``product_id``. ``method``:
    ``auto`` (``exact`` for a logistic ranker, ``occlusion`` for an MLP: each reason's features
    reset to their training mean together) or ``integrated_gradients``.
    """
    rows = rows.to_frame().T if isinstance(rows, pd.Series) else rows
    method = _method(ranker, method)
    z = _z(ranker, rows)
    groups = _groups(ranker, reasons)
    if method == "occlusion":
        score = _net(ranker, z)
        values = np.column_stack([score - _occlude(ranker, z, cols) for cols in groups.values()])
    else:
        per_feature = _feature_matrix(ranker, z, method)
        values = np.column_stack([per_feature[:, cols].sum(axis=1) for cols in groups.values()])
    return _long(rows, list(groups), values, C.REASON, C.CONTRIBUTION)


def removal_drops(ranker: Ranker, rows: pd.DataFrame, *,
                  reasons: Mapping[str, Sequence[str]] = REASONS) -> pd.DataFrame:
    """How much each reason holds up the score: ``[user_id,] product_id, reason, drop`` with
    ``drop = score − score with the reason's features reset to their training mean``."""
    z = _z(ranker, rows)
    score = _net(ranker, z)
    groups = _groups(ranker, reasons)
    values = np.column_stack([score - _occlude(ranker, z, cols) for cols in groups.values()])
    return _long(rows, list(groups), values, C.REASON, DROP)


def additivity(ranker: Ranker, rows: pd.DataFrame, *, reasons: Mapping[str, Sequence[str]] = REASONS,
               method: str = "auto") -> pd.DataFrame:
    """Do the contributions add up? ``[user_id,] product_id, score, baseline, explained, gap`` with
    ``explained`` the sum of the reasons' contributions and ``gap = score − baseline − explained``
    (0 for the exact method, small for integrated gradients, larger for occlusion)."""
    contrib = explain(ranker, rows, reasons=reasons, method=method)
    keys = [k for k in _KEYS if k in rows.columns]
    out = rows[keys].reset_index(drop=True).copy()
    out[C.SCORE] = ranker.predict(rows)
    out["baseline"] = baseline_score(ranker)
    n = len(_groups(ranker, reasons))
    out["explained"] = contrib[C.CONTRIBUTION].to_numpy().reshape(len(rows), n).sum(axis=1)
    out["gap"] = out[C.SCORE] - out["baseline"] - out["explained"]
    return out


def faithfulness(ranker: Ranker, rows: pd.DataFrame, *, reasons: Mapping[str, Sequence[str]] = REASONS,
                 method: str = "auto") -> pd.DataFrame:
    """The deletion test, per row: ``top_reason`` (largest contribution), ``biggest_drop`` (the
    reason whose removal lowers the score most), their drops and ``agree`` (the top reason's
    drop is the largest, within 1e-6)."""
    contrib = explain(ranker, rows, reasons=reasons, method=method)
    drops = removal_drops(ranker, rows, reasons=reasons)
    n = len(_groups(ranker, reasons))
    names = np.asarray(contrib[C.REASON].to_numpy()[:n])
    c = contrib[C.CONTRIBUTION].to_numpy().reshape(len(rows), n)
    d = drops[DROP].to_numpy().reshape(len(rows), n)
    top = c.argmax(axis=1)
    keys = [k for k in _KEYS if k in rows.columns]
    out = rows[keys].reset_index(drop=True).copy()
    out["top_reason"] = names[top]
    out["top_reason_drop"] = d[np.arange(len(d)), top]
    out["biggest_drop"] = names[d.argmax(axis=1)]
    out["largest_drop"] = d.max(axis=1)
    out["agree"] = out["top_reason_drop"] >= out["largest_drop"] - 1e-6
    return out


def top_reasons(contributions: pd.DataFrame, n: int = 1) -> pd.DataFrame:
    """The ``n`` largest contributions per product (``[user_id,] product_id, reason,
    contribution``, largest first)."""
    keys = [k for k in _KEYS if k in contributions.columns]
    df = contributions.assign(_row=contributions.groupby(keys, sort=False).ngroup())
    df = df.sort_values(["_row", C.CONTRIBUTION], ascending=[True, False], kind="stable")
    return df.groupby("_row", sort=False).head(n).drop(columns="_row").reset_index(drop=True)


# =========================================================================================
# one user's recommendations and their map
# =========================================================================================
def _user_rows(features: pd.DataFrame, user_id: Hashable) -> pd.DataFrame:
    if C.USER_ID not in features.columns:
        raise ValueError(f"the feature table needs a {C.USER_ID!r} column")
    rows = features[features[C.USER_ID] == user_id]
    if rows.empty:
        users = np.sort(features[C.USER_ID].unique())
        raise KeyError(f"unknown user id {user_id!r}: no candidates for this user "
                       f"({len(users)} users have some, e.g. {', '.join(map(repr, users[:3]))})")
    return rows


def recommend_for(user_id: Hashable, ranker: Ranker, features: pd.DataFrame, products: pd.DataFrame,
                  k: int = 10) -> pd.DataFrame:
    """A user's top ``k`` candidates by the ranker: ``rank, product_id, score`` and the product's
    ``title, category, price``, plus the feature columns (for :func:`explain`)."""
    rows = _user_rows(features, user_id)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    scored = rows.assign(**{C.SCORE: ranker.predict(rows)}).sort_values(
        [C.SCORE, C.PRODUCT_ID], ascending=[False, True], kind="stable").head(k)
    info = products.set_index(C.PRODUCT_ID)
    cols = [c for c in (C.TITLE, C.CATEGORY, C.PRICE) if c in info.columns]
    scored = scored.drop(columns=[c for c in cols if c in scored.columns]).join(info[cols], on=C.PRODUCT_ID)
    scored.insert(0, C.RANK, np.arange(1, len(scored) + 1))
    front = [C.RANK, C.USER_ID, C.PRODUCT_ID, *cols, C.SCORE]
    return scored[front + [c for c in scored.columns if c not in front]].reset_index(drop=True)


def interests_of(user_id: Hashable, history: pd.DataFrame, products: pd.DataFrame) -> pd.DataFrame:
    """The user's interest clusters (``category, interest``) from the history the ranker knew
    (:func:`course_lib.maps.user_interests`; rows without ``event_type`` count as clicks)."""
    if C.EVENT_TYPE not in history.columns:
        history = history.assign(**{C.EVENT_TYPE: C.CLICK})
    return maps.user_interests(history, products, user_id)


def why_this_item_for(user_id: Hashable, ranker: Ranker, features: pd.DataFrame, products: pd.DataFrame, *,
                      history: pd.DataFrame | None = None, k: int = 5, method: str = "auto",
                      reasons: Mapping[str, Sequence[str]] = REASONS, user_label: str | None = None,
                      top_reasons: int = 3, **options: Any) -> MindMap:
    """The "why this item?" map of a user's top ``k``: clusters (from ``history``, the ranker's
    known interactions) → products → reasons with the ranker's own contributions. An item's
    score is shown relative to the baseline (an average candidate), so its reason edges add up
    to it (exactly for the logistic ranker)."""
    recs = recommend_for(user_id, ranker, features, products, k)
    recs[C.SCORE] = recs[C.SCORE] - baseline_score(ranker)
    contrib = explain(ranker, recs, reasons=reasons, method=method)
    interests = interests_of(user_id, history, products) if history is not None else None
    return maps.why_this_item(user_label or f"user {user_id}", recs, contrib, interests=interests,
                              top_reasons=top_reasons, **options)


def flag_suspicious(recommendations: pd.DataFrame, contributions: pd.DataFrame,
                    interests: pd.DataFrame | Mapping[str, float], *, min_share: float = 0.05) -> pd.DataFrame:
    """Recommendations worth a second look: ``product_id, category, share`` (the user's interest
    in the category), ``top_reason``, ``category_contribution`` and ``suspicious``/``why``: outside
    the user's interest clusters (share below ``min_share``), or carried by popularity while the
    category counts against it."""
    shares = maps._interest_map(interests)
    top = top_reasons(contributions, 1).set_index(C.PRODUCT_ID)[C.REASON]
    cat = contributions[contributions[C.REASON] == CATEGORY].set_index(C.PRODUCT_ID)[C.CONTRIBUTION]
    out = recommendations[[C.PRODUCT_ID, C.CATEGORY]].copy()
    out["share"] = out[C.CATEGORY].astype(str).map(shares).fillna(0.0).astype(float)
    out["top_reason"] = out[C.PRODUCT_ID].map(top)
    out["category_contribution"] = out[C.PRODUCT_ID].map(cat).astype(float)
    outside = out["share"] < min_share
    pushed = (out["top_reason"] == POPULAR) & (out["category_contribution"] < 0)
    out["suspicious"] = outside | pushed
    out["why"] = np.select([outside & pushed, outside, pushed],
                           ["outside your interests, carried by popularity", "outside your interests",
                            "carried by popularity, the category counts against it"], "")
    return out.reset_index(drop=True)


# =========================================================================================
# lesson 04's pipeline on a sample of users, wrapped for explanations
# =========================================================================================
def _sample(ids: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    ids = np.sort(np.asarray(ids))
    if n is None or n >= len(ids):
        return ids
    return np.sort(ids[np.random.default_rng(seed).permutation(len(ids))[:n]])


@dataclass
class ExplainedRecommender:
    """A click model and the candidates it ranks, with what is needed to explain and search.

    ``features``: ranking features of the candidates of every user it serves; ``history``: what
    the ranker knew about them (interest clusters); ``catalog`` and ``encoder`` answer queries.
    """

    ranker: Ranker
    features: pd.DataFrame = field(repr=False)
    products: pd.DataFrame = field(repr=False)
    history: pd.DataFrame | None = field(default=None, repr=False)
    catalog: Catalog | None = field(default=None, repr=False)
    encoder: Any = field(default=None, repr=False)
    method: str = "auto"
    reasons: Mapping[str, Sequence[str]] = field(default_factory=lambda: dict(REASONS), repr=False)
    train_rows: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def users(self) -> list:
        """The users with candidates, sorted."""
        return sorted(self.features[C.USER_ID].unique().tolist())

    def recommend(self, user_id: Hashable, k: int = 10) -> pd.DataFrame:
        """``rank, user_id, product_id, title, category, price, score`` (and the features)."""
        return recommend_for(user_id, self.ranker, self.features, self.products, k)

    def explain(self, user_id: Hashable, k: int = 10) -> pd.DataFrame:
        """The reasons of the user's top ``k``: ``user_id, product_id, reason, contribution``."""
        return explain(self.ranker, self.recommend(user_id, k), reasons=self.reasons, method=self.method)

    def explain_product(self, user_id: Hashable, product_id: Hashable) -> pd.DataFrame:
        """The reasons of one of the user's candidates; ``KeyError`` if it is not one."""
        rows = _user_rows(self.features, user_id)
        row = rows[rows[C.PRODUCT_ID] == product_id]
        if row.empty:
            raise KeyError(f"product {product_id!r} is not among user {user_id!r}'s {len(rows)} candidates")
        return explain(self.ranker, row, reasons=self.reasons, method=self.method)

    def interests(self, user_id: Hashable) -> pd.DataFrame | None:
        """The user's interest clusters from the known history (None without a history)."""
        if self.history is None:
            return None
        _user_rows(self.features, user_id)
        return interests_of(user_id, self.history, self.products)

    def why_map(self, user_id: Hashable, k: int = 5, **options: Any) -> MindMap:
        """The "why this item?" map of the user's top ``k``."""
        return why_this_item_for(user_id, self.ranker, self.features, self.products, history=self.history, k=k,
                                 method=self.method, reasons=self.reasons, **options)

    def search(self, query: str, k: int = 10) -> pd.DataFrame:
        """The ``k`` products closest to ``query`` (dense, cosine): ``rank, product_id, title,
        category, price, color, size, score``. ``ValueError`` for an empty query."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("the query is empty: type a few words, e.g. 'wireless earbuds'")
        if self.catalog is None or self.encoder is None:
            raise ValueError("search needs a catalog and an encoder (fit_recommender(..., encoder=...))")
        q = _l2(np.asarray(self.encoder.encode([query.strip()]), dtype=np.float32))[0]
        scores = self.catalog.vectors @ q
        top = np.lexsort((self.catalog.ids, -scores))[:k]
        out = pd.DataFrame({C.PRODUCT_ID: self.catalog.ids[top], C.SCORE: scores[top].astype(float)})
        info = self.products.set_index(C.PRODUCT_ID)
        cols = [c for c in (C.TITLE, C.CATEGORY, C.PRICE, C.COLOR, C.SIZE) if c in info.columns]
        out = out.join(info[cols], on=C.PRODUCT_ID)
        out.insert(0, C.RANK, np.arange(1, len(out) + 1))
        return out[[C.RANK, C.PRODUCT_ID, *cols, C.SCORE]]

    def query_map(self, query: str, k: int = 5, **options: Any) -> MindMap:
        """The query understanding map of ``query`` with its top ``k`` matches."""
        return maps.query_understanding_map(query.strip(), matched_products=self.search(query, k), k=k, **options)


def fit_recommender(products: pd.DataFrame, events: pd.DataFrame, catalog: Catalog, *, encoder: Any = None,
                    kind: str = "logistic", users: Sequence[Hashable] | None = None, n_users: int | None = None,
                    n_train_users: int | None = None, n_candidates: int = 100, negatives: int = 30,
                    seed: int = 0, method: str = "auto", **train_kwargs: Any) -> ExplainedRecommender:
    """Lesson 04's pipeline, on a sample of users so that it runs in seconds: leave-last-out,
    a ranker of ``kind`` trained on the validation step of ``n_train_users`` users (all when
    None), and the test-step candidates of ``users`` (default: ``n_users`` warm test users, drawn
    with ``seed``). With an ``encoder`` the last query is a candidate source and search works."""
    split = leave_last_out(interactions(events))
    encoder = CachedEncoder(encoder) if encoder is not None and not isinstance(encoder, CachedEncoder) else encoder
    ev = events if encoder is not None else None

    def step_of(log: pd.DataFrame, targets: pd.DataFrame, chosen: np.ndarray) -> Step:
        return make_step(log, targets[targets[C.USER_ID].isin(set(chosen))])

    val_users = _sample(split[C.VALIDATION][C.USER_ID].unique(), n_train_users, seed)
    val = step_of(split[C.TRAIN], split[C.VALIDATION], val_users)
    cands = generate_candidates(val, catalog, events=ev, encoder=encoder, n=n_candidates)
    train = sample_training_rows(add_labels(ranking_features(cands, val, catalog), val.targets), negatives, seed)
    ranker = train_ranker(train, kind, seed=seed, **train_kwargs)
    known = pd.concat([split[C.TRAIN], split[C.VALIDATION]], ignore_index=True)
    full = make_step(known, split[C.TEST])
    if users is None:
        chosen = _sample(full.warm_users, n_users, seed)
    else:
        chosen = np.asarray(list(users))
        unknown = np.setdiff1d(chosen, full.warm_users)
        if len(unknown):
            raise KeyError(f"unknown user id(s) {unknown[:5].tolist()}: no history before their test item")
    test = step_of(known, split[C.TEST], chosen)
    feats = ranking_features(generate_candidates(test, catalog, events=ev, encoder=encoder, n=n_candidates),
                             test, catalog)
    return ExplainedRecommender(ranker, feats, products, history=test.history, catalog=catalog, encoder=encoder,
                                method=method, train_rows=train)
