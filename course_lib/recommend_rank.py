"""Ranking recommendations: a step of known history, candidates, features, click models, ensembles.

    val = make_step(split["train"], split["validation"])              # what we know -> what comes next
    cands = generate_candidates(val, catalog, events=events, encoder=encoder)
    train = add_labels(ranking_features(cands, val, catalog), val.targets)
    hybrid = HybridRanker.fit(train)                                 # logistic, MLP, average, stacking
    scores = hybrid.predict(ranking_features(test_cands, test, catalog))

A *step* holds what is known when held-out items are predicted: everything strictly before each
user's held-out timestamp. The click models are torch (``BCEWithLogitsLoss``), trained on CPU and
deterministic for a seed; features are standardised with statistics of the training rows only.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import columns as C
from .data import SchemaError
from .recommend import (
    COOCCURRENCE, POPULARITY, QUERY, SIMILARITY, Catalog, _groups, _l2, _seconds, cooccurrence_candidates,
    cooccurrence_counts, history_before, last_queries, merge_candidates, popularity, popularity_candidates,
    query_candidates, similarity_candidates, to_run, user_interests,
)

FEATURES = (
    "sim_mean", "sim_recency", "sim_attention", "sim_last",          # content: candidate vs history
    "category_affinity", "same_category_as_last", "brand_affinity",   # what the user buys
    "price_fit", "relative_price", "relative_price_fit",              # price
    "popularity", "recency", "item_age",                              # the item's life in the shop
    "score_cooccurrence", "score_query",                              # other sources' scores
    "from_similarity", "from_cooccurrence", "from_popularity", "from_query",  # source indicators
)
MODEL_KINDS = ("logistic", "mlp")
NEVER_DAYS = 365.0   # 'days since last interaction' of a product nobody has touched yet


# =========================================================================================
# a step: what is known, what comes next
# =========================================================================================
@dataclass
class Step:
    """``log``: every interaction usable (popularity, co-occurrence); ``targets``: held-out rows;
    ``now``: each target user's held-out time; ``history``: their log rows strictly before it."""

    log: pd.DataFrame
    targets: pd.DataFrame
    now: pd.Series
    history: pd.DataFrame = field(repr=False)

    @property
    def warm_users(self) -> np.ndarray:
        """Target users with at least one interaction in their history."""
        return np.sort(self.history[C.USER_ID].unique())

    @property
    def cold_users(self) -> np.ndarray:
        """Target users with no history at all."""
        return np.setdiff1d(self.targets[C.USER_ID].unique(), self.warm_users)


def make_step(log: pd.DataFrame, targets: pd.DataFrame) -> Step:
    """The step that predicts ``targets`` (one or more rows per user) from ``log``."""
    if targets.empty:
        raise ValueError("make_step: no held-out targets")
    now = targets.groupby(C.USER_ID)[C.TIMESTAMP].min()
    return Step(log=log, targets=targets, now=now, history=history_before(log, now))


def generate_candidates(step: Step, catalog: Catalog, *, events: pd.DataFrame | None = None,
                        encoder: Any = None, n: int = 100, interest: str = "recency",
                        half_life_days: float = 7.0, cooc_by: str = C.USER_ID) -> pd.DataFrame:
    """Merged candidates of the step's warm users from four sources: similarity to the interest
    vector, co-occurrence, popularity, and (with ``events`` and ``encoder``) the last query."""
    users = step.warm_users
    if len(users) == 0:
        raise ValueError("generate_candidates: no target user has any history (all cold)")
    hist = step.history
    ids, vecs = user_interests(hist, catalog, interest, half_life_days=half_life_days, now=step.now)
    frames = [similarity_candidates(ids, vecs, catalog, n, hist),
              cooccurrence_candidates(hist, cooccurrence_counts(step.log, catalog, cooc_by), catalog, n),
              popularity_candidates(users, popularity(step.log), catalog, n, hist)]
    if events is not None and encoder is not None:
        queries = last_queries(events, step.now.loc[users])
        frames.append(query_candidates(queries, encoder, catalog, n, hist))
    return merge_candidates(frames)


def add_labels(candidates: pd.DataFrame, targets: pd.DataFrame) -> pd.DataFrame:
    """``label`` = 1 where the candidate is one of the user's held-out items, else 0."""
    keys = pd.MultiIndex.from_frame(targets[[C.USER_ID, C.PRODUCT_ID]])
    hit = pd.MultiIndex.from_frame(candidates[[C.USER_ID, C.PRODUCT_ID]]).isin(keys)
    return candidates.assign(**{C.LABEL: hit.astype(np.int64)})


# =========================================================================================
# features
# =========================================================================================
def _asof(log: pd.DataFrame, catalog: Catalog, pos: np.ndarray, now_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per (product position, time): interactions in ``log`` strictly before, and the time of the last."""
    lp = catalog.positions(log[C.PRODUCT_ID])
    ls = _seconds(log[C.TIMESTAMP])
    t0 = min(ls.min() if len(ls) else 0.0, now_s.min()) - 1.0
    span = 2.0 ** 33   # > 250 years of seconds: keys never collide across products
    keys = np.sort(lp * span + (ls - t0))
    hi = np.searchsorted(keys, pos * span + (now_s - t0), side="left")
    lo = np.searchsorted(keys, pos * span, side="left")
    count = hi - lo
    last = np.where(count > 0, keys[np.maximum(hi - 1, 0)] - pos * span + t0, np.nan)
    return count, last


def ranking_features(candidates: pd.DataFrame, step: Step, catalog: Catalog, *,
                     half_life_days: float = 7.0, temperature: float = 0.1) -> pd.DataFrame:
    """One row per (user, candidate) with the columns of :data:`FEATURES` (no NaN).

    Needs merged candidates (:func:`recommend.merge_candidates`) of users with history in ``step``.
    Popularity and recency count only interactions before the user's ``now``.
    """
    if candidates.empty:
        raise ValueError("ranking_features: the candidate set is empty")
    df = candidates.sort_values([C.USER_ID, C.PRODUCT_ID], kind="stable").reset_index(drop=True)
    users, positions, seconds = _groups(step.history, catalog)
    u = pd.Index(users).get_indexer(df[C.USER_ID])
    if (u < 0).any():
        raise KeyError(f"candidates for user(s) with no history in this step: "
                       f"{df[C.USER_ID][u < 0].unique()[:5].tolist()}")
    cp = catalog.positions(df[C.PRODUCT_ID])
    now_u = _seconds(step.now.reindex(users))
    n_cat, n_brand = len(catalog.categories), len(catalog.brands)
    cat_share = np.zeros((len(users), n_cat))
    brand_share = np.zeros((len(users), n_brand))
    mean_logp, mean_rel, last_cat = np.zeros(len(users)), np.zeros(len(users)), np.zeros(len(users), int)
    sims = np.zeros((len(df), 4))                              # mean, recency, attention, last
    bounds = np.searchsorted(u, np.arange(len(users) + 1))   # df is sorted by user
    for i, (pos, secs) in enumerate(zip(positions, seconds)):
        h = catalog.vectors[pos]
        cat_share[i] = np.bincount(catalog.category[pos], minlength=n_cat) / len(pos)
        brand_share[i] = np.bincount(catalog.brand[pos], minlength=n_brand) / len(pos)
        last_cat[i] = catalog.category[pos[-1]]
        mean_logp[i] = np.log(np.exp(catalog.log_price[pos]).mean())
        mean_rel[i] = catalog.relative_log_price[pos].mean()
        w = 0.5 ** (np.maximum(now_u[i] - secs, 0) / 86400.0 / half_life_days)
        c = catalog.vectors[cp[bounds[i]:bounds[i + 1]]]
        s = c @ h.T                                            # [candidates, history]
        a = np.exp((s - s.max(axis=1, keepdims=True)) / temperature)   # target-aware attention
        a /= a.sum(axis=1, keepdims=True)
        att = (a * s).sum(axis=1) / np.maximum(np.linalg.norm(a @ h, axis=1), 1e-12)
        profiles = _l2(np.stack([h.mean(axis=0), (w[:, None] * h).sum(axis=0), h[-1]]))
        block = c @ profiles.T
        sims[bounds[i]:bounds[i + 1]] = np.column_stack([block[:, 0], block[:, 1], att, block[:, 2]])
    count, last = _asof(step.log, catalog, cp, now_u[u])
    days_since = np.where(np.isnan(last), NEVER_DAYS, (now_u[u] - np.nan_to_num(last)) / 86400.0)
    feats = {
        "sim_mean": sims[:, 0], "sim_recency": sims[:, 1], "sim_attention": sims[:, 2], "sim_last": sims[:, 3],
        "category_affinity": cat_share[u, catalog.category[cp]],
        "same_category_as_last": (catalog.category[cp] == last_cat[u]).astype(float),
        "brand_affinity": brand_share[u, catalog.brand[cp]],
        "price_fit": np.abs(catalog.log_price[cp] - mean_logp[u]),
        "relative_price": catalog.relative_log_price[cp],
        "relative_price_fit": np.abs(catalog.relative_log_price[cp] - mean_rel[u]),
        "popularity": np.log1p(count), "recency": np.log1p(np.clip(days_since, 0, NEVER_DAYS)),
        "item_age": np.log1p(np.maximum(now_u[u] - catalog.created[cp], 0) / 86400.0),
    }
    for source in (COOCCURRENCE, QUERY):
        col = f"score_{source}"
        feats[col] = df[col].fillna(0.0).to_numpy(float) if col in df.columns else np.zeros(len(df))
    for source in (SIMILARITY, COOCCURRENCE, POPULARITY, QUERY):
        col = f"score_{source}"
        feats[f"from_{source}"] = df[col].notna().to_numpy(float) if col in df.columns else np.zeros(len(df))
    out = df.assign(**{name: np.asarray(feats[name], dtype=np.float64) for name in FEATURES})
    check_features(out)
    return out


def check_features(df: pd.DataFrame, features: Sequence[str] = FEATURES) -> None:
    """``SchemaError`` naming a missing feature column; ``ValueError`` naming the first NaN or
    infinite feature and its (user, product)."""
    missing = [f for f in features if f not in df.columns]
    if missing:
        raise SchemaError(f"feature column(s) {missing} missing; the table has {list(df.columns)}")
    x = df[list(features)].to_numpy(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        who = (df[C.USER_ID].iloc[r], df[C.PRODUCT_ID].iloc[r]) if C.USER_ID in df.columns else r
        raise ValueError(f"feature {features[c]!r} is {x[r, c]} for (user, product) {who}; "
                         "fill or drop it before ranking")


# =========================================================================================
# click models in torch
# =========================================================================================
class Ranker:
    """A trained click model: standardisation (train statistics) + a torch net -> logits."""

    def __init__(self, kind: str, features: Sequence[str], mean: np.ndarray, std: np.ndarray, net: Any):
        self.kind, self.features, self.mean, self.std, self.net = kind, tuple(features), mean, std, net

    def __repr__(self) -> str:
        return f"Ranker({self.kind}, {len(self.features)} features)"

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Logits (higher = more likely clicked) for the rows of ``df``."""
        import torch

        check_features(df, self.features)
        x = (df[list(self.features)].to_numpy(np.float32) - self.mean) / self.std
        with torch.no_grad():
            return self.net(torch.from_numpy(x)).squeeze(-1).double().numpy()

    def weights(self) -> pd.Series:
        """The logistic model's weights per (standardised) feature."""
        if self.kind != "logistic":
            raise ValueError(f"a {self.kind} model has no single weight per feature")
        return pd.Series(self.net[0].weight.detach().numpy().ravel(), index=self.features, name="weight")


def train_ranker(df: pd.DataFrame, kind: str = "logistic", features: Sequence[str] = FEATURES, *,
                 hidden: int = 32, epochs: int = 10, batch_size: int = 512, lr: float = 3e-3,
                 weight_decay: float = 1e-4, seed: int = 0) -> Ranker:
    """Train a click model on ``df``'s ``features`` and ``label`` with ``BCEWithLogitsLoss`` and
    AdamW: ``logistic`` (one linear layer) or ``mlp`` (two hidden layers of ``hidden`` units)."""
    import torch
    from torch import nn

    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {MODEL_KINDS}")
    if C.LABEL not in df.columns:
        raise SchemaError(f"train_ranker needs a {C.LABEL!r} column (see add_labels)")
    check_features(df, features)
    y = df[C.LABEL].to_numpy(np.float32)
    if y.min() == y.max():
        raise ValueError(f"train_ranker: every label is {int(y[0])}; need clicked and non-clicked rows")
    x = df[list(features)].to_numpy(np.float32)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 0, std, 1.0).astype(np.float32)
    xt, yt = torch.from_numpy((x - mean) / std), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    d = len(features)
    net = (nn.Sequential(nn.Linear(d, 1)) if kind == "logistic" else
           nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)))
    opt = torch.optim.AdamW(net.parameters(), lr=lr if kind == "mlp" else 10 * lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    net.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny models: one thread is several times faster than two
    try:
        for _ in range(epochs):
            for idx in torch.randperm(len(xt), generator=gen).split(batch_size):
                opt.zero_grad()
                loss_fn(net(xt[idx]).squeeze(-1), yt[idx]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    net.eval()
    return Ranker(kind, features, mean, std, net)


def sample_training_rows(df: pd.DataFrame, negatives: int = 30, seed: int = 0) -> pd.DataFrame:
    """Training rows for a click model: users with at least one positive candidate, each with all
    its positives and up to ``negatives`` random negatives (fast, and balanced across users)."""
    if C.LABEL not in df.columns:
        raise SchemaError(f"sample_training_rows needs a {C.LABEL!r} column (see add_labels)")
    df = df[df.groupby(C.USER_ID)[C.LABEL].transform("max") > 0]
    if df.empty:
        raise ValueError("sample_training_rows: no user has a held-out item among the candidates")
    key = np.random.default_rng(seed).random(len(df))
    order = df.assign(_key=np.where(df[C.LABEL].to_numpy() > 0, -1.0, key)).sort_values(
        [C.USER_ID, "_key"], kind="stable")
    n_pos = order.groupby(C.USER_ID)[C.LABEL].transform("sum")
    keep = order.groupby(C.USER_ID).cumcount() < n_pos + negatives
    return order[keep.to_numpy()].drop(columns="_key").sort_index()


def list_ndcg(df: pd.DataFrame, scores: np.ndarray, k: int = 10) -> float:
    """Mean ndcg@k over users of ranking each user's candidates by ``scores`` (labels = gains);
    users with no positive candidate are skipped."""
    d = pd.DataFrame({"u": df[C.USER_ID].to_numpy(), "y": df[C.LABEL].to_numpy(float), "s": scores,
                      "p": df[C.PRODUCT_ID].to_numpy()})
    d = d[d.groupby("u")["y"].transform("max") > 0]
    if d.empty:
        return float("nan")
    d = d.sort_values(["u", "s", "p"], ascending=[True, False, True], kind="stable")
    rank = d.groupby("u").cumcount().to_numpy() + 1
    dcg = pd.Series(d["y"].to_numpy() / np.log2(rank + 1) * (rank <= k)).groupby(d["u"].to_numpy()).sum()
    ideal = d.sort_values(["u", "y"], ascending=[True, False], kind="stable")
    irank = ideal.groupby("u").cumcount().to_numpy() + 1
    idcg = pd.Series(ideal["y"].to_numpy() / np.log2(irank + 1) * (irank <= k)).groupby(ideal["u"].to_numpy()).sum()
    return float((dcg / idcg).mean())


def cross_fit(df: pd.DataFrame, kinds: Sequence[str] = MODEL_KINDS, n_folds: int = 2, seed: int = 0,
              **train_kwargs: Any) -> pd.DataFrame:
    """Out-of-fold logits: users split into ``n_folds`` folds; each fold is scored by models trained
    on the others. Columns: one per kind. These are the *validation predictions* stacking learns from."""
    users = np.sort(df[C.USER_ID].unique())
    if len(users) < n_folds:
        raise ValueError(f"cross_fit: {len(users)} users for {n_folds} folds")
    fold_of = pd.Series(np.random.default_rng(seed).permutation(len(users)) % n_folds, index=users)
    fold = df[C.USER_ID].map(fold_of).to_numpy()
    out = pd.DataFrame(index=df.index, columns=list(kinds), dtype=float)
    for f in range(n_folds):
        for kind in kinds:
            model = train_ranker(df[fold != f], kind, seed=seed, **train_kwargs)
            out.loc[fold == f, kind] = model.predict(df[fold == f])
    return out


def fit_stacker(predictions: pd.DataFrame, labels: Sequence[int], seed: int = 0) -> Ranker:
    """Stacking: a logistic regression on the models' (out-of-fold) predictions."""
    df = predictions.assign(**{C.LABEL: np.asarray(labels)})
    return train_ranker(df, "logistic", list(predictions.columns), seed=seed, epochs=3)


def blend(predictions: pd.DataFrame, weights: Mapping[str, float]) -> np.ndarray:
    """Weighted average of the models' logits, each standardised first (scales differ)."""
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"blend weights must sum to a positive number, got {dict(weights)}")
    z = (predictions - predictions.mean()) / predictions.std().replace(0, 1.0)
    return sum(w * z[name].to_numpy(float) for name, w in weights.items()) / total


@dataclass
class HybridRanker:
    """The logistic and MLP click models, their weighted average (weight tuned out of fold) and
    their stacking; :meth:`predict` returns one score column per system."""

    models: dict[str, Ranker]
    weight: float                 # weight of "logistic" in the average (1 - weight for "mlp")
    stacker: Ranker
    oof_ndcg: dict[str, float]

    @classmethod
    def fit(cls, train: pd.DataFrame, seed: int = 0, n_folds: int = 2, k: int = 10, negatives: int | None = 30,
            **train_kwargs: Any) -> "HybridRanker":
        """Fit on labelled features (``negatives`` per user sampled first; None keeps every row)."""
        if negatives is not None:
            train = sample_training_rows(train, negatives, seed)
        oof = cross_fit(train, MODEL_KINDS, n_folds, seed, **train_kwargs)
        grid = np.round(np.linspace(0, 1, 11), 2)
        scores = [list_ndcg(train, blend(oof, {"logistic": w, "mlp": 1 - w}), k) for w in grid]
        weight = float(grid[int(np.argmax(scores))])
        stacker = fit_stacker(oof, train[C.LABEL], seed)
        oof_ndcg = {kind: list_ndcg(train, oof[kind].to_numpy(float), k) for kind in MODEL_KINDS}
        oof_ndcg["average"] = max(scores)
        models = {kind: train_ranker(train, kind, seed=seed, **train_kwargs) for kind in MODEL_KINDS}
        return cls(models, weight, stacker, oof_ndcg)

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        """``user_id, product_id`` and the scores ``logistic``, ``mlp``, ``average``, ``stacked``."""
        preds = pd.DataFrame({kind: m.predict(df) for kind, m in self.models.items()}, index=df.index)
        out = df[[C.USER_ID, C.PRODUCT_ID]].copy()
        for kind in preds:
            out[kind] = preds[kind]
        out["average"] = blend(preds, {"logistic": self.weight, "mlp": 1 - self.weight})
        out["stacked"] = self.stacker.predict(preds)
        return out

    def runs(self, df: pd.DataFrame, k: int = 10) -> dict[str, pd.DataFrame]:
        """One run per system of :meth:`predict`."""
        scored = self.predict(df)
        return {f"hybrid {kind}": to_run(scored, kind, k) for kind in ("logistic", "mlp", "average", "stacked")}


# =========================================================================================
# cold start
# =========================================================================================
def cold_start_run(user_ids: Sequence, counts: pd.Series, catalog: Catalog, k: int = 10, *,
                   user_queries: pd.DataFrame | None = None, encoder: Any = None) -> pd.DataFrame:
    """Users with no history: their last query's nearest products when they searched (and an
    ``encoder`` is given), else the most popular products."""
    users = np.asarray(user_ids)
    if len(users) == 0:
        raise ValueError("cold_start_run: no users")
    frames = []
    with_query = np.array([], dtype=users.dtype)
    if user_queries is not None and encoder is not None and len(user_queries):
        q = user_queries[user_queries[C.USER_ID].isin(users)]
        if len(q):
            frames.append(query_candidates(q, encoder, catalog, k))
            with_query = q[C.USER_ID].unique()
    rest = np.setdiff1d(users, with_query)
    if len(rest):
        frames.append(popularity_candidates(rest, counts, catalog, k))
    return to_run(pd.concat(frames, ignore_index=True), C.SCORE, k)


def cold_items(heldout: pd.DataFrame, log: pd.DataFrame) -> pd.DataFrame:
    """The held-out rows whose product never occurs in ``log`` (new to the shop's behaviour data)."""
    return heldout[~heldout[C.PRODUCT_ID].isin(set(log[C.PRODUCT_ID]))].reset_index(drop=True)
