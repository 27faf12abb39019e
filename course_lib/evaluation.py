"""Ranking metrics by name (``ndcg@10``, ``recall@100``, ``mrr@10`` ...), per query and per system.

Three layers, each usable on its own:

* per-query functions on one ranked list: :func:`ndcg_at_k`, :func:`recall_at_k`,
  :func:`precision_at_k`, :func:`mrr_at_k`, :func:`average_precision_at_k` (``map@k``),
  :func:`hit_at_k`;
* :func:`metric` turns a name such as ``"ndcg@10"`` into a callable :class:`Metric`;
* DataFrame in, DataFrame out: :func:`evaluate` (one row per query), :func:`summarize` (mean per
  query type plus an ``"all"`` row), :func:`compare_systems` (several runs side by side) and
  :func:`paired_bootstrap_ci` (is a difference between two systems real?).

Conventions (the same in every function):

* Relevance comes from ESCI labels. ``ndcg`` uses the graded gains :data:`columns.ESCI_GAINS`
  (E=1, S=0.1, C=0.01, I=0, as in the KDD Cup 2022); the binary metrics count only the labels in
  :data:`columns.RELEVANT_LABELS` (Exact) as relevant. Unjudged products have gain 0 and are
  not relevant.
* A metric is **undefined (NaN)** for a query that has nothing to find: no relevant product for
  the binary metrics, no positive gain for ``ndcg``. Means skip NaN, so such a query is left out
  of a summary rather than counted as 0 or 1; :func:`summarize` reports ``n_queries``.
* A product id repeated in a ranked list earns credit at its first position only.

A **run** is what a search system returns, in either of two forms:

* a tidy DataFrame with columns ``query_id``, ``product_id`` and ``score`` (higher is better) or
  ``rank`` (1 is best), one row per retrieved product; if both are present ``score`` is used.
  Ties are broken by ``product_id`` (ascending), so results never depend on row order;
* a dict ``{query_id: [product_id, ...]}`` ranked best first (or ``{query_id: {product_id:
  score}}``). :func:`run_from_dict` and :func:`run_to_dict` convert between the two.

Example::

    per_query = evaluate(run, qrels, ["ndcg@10", "recall@100"], queries=queries, by="query_type")
    summarize(per_query)                      # mean per query type, plus "all"
"""
from __future__ import annotations

import heapq
import math
import numbers
import re
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Callable, Union

import numpy as np
import pandas as pd

from . import columns as C

# Run columns. TODO(columns.py): move SCORE and RANK next to the other column names.
SCORE, RANK = C.SCORE, C.RANK
ALL = "all"  # label of the overall row in summaries
N_QUERIES = "n_queries"

DEFAULT_METRICS = ("ndcg@10", "recall@100", "mrr@10")

Run = Union[pd.DataFrame, Mapping[Hashable, Any]]


# -- per-query metrics ------------------------------------------------------------------------

def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _first_hits(ranked_ids: Iterable[Hashable], k: int) -> list[tuple[int, Hashable]]:
    """``(rank, id)`` for the first ``k`` positions; a repeated id is dropped (its rank stays used)."""
    if isinstance(ranked_ids, (str, bytes)):
        raise TypeError("ranked_ids must be a list of ids, not a string")
    seen: set[Hashable] = set()
    hits = []
    for rank, pid in enumerate(islice(ranked_ids, k), start=1):
        if pid not in seen:
            seen.add(pid)
            hits.append((rank, pid))
    return hits


def _relevant_set(relevant: Collection[Hashable]) -> Collection[Hashable]:
    if isinstance(relevant, Mapping):
        raise TypeError("binary metrics take the set of relevant ids, not a mapping of gains; "
                        "use {pid for pid, label in labels.items() if label in RELEVANT_LABELS}")
    if isinstance(relevant, (str, bytes)):
        raise TypeError("relevant must be a collection of ids, not a string")
    return relevant if isinstance(relevant, (set, frozenset)) else set(relevant)


def dcg_at_k(ranked_ids: Iterable[Hashable], gains: Mapping[Hashable, float], k: int) -> float:
    """Discounted cumulative gain ``sum(gain_i / log2(i + 1))`` over ranks ``i = 1..k``."""
    k = _check_k(k)
    return sum(gains.get(pid, 0.0) / math.log2(rank + 1) for rank, pid in _first_hits(ranked_ids, k))


def ideal_dcg_at_k(gains: Mapping[Hashable, float], k: int) -> float:
    """DCG of the best possible ranking: all judged gains sorted best first, cut at ``k``."""
    k = _check_k(k)
    best = heapq.nlargest(k, gains.values())
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(best, start=1))


def ndcg_at_k(ranked_ids: Iterable[Hashable], gains: Mapping[Hashable, float], k: int) -> float:
    """Normalised DCG at ``k`` with graded gains, in [0, 1].

    ``DCG@k = sum(gain(id_i) / log2(i + 1))`` for ranks ``i = 1..k``: the *linear* gain form
    (the gain itself, not ``2**gain - 1``), as in the KDD Cup 2022 ESCI task and in
    ``sklearn.metrics.ndcg_score``. Products missing from ``gains`` have gain 0. The ideal DCG
    sorts **all** judged gains of the query, including products the ranking did not retrieve, so
    missing a relevant product costs score. NaN when no gain is positive (nothing to find).
    """
    if any(g < 0 for g in gains.values()):
        raise ValueError("gains must be >= 0")
    idcg = ideal_dcg_at_k(gains, k)
    if idcg <= 0:
        return math.nan
    return dcg_at_k(ranked_ids, gains, k) / idcg


def recall_at_k(ranked_ids: Iterable[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Share of the relevant products found in the top ``k``: ``|relevant ∩ top k| / |relevant|``.

    Not capped: with more than ``k`` relevant products even a perfect ranking scores below 1.
    NaN when ``relevant`` is empty.
    """
    k = _check_k(k)
    relevant = _relevant_set(relevant)
    if not relevant:
        return math.nan
    return sum(pid in relevant for _, pid in _first_hits(ranked_ids, k)) / len(relevant)


def precision_at_k(ranked_ids: Iterable[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Relevant products in the top ``k`` divided by ``k`` (also when fewer than ``k`` were
    retrieved: returning less is not rewarded). NaN when ``relevant`` is empty."""
    k = _check_k(k)
    relevant = _relevant_set(relevant)
    if not relevant:
        return math.nan
    return sum(pid in relevant for _, pid in _first_hits(ranked_ids, k)) / k


def mrr_at_k(ranked_ids: Iterable[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Reciprocal rank ``1 / rank`` of the first relevant product in the top ``k``, else 0.
    (Averaged over queries this is the MRR.) NaN when ``relevant`` is empty."""
    k = _check_k(k)
    relevant = _relevant_set(relevant)
    if not relevant:
        return math.nan
    return next((1.0 / rank for rank, pid in _first_hits(ranked_ids, k) if pid in relevant), 0.0)


def average_precision_at_k(ranked_ids: Iterable[Hashable], relevant: Collection[Hashable],
                           k: int) -> float:
    """Average precision at ``k`` (``map@k`` once averaged over queries).

    ``sum(precision@i for each rank i <= k holding a relevant product) / min(|relevant|, k)``,
    so a perfect top ``k`` scores 1. NaN when ``relevant`` is empty.
    """
    k = _check_k(k)
    relevant = _relevant_set(relevant)
    if not relevant:
        return math.nan
    found, total = 0, 0.0
    for rank, pid in _first_hits(ranked_ids, k):
        if pid in relevant:
            found += 1
            total += found / rank
    return total / min(len(relevant), k)


def hit_at_k(ranked_ids: Iterable[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """1.0 if at least one relevant product is in the top ``k``, else 0.0. NaN when
    ``relevant`` is empty."""
    k = _check_k(k)
    relevant = _relevant_set(relevant)
    if not relevant:
        return math.nan
    return float(any(pid in relevant for _, pid in _first_hits(ranked_ids, k)))


# -- metrics by name --------------------------------------------------------------------------

METRIC_FUNCTIONS: dict[str, Callable[..., float]] = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "mrr": mrr_at_k,
    "map": average_precision_at_k,
    "hit": hit_at_k,
}
GRADED = frozenset({"ndcg"})  # metrics that take gains; the others take a set of relevant ids
VALID_FORMS = ", ".join(f"{kind}@k" for kind in METRIC_FUNCTIONS)
_NAME = re.compile(r"([a-z]+)@(.*)")


@dataclass(frozen=True)
class Metric:
    """A metric with its cut-off, e.g. ``Metric("ndcg", 10)``; ``str()`` gives ``"ndcg@10"``.

    Call it like the per-query function without ``k``: ``m(ranked_ids, gains)`` when
    ``m.graded`` (ndcg), else ``m(ranked_ids, relevant_ids)``.
    """

    kind: str
    k: int

    @property
    def name(self) -> str:
        return f"{self.kind}@{self.k}"

    @property
    def graded(self) -> bool:
        return self.kind in GRADED

    def __call__(self, ranked_ids: Iterable[Hashable], judged: Any) -> float:
        return METRIC_FUNCTIONS[self.kind](ranked_ids, judged, self.k)

    def __str__(self) -> str:
        return self.name


def metric(name: str | Metric) -> Metric:
    """The metric called ``name``: ``ndcg@k``, ``recall@k``, ``precision@k``, ``mrr@k``, ``map@k``
    or ``hit@k`` with ``k`` a positive integer (case and spaces are ignored).

    >>> metric("ndcg@10")(["p1", "p2"], {"p2": 1.0})   # 1 / log2(3)
    0.6309297535714575
    """
    if isinstance(name, Metric):
        return name
    if not isinstance(name, str):
        raise TypeError(f"a metric name must be a string like 'ndcg@10', got {name!r}")
    match = _NAME.fullmatch(name.strip().lower().replace(" ", ""))
    if match is None or match.group(1) not in METRIC_FUNCTIONS:
        if name.strip().lower() in METRIC_FUNCTIONS:
            raise ValueError(f"metric {name!r} needs a cut-off k, e.g. '{name.strip().lower()}@10'")
        raise ValueError(f"unknown metric {name!r}; valid forms: {VALID_FORMS} "
                         "(k a positive integer, e.g. 'ndcg@10')")
    kind, k = match.groups()
    if not k.isdigit() or int(k) <= 0:
        raise ValueError(f"metric {name!r}: k must be a positive integer, e.g. '{kind}@10'")
    return Metric(kind, int(k))


def is_metric_name(name: Any) -> bool:
    """True if ``metric(name)`` would succeed."""
    try:
        metric(name)
    except (TypeError, ValueError):
        return False
    return True


def _metrics(metrics: str | Metric | Iterable[str | Metric]) -> list[Metric]:
    if isinstance(metrics, (str, Metric)):
        metrics = [metrics]
    parsed = list(dict.fromkeys(metric(m) for m in metrics))
    if not parsed:
        raise ValueError(f"no metrics given; e.g. metrics={list(DEFAULT_METRICS)}")
    return parsed


# -- runs -------------------------------------------------------------------------------------

def _require_columns(df: pd.DataFrame, required: Sequence[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{what} must be a DataFrame, got {type(df).__name__}")
    missing = [col for col in required if col not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {list(df.columns)}")


def _no_nulls(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    for col in cols:
        bad = df[col].isna()
        if bad.any():
            raise ValueError(f"{what} has {int(bad.sum())} missing value(s) in column {col!r}")


def sort_run(run: pd.DataFrame, key: str, what: str = "run") -> pd.DataFrame:
    """``run`` checked and sorted best first within each ``key`` (``query_id`` or ``user_id``):
    by ``score`` descending, else by ``rank`` ascending, ties by ``product_id``. Raises a
    ``ValueError`` naming ``what`` for a missing column, an empty run, missing values, or a
    (key, product_id) pair listed twice."""
    _require_columns(run, [key, C.PRODUCT_ID], what)
    order_col = SCORE if SCORE in run.columns else RANK if RANK in run.columns else None
    if order_col is None:
        raise ValueError(f"{what} needs a {SCORE!r} or a {RANK!r} column to order products; "
                         f"it has {list(run.columns)}")
    if run.empty:
        raise ValueError(f"{what} is empty: it lists no product for anyone")
    _no_nulls(run, [key, C.PRODUCT_ID, order_col], what)
    dup = run.duplicated([key, C.PRODUCT_ID])
    if dup.any():
        first = run.loc[dup, [key, C.PRODUCT_ID]].iloc[0].tolist()
        raise ValueError(f"{what} lists {int(dup.sum())} ({key}, product_id) pair(s) twice, "
                         f"e.g. {first}; keep one row per product")
    return run.sort_values([key, order_col, C.PRODUCT_ID],
                           ascending=[True, order_col == RANK, True], kind="mergesort")


def _ranked_from_frame(run: pd.DataFrame) -> dict[Hashable, list[Hashable]]:
    ordered = sort_run(run, C.QUERY_ID, "run")
    ranked: dict[Hashable, list[Hashable]] = {}
    for qid, pid in zip(ordered[C.QUERY_ID].tolist(), ordered[C.PRODUCT_ID].tolist()):
        ranked.setdefault(qid, []).append(pid)
    return ranked


def _ranked_from_dict(run: Mapping[Hashable, Any]) -> dict[Hashable, list[Hashable]]:
    ranked: dict[Hashable, list[Hashable]] = {}
    for qid, products in run.items():
        if isinstance(products, Mapping):  # {product_id: score}
            items = sorted(products.items(), key=lambda item: (-item[1], item[0]))
            products = [pid for pid, _ in items]
        elif isinstance(products, (str, bytes)) or not isinstance(products, Iterable):
            raise TypeError(f"run[{qid!r}] must be a ranked list of product ids, "
                            f"got {type(products).__name__}")
        products = list(products)
        if len(set(products)) != len(products):
            raise ValueError(f"run[{qid!r}] lists a product more than once")
        ranked[qid] = products
    if not any(ranked.values()):
        raise ValueError("the run is empty: it retrieves no product for any query")
    return ranked


def run_to_dict(run: Run) -> dict[Hashable, list[Hashable]]:
    """``{query_id: [product_id, ...]}`` ranked best first, from either run form (see module doc)."""
    if isinstance(run, pd.DataFrame):
        return _ranked_from_frame(run)
    if isinstance(run, Mapping):
        return _ranked_from_dict(run)
    raise TypeError(f"a run must be a DataFrame or a dict {{query_id: [product_id, ...]}}, "
                    f"got {type(run).__name__}")


def run_from_dict(run: Mapping[Hashable, Any]) -> pd.DataFrame:
    """Tidy run (``query_id``, ``product_id``, ``rank`` from 1) from ``{query_id: [product_id, ...]}``.

    With ``{query_id: {product_id: score}}`` the frame also has a ``score`` column. A query with
    an empty list has no row (:func:`evaluate` counts it as retrieving nothing either way).
    """
    ranked = _ranked_from_dict(run)
    rows = [(qid, pid, rank) for qid, products in ranked.items()
            for rank, pid in enumerate(products, start=1)]
    frame = pd.DataFrame(rows, columns=[C.QUERY_ID, C.PRODUCT_ID, RANK])
    if any(isinstance(products, Mapping) for products in run.values()):
        frame[SCORE] = [run[qid][pid] for qid, pid in zip(frame[C.QUERY_ID], frame[C.PRODUCT_ID])]
    return frame


# -- qrels ------------------------------------------------------------------------------------

@dataclass
class _Judgments:
    gains: dict[Hashable, dict[Hashable, float]]
    relevant: dict[Hashable, set[Hashable]]


def _judgments(qrels: pd.DataFrame, gains: Mapping[str, float],
               relevant_labels: Collection[str]) -> _Judgments:
    _require_columns(qrels, [C.QUERY_ID, C.PRODUCT_ID, C.ESCI_LABEL], "qrels")
    if qrels.empty:
        raise ValueError("qrels is empty: there are no judgments to evaluate against")
    _no_nulls(qrels, [C.QUERY_ID, C.PRODUCT_ID], "qrels")
    unknown = sorted({str(x) for x in qrels[C.ESCI_LABEL].unique() if x not in gains})
    if unknown:
        raise ValueError(f"qrels has unknown {C.ESCI_LABEL} value(s) {unknown}; "
                         f"expected one of {list(gains)}")
    bad_relevant = [label for label in relevant_labels if label not in gains]
    if bad_relevant:
        raise ValueError(f"relevant_labels {bad_relevant} are not among the labels {list(gains)}")
    pairs = qrels[[C.QUERY_ID, C.PRODUCT_ID, C.ESCI_LABEL]].drop_duplicates()
    conflict = pairs.duplicated([C.QUERY_ID, C.PRODUCT_ID])
    if conflict.any():
        first = pairs.loc[conflict, [C.QUERY_ID, C.PRODUCT_ID]].iloc[0].tolist()
        raise ValueError(f"qrels gives {int(conflict.sum())} (query_id, product_id) pair(s) "
                         f"two different labels, e.g. {first}")
    judged = _Judgments({}, {})
    relevant_labels = set(relevant_labels)
    for qid, pid, label in zip(pairs[C.QUERY_ID].tolist(), pairs[C.PRODUCT_ID].tolist(),
                               pairs[C.ESCI_LABEL].tolist()):
        judged.gains.setdefault(qid, {})[pid] = float(gains[label])
        relevant = judged.relevant.setdefault(qid, set())
        if label in relevant_labels:
            relevant.add(pid)
    return judged


def _examples(values: Iterable[Any], n: int = 3) -> list[Any]:
    return list(islice(iter(values), n))


def _check_id_overlap(ranked: dict[Hashable, list[Hashable]], judged: _Judgments) -> None:
    run_qids = set(ranked)
    if not run_qids & set(judged.gains):
        raise ValueError(
            f"the run and qrels share no {C.QUERY_ID}: run has e.g. {_examples(ranked)}, qrels "
            f"has e.g. {_examples(judged.gains)} (same ids, same type - str vs int?)")
    run_kinds = {_id_kind(pid) for products in ranked.values() for pid in products[:1]}
    judged_kinds = {_id_kind(pid) for products in judged.gains.values()
                    for pid in _examples(products, 1)}
    if run_kinds and judged_kinds and not run_kinds & judged_kinds:
        raise TypeError(f"the run's {C.PRODUCT_ID} values are {sorted(run_kinds)} but the qrels' "
                        f"are {sorted(judged_kinds)}: convert one of them")


def _id_kind(value: Any) -> str:
    """Ids that can compare equal share a kind (numpy and Python strings, ints and floats)."""
    if isinstance(value, (str, bytes)):
        return "text"
    if isinstance(value, numbers.Number):
        return "number"
    return type(value).__name__


def _by_columns(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


# -- evaluation -------------------------------------------------------------------------------

def evaluate(
    run: Run,
    qrels: pd.DataFrame,
    metrics: str | Iterable[str | Metric] = DEFAULT_METRICS,
    queries: pd.DataFrame | None = None,
    by: str | Sequence[str] | None = None,
    *,
    gains: Mapping[str, float] | None = None,
    relevant_labels: Collection[str] | None = None,
) -> pd.DataFrame:
    """One row per evaluated query: ``query_id``, the ``by`` columns, one column per metric.

    ``run``: a DataFrame or dict run (see the module doc). ``qrels``: columns ``query_id``,
    ``product_id``, ``esci_label``. ``queries`` (optional, needs ``query_id``): evaluate only
    these queries (e.g. the test split) and take the ``by`` columns (e.g. ``"query_type"``)
    from it. ``gains`` / ``relevant_labels`` default to ``ESCI_GAINS`` / ``RELEVANT_LABELS``.

    The evaluated queries are those of ``qrels`` (restricted to ``queries`` if given), in
    their order of appearance. A query the run does not cover scores 0 (retrieving nothing never
    looks better than retrieving something); queries in the run without judgments are ignored.
    A metric is NaN for a query with nothing to find (see the module doc).

    Raises ``ValueError`` naming the problem for an empty run, qrels or queries, a missing
    column, an unknown label, duplicated rows, a bad metric name, or a run that shares no
    ``query_id`` with qrels (usually str vs int ids).
    """
    ms = _metrics(metrics)
    gains = dict(C.ESCI_GAINS if gains is None else gains)
    relevant_labels = tuple(C.RELEVANT_LABELS if relevant_labels is None else relevant_labels)
    by_cols = _by_columns(by)
    judged = _judgments(qrels, gains, relevant_labels)
    ranked = run_to_dict(run)

    qids = list(judged.gains)
    extra = None
    if queries is not None:
        _require_columns(queries, [C.QUERY_ID, *by_cols], "queries")
        if queries.empty:
            raise ValueError("queries is empty: there is no query to evaluate")
        queries = queries.drop_duplicates(C.QUERY_ID)
        wanted = [qid for qid in queries[C.QUERY_ID].tolist() if qid in judged.gains]
        if not wanted:
            raise ValueError(f"none of the queries has judgments in qrels: queries has e.g. "
                             f"{_examples(queries[C.QUERY_ID])}, qrels e.g. {_examples(qids)}")
        qids = wanted
        extra = queries.set_index(C.QUERY_ID).loc[qids, by_cols].reset_index(drop=True)
    elif by_cols:
        raise ValueError(f"by={by!r} needs the queries table: pass queries=...")
    _check_id_overlap(ranked, judged)

    rows = []
    for qid in qids:
        products = ranked.get(qid, [])
        rows.append([m(products, judged.gains[qid] if m.graded else judged.relevant[qid])
                     for m in ms])
    scores = pd.DataFrame(rows, columns=[m.name for m in ms], dtype=float)
    parts = [pd.DataFrame({C.QUERY_ID: qids}), extra, scores]
    return pd.concat([part for part in parts if part is not None], axis=1)


def _group_order(values: Iterable[Any], by: str) -> list[Any]:
    present = list(pd.unique(pd.Series(list(values)).dropna()))
    if by == C.QUERY_TYPE:
        known = [t for t in C.QUERY_TYPES if t in present]
        return known + sorted((v for v in present if v not in known), key=str)
    return sorted(present, key=str)


def summarize(per_query: pd.DataFrame, queries: pd.DataFrame | None = None,
              by: str | None = C.QUERY_TYPE) -> pd.DataFrame:
    """Mean of every metric column per ``by`` group, then an ``"all"`` row over every query.

    ``per_query`` is :func:`evaluate`'s output; the ``by`` column is taken from it or, if absent,
    from ``queries`` (joined on ``query_id``). ``by=None`` gives the ``"all"`` row only. NaN
    (undefined) values are skipped by the means; ``n_queries`` counts the rows of each group.
    Query types come in the order of ``columns.QUERY_TYPES``; a plot is ``summary[metrics].plot.bar()``.
    """
    _require_columns(per_query, [C.QUERY_ID], "per_query")
    if per_query.empty:
        raise ValueError("per_query is empty: nothing to summarize")
    metric_cols = [col for col in per_query.columns if is_metric_name(col)]
    if not metric_cols:
        raise ValueError(f"per_query has no metric column (such as 'ndcg@10'); "
                         f"it has {list(per_query.columns)}")
    frame = per_query
    if by is not None and by not in frame.columns:
        if queries is None:
            raise ValueError(f"summarize by {by!r} needs a {by!r} column in per_query or the "
                             f"queries table (pass queries=...); by=None gives the overall mean")
        _require_columns(queries, [C.QUERY_ID, by], "queries")
        lookup = queries.drop_duplicates(C.QUERY_ID).set_index(C.QUERY_ID)[by]
        frame = frame.assign(**{by: frame[C.QUERY_ID].map(lookup)})
        missing = frame[by].isna()
        if missing.any():
            raise ValueError(f"{int(missing.sum())} query id(s) of per_query have no {by!r} in "
                             f"queries, e.g. {_examples(frame.loc[missing, C.QUERY_ID])}")

    def stats(part: pd.DataFrame) -> dict[str, float]:
        return {**{col: float(part[col].mean()) for col in metric_cols}, N_QUERIES: len(part)}

    rows, index = [], []
    if by is not None:
        for group in _group_order(frame[by], by):
            rows.append(stats(frame[frame[by] == group]))
            index.append(group)
    rows.append(stats(frame))
    index.append(ALL)
    return pd.DataFrame(rows, index=pd.Index(index, name=by))


def compare_systems(
    runs: Mapping[str, Run],
    qrels: pd.DataFrame,
    queries: pd.DataFrame | None = None,
    metrics: str | Iterable[str | Metric] = DEFAULT_METRICS,
    by: str | None = C.QUERY_TYPE,
    **evaluate_kwargs: Any,
) -> pd.DataFrame:
    """Mean metrics of several systems side by side: rows are the ``by`` groups plus ``"all"``,
    columns a MultiIndex ``(metric, system)``.

    ``table["ndcg@10"]`` is then a query type x system table, and
    ``table["ndcg@10"].plot.bar()`` draws grouped bars (one group per query type, one bar per
    system). Without ``queries`` pass ``by=None``: only the ``"all"`` row. Extra keyword
    arguments (``gains``, ``relevant_labels``) go to :func:`evaluate`.
    """
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError("runs must be a non-empty dict {system name: run}")
    ms = _metrics(metrics)
    if by is not None and queries is None:
        raise ValueError(f"by={by!r} needs the queries table: pass queries=..., or by=None")
    tables = {}
    for name, run in runs.items():
        try:
            per_query = evaluate(run, qrels, ms, queries=queries, by=by, **evaluate_kwargs)
        except (ValueError, TypeError) as err:
            raise type(err)(f"system {name!r}: {err}") from err
        tables[name] = summarize(per_query, by=by).drop(columns=N_QUERIES)
    table = pd.concat(tables, axis=1, names=["system", "metric"]).swaplevel(axis=1)
    order = pd.MultiIndex.from_product([[m.name for m in ms], list(runs)], names=["metric", "system"])
    return table.reindex(columns=order)


# -- is a difference real? --------------------------------------------------------------------

@dataclass(frozen=True)
class BootstrapCI:
    """Mean per-query difference ``b - a`` and its bootstrap confidence interval."""

    mean_diff: float
    low: float
    high: float
    n_queries: int
    confidence: float

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return (f"difference {self.mean_diff:+.4f}, {self.confidence:.0%} CI "
                f"[{self.low:+.4f}, {self.high:+.4f}] over {self.n_queries} queries")


def _paired(a: Any, b: Any, metric_name: str | None) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(a, pd.DataFrame) or isinstance(b, pd.DataFrame):
        if not (isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame)):
            raise TypeError("pass two per-query DataFrames, two Series or two arrays")
        if metric_name is None:
            raise ValueError("with per-query DataFrames, say which column: metric='ndcg@10'")
        _require_columns(a, [C.QUERY_ID, metric_name], "per_query_a")
        _require_columns(b, [C.QUERY_ID, metric_name], "per_query_b")
        a = a.set_index(C.QUERY_ID)[metric_name]
        b = b.set_index(C.QUERY_ID)[metric_name]
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        if set(a.index) != set(b.index) or not (a.index.is_unique and b.index.is_unique):
            raise ValueError("the two per-query Series must cover the same queries (index)")
        b = b.reindex(a.index)
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"per-query scores must be two 1-d arrays of the same length, "
                         f"got shapes {x.shape} and {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def paired_bootstrap_ci(per_query_a: Any, per_query_b: Any, n: int = 1000, seed: int = 0, *,
                        metric: str | None = None, confidence: float = 0.95) -> BootstrapCI:
    """Percentile bootstrap CI of ``mean(b - a)`` over queries (paired: the same queries).

    Inputs: two arrays (paired by position), two Series (paired by index) or two
    :func:`evaluate` outputs with ``metric=`` (paired by ``query_id``). Queries where either
    value is NaN are dropped. Resamples queries ``n`` times with ``numpy.random.default_rng(seed)``;
    the difference is real at that level when the interval excludes 0 (``.significant``).
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n <= 0:
        raise ValueError(f"n (the number of resamples) must be a positive integer, got {n!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    a, b = _paired(per_query_a, per_query_b, metric)
    if a.size == 0:
        raise ValueError("no query has a value for both systems: nothing to compare")
    diff = b - a
    rng = np.random.default_rng(seed)
    means = np.empty(n)
    chunk = max(1, 2_000_000 // diff.size)  # bounded memory for many queries
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        idx = rng.integers(0, diff.size, size=(stop - start, diff.size))
        means[start:stop] = diff[idx].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return BootstrapCI(float(diff.mean()), float(low), float(high), int(diff.size), confidence)
