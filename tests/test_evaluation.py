"""course_lib.evaluation: hand-computed metrics, sklearn agreement, properties, evaluate() and friends."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score

from course_lib import columns as C
from course_lib import evaluation as E
from course_lib.evaluation import (
    average_precision_at_k, hit_at_k, metric, mrr_at_k, ndcg_at_k, precision_at_k, recall_at_k,
)

L3 = math.log2(3)  # discount of rank 2

# -- hand-computed per-query metrics ---------------------------------------------------------

RANKED = ["a", "b", "c", "d", "e"]
RELEVANT = {"b", "d", "z"}  # z is relevant but never retrieved: relevant at ranks 2 and 4


@pytest.mark.parametrize("k, expected", [
    (1, 0.0),      # top 1 = {a}: 0 of 3
    (2, 1 / 3),    # top 2 = {a, b}: 1 of 3
    (4, 2 / 3),    # b and d: 2 of 3 (z never found)
    (10, 2 / 3),   # k beyond the list changes nothing
])
def test_recall_by_hand(k, expected):
    assert recall_at_k(RANKED, RELEVANT, k) == pytest.approx(expected)


@pytest.mark.parametrize("k, expected", [
    (1, 0.0),      # 0 / 1
    (2, 0.5),      # 1 / 2
    (4, 0.5),      # 2 / 4
    (10, 0.2),     # 2 / 10: divided by k even though only 5 were retrieved
])
def test_precision_by_hand(k, expected):
    assert precision_at_k(RANKED, RELEVANT, k) == pytest.approx(expected)


@pytest.mark.parametrize("k, expected", [(1, 0.0), (2, 0.5), (10, 0.5)])  # first relevant at rank 2
def test_mrr_by_hand(k, expected):
    assert mrr_at_k(RANKED, RELEVANT, k) == pytest.approx(expected)


@pytest.mark.parametrize("k, expected", [
    (1, 0.0),                    # nothing relevant in the top 1
    (2, (1 / 2) / 2),            # P@2 = 1/2 at the hit on rank 2, / min(3, 2) = 0.25
    (4, (1 / 2 + 2 / 4) / 3),    # hits at ranks 2 and 4: P@2 = 1/2, P@4 = 2/4; / min(3, 4)
    (10, (1 / 2 + 2 / 4) / 3),   # z is never found, so it still costs: / 3
])
def test_average_precision_by_hand(k, expected):
    assert average_precision_at_k(RANKED, RELEVANT, k) == pytest.approx(expected)


def test_average_precision_perfect_top_k_is_one():
    # 5 relevant, k = 2, both top products relevant: (1/1 + 2/2) / min(5, 2) = 1
    assert average_precision_at_k(["r1", "r2", "x"], {"r1", "r2", "r3", "r4", "r5"}, 2) == 1.0


@pytest.mark.parametrize("k, expected", [(1, 0.0), (2, 1.0), (5, 1.0)])
def test_hit_by_hand(k, expected):
    assert hit_at_k(RANKED, RELEVANT, k) == expected


def test_ndcg_by_hand_graded_gains():
    gains = {"a": 0.1, "b": 1.0, "c": 0.0, "d": 1.0}  # d is judged E but not retrieved
    # DCG@3  = 0.1/log2(2) + 1.0/log2(3) + 0.0/log2(4)       = 0.1 + 0.63093       = 0.73093
    # IDCG@3 = 1.0/log2(2) + 1.0/log2(3) + 0.1/log2(4) (all judged gains, sorted) = 1.68093
    expected = (0.1 + 1 / L3) / (1 + 1 / L3 + 0.1 / 2)
    got = ndcg_at_k(["a", "b", "c"], gains, 3)
    assert got == pytest.approx(expected)
    assert got == pytest.approx(0.434837, abs=1e-6)
    # k = 1: DCG@1 = 0.1, IDCG@1 = 1.0
    assert ndcg_at_k(["a", "b", "c"], gains, 1) == pytest.approx(0.1)


def test_ndcg_uses_linear_gain_and_esci_gains():
    # one S then one E: DCG = 0.1/1 + 1/log2(3), IDCG = 1/1 + 0.1/log2(3)
    gains = {pid: C.ESCI_GAINS[label] for pid, label in {"s": "S", "e": "E"}.items()}
    assert ndcg_at_k(["s", "e"], gains, 2) == pytest.approx((0.1 + 1 / L3) / (1 + 0.1 / L3))
    # with 2**gain - 1 it would be ~0.6723, not 0.6876
    assert ndcg_at_k(["s", "e"], gains, 2) == pytest.approx(0.687550, abs=1e-6)


def test_unjudged_and_duplicate_ids_earn_nothing():
    # x is unjudged (gain 0), the second "e" is a duplicate: only rank 2 earns, 1/log2(3)
    assert ndcg_at_k(["x", "e", "e"], {"e": 1.0}, 3) == pytest.approx(1 / L3)
    # a repeated relevant id is counted once: 1 of 2 relevant found
    assert recall_at_k(["e", "e", "e"], {"e", "f"}, 3) == 0.5
    assert precision_at_k(["e", "e"], {"e", "f"}, 2) == 0.5


def test_nothing_to_find_is_nan():
    assert math.isnan(ndcg_at_k(["a"], {"a": 0.0, "b": 0.0}, 10))  # no positive gain
    assert math.isnan(ndcg_at_k(["a"], {}, 10))
    for fn in (recall_at_k, precision_at_k, mrr_at_k, average_precision_at_k, hit_at_k):
        assert math.isnan(fn(["a", "b"], set(), 10)), fn.__name__


def test_empty_ranking_scores_zero():
    assert ndcg_at_k([], {"a": 1.0}, 10) == 0.0
    for fn in (recall_at_k, precision_at_k, mrr_at_k, average_precision_at_k, hit_at_k):
        assert fn([], {"a"}, 10) == 0.0, fn.__name__


@pytest.mark.parametrize("bad_k", [0, -1, 2.5, True, "10"])
def test_bad_k(bad_k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ndcg_at_k(["a"], {"a": 1.0}, bad_k)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        recall_at_k(["a"], {"a"}, bad_k)


def test_misused_arguments_are_refused():
    with pytest.raises(TypeError, match="not a mapping of gains"):
        recall_at_k(["a"], {"a": 1.0}, 5)
    with pytest.raises(TypeError, match="not a string"):
        ndcg_at_k("abc", {"a": 1.0}, 5)
    with pytest.raises(ValueError, match=">= 0"):
        ndcg_at_k(["a"], {"a": -1.0}, 5)


# -- metric names ------------------------------------------------------------------------------

def test_metric_names():
    m = metric("ndcg@10")
    assert (m.kind, m.k, m.name, str(m), m.graded) == ("ndcg", 10, "ndcg@10", "ndcg@10", True)
    assert m(["p1", "p2"], {"p2": 1.0}) == pytest.approx(1 / L3)
    assert metric(" NDCG@10 ") == m
    assert metric(m) is m
    assert metric("map@4")(RANKED, RELEVANT) == average_precision_at_k(RANKED, RELEVANT, 4)
    for kind, fn in [("recall", recall_at_k), ("precision", precision_at_k), ("mrr", mrr_at_k),
                     ("hit", hit_at_k)]:
        assert not metric(f"{kind}@4").graded
        assert metric(f"{kind}@4")(RANKED, RELEVANT) == fn(RANKED, RELEVANT, 4)


@pytest.mark.parametrize("name, message", [
    ("bleu@10", r"unknown metric 'bleu@10'; valid forms: ndcg@k, recall@k, precision@k, mrr@k, "
                r"map@k, hit@k"),
    ("ndcg10", "unknown metric"),
    ("ndcg", r"needs a cut-off k, e.g. 'ndcg@10'"),
    ("ndcg@0", "k must be a positive integer"),
    ("recall@-5", "k must be a positive integer"),
    ("mrr@ten", "k must be a positive integer"),
    ("map@1.5", "k must be a positive integer"),
])
def test_bad_metric_names(name, message):
    with pytest.raises(ValueError, match=message):
        metric(name)
    assert not E.is_metric_name(name)


def test_metric_name_must_be_a_string():
    with pytest.raises(TypeError, match="must be a string"):
        metric(10)


# -- ndcg agrees with sklearn ------------------------------------------------------------------

GAIN = st.sampled_from([0.0, 0.01, 0.1, 1.0]) | st.floats(0.0, 3.0, allow_subnormal=False)


@st.composite
def graded_cases(draw, max_judged: int = 8):
    """(ranked_ids, gains, k): judged p0.. with graded gains; the ranking may contain unjudged
    u0.. and may miss judged products."""
    n = draw(st.integers(1, max_judged))
    gains = {f"p{i}": g for i, g in enumerate(draw(st.lists(GAIN, min_size=n, max_size=n)))}
    pool = [*gains, "u0", "u1", "u2"]
    ranked = draw(st.lists(st.sampled_from(pool), unique=True, max_size=len(pool)))
    return ranked, gains, draw(st.integers(1, 12))


@settings(max_examples=60, deadline=None)
@given(graded_cases())
def test_ndcg_matches_sklearn(case):
    ranked, gains, k = case
    k = min(k, len(ranked)) if ranked else k
    if max(gains.values()) <= 0 or not ranked:
        return  # sklearn calls that 0 and we call it NaN / nothing to compare
    # sklearn ranks ALL items by y_score. Retrieved items get high distinct scores in rank order;
    # judged items the run missed get lower distinct scores, so they sit after the retrieved ones
    # and still count in sklearn's ideal DCG. With k <= len(ranked) both compute the same top k.
    items = ranked + [pid for pid in gains if pid not in ranked]
    y_true = [gains.get(pid, 0.0) for pid in items]
    y_score = [float(len(items) - i) for i in range(len(items))]
    if len(items) < 2:
        y_true, y_score = y_true + [0.0], y_score + [-1.0]  # sklearn needs two items
    expected = ndcg_score([y_true], [y_score], k=k)
    assert ndcg_at_k(ranked, gains, k) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_ndcg_matches_sklearn_missed_relevant_example():
    # relevant c is not retrieved: sklearn sees it with the lowest score
    ranked, gains = ["a", "b"], {"a": 0.0, "b": 0.1, "c": 1.0}
    expected = ndcg_score([[0.0, 0.1, 1.0]], [[3.0, 2.0, -1.0]], k=2)
    assert ndcg_at_k(ranked, gains, 2) == pytest.approx(expected)
    assert expected == pytest.approx((0.1 / L3) / (1 + 0.1 / L3))  # by hand


# -- properties -------------------------------------------------------------------------------

def _all_metrics(ranked, gains, k):
    relevant = {pid for pid, g in gains.items() if g >= 1.0}
    out = {"ndcg": ndcg_at_k(ranked, gains, k)}
    for name, fn in [("recall", recall_at_k), ("precision", precision_at_k), ("mrr", mrr_at_k),
                     ("map", average_precision_at_k), ("hit", hit_at_k)]:
        out[name] = fn(ranked, relevant, k)
    return out, relevant


@settings(max_examples=80, deadline=None)
@given(graded_cases())
def test_metrics_are_in_unit_interval_or_nan_when_nothing_to_find(case):
    ranked, gains, k = case
    values, relevant = _all_metrics(ranked, gains, k)
    for name, value in values.items():
        undefined = not relevant if name != "ndcg" else max(gains.values()) <= 0
        if undefined:
            assert math.isnan(value), name
        else:
            assert 0.0 <= value <= 1.0 + 1e-12, (name, value)


def _perfect(gains):
    return sorted(gains, key=lambda pid: -gains[pid])


@settings(max_examples=60, deadline=None)
@given(graded_cases())
def test_perfect_ranking_has_ndcg_one_and_reversing_never_helps(case):
    _, gains, k = case
    if max(gains.values()) <= 0:
        return
    perfect = _perfect(gains)
    assert ndcg_at_k(perfect, gains, k) == pytest.approx(1.0)
    assert ndcg_at_k(perfect[::-1], gains, k) <= ndcg_at_k(perfect, gains, k) + 1e-12


@settings(max_examples=60, deadline=None)
@given(graded_cases(), st.integers(0, 20))
def test_moving_a_better_product_up_never_lowers_ndcg(case, i):
    ranked, gains, k = case
    if max(gains.values()) <= 0 or len(ranked) < 2:
        return
    i %= len(ranked) - 1
    a, b = ranked[i], ranked[i + 1]
    if gains.get(b, 0.0) <= gains.get(a, 0.0):
        return
    swapped = ranked[:i] + [b, a] + ranked[i + 2:]
    assert ndcg_at_k(swapped, gains, k) >= ndcg_at_k(ranked, gains, k) - 1e-12


@settings(max_examples=60, deadline=None)
@given(graded_cases())
def test_recall_hit_mrr_never_decrease_with_k(case):
    ranked, gains, _ = case
    relevant = {pid for pid, g in gains.items() if g > 0}
    if not relevant:
        return
    for fn in (recall_at_k, hit_at_k, mrr_at_k):
        values = [fn(ranked, relevant, k) for k in range(1, len(ranked) + 3)]
        assert values == sorted(values), fn.__name__


# -- evaluate, summarize, compare_systems ------------------------------------------------------

QRELS = pd.DataFrame(
    [("q1", "a", "E"), ("q1", "b", "S"), ("q1", "c", "I"), ("q1", "d", "E"),
     ("q2", "e", "E"), ("q2", "f", "C"),
     ("q3", "g", "S"), ("q3", "h", "I")],          # q3 has no Exact product
    columns=[C.QUERY_ID, C.PRODUCT_ID, C.ESCI_LABEL])
QUERIES = pd.DataFrame({C.QUERY_ID: ["q1", "q2", "q3", "q4"],
                        C.QUERY_TYPE: [C.KEYWORD, C.SYNONYM, C.KEYWORD, C.SYNONYM]})
# q2 is missing (counts as 0), q9 has no judgments (ignored), x is unjudged
RUN = {"q1": ["b", "a", "x", "d"], "q3": ["h", "g"], "q9": ["a"]}
METRICS = ["ndcg@3", "recall@2", "mrr@10", "hit@1"]

Q1_NDCG3 = (0.1 + 1 / L3) / (1 + 1 / L3 + 0.1 / 2)  # b(S), a(E), x  vs  a, d, b: 0.434837
Q3_NDCG3 = (0.1 / L3) / 0.1                           # h(I), g(S)  vs  g: 0.630930


def test_evaluate_by_hand():
    per_query = E.evaluate(RUN, QRELS, METRICS)
    assert list(per_query.columns) == [C.QUERY_ID, *METRICS]
    assert per_query[C.QUERY_ID].tolist() == ["q1", "q2", "q3"]  # qrels order; q9 ignored
    row = per_query.set_index(C.QUERY_ID)
    # q1: relevant {a, d}; top 2 {b, a} -> recall 1/2; first E at rank 2 -> mrr 1/2; b is S -> hit@1 0
    assert row.loc["q1"].tolist() == pytest.approx([Q1_NDCG3, 0.5, 0.5, 0.0])
    # q2: retrieved nothing -> 0 everywhere, not NaN, not dropped
    assert row.loc["q2"].tolist() == [0.0, 0.0, 0.0, 0.0]
    # q3: ndcg is defined (S has gain 0.1); the binary metrics have nothing to find -> NaN
    assert row.loc["q3", "ndcg@3"] == pytest.approx(Q3_NDCG3)
    assert row.loc["q3", ["recall@2", "mrr@10", "hit@1"]].isna().all()


def test_dict_and_dataframe_runs_give_the_same_numbers():
    frame = E.run_from_dict(RUN)
    assert list(frame.columns) == [C.QUERY_ID, C.PRODUCT_ID, E.RANK]
    by_rank = frame.sample(frac=1.0, random_state=3)  # row order must not matter
    by_score = by_rank.assign(**{E.SCORE: 10.0 - by_rank[E.RANK]}).drop(columns=E.RANK)
    expected = E.evaluate(RUN, QRELS, METRICS)
    pd.testing.assert_frame_equal(E.evaluate(by_rank, QRELS, METRICS), expected)
    pd.testing.assert_frame_equal(E.evaluate(by_score, QRELS, METRICS), expected)
    assert E.run_to_dict(by_score) == {q: ids for q, ids in RUN.items()}


def test_score_ties_are_broken_by_product_id():
    run = pd.DataFrame({C.QUERY_ID: ["q1"] * 3, C.PRODUCT_ID: ["d", "b", "a"],
                        E.SCORE: [0.5, 0.9, 0.9]})
    assert E.run_to_dict(run) == {"q1": ["a", "b", "d"]}
    assert E.evaluate(run, QRELS, "mrr@10")["mrr@10"].tolist()[0] == 1.0  # a (E) first


def test_run_from_dict_with_scores_round_trips():
    frame = E.run_from_dict({"q1": {"b": 0.2, "a": 0.7, "d": 0.2}})
    assert frame[C.PRODUCT_ID].tolist() == ["a", "b", "d"]
    assert frame[E.RANK].tolist() == [1, 2, 3]
    assert frame[E.SCORE].tolist() == [0.7, 0.2, 0.2]
    assert E.run_to_dict(frame) == {"q1": ["a", "b", "d"]}


def test_missing_query_never_looks_better_than_a_bad_answer():
    nothing = E.evaluate(RUN, QRELS, METRICS)
    junk = E.evaluate({**RUN, "q2": ["zzz"]}, QRELS, METRICS)
    pd.testing.assert_frame_equal(nothing, junk)
    assert E.summarize(nothing, by=None).loc["all", "ndcg@3"] == pytest.approx(
        (Q1_NDCG3 + 0 + Q3_NDCG3) / 3)


def test_queries_filter_and_by_columns():
    test_split = QUERIES[QUERIES[C.QUERY_ID].isin(["q3", "q1", "q4"])].iloc[::-1]  # q4 unjudged
    per_query = E.evaluate(RUN, QRELS, ["ndcg@3"], queries=test_split, by=C.QUERY_TYPE)
    assert per_query.columns.tolist() == [C.QUERY_ID, C.QUERY_TYPE, "ndcg@3"]
    assert per_query[C.QUERY_ID].tolist() == ["q3", "q1"]  # order of queries, q4 dropped
    assert per_query[C.QUERY_TYPE].tolist() == [C.KEYWORD, C.KEYWORD]


def test_summarize_by_query_type():
    per_query = E.evaluate(RUN, QRELS, METRICS)
    summary = E.summarize(per_query, QUERIES, by=C.QUERY_TYPE)
    assert summary.index.name == C.QUERY_TYPE
    assert summary.index.tolist() == [C.KEYWORD, C.SYNONYM, "all"]  # QUERY_TYPES order, then all
    assert summary.columns.tolist() == [*METRICS, "n_queries"]
    # keyword = q1, q3. recall: q3 is NaN and skipped -> 0.5
    assert summary.loc[C.KEYWORD, "ndcg@3"] == pytest.approx((Q1_NDCG3 + Q3_NDCG3) / 2)
    assert summary.loc[C.KEYWORD, "recall@2"] == pytest.approx(0.5)
    assert summary.loc[C.SYNONYM].tolist() == [0.0, 0.0, 0.0, 0.0, 1]
    # all: ndcg over 3 queries; recall over q1, q2 only: (0.5 + 0) / 2
    assert summary.loc["all", "ndcg@3"] == pytest.approx((Q1_NDCG3 + Q3_NDCG3) / 3)
    assert summary.loc["all", "recall@2"] == pytest.approx(0.25)
    assert summary["n_queries"].tolist() == [2, 1, 3]
    # same result when by comes from evaluate()
    with_type = E.evaluate(RUN, QRELS, METRICS, queries=QUERIES, by=C.QUERY_TYPE)
    pd.testing.assert_frame_equal(E.summarize(with_type), summary)


def test_compare_systems_table():
    better = {"q1": ["a", "d", "b"], "q2": ["e", "f"], "q3": ["g"]}
    table = E.compare_systems({"bm25": RUN, "dense": better}, QRELS, QUERIES, ["ndcg@3", "recall@2"])
    assert table.columns.names == ["metric", "system"]
    assert table.columns.tolist() == [("ndcg@3", "bm25"), ("ndcg@3", "dense"),
                                      ("recall@2", "bm25"), ("recall@2", "dense")]
    assert table.index.tolist() == [C.KEYWORD, C.SYNONYM, "all"]
    assert table.loc["all", ("ndcg@3", "dense")] == pytest.approx(1.0)  # perfect on every query
    expected = E.summarize(E.evaluate(RUN, QRELS, ["ndcg@3", "recall@2"]), QUERIES)
    assert table["ndcg@3"]["bm25"].tolist() == pytest.approx(expected["ndcg@3"].tolist())
    assert table["ndcg@3"].shape == (3, 2)  # ready for .plot.bar(): groups x systems


def test_compare_systems_without_queries_needs_by_none():
    with pytest.raises(ValueError, match="needs the queries table"):
        E.compare_systems({"a": RUN}, QRELS)
    table = E.compare_systems({"a": RUN}, QRELS, by=None, metrics="ndcg@3")
    assert table.index.tolist() == ["all"]
    with pytest.raises(ValueError, match="system 'bad'"):
        E.compare_systems({"a": RUN, "bad": {}}, QRELS, by=None)


def test_custom_gains_and_relevant_labels():
    per_query = E.evaluate(RUN, QRELS, "hit@1", relevant_labels=("E", "S"))
    assert per_query["hit@1"].tolist() == [1.0, 0.0, 0.0]  # b (S) now counts; q3 has g (S)


# -- errors ------------------------------------------------------------------------------------

def test_empty_inputs():
    with pytest.raises(ValueError, match="run is empty"):
        E.evaluate({}, QRELS)
    with pytest.raises(ValueError, match="run is empty"):
        E.evaluate({"q1": []}, QRELS)
    with pytest.raises(ValueError, match="run is empty"):
        E.evaluate(E.run_from_dict(RUN).iloc[:0], QRELS)
    with pytest.raises(ValueError, match="qrels is empty"):
        E.evaluate(RUN, QRELS.iloc[:0])
    with pytest.raises(ValueError, match="queries is empty"):
        E.evaluate(RUN, QRELS, queries=QUERIES.iloc[:0])


def test_missing_columns_are_named():
    frame = E.run_from_dict(RUN)
    with pytest.raises(ValueError, match=r"run is missing column\(s\) \['product_id'\]"):
        E.evaluate(frame.drop(columns=C.PRODUCT_ID), QRELS)
    with pytest.raises(ValueError, match="run needs a 'score' or a 'rank' column"):
        E.evaluate(frame.drop(columns=E.RANK), QRELS)
    with pytest.raises(ValueError, match=r"qrels is missing column\(s\) \['esci_label'\]"):
        E.evaluate(RUN, QRELS.rename(columns={C.ESCI_LABEL: "label"}))
    with pytest.raises(ValueError, match=r"queries is missing column\(s\) \['query_type'\]"):
        E.evaluate(RUN, QRELS, queries=QUERIES[[C.QUERY_ID]], by=C.QUERY_TYPE)
    with pytest.raises(ValueError, match="needs a 'query_type' column"):
        E.summarize(E.evaluate(RUN, QRELS))


def test_unknown_labels_are_named():
    bad = pd.concat([QRELS, pd.DataFrame({C.QUERY_ID: ["q1", "q2"], C.PRODUCT_ID: ["y", "z"],
                                          C.ESCI_LABEL: ["e", "X"]})])
    with pytest.raises(ValueError, match=r"unknown esci_label value\(s\) \['X', 'e'\]"):
        E.evaluate(RUN, bad)


def test_inconsistent_inputs():
    with pytest.raises(ValueError, match="share no query_id"):
        E.evaluate({1: ["a"]}, QRELS)
    with pytest.raises(TypeError, match="product_id values are"):
        E.evaluate({"q1": [1, 2]}, QRELS)
    with pytest.raises(ValueError, match="by='query_type' needs the queries table"):
        E.evaluate(RUN, QRELS, by=C.QUERY_TYPE)
    dup = pd.DataFrame({C.QUERY_ID: ["q1", "q1"], C.PRODUCT_ID: ["a", "a"], E.SCORE: [1.0, 0.5]})
    with pytest.raises(ValueError, match=r"twice, e.g. \['q1', 'a'\]"):
        E.evaluate(dup, QRELS)
    conflict = pd.concat([QRELS, QRELS.iloc[:1].assign(**{C.ESCI_LABEL: "I"})])
    with pytest.raises(ValueError, match="two different labels"):
        E.evaluate(RUN, conflict)
    with pytest.raises(ValueError, match="missing value"):
        E.evaluate(E.run_from_dict(RUN).assign(**{E.RANK: np.nan}), QRELS)
    with pytest.raises(TypeError, match="ranked list of product ids"):
        E.evaluate({"q1": "abc"}, QRELS)


# -- paired bootstrap --------------------------------------------------------------------------

def test_bootstrap_constant_difference_and_no_difference():
    a = np.array([0.1, 0.5, 0.3, 0.9])
    same = E.paired_bootstrap_ci(a, a)
    assert (same.mean_diff, same.low, same.high, same.significant) == (0.0, 0.0, 0.0, False)
    up = E.paired_bootstrap_ci(a, a + 0.1)  # every resample has mean difference 0.1
    assert up.mean_diff == pytest.approx(0.1)
    assert (up.low, up.high) == (pytest.approx(0.1), pytest.approx(0.1))
    assert up.significant and up.n_queries == 4


def test_bootstrap_is_reproducible_and_brackets_the_mean():
    rng = np.random.default_rng(1)
    a, b = rng.random(200), rng.random(200)
    ci = E.paired_bootstrap_ci(a, b, n=500, seed=7)
    assert ci == E.paired_bootstrap_ci(a, b, n=500, seed=7)
    assert ci.mean_diff == pytest.approx(float(np.mean(b - a)))
    assert ci.low < ci.mean_diff < ci.high
    # the standard error of the mean difference is about std/sqrt(200); the 95% CI ~ +-1.96 se
    se = np.std(b - a) / np.sqrt(200)
    assert ci.high - ci.low == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_bootstrap_pairs_per_query_frames_by_query_id():
    a = pd.DataFrame({C.QUERY_ID: ["q1", "q2", "q3"], "ndcg@10": [0.2, 0.4, np.nan]})
    b = pd.DataFrame({C.QUERY_ID: ["q3", "q2", "q1"], "ndcg@10": [0.9, 0.5, 0.3]})
    ci = E.paired_bootstrap_ci(a, b, metric="ndcg@10")
    assert ci.n_queries == 2  # q3 dropped: NaN for a
    assert ci.mean_diff == pytest.approx(0.1)  # (0.3 - 0.2 + 0.5 - 0.4) / 2
    with pytest.raises(ValueError, match="metric="):
        E.paired_bootstrap_ci(a, b)
    with pytest.raises(ValueError, match="same length"):
        E.paired_bootstrap_ci([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="n \\(the number of resamples\\)"):
        E.paired_bootstrap_ci([0.1], [0.2], n=0)
