"""Recommendation: events + product embeddings -> user interests -> candidates -> recommendations.

The stages, each a function you can call on its own::

    inter = interactions(events)                         # click / cart / purchase, deduplicated
    split = leave_last_out(inter)                        # {"train", "validation", "test"}
    catalog = Catalog(products, vectors)                 # ids, categories, prices, L2-normalised vectors
    ids, vecs = user_interests(split["train"], catalog, "recency")
    cands = merge_candidates([similarity_candidates(ids, vecs, catalog, seen=...), ...])
    run = to_run(cands, "score_similarity", k=10)        # user_id, product_id, score, rank
    compare_recommenders({"content": run}, split["test"], catalog, popularity(split["train"]))

Ranking features and the click models live in :mod:`course_lib.recommend_rank`.

Conventions: a *history* or *log* is an interactions table (``user_id, product_id, timestamp``);
*held-out* items are rows of the same shape. A *run* has ``user_id, product_id, score, rank``
(rank 1 is best) like a search run keyed by ``user_id``. Vectors are L2-normalised float32.
Unknown user or product ids raise ``KeyError`` naming them; empty inputs raise ``ValueError``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import columns as C
from .data import SchemaError
from .evaluation import hit_at_k, ndcg_at_k, recall_at_k

SIMILARITY, COOCCURRENCE, POPULARITY, QUERY = "similarity", "cooccurrence", "popularity", "query"
SOURCE_NAMES = (SIMILARITY, COOCCURRENCE, POPULARITY, QUERY)
INTEREST_METHODS = ("mean", "recency", "attention")
_STRENGTH = {C.CLICK: 1, C.ADD_TO_CART: 2, C.PURCHASE: 3}
_EPOCH = pd.Timestamp("1970-01-01")


def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(f"{what} needs column(s) {missing}; the table has {list(df.columns)}")


def _seconds(ts: pd.Series | pd.Index | Any) -> np.ndarray:
    """Timestamps as float seconds since 1970 (any datetime resolution)."""
    return np.asarray((pd.to_datetime(ts) - _EPOCH) / pd.Timedelta(seconds=1), dtype=np.float64)


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


# =========================================================================================
# interactions and splits
# =========================================================================================
def interactions(events: pd.DataFrame) -> pd.DataFrame:
    """Clicks, add-to-carts and purchases, one row per (user, session, product) at its first
    timestamp; ``event_type`` is the strongest reached (purchase > add_to_cart > click).
    Needs ``user_id, session_id, timestamp, event_type, product_id``. Sorted by user, then time."""
    _require(events, (C.USER_ID, C.SESSION_ID, C.TIMESTAMP, C.EVENT_TYPE, C.PRODUCT_ID), "interactions")
    df = events[events[C.EVENT_TYPE].isin(C.INTERACTION_TYPES)]
    df = df[[C.USER_ID, C.SESSION_ID, C.PRODUCT_ID, C.TIMESTAMP, C.EVENT_TYPE]].copy()
    df["_strength"] = df[C.EVENT_TYPE].map(_STRENGTH)
    key = [C.USER_ID, C.SESSION_ID, C.PRODUCT_ID]
    strongest = df.groupby(key, sort=False)["_strength"].transform("max")
    df = df.sort_values([C.USER_ID, C.TIMESTAMP, C.PRODUCT_ID], kind="stable")
    df = df.assign(_strength=strongest).drop_duplicates(key, keep="first")
    inverse = {v: k for k, v in _STRENGTH.items()}
    df[C.EVENT_TYPE] = df.pop("_strength").map(inverse)
    return df.reset_index(drop=True)


def _sorted(inter: pd.DataFrame) -> pd.DataFrame:
    _require(inter, (C.USER_ID, C.PRODUCT_ID, C.TIMESTAMP), "a split")
    return inter.sort_values([C.USER_ID, C.TIMESTAMP, C.PRODUCT_ID], kind="stable").reset_index(drop=True)


def leave_last_out(inter: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Chronological per-user split: each user's last interaction is ``test``, the one before it
    ``validation`` (users with 3 or more), the rest ``train``. A user with one interaction has only
    a test item (a cold user); with two, one train and one test item."""
    df = _sorted(inter)
    if df.empty:
        raise ValueError("leave_last_out: no interactions to split")
    from_end = df.groupby(C.USER_ID, sort=False).cumcount(ascending=False)
    n = df.groupby(C.USER_ID, sort=False)[C.PRODUCT_ID].transform("size")
    test = from_end == 0
    validation = (from_end == 1) & (n >= 3)
    return {C.TRAIN: df[~test & ~validation].reset_index(drop=True),
            C.VALIDATION: df[validation].reset_index(drop=True),
            C.TEST: df[test].reset_index(drop=True)}


def time_split(inter: pd.DataFrame, cutoff: pd.Timestamp | str) -> dict[str, pd.DataFrame]:
    """Global time cut-off: ``train`` is everything before ``cutoff``; ``test`` is each user's
    first interaction at or after it (users who also have training history only)."""
    df = _sorted(inter)
    cutoff = pd.Timestamp(cutoff)
    before = df[C.TIMESTAMP] < cutoff
    train, after = df[before], df[~before]
    if train.empty or after.empty:
        raise ValueError(f"time_split: cut-off {cutoff} leaves train={len(train)} and test={len(after)} rows")
    test = after[after[C.USER_ID].isin(set(train[C.USER_ID]))].groupby(C.USER_ID, sort=False).head(1)
    return {C.TRAIN: train.reset_index(drop=True), C.TEST: test.reset_index(drop=True)}


def check_no_leakage(train: pd.DataFrame, heldout: pd.DataFrame) -> None:
    """Raise ``ValueError`` naming the first user whose training history has an interaction at or
    after their held-out one (a leak from the future)."""
    first = heldout.groupby(C.USER_ID)[C.TIMESTAMP].min()
    last = train.groupby(C.USER_ID)[C.TIMESTAMP].max()
    both = last.index.intersection(first.index)
    bad = both[(last.loc[both] >= first.loc[both]).to_numpy()]
    if len(bad):
        raise ValueError(f"leak: user {bad[0]!r} has a training interaction at {last[bad[0]]} "
                         f"not before their held-out one at {first[bad[0]]}")


def history_before(log: pd.DataFrame, now: Mapping[Hashable, pd.Timestamp] | pd.Series) -> pd.DataFrame:
    """The rows of ``log`` strictly before each user's ``now`` (users missing from ``now`` dropped)."""
    now = pd.Series(now)
    df = log[log[C.USER_ID].isin(now.index)]
    return df[df[C.TIMESTAMP].to_numpy() < df[C.USER_ID].map(now).to_numpy()].reset_index(drop=True)


def last_queries(events: pd.DataFrame, now: Mapping[Hashable, pd.Timestamp] | pd.Series) -> pd.DataFrame:
    """Each user's last search (``user_id, query_text, timestamp``) strictly before their ``now``;
    users who never searched are absent."""
    searches = events[(events[C.EVENT_TYPE] == C.SEARCH) & (events[C.QUERY_TEXT].str.strip() != "")]
    searches = history_before(searches[[C.USER_ID, C.QUERY_TEXT, C.TIMESTAMP]], now)
    return searches.sort_values([C.USER_ID, C.TIMESTAMP], kind="stable").groupby(
        C.USER_ID, sort=True).tail(1).reset_index(drop=True)


# =========================================================================================
# the catalogue: ids, attributes and vectors in one place
# =========================================================================================
class Catalog:
    """Products and their L2-normalised vectors, aligned by position.

    ``products`` needs ``product_id, category, brand, price`` (``created_at`` optional);
    ``vectors`` is ``[len(products), dim]``. :meth:`positions` maps ids to rows and raises
    ``KeyError`` naming unknown ids.
    """

    def __init__(self, products: pd.DataFrame, vectors: np.ndarray):
        _require(products, (C.PRODUCT_ID, C.CATEGORY, C.BRAND, C.PRICE), "Catalog")
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or len(vectors) != len(products):
            raise ValueError(f"Catalog: {len(products)} products but vectors of shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError("Catalog: vectors contain NaN or inf")
        self.products = products.reset_index(drop=True)
        self.ids = self.products[C.PRODUCT_ID].to_numpy()
        self.index = pd.Index(self.ids)
        if not self.index.is_unique:
            raise ValueError(f"Catalog: duplicate product ids {self.index[self.index.duplicated()][:5].tolist()}")
        self.vectors = _l2(vectors)
        self.category, self.categories = pd.factorize(self.products[C.CATEGORY])
        self.brand, self.brands = pd.factorize(self.products[C.BRAND])
        price = self.products[C.PRICE].to_numpy(float)
        if not (np.isfinite(price) & (price > 0)).all():
            raise ValueError("Catalog: every price must be a positive number")
        self.log_price = np.log(price)
        median = self.products.groupby(C.CATEGORY)[C.PRICE].transform("median").to_numpy(float)
        self.relative_log_price = self.log_price - np.log(median)   # price vs its category median
        created = self.products.get(C.CREATED_AT)
        self.created = _seconds(created) if created is not None else np.zeros(len(price))

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, product_ids: Iterable[Hashable]) -> np.ndarray:
        """Row positions of ``product_ids``; ``KeyError`` names the unknown ones."""
        ids = np.asarray(list(product_ids) if not isinstance(product_ids, (np.ndarray, pd.Series)) else product_ids)
        pos = self.index.get_indexer(ids)
        if (pos < 0).any():
            raise KeyError(f"unknown product id(s): {ids[pos < 0][:5].tolist()}")
        return pos

    def vectors_of(self, product_ids: Iterable[Hashable]) -> np.ndarray:
        return self.vectors[self.positions(product_ids)]


# =========================================================================================
# user interest vectors
# =========================================================================================
def mean_interest(history_vectors: np.ndarray) -> np.ndarray:
    """The normalised mean of a history's vectors ``[n, dim]``."""
    h = np.asarray(history_vectors, dtype=np.float32)
    if h.ndim != 2 or len(h) == 0:
        raise ValueError("mean_interest: the history is empty (a cold user has no interest vector)")
    return _l2(h.mean(axis=0))


def recency_interest(history_vectors: np.ndarray, ages: Sequence[float], half_life: float) -> np.ndarray:
    """Weights ``0.5 ** (age / half_life)``: an item ``half_life`` old counts half as much as a
    new one. ``ages`` in any unit (days, clicks) that ``half_life`` uses."""
    h = np.asarray(history_vectors, dtype=np.float32)
    ages = np.asarray(ages, dtype=np.float64)
    if len(h) == 0:
        raise ValueError("recency_interest: the history is empty")
    if len(ages) != len(h) or half_life <= 0:
        raise ValueError(f"recency_interest: {len(ages)} ages for {len(h)} items, half_life={half_life}")
    w = 0.5 ** (np.maximum(ages, 0.0) / half_life)
    return _l2((w[:, None] * h).sum(axis=0) / w.sum())


def attention_weights(history_vectors: np.ndarray, target: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(sim(history_i, target) / temperature)``: history items like the target count most."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    s = _l2(history_vectors) @ _l2(target) / temperature
    e = np.exp(s - s.max())
    return e / e.sum()


def attention_interest(history_vectors: np.ndarray, target: np.ndarray, temperature: float = 0.1) -> np.ndarray:
    """Target-aware interest: the history weighted by :func:`attention_weights`, normalised. A low
    temperature focuses on the items most like ``target`` (a candidate or a query); a high one
    tends to the mean."""
    h = np.asarray(history_vectors, dtype=np.float32)
    if len(h) == 0:
        raise ValueError("attention_interest: the history is empty")
    return _l2(attention_weights(h, target, temperature) @ h)


def _groups(history: pd.DataFrame, catalog: Catalog) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Users (sorted), each user's product positions and timestamps (seconds), oldest first."""
    df = _sorted(history)
    pos = catalog.positions(df[C.PRODUCT_ID])
    secs = _seconds(df[C.TIMESTAMP])
    users, starts = np.unique(df[C.USER_ID].to_numpy(), return_index=True)
    bounds = list(starts[1:])
    return users, np.split(pos, bounds), np.split(secs, bounds)


def user_interests(history: pd.DataFrame, catalog: Catalog, method: str = "recency", *,
                   half_life_days: float = 7.0, temperature: float = 0.1,
                   now: Mapping[Hashable, pd.Timestamp] | pd.Series | None = None,
                   targets: Mapping[Hashable, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One interest vector per user with history: ``(user_ids, vectors [n_users, dim])``.

    ``method``: ``mean``; ``recency`` (ages to ``now``, default each user's last interaction);
    ``attention`` towards ``targets[user]`` (default: the user's most recent item).
    """
    if method not in INTEREST_METHODS:
        raise ValueError(f"unknown interest method {method!r}; choose one of {INTEREST_METHODS}")
    if history.empty:
        raise ValueError("user_interests: the history is empty")
    users, positions, seconds = _groups(history, catalog)
    now_s = _seconds(pd.Series(now).reindex(users)) if now is not None else None
    if now_s is not None and np.isnan(now_s).any():
        raise KeyError(f"user_interests: no 'now' for user(s) {users[np.isnan(now_s)][:5].tolist()}")
    out = np.empty((len(users), catalog.vectors.shape[1]), dtype=np.float32)
    for i, (user, pos, secs) in enumerate(zip(users, positions, seconds)):
        h = catalog.vectors[pos]
        if method == "mean":
            out[i] = mean_interest(h)
        elif method == "recency":
            ref = now_s[i] if now_s is not None else secs[-1]
            out[i] = recency_interest(h, (ref - secs) / 86400.0, half_life_days)
        else:
            target = targets[user] if targets is not None and user in targets else h[-1]
            out[i] = attention_interest(h, target, temperature)
    return users, out


# =========================================================================================
# candidate sources
# =========================================================================================
def popularity(log: pd.DataFrame) -> pd.Series:
    """Interactions per product in ``log``, most popular first (ties by product id)."""
    counts = log[C.PRODUCT_ID].value_counts()
    order = np.lexsort((counts.index.to_numpy(), -counts.to_numpy()))
    return counts.iloc[order].rename("count")


def cooccurrence_counts(log: pd.DataFrame, catalog: Catalog, by: str = C.USER_ID) -> sp.csr_matrix:
    """Item-to-item co-occurrence ``[n_products, n_products]``: in how many groups (``by`` users or
    sessions) both products occur. The diagonal is zero."""
    _require(log, (by, C.PRODUCT_ID), "cooccurrence_counts")
    pairs = log[[by, C.PRODUCT_ID]].drop_duplicates()
    groups, g = np.unique(pairs[by].to_numpy(), return_inverse=True)
    incidence = sp.csr_matrix((np.ones(len(pairs), np.float32), (g, catalog.positions(pairs[C.PRODUCT_ID]))),
                              shape=(len(groups), len(catalog)))
    co = (incidence.T @ incidence).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    return co


def _seen_mask(seen: pd.DataFrame | None, users: np.ndarray, catalog: Catalog) -> sp.csr_matrix | None:
    if seen is None or seen.empty:
        return None
    seen = seen[seen[C.USER_ID].isin(users)]
    rows = pd.Index(users).get_indexer(seen[C.USER_ID])
    return sp.csr_matrix((np.ones(len(seen), bool), (rows, catalog.positions(seen[C.PRODUCT_ID]))),
                         shape=(len(users), len(catalog)))


def _top_n_frame(users: np.ndarray, scores: np.ndarray, catalog: Catalog, n: int, source: str,
                 seen: pd.DataFrame | None) -> pd.DataFrame:
    """Top ``n`` columns of each row of ``scores`` (seen products and -inf excluded), long format."""
    n = min(_check_k(n), scores.shape[1])
    scores = np.array(scores, dtype=np.float64)
    mask = _seen_mask(seen, users, catalog)
    if mask is not None:
        r, c = mask.nonzero()
        scores[r, c] = -np.inf
    top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    vals = np.take_along_axis(scores, top, axis=1)
    rows = np.repeat(np.arange(len(users)), n)
    df = pd.DataFrame({C.USER_ID: users[rows], C.PRODUCT_ID: catalog.ids[top.ravel()],
                       C.SCORE: vals.ravel(), C.SOURCE: source})
    df = df[np.isfinite(df[C.SCORE])]
    return df.sort_values([C.USER_ID, C.SCORE, C.PRODUCT_ID], ascending=[True, False, True],
                          kind="stable").reset_index(drop=True)


def similarity_candidates(user_ids: Sequence[Hashable], interest_vectors: np.ndarray, catalog: Catalog,
                          n: int = 100, seen: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``n`` products closest to each user's interest vector (cosine), ``seen`` ones excluded.
    Content-based: a product nobody has interacted with can be proposed too."""
    users = np.asarray(user_ids)
    if len(users) == 0:
        raise ValueError("similarity_candidates: no users")
    scores = _l2(interest_vectors) @ catalog.vectors.T
    return _top_n_frame(users, scores, catalog, n, SIMILARITY, seen)


def cooccurrence_candidates(history: pd.DataFrame, cooc: sp.csr_matrix, catalog: Catalog,
                            n: int = 100) -> pd.DataFrame:
    """Item-to-item collaborative filtering: score(j) = sum over history items i of
    ``cooc[i, j] / sqrt(n_i * n_j)`` (cosine-normalised counts); history items excluded."""
    if history.empty:
        raise ValueError("cooccurrence_candidates: the history is empty")
    deg = np.asarray(cooc.sum(axis=1)).ravel()
    inv = sp.diags(1.0 / np.sqrt(np.maximum(deg, 1.0)))
    norm = (inv @ cooc @ inv).tocsr()
    users, g = np.unique(history[C.USER_ID].to_numpy(), return_inverse=True)
    hist = sp.csr_matrix((np.ones(len(history), np.float32), (g, catalog.positions(history[C.PRODUCT_ID]))),
                         shape=(len(users), len(catalog)))
    scores = (hist @ norm).toarray()
    scores[scores <= 0] = -np.inf   # no co-occurrence: not a candidate
    return _top_n_frame(users, scores, catalog, n, COOCCURRENCE, history)


def popularity_candidates(user_ids: Sequence[Hashable], counts: pd.Series, catalog: Catalog, n: int = 100,
                          seen: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``n`` most popular products (score ``log(1 + count)``) for every user, ``seen`` excluded;
    products never interacted with score 0 and come last (by id)."""
    users = np.asarray(user_ids)
    if len(users) == 0:
        raise ValueError("popularity_candidates: no users")
    row = np.zeros(len(catalog))
    row[catalog.positions(counts.index)] = np.log1p(counts.to_numpy(float))
    return _top_n_frame(users, np.broadcast_to(row, (len(users), len(catalog))), catalog, n, POPULARITY, seen)


def query_candidates(user_queries: pd.DataFrame, encoder: Any, catalog: Catalog, n: int = 100,
                     seen: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``n`` products closest to each user's query text (``user_id, query_text``), encoded
    with ``encoder.encode``. Each distinct text is encoded once."""
    _require(user_queries, (C.USER_ID, C.QUERY_TEXT), "query_candidates")
    if user_queries.empty:
        return pd.DataFrame(columns=[C.USER_ID, C.PRODUCT_ID, C.SCORE, C.SOURCE])
    texts, inverse = np.unique(user_queries[C.QUERY_TEXT].to_numpy(str), return_inverse=True)
    vecs = _l2(np.asarray(encoder.encode(list(texts))))[inverse]
    return similarity_candidates(user_queries[C.USER_ID].to_numpy(), vecs, catalog, n, seen).assign(
        **{C.SOURCE: QUERY})


class CachedEncoder:
    """Wraps an encoder so that each distinct text is encoded once per process (queries repeat)."""

    def __init__(self, encoder: Any):
        self.encoder = encoder
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        new = sorted({t for t in texts if t not in self._cache})
        if new:
            self._cache.update(zip(new, np.asarray(self.encoder.encode(new))))
        return np.stack([self._cache[t] for t in texts]) if len(texts) else np.zeros((0, 0), np.float32)


def merge_candidates(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One row per (user, product): the best score of each source in ``score_<source>`` (NaN
    where that source did not propose it) and ``sources``, the tuple of sources that did."""
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        raise ValueError("merge_candidates: the candidate set is empty (every source returned nothing)")
    long = pd.concat(frames, ignore_index=True)
    _require(long, (C.USER_ID, C.PRODUCT_ID, C.SCORE, C.SOURCE), "merge_candidates")
    wide = long.groupby([C.USER_ID, C.PRODUCT_ID, C.SOURCE])[C.SCORE].max().unstack(C.SOURCE)
    names = [s for s in SOURCE_NAMES if s in wide.columns] + sorted(set(wide.columns) - set(SOURCE_NAMES))
    wide = wide[names]
    present = wide.notna().to_numpy()
    wide.columns = [f"score_{s}" for s in names]
    wide[C.SOURCES] = [tuple(n for n, p in zip(names, row) if p) for row in present]
    return wide.reset_index()


# =========================================================================================
# runs and metrics
# =========================================================================================
def to_run(scored: pd.DataFrame, score: str = C.SCORE, k: int = 10) -> pd.DataFrame:
    """The top ``k`` per user of a scored table: ``user_id, product_id, score, rank``.
    Higher score first, ties broken by product id; NaN scores are dropped."""
    k = _check_k(k)
    _require(scored, (C.USER_ID, C.PRODUCT_ID, score), "to_run")
    df = scored[[C.USER_ID, C.PRODUCT_ID, score]].rename(columns={score: C.SCORE}).dropna(subset=[C.SCORE])
    df = df.sort_values([C.USER_ID, C.SCORE, C.PRODUCT_ID], ascending=[True, False, True], kind="stable")
    df = df.drop_duplicates([C.USER_ID, C.PRODUCT_ID]).groupby(C.USER_ID, sort=False).head(k).copy()
    df[C.RANK] = df.groupby(C.USER_ID, sort=False).cumcount().astype("int64") + 1
    return df.reset_index(drop=True)


def random_run(user_ids: Sequence[Hashable], catalog: Catalog, k: int = 10, seed: int = 0,
               seen: pd.DataFrame | None = None) -> pd.DataFrame:
    """``k`` random products per user (``seen`` excluded): the floor every method must beat."""
    users = np.asarray(user_ids)
    rng = np.random.default_rng(seed)
    cands = _top_n_frame(users, rng.random((len(users), len(catalog))), catalog, k, "random", seen)
    return to_run(cands, C.SCORE, k)


def evaluate_recommendations(run: pd.DataFrame, heldout: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """Per held-out user: ``ndcg@k``, ``recall@k``, ``hit@k`` (course_lib.evaluation's functions,
    gain 1 per held-out item). A user missing from ``run`` got no recommendations and scores 0."""
    k = _check_k(k)
    _require(heldout, (C.USER_ID, C.PRODUCT_ID), "evaluate_recommendations")
    if heldout.empty:
        raise ValueError("evaluate_recommendations: no held-out items")
    ranked = run if C.RANK in run.columns else to_run(run, C.SCORE, 10**9)
    lists = ranked.sort_values([C.USER_ID, C.RANK]).groupby(C.USER_ID)[C.PRODUCT_ID].agg(list).to_dict()
    rows = []
    for user, items in heldout.groupby(C.USER_ID, sort=True)[C.PRODUCT_ID]:
        relevant = set(items)
        got = lists.get(user, [])
        rows.append((user, ndcg_at_k(got, {p: 1.0 for p in relevant}, k), recall_at_k(got, relevant, k),
                     hit_at_k(got, relevant, k)))
    return pd.DataFrame(rows, columns=[C.USER_ID, f"ndcg@{k}", f"recall@{k}", f"hit@{k}"])


def catalogue_coverage(run: pd.DataFrame, catalog: Catalog | int) -> float:
    """Share of the catalogue that appears in at least one user's recommendations."""
    size = catalog if isinstance(catalog, int) else len(catalog)
    return run[C.PRODUCT_ID].nunique() / size


def intra_list_diversity(vectors: np.ndarray) -> float:
    """``1 - mean pairwise cosine`` of one list's item vectors; NaN for fewer than two items."""
    v = _l2(vectors)
    n = len(v)
    if n < 2:
        return math.nan
    sims = v @ v.T
    return float(1.0 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))


def novelty(product_ids: Iterable[Hashable], counts: pd.Series, n_catalog: int | None = None) -> float:
    """Mean ``-log2(popularity share)`` of a list: higher means less popular items. Shares are
    Laplace-smoothed, ``(count + 1) / (total + n_catalog)``, so unseen products are finite."""
    ids = list(product_ids)
    if not ids:
        return math.nan
    n_catalog = n_catalog or len(counts)
    c = counts.reindex(ids).fillna(0).to_numpy(float)
    return float(np.mean(-np.log2((c + 1.0) / (counts.sum() + n_catalog))))


def beyond_accuracy(run: pd.DataFrame, catalog: Catalog, counts: pd.Series) -> dict[str, float]:
    """``coverage``, mean ``diversity`` (intra-list) and mean ``novelty`` of a run."""
    ranked = run.sort_values([C.USER_ID, C.RANK])
    div, nov = [], []
    for _, ids in ranked.groupby(C.USER_ID, sort=False)[C.PRODUCT_ID]:
        div.append(intra_list_diversity(catalog.vectors_of(ids)))
        nov.append(novelty(ids, counts, len(catalog)))
    return {"coverage": catalogue_coverage(run, catalog), "diversity": float(np.nanmean(div)) if div else math.nan,
            "novelty": float(np.nanmean(nov)) if nov else math.nan}


def compare_recommenders(runs: Mapping[str, pd.DataFrame], heldout: pd.DataFrame, catalog: Catalog,
                         counts: pd.Series, k: int = 10) -> pd.DataFrame:
    """One row per system: ``ndcg@k, recall@k, hit@k`` (means over ``heldout``'s users; a user a
    system skipped scores 0), then coverage, diversity and novelty of its lists."""
    rows = {}
    for name, run in runs.items():
        per_user = evaluate_recommendations(run, heldout, k)
        top = run[run[C.RANK] <= k] if C.RANK in run.columns else to_run(run, C.SCORE, k)
        rows[name] = {**per_user.drop(columns=C.USER_ID).mean().to_dict(),
                      **beyond_accuracy(top[top[C.USER_ID].isin(set(heldout[C.USER_ID]))], catalog, counts)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "system"
    return table


# =========================================================================================
# real time: a session whose interest follows the clicks
# =========================================================================================
class Session:
    """A shopper's live session: each :meth:`click` updates the interest vector (recency-weighted
    by click order, ``half_life`` clicks), so the next :meth:`recommend` changes with no retraining.
    With no clicks yet it recommends the most popular products (``counts``), or the catalogue order."""

    def __init__(self, catalog: Catalog, counts: pd.Series | None = None, half_life: float = 2.0,
                 history: Iterable[Hashable] = ()):
        self.catalog = catalog
        self.counts = counts
        self.half_life = half_life
        self.clicks: list[Hashable] = []
        for pid in history:
            self.click(pid)

    def click(self, product_id: Hashable) -> None:
        """Record a click; ``KeyError`` names an unknown product."""
        self.catalog.positions([product_id])
        self.clicks.append(product_id)

    @property
    def interest(self) -> np.ndarray | None:
        """The current interest vector, or None before the first click."""
        if not self.clicks:
            return None
        ages = np.arange(len(self.clicks))[::-1]
        return recency_interest(self.catalog.vectors_of(self.clicks), ages, self.half_life)

    def recommend(self, k: int = 10) -> pd.DataFrame:
        """Top ``k`` unclicked products: ``product_id, score, rank, title, category``."""
        k = _check_k(k)
        users = np.array(["session"])
        seen = pd.DataFrame({C.USER_ID: "session", C.PRODUCT_ID: self.clicks})
        if self.interest is not None:
            cands = similarity_candidates(users, self.interest[None, :], self.catalog, k, seen)
        elif self.counts is not None and len(self.counts):
            cands = popularity_candidates(users, self.counts, self.catalog, k, seen)
        else:
            cands = pd.DataFrame({C.USER_ID: "session", C.PRODUCT_ID: self.catalog.ids[:k],
                                  C.SCORE: 0.0})
        run = to_run(cands, C.SCORE, k).drop(columns=C.USER_ID)
        info = self.catalog.products.set_index(C.PRODUCT_ID)
        return run.join(info[[c for c in (C.TITLE, C.CATEGORY) if c in info.columns]], on=C.PRODUCT_ID)
