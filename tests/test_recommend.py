"""course_lib.recommend and recommend_rank: splits, interests, candidates, features, models, metrics,
cold start, the live session and bad input. Synthetic data for units; the smoke world end to end."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from course_lib import columns as C
from course_lib import recommend as R
from course_lib import recommend_rank as RR
from course_lib.cleaning import load_clean
from course_lib.data import SchemaError
from fakes import FakeEncoder, category_catalog

T0 = pd.Timestamp("2026-01-01")


# -- synthetic fixtures ----------------------------------------------------------------------------
def tiny_catalog(n_per_cat: int = 5, cats=("Mugs", "Shoes", "Lamps"), dim: int = 8, seed: int = 0) -> R.Catalog:
    """Products whose vectors cluster by category (a centroid per category plus small noise)."""
    rng = np.random.default_rng(seed)
    rows, vecs = [], []
    for c, cat in enumerate(cats):
        centre = np.eye(dim)[c]
        for j in range(n_per_cat):
            rows.append({C.PRODUCT_ID: f"{cat[0]}{j}", C.CATEGORY: cat, C.BRAND: f"B{j % 2}",
                         C.PRICE: 10.0 * (j + 1), C.CREATED_AT: "2025-06-01", C.TITLE: f"{cat} {j}"})
            vecs.append(centre + 0.1 * rng.normal(size=dim))
    return R.Catalog(pd.DataFrame(rows), np.array(vecs))


def log(*rows) -> pd.DataFrame:
    """Interactions from (user, product, minutes after T0[, session])."""
    return pd.DataFrame([{C.USER_ID: r[0], C.PRODUCT_ID: r[1], C.TIMESTAMP: T0 + pd.Timedelta(minutes=r[2]),
                          C.SESSION_ID: r[3] if len(r) > 3 else f"s-{r[0]}"} for r in rows])


@pytest.fixture(scope="module")
def smoke():
    """The smoke world with category-structured vectors (no BERT needed), split and stepped."""
    tables = load_clean("smoke")
    products, events = tables[C.PRODUCTS], tables[C.EVENTS]
    catalog = category_catalog(products)
    split = R.leave_last_out(R.interactions(events))
    val = RR.make_step(split[C.TRAIN], split[C.VALIDATION])
    test = RR.make_step(pd.concat([split[C.TRAIN], split[C.VALIDATION]]), split[C.TEST])
    return {"events": events, "catalog": catalog, "split": split, "val": val, "test": test}


# -- interactions and splits ---------------------------------------------------------------------
def test_interactions_keep_one_row_per_session_product_with_strongest_type():
    ev = pd.DataFrame({
        C.USER_ID: ["u1"] * 5, C.SESSION_ID: ["s1", "s1", "s1", "s1", "s2"],
        C.TIMESTAMP: [T0 + pd.Timedelta(minutes=m) for m in (0, 1, 2, 3, 9)],
        C.EVENT_TYPE: [C.IMPRESSION, C.CLICK, C.ADD_TO_CART, C.PURCHASE, C.CLICK],
        C.PRODUCT_ID: ["p1", "p1", "p1", "p1", "p1"]})
    got = R.interactions(ev)
    assert got[C.SESSION_ID].tolist() == ["s1", "s2"]
    assert got[C.EVENT_TYPE].tolist() == [C.PURCHASE, C.CLICK]
    assert got[C.TIMESTAMP].iloc[0] == T0 + pd.Timedelta(minutes=1)  # the click, not the impression


def test_leave_last_out_roles_by_history_length():
    inter = log(("a", "p1", 1), ("a", "p2", 2), ("a", "p3", 3), ("a", "p4", 4),
                ("b", "p1", 5), ("b", "p2", 6), ("c", "p9", 7))
    split = R.leave_last_out(inter.sample(frac=1, random_state=1))  # order of rows must not matter
    assert split[C.TEST].set_index(C.USER_ID)[C.PRODUCT_ID].to_dict() == {"a": "p4", "b": "p2", "c": "p9"}
    assert split[C.VALIDATION][[C.USER_ID, C.PRODUCT_ID]].values.tolist() == [["a", "p3"]]
    assert split[C.TRAIN][[C.USER_ID, C.PRODUCT_ID]].values.tolist() == [["a", "p1"], ["a", "p2"], ["b", "p1"]]


def test_no_test_event_leaks_into_training(smoke):
    split = smoke["split"]
    known = pd.concat([split[C.TRAIN], split[C.VALIDATION]])
    R.check_no_leakage(known, split[C.TEST])
    R.check_no_leakage(split[C.TRAIN], split[C.VALIDATION])
    last = known.groupby(C.USER_ID)[C.TIMESTAMP].max()
    held = split[C.TEST].set_index(C.USER_ID)[C.TIMESTAMP]
    assert (last < held.reindex(last.index)).all()
    assert len(known) + len(split[C.TEST]) == len(R.interactions(smoke["events"]))
    assert split[C.TEST][C.USER_ID].is_unique


def test_check_no_leakage_names_the_leaking_user():
    train = log(("a", "p1", 1), ("b", "p1", 10))
    with pytest.raises(ValueError, match="user 'b'"):
        R.check_no_leakage(train, log(("a", "p2", 5), ("b", "p2", 5)))


def test_time_split_cuts_globally(smoke):
    inter = R.interactions(smoke["events"])
    cutoff = inter[C.TIMESTAMP].quantile(0.8)
    split = R.time_split(inter, cutoff)
    assert (split[C.TRAIN][C.TIMESTAMP] < cutoff).all() and (split[C.TEST][C.TIMESTAMP] >= cutoff).all()
    assert split[C.TEST][C.USER_ID].is_unique
    assert set(split[C.TEST][C.USER_ID]) <= set(split[C.TRAIN][C.USER_ID])
    R.check_no_leakage(split[C.TRAIN], split[C.TEST])
    with pytest.raises(ValueError, match="cut-off"):
        R.time_split(inter, inter[C.TIMESTAMP].max() + pd.Timedelta(days=1))


# -- interests -------------------------------------------------------------------------------------
def test_three_interest_methods_differ_as_designed():
    h = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)  # two old "x" items, one new "y"
    mean = R.mean_interest(h)
    recent = R.recency_interest(h, ages=[20.0, 20.0, 0.0], half_life=2.0)
    toward_x = R.attention_interest(h, np.array([1.0, 0.1]), temperature=0.05)
    assert np.allclose(mean, np.array([2, 1]) / math.sqrt(5), atol=1e-6)
    assert recent[1] > 0.99 and toward_x[0] > 0.99
    for v in (mean, recent, toward_x):
        assert math.isclose(float(np.linalg.norm(v)), 1.0, abs_tol=1e-5)
    hot = R.attention_interest(h, np.array([1.0, 0.1]), temperature=100.0)
    assert np.allclose(hot, mean, atol=1e-2)  # a high temperature tends to the mean
    w = R.attention_weights(h, np.array([1.0, 0.0]), 0.1)
    assert math.isclose(w.sum(), 1.0) and w[0] > w[2]


def test_user_interests_recency_uses_now_and_names_missing_users():
    cat = tiny_catalog()
    hist = log(("u", "M0", 0), ("u", "S0", 60 * 24 * 30))
    ids, vecs = R.user_interests(hist, cat, "recency", half_life_days=1.0)
    assert ids.tolist() == ["u"] and cat.vectors_of(["S0"])[0] @ vecs[0] > 0.95
    with pytest.raises(KeyError, match="'u'"):
        R.user_interests(hist, cat, "recency", now=pd.Series({"other": T0}))
    with pytest.raises(ValueError, match="unknown interest method"):
        R.user_interests(hist, cat, "median")


# -- candidates ------------------------------------------------------------------------------------
def test_sources_and_merge_keep_best_score_and_sources():
    cat = tiny_catalog()
    hist = log(("u", "M0", 0, "s1"), ("u", "M1", 1, "s1"), ("v", "M1", 2, "s2"), ("v", "S1", 3, "s2"),
               ("w", "S1", 4, "s3"), ("w", "S2", 5, "s3"))
    ids, vecs = R.user_interests(hist, cat, "mean")
    sim = R.similarity_candidates(ids, vecs, cat, 3, hist)
    assert set(sim[sim[C.USER_ID] == "u"][C.PRODUCT_ID]) <= {"M2", "M3", "M4"}   # same category, unseen
    co = R.cooccurrence_counts(hist, cat)
    i, j = cat.positions(["M1", "S1"])
    assert co[i, j] == 1 and co[i, i] == 0
    cf = R.cooccurrence_candidates(hist, co, cat, 5)
    assert cf[cf[C.USER_ID] == "u"][C.PRODUCT_ID].tolist() == ["S1"]              # via user v
    pop = R.popularity(hist)
    assert pop.index[0] in {"M1", "S1"} and pop.iloc[0] == 2
    popc = R.popularity_candidates(["u"], pop, cat, 2, hist)
    assert "M1" not in set(popc[C.PRODUCT_ID])                                    # seen excluded
    merged = R.merge_candidates([sim, cf, popc, sim.assign(**{C.SCORE: sim[C.SCORE] - 1})])
    row = merged.set_index([C.USER_ID, C.PRODUCT_ID]).loc[("u", "S1")]
    assert set(row[C.SOURCES]) == {"cooccurrence", "popularity"}
    assert math.isnan(row["score_similarity"])
    best = merged.set_index([C.USER_ID, C.PRODUCT_ID])["score_similarity"].dropna()
    assert np.allclose(best.sort_index(), sim.set_index([C.USER_ID, C.PRODUCT_ID])[C.SCORE].sort_index())
    assert not merged.duplicated([C.USER_ID, C.PRODUCT_ID]).any()


def test_query_candidates_encode_each_text_once():
    cat = tiny_catalog()
    enc = R.CachedEncoder(FakeEncoder())
    q = pd.DataFrame({C.USER_ID: ["a", "b", "c"], C.QUERY_TEXT: ["mug", "mug", "lamp"]})
    got = R.query_candidates(q, enc, cat, 4)
    assert set(got[C.SOURCE]) == {"query"} and got.groupby(C.USER_ID).size().tolist() == [4, 4, 4]
    a, b = (got[got[C.USER_ID] == u][C.PRODUCT_ID].tolist() for u in "ab")
    assert a == b
    R.query_candidates(q, enc, cat, 4)
    assert enc.encoder.calls == 1


def test_last_queries_are_strictly_before_now():
    ev = pd.DataFrame({C.USER_ID: ["a", "a", "a", "b"], C.EVENT_TYPE: [C.SEARCH, C.SEARCH, C.SEARCH, C.CLICK],
                       C.QUERY_TEXT: ["old", "new", "future", ""],
                       C.TIMESTAMP: [T0, T0 + pd.Timedelta(minutes=1), T0 + pd.Timedelta(minutes=9), T0]})
    got = R.last_queries(ev, pd.Series({"a": T0 + pd.Timedelta(minutes=5), "b": T0 + pd.Timedelta(minutes=5)}))
    assert got[[C.USER_ID, C.QUERY_TEXT]].values.tolist() == [["a", "new"]]


def test_cold_product_reachable_through_content_only():
    cat = tiny_catalog()
    hist = log(("u", "M0", 0), ("u", "M1", 1), ("v", "M0", 2), ("v", "M2", 3))  # M3, M4 never seen
    ids, vecs = R.user_interests(hist, cat, "mean")
    sim = R.similarity_candidates(ids, vecs, cat, 3, hist)
    assert {"M3", "M4"} <= set(sim[sim[C.USER_ID] == "u"][C.PRODUCT_ID])
    cf = R.cooccurrence_candidates(hist, R.cooccurrence_counts(hist, cat), cat, 10)
    popc = R.popularity_candidates(ids, R.popularity(hist), cat, 1, hist)
    assert not {"M3", "M4"} & (set(cf[C.PRODUCT_ID]) | set(popc[C.PRODUCT_ID]))
    cold = RR.cold_items(log(("u", "M3", 9), ("v", "S0", 9)), hist)
    assert cold[C.PRODUCT_ID].tolist() == ["M3", "S0"]


# -- bad input -----------------------------------------------------------------------------------
def test_unknown_ids_empty_sets_and_nan_features_are_named():
    cat = tiny_catalog()
    with pytest.raises(KeyError, match="X99"):
        cat.positions(["M0", "X99"])
    with pytest.raises(KeyError, match="X99"):
        R.user_interests(log(("u", "X99", 0)), cat, "mean")
    with pytest.raises(ValueError, match="empty"):
        R.merge_candidates([])
    with pytest.raises(ValueError, match="empty"):
        R.merge_candidates([pd.DataFrame(columns=[C.USER_ID, C.PRODUCT_ID, C.SCORE, C.SOURCE])])
    with pytest.raises(ValueError, match="empty"):
        R.mean_interest(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="history is empty"):
        R.user_interests(log(("u", "M0", 0)).iloc[:0], cat)
    feats = pd.DataFrame({f: [0.0, 1.0] for f in RR.FEATURES}).assign(
        **{C.USER_ID: ["u1", "u2"], C.PRODUCT_ID: ["M0", "M1"]})
    feats.loc[1, "price_fit"] = np.nan
    with pytest.raises(ValueError, match=r"'price_fit' is nan for \(user, product\) \('u2', 'M1'\)"):
        RR.check_features(feats)
    with pytest.raises(SchemaError, match="popularity"):
        RR.check_features(feats.drop(columns="popularity"))
    with pytest.raises(ValueError, match="positive number"):
        R.Catalog(cat.products.assign(**{C.PRICE: np.nan}), cat.vectors)


def test_step_candidates_features_for_users_without_history():
    cat = tiny_catalog()
    step = RR.make_step(log(("a", "M0", 0), ("a", "M1", 1)), log(("a", "M2", 5), ("b", "M3", 5)))
    assert step.cold_users.tolist() == ["b"] and step.warm_users.tolist() == ["a"]
    cands = RR.generate_candidates(step, cat, n=3)
    assert set(cands[C.USER_ID]) == {"a"}
    with pytest.raises(KeyError, match="'zz'"):
        RR.ranking_features(cands.assign(**{C.USER_ID: "zz"}), step, cat)
    with pytest.raises(ValueError, match="empty"):
        RR.ranking_features(cands.iloc[:0], step, cat)
    only_cold = RR.make_step(log(("a", "M0", 9)), log(("b", "M3", 5)))
    with pytest.raises(ValueError, match="all cold"):
        RR.generate_candidates(only_cold, cat)


def test_user_with_one_event_is_cold_and_gets_popularity_or_query():
    cat = tiny_catalog()
    split = R.leave_last_out(log(("solo", "L0", 0), ("a", "M0", 1), ("a", "M1", 2), ("b", "M0", 3), ("b", "M2", 4)))
    step = RR.make_step(split[C.TRAIN], split[C.TEST])
    assert step.cold_users.tolist() == ["solo"]
    pop = R.popularity(step.log)
    run = RR.cold_start_run(step.cold_users, pop, cat, 2)
    assert run[C.PRODUCT_ID].tolist() == ["M0", "M1"] and run[C.RANK].tolist() == [1, 2]
    q = pd.DataFrame({C.USER_ID: ["solo"], C.QUERY_TEXT: ["lamp"]})
    enc = FakeEncoder()
    by_query = RR.cold_start_run(step.cold_users, pop, cat, 2, user_queries=q, encoder=enc)
    expected = R.query_candidates(q, enc, cat, 2)[C.PRODUCT_ID].tolist()
    assert by_query[C.PRODUCT_ID].tolist() == expected


# -- features, models, ensembles ---------------------------------------------------------------
def test_features_reflect_history(smoke):
    cands = RR.generate_candidates(smoke["val"], smoke["catalog"], n=20)
    feats = RR.ranking_features(cands, smoke["val"], smoke["catalog"])
    assert set(RR.FEATURES) <= set(feats.columns) and len(feats) == len(cands)
    assert feats["category_affinity"].between(0, 1).all() and feats["sim_mean"].between(-1.01, 1.01).all()
    hist = smoke["val"].history
    user = hist[C.USER_ID].value_counts().index[0]
    mine = hist[hist[C.USER_ID] == user]
    cats = smoke["catalog"].products.set_index(C.PRODUCT_ID)[C.CATEGORY]
    share = mine[C.PRODUCT_ID].map(cats).value_counts(normalize=True)
    f = feats[feats[C.USER_ID] == user]
    assert np.allclose(f["category_affinity"], f[C.PRODUCT_ID].map(cats).map(share).fillna(0))
    assert (f["from_popularity"] == f["score_popularity"].notna()).all()
    # popularity counts only interactions before the user's 'now'
    before = smoke["val"].log[smoke["val"].log[C.TIMESTAMP] < smoke["val"].now[user]]
    counts = before[C.PRODUCT_ID].value_counts()
    assert np.allclose(f["popularity"], np.log1p(f[C.PRODUCT_ID].map(counts).fillna(0)))


def test_rankers_are_deterministic_learn_and_ensembles_work():
    rng = np.random.default_rng(0)
    n_users, per = 300, 20
    x = rng.normal(size=(n_users * per, len(RR.FEATURES)))
    logits = 2.5 * x[:, 4] - 1.5 * x[:, 7] + 1.0 * np.maximum(x[:, 0], 0) * x[:, 10]
    users = np.repeat(np.arange(n_users), per)
    label = np.zeros(len(x), int)
    best = pd.Series(logits + rng.gumbel(size=len(x))).groupby(users).idxmax()
    label[best.to_numpy()] = 1
    df = pd.DataFrame(x, columns=RR.FEATURES).assign(**{C.USER_ID: users, C.PRODUCT_ID: np.arange(len(x)),
                                                        C.LABEL: label})
    train, test = df[users < 240], df[users >= 240]
    a = RR.train_ranker(train, "logistic", seed=1)
    b = RR.train_ranker(train, "logistic", seed=1)
    assert np.array_equal(a.predict(test), b.predict(test))
    w = a.weights()
    assert w.idxmax() == "category_affinity" and w.idxmin() == "price_fit"
    rand = RR.list_ndcg(test, rng.random(len(test)))
    for kind in RR.MODEL_KINDS:
        assert RR.list_ndcg(test, RR.train_ranker(train, kind, seed=0).predict(test)) > rand + 0.2
    hybrid = RR.HybridRanker.fit(train, seed=0, negatives=None)
    assert 0.0 <= hybrid.weight <= 1.0 and set(hybrid.oof_ndcg) == {"logistic", "mlp", "average"}
    scored = hybrid.predict(test)
    assert list(scored.columns) == [C.USER_ID, C.PRODUCT_ID, "logistic", "mlp", "average", "stacked"]
    assert RR.list_ndcg(test, scored["stacked"].to_numpy()) > rand + 0.2
    with pytest.raises(ValueError, match="every label is 0"):
        RR.train_ranker(train.assign(**{C.LABEL: 0}))


def test_sampled_training_rows_keep_positives():
    df = pd.DataFrame({C.USER_ID: np.repeat(["a", "b", "c"], 10), C.PRODUCT_ID: np.arange(30),
                       C.LABEL: [1] + [0] * 9 + [0] * 10 + [0, 1] + [0] * 8})
    got = RR.sample_training_rows(df, negatives=3, seed=0)
    assert got.groupby(C.USER_ID).size().to_dict() == {"a": 4, "c": 4}
    assert got[C.LABEL].sum() == 2


# -- metrics and runs ------------------------------------------------------------------------------
def test_run_metrics_and_beyond_accuracy():
    cat = tiny_catalog()
    run = pd.DataFrame({C.USER_ID: ["a", "a", "a", "b", "b"], C.PRODUCT_ID: ["M0", "M1", "S0", "L0", "L1"],
                        C.SCORE: [0.1, 0.9, 0.5, 0.3, 0.2]})
    ranked = R.to_run(run, k=2)
    assert ranked[C.PRODUCT_ID].tolist() == ["M1", "S0", "L0", "L1"] and ranked[C.RANK].tolist() == [1, 2, 1, 2]
    held = pd.DataFrame({C.USER_ID: ["a", "b", "c"], C.PRODUCT_ID: ["S0", "M4", "M0"]})
    per = R.evaluate_recommendations(ranked, held, k=2).set_index(C.USER_ID)
    assert math.isclose(per.loc["a", "ndcg@2"], 1 / math.log2(3))
    assert per.loc["a", "hit@2"] == 1 and per.loc["b", "recall@2"] == 0
    assert per.loc["c", "ndcg@2"] == 0          # no recommendations: scored 0, not skipped
    assert R.catalogue_coverage(ranked, cat) == 4 / 15
    same = cat.vectors_of(["M0", "M0"])
    assert abs(R.intra_list_diversity(same)) < 1e-6
    assert R.intra_list_diversity(np.eye(3)) == pytest.approx(1.0)
    assert math.isnan(R.intra_list_diversity(np.eye(3)[:1]))
    counts = pd.Series({"M0": 7, "M1": 1})
    assert R.novelty(["M1"], counts, 2) > R.novelty(["M0"], counts, 2)
    assert R.novelty(["L4"], counts, 2) == pytest.approx(-math.log2(1 / 10))
    table = R.compare_recommenders({"x": ranked}, held, cat, counts, k=2)
    assert table.loc["x", "hit@2"] == pytest.approx(1 / 3)
    assert set(table.columns) == {"ndcg@2", "recall@2", "hit@2", "coverage", "diversity", "novelty"}


def test_random_run_excludes_seen_and_is_seeded():
    cat = tiny_catalog()
    seen = log(("a", "M0", 0))
    r1 = R.random_run(["a", "b"], cat, 5, seed=3, seen=seen)
    assert r1.equals(R.random_run(["a", "b"], cat, 5, seed=3, seen=seen))
    assert "M0" not in set(r1[r1[C.USER_ID] == "a"][C.PRODUCT_ID]) and len(r1) == 10


# -- the live session ------------------------------------------------------------------------------
def test_session_recommendations_follow_clicks_without_retraining():
    cat = tiny_catalog()
    session = R.Session(cat, counts=pd.Series({"L3": 5, "M0": 2}))
    first = session.recommend(2)
    assert first[C.PRODUCT_ID].tolist() == ["L3", "M0"]                  # no clicks: popularity
    session.click("M0")
    mugs = session.recommend(3)
    assert set(mugs[C.CATEGORY]) == {"Mugs"} and "M0" not in set(mugs[C.PRODUCT_ID])
    for pid in ("S0", "S1", "S2"):
        session.click(pid)
    shoes = session.recommend(2)
    assert set(shoes[C.CATEGORY]) == {"Shoes"}
    assert math.isclose(float(np.linalg.norm(session.interest)), 1.0, abs_tol=1e-5)
    with pytest.raises(KeyError, match="NOPE"):
        session.click("NOPE")


# -- the smoke world end to end ---------------------------------------------------------------------
def test_smoke_pipeline_hybrid_beats_random(smoke):
    cat, val, test = smoke["catalog"], smoke["val"], smoke["test"]
    enc = R.CachedEncoder(FakeEncoder(64))
    train = RR.add_labels(RR.ranking_features(
        RR.generate_candidates(val, cat, events=smoke["events"], encoder=enc, n=30), val, cat), val.targets)
    assert set(train["from_query"]) == {0.0, 1.0}
    hybrid = RR.HybridRanker.fit(train, seed=0, epochs=3)
    feats = RR.ranking_features(RR.generate_candidates(test, cat, n=30), test, cat)
    runs = hybrid.runs(feats, k=10)
    warm = test.targets[test.targets[C.USER_ID].isin(test.warm_users)]
    runs["random"] = R.random_run(test.warm_users, cat, 10, 0, test.history)
    table = R.compare_recommenders(runs, warm, cat, R.popularity(test.log))
    assert table.loc["hybrid stacked", "recall@10"] > table.loc["random", "recall@10"]
    assert (runs["hybrid logistic"].groupby(C.USER_ID).size() == 10).all()
