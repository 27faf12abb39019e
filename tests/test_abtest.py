"""course_lib.abtest: the world's click model, assignment, the experiment simulator, A/A tests,
peeking, power against simulation, the offline view, and clear errors for bad input."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from course_lib import abtest as A
from course_lib import columns as C
from course_lib import data
from course_lib import stats as S
from course_lib.cleaning import load_clean


# -- a tiny hand-made world ----------------------------------------------------------------------

def _tiny_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    for c, cat in enumerate(["Mugs", "Lamps", "Socks"]):
        for j in range(6):
            rows.append({C.PRODUCT_ID: f"P{c}{j}", C.CATEGORY: cat, C.BRAND: f"B{j % 2}",
                         C.PRICE: 10.0 * (c + 1) * (1 + j / 5), "quality": (j - 2.5) / 3})
    products = pd.DataFrame(rows)
    prefs = pd.DataFrame([{
        C.USER_ID: f"u{i:02d}",
        C.CATEGORY_AFFINITY: json.dumps({"Mugs": 0.8, "Lamps": 0.2} if i % 2 else {"Socks": 0.9, "Mugs": 0.1}),
        C.PRICE_SENSITIVITY: 0.5, C.BRAND_LOYALTY: 0.4,
        C.FAVORITE_BRANDS: json.dumps({"Mugs": "B1"} if i % 2 else {"Socks": "B0"}),
    } for i in range(20)])
    return products, prefs


@pytest.fixture(scope="module")
def tiny():
    products, prefs = _tiny_tables()
    return A.Shop.from_tables(products, prefs)


def _static(products: list[str]):
    """A recommender that shows the same products to everyone."""
    def recommend(user_ids, k):
        return pd.DataFrame([(u, p, r) for u in user_ids for r, p in enumerate(products[:k], 1)],
                            columns=[C.USER_ID, C.PRODUCT_ID, C.RANK])
    return recommend


@pytest.fixture(scope="module")
def smoke():
    tables = load_clean("smoke")
    train, heldout = A.split_last_click(tables[C.EVENTS])
    recs = {"popularity": A.popularity_recommender(train, tables[C.PRODUCTS]),
            "category": A.category_recommender(train, tables[C.PRODUCTS]),
            "category_ctr": A.category_recommender(train, tables[C.PRODUCTS], within="ctr"),
            "random": A.random_recommender(tables[C.PRODUCTS])}
    return {"shop": A.load_shop("smoke"), "tables": tables, "train": train, "heldout": heldout, "recs": recs}


# -- the world's click and purchase model ----------------------------------------------------------

def test_click_probabilities_are_the_worlds_click_model(tiny):
    slates = np.array([[0, 1, 2], [5, 4, 3]])
    users = np.array([1, 2])
    got = tiny.click_probabilities(users, slates)
    # user u01 likes Mugs (0.8) with favourite brand B1; product P00 is a Mug of brand B0
    median = np.median([10.0 * (1 + j / 5) for j in range(6)])
    expected = data.click_probability(0.8, 10.0 / median, 0.5, False, 0.4, -2.5 / 3, 1)
    assert got[0, 0] == pytest.approx(expected)
    # P01 (brand B1) at position 2 matches u01's favourite brand
    assert got[0, 1] == pytest.approx(data.click_probability(0.8, 12.0 / median, 0.5, True, 0.4, -1.5 / 3, 2))
    # user u02 likes Socks (favourite brand B0) and Mugs a little (0.1): no brand match on a Mug
    assert got[1, 2] == pytest.approx(data.click_probability(0.1, 16.0 / median, 0.5, False, 0.4, 0.5 / 3, 3))


def test_position_bias_comes_from_the_world(tiny):
    same_product = np.zeros((1, 10), dtype=int)
    probs = tiny.click_probabilities(np.array([1]), same_product)[0]
    assert probs / probs[0] == pytest.approx(data.POSITION_BIAS / data.POSITION_BIAS[0])


def test_purchase_funnel_matches_the_logged_events(smoke):
    """P(purchase | click) of the simulator reproduces the purchase rate of the logged clicks."""
    shop, events = smoke["shop"], smoke["tables"][C.EVENTS]
    clicks = events[events[C.EVENT_TYPE] == C.CLICK]
    purchases = events[events[C.EVENT_TYPE] == C.PURCHASE]
    expected = shop.purchase_probabilities(shop.product_index(clicks[C.PRODUCT_ID].tolist())).mean()
    observed = len(purchases) / len(clicks)
    se = np.sqrt(expected * (1 - expected) / len(clicks))
    assert abs(observed - expected) < 4 * se
    assert A.purchase_probability(0.0) == pytest.approx(0.3 * 0.55)
    assert A.purchase_probability(-5.0) == 0.0


def test_load_shop_uses_clean_ids_and_the_worlds_hidden_quality(smoke):
    shop, tables = smoke["shop"], smoke["tables"]
    assert set(shop.user_ids) == set(tables[C.USER_PREFERENCES][C.USER_ID])
    assert set(tables[C.EVENTS][C.USER_ID]) <= set(shop.user_ids)
    assert set(shop.product_ids) == set(tables[C.PRODUCTS][C.PRODUCT_ID])
    assert shop.quality.std() > 0.2  # the hidden quality, not a placeholder
    # regenerated from the world's seed: the same products as the clean catalogue (guards the seed order)
    clean_price = tables[C.PRODUCTS].set_index(C.PRODUCT_ID)[C.PRICE].reindex(shop.product_ids).to_numpy()
    assert np.allclose(shop.price, clean_price, atol=0.01)


# -- assignment -------------------------------------------------------------------------------

def test_hash_assignment_is_deterministic_balanced_and_salted():
    ids = [f"u_{i:05d}" for i in range(10000)]
    first = A.assign_variants(ids, "exp-1")
    assert first.equals(A.assign_variants(ids, "exp-1"))
    assert list(first.columns) == [C.USER_ID, C.VARIANT]
    assert set(first[C.VARIANT]) == {C.CONTROL, C.TREATMENT}
    counts = first[C.VARIANT].value_counts()
    assert S.srm_test(int(counts[C.CONTROL]), int(counts[C.TREATMENT])).ok
    other = A.assign_variants(ids, "exp-2")
    assert 0.47 < (first[C.VARIANT] == other[C.VARIANT]).mean() < 0.53
    share = (A.assign_variants(ids, "exp-1", 0.1)[C.VARIANT] == C.TREATMENT).mean()
    assert 0.09 < share < 0.11
    with pytest.raises(ValueError, match="treatment_share"):
        A.assign_variants(ids, "exp-1", 1.0)


def test_srm_check_flags_a_broken_split(smoke):
    per_user = A.run_experiment(smoke["shop"], {C.CONTROL: smoke["recs"]["popularity"],
                                                C.TREATMENT: smoke["recs"]["category"]})
    assert A.srm_check(per_user).ok
    big = pd.DataFrame({C.USER_ID: [f"u{i}" for i in range(4000)],
                        C.VARIANT: [C.CONTROL] * 2150 + [C.TREATMENT] * 1850})
    result = A.srm_check(big)
    assert not result.ok and result.p_value < 0.001


# -- recommenders ---------------------------------------------------------------------------------

def test_simple_recommenders(smoke):
    users = list(smoke["shop"].user_ids[:30])
    products = smoke["tables"][C.PRODUCTS].set_index(C.PRODUCT_ID)[C.CATEGORY]
    for name, rec in smoke["recs"].items():
        run = A.recommendations(rec, users, 10)
        assert run.groupby(C.USER_ID).size().eq(10).all(), name
        assert run.groupby(C.USER_ID)[C.RANK].apply(list).map(lambda r: r == list(range(1, 11))).all()
    pop = A.recommendations(smoke["recs"]["popularity"], users, 10)
    assert pop.groupby(C.USER_ID)[C.PRODUCT_ID].apply(tuple).nunique() == 1  # the same for everyone
    # the category recommender fills a user's slate from the categories they clicked
    train = smoke["train"]
    user = train[train[C.EVENT_TYPE] == C.CLICK][C.USER_ID].value_counts().index[0]
    clicked = set(train[(train[C.USER_ID] == user) & (train[C.EVENT_TYPE] == C.CLICK)][C.PRODUCT_ID].map(products))
    slate = A.recommendations(smoke["recs"]["category"], [user], 10)
    assert set(slate[C.PRODUCT_ID].map(products)) <= clicked
    ctr_slate = A.recommendations(smoke["recs"]["category_ctr"], [user], 10)
    assert set(ctr_slate[C.PRODUCT_ID].map(products)) <= clicked
    assert list(ctr_slate[C.PRODUCT_ID]) != list(slate[C.PRODUCT_ID])
    rnd = smoke["recs"]["random"]
    assert rnd(users[:3], 5).equals(rnd(users[:3], 5))
    with pytest.raises(ValueError, match="within"):
        A.category_recommender(train, smoke["tables"][C.PRODUCTS], within="best")


def test_a_run_dataframe_is_a_recommender_too(tiny):
    run = _static(["P00", "P01", "P02"])(["u01", "u02"], 3).drop(columns=C.RANK)
    run[C.SCORE] = [3.0, 2.0, 1.0] * 2
    slates = A.slate_matrix(tiny, run, ["u02", "u01"], 2)
    assert slates.tolist() == [[0, 1], [0, 1]]


# -- one experiment ---------------------------------------------------------------------------

def test_run_experiment_per_user_table(tiny):
    variants = {C.CONTROL: _static(["P10", "P11", "P12"]), C.TREATMENT: _static(["P00", "P01", "P02"])}
    per_user = A.run_experiment(tiny, variants, k=3, visits=2.0, days=5, salt="s", seed=1)
    assert list(per_user.columns) == [C.USER_ID, C.VARIANT, C.DAY, C.VISITS, C.IMPRESSIONS, C.CLICKS,
                                      C.PURCHASES, C.REVENUE]
    assert per_user[C.USER_ID].tolist() == list(tiny.user_ids)
    assert per_user[C.VARIANT].tolist() == A.assign_variants(tiny.user_ids, "s")[C.VARIANT].tolist()
    assert (per_user[C.IMPRESSIONS] == 3 * per_user[C.VISITS]).all() and (per_user[C.VISITS] >= 1).all()
    assert (per_user[C.CLICKS] <= per_user[C.IMPRESSIONS]).all()
    assert (per_user[C.PURCHASES] <= per_user[C.CLICKS]).all()
    assert ((per_user[C.REVENUE] > 0) == (per_user[C.PURCHASES] > 0)).all()
    assert per_user[C.DAY].between(0, 4).all()
    assert per_user.equals(A.run_experiment(tiny, variants, k=3, visits=2.0, days=5, salt="s", seed=1))
    assert not per_user.equals(A.run_experiment(tiny, variants, k=3, visits=2.0, days=5, salt="s", seed=2))


def test_simulated_rates_match_the_click_model(tiny):
    """Many visits: the observed CTR converges to the mean click probability of the slates."""
    rec = _static(["P00", "P01", "P02", "P03"])
    per_user = A.run_experiment(tiny, {C.CONTROL: rec, C.TREATMENT: rec}, k=4, visits=2000.0, seed=3)
    slates = A.slate_matrix(tiny, rec, list(tiny.user_ids), 4)
    probs = tiny.click_probabilities(np.arange(tiny.n_users), slates)
    expected = (probs.sum(axis=1) * per_user[C.VISITS]).sum() / per_user[C.IMPRESSIONS].sum()
    observed = per_user[C.CLICKS].sum() / per_user[C.IMPRESSIONS].sum()
    assert observed == pytest.approx(expected, rel=0.02)


def test_summarize_and_analyze_by_hand():
    per_user = pd.DataFrame({
        C.USER_ID: list("abcdef"), C.VARIANT: [C.CONTROL] * 3 + [C.TREATMENT] * 3,
        C.IMPRESSIONS: [10, 10, 20, 10, 10, 10], C.CLICKS: [0, 2, 2, 1, 3, 0],
        C.PURCHASES: [0, 1, 0, 1, 1, 0], C.REVENUE: [0.0, 30.0, 0.0, 10.0, 50.0, 0.0]})
    table = A.summarize_experiment(per_user)
    assert table.index.tolist() == [C.CONTROL, C.TREATMENT]
    assert table.loc[C.CONTROL, C.CTR] == pytest.approx(4 / 40)
    assert table.loc[C.TREATMENT, C.USER_CLICK_RATE] == pytest.approx(2 / 3)
    assert table.loc[C.CONTROL, C.CONVERSION] == pytest.approx(1 / 3)
    assert table.loc[C.TREATMENT, C.REVENUE_PER_USER] == pytest.approx(20.0)
    result = A.analyze_experiment(per_user, n_resamples=200)
    assert result.index.tolist() == list(C.EXPERIMENT_METRICS)
    z = S.two_proportion_ztest(1, 3, 2, 3)
    assert result.loc[C.CONVERSION, "p_value"] == pytest.approx(z.p_value)
    assert result.loc[C.CONVERSION, "diff"] == pytest.approx(1 / 3)
    assert result.loc[C.REVENUE_PER_USER, "lift"] == pytest.approx(20.0 / 10.0 - 1)


def test_a_better_recommender_wins_online(smoke):
    per_user = A.run_experiment(smoke["shop"], {C.CONTROL: smoke["recs"]["random"],
                                                C.TREATMENT: smoke["recs"]["category"]}, seed=0)
    result = A.analyze_experiment(per_user)
    assert result.loc[C.CONVERSION, "diff"] > 0 and result.loc[C.CTR, "significant"]


# -- many experiments: A/A, peeking, power ----------------------------------------------------------

N_RUNS = 500


@pytest.fixture(scope="module")
def aa(smoke):
    return A.simulate_experiments(smoke["shop"], smoke["recs"]["category"], n_runs=N_RUNS, n_users=1000,
                                  days=10, seed=11)


def test_aa_false_positive_rate_is_near_alpha(aa):
    assert len(aa) == N_RUNS * 10 and aa[A.RUN].nunique() == N_RUNS
    fpr = A.rejection_rate(aa, alpha=0.05)
    low, high = S.binomial_acceptance_interval(0.05, N_RUNS, confidence=0.99)
    assert low <= fpr["rate"] <= high, fpr
    last = aa[aa[C.DAY] == 9]
    assert (last["n_control"] + last["n_treatment"] == 1000).all()
    # under the null hypothesis p-values are uniform
    assert sps.kstest(last[A.P_VALUE], "uniform").pvalue > 0.001


def test_peeking_inflates_false_positives_and_bonferroni_fixes_it(aa):
    rates = A.false_positive_rates(aa, alpha=0.05)
    assert rates.loc["peeking every day", "false_positive_rate"] > 2 * 0.05
    assert rates.loc["fixed horizon", "false_positive_rate"] < rates.loc["peeking every day", "false_positive_rate"]
    assert rates.loc["peeking + Bonferroni", "ci_low"] <= 0.05
    curve = A.peeking_curve(aa)
    assert curve["peeking"].is_monotonic_increasing and len(curve) == 10


def test_power_formula_matches_simulation_in_the_world(smoke):
    shop, recs = smoke["shop"], smoke["recs"]
    base = A.expected_rates(shop, recs["popularity"], n_draws=200)[C.CONVERSION]
    better = A.expected_rates(shop, recs["category"], n_draws=200)[C.CONVERSION]
    n = S.sample_size_two_proportions(base, better - base, power=0.8)
    sims = A.simulate_experiments(shop, recs["popularity"], recs["category"], n_runs=400, n_users=2 * n,
                                  days=1, seed=5)
    power = A.rejection_rate(sims)["rate"]
    assert abs(power - 0.8) < 0.07, (n, power)


def test_simulations_are_reproducible(smoke):
    shop, rec = smoke["shop"], smoke["recs"]["popularity"]
    one = A.simulate_experiments(shop, rec, n_runs=20, seed=1, metric=C.USER_CLICK_RATE)
    assert one.equals(A.simulate_experiments(shop, rec, n_runs=20, seed=1, metric=C.USER_CLICK_RATE))


# -- offline view ----------------------------------------------------------------------------------

def test_split_last_click_and_offline_metrics(smoke):
    events, train, heldout = smoke["tables"][C.EVENTS], smoke["train"], smoke["heldout"]
    clicks = events[events[C.EVENT_TYPE] == C.CLICK]
    assert heldout[C.USER_ID].is_unique and len(heldout) == clicks[C.USER_ID].nunique()
    last_time = clicks.groupby(C.USER_ID)[C.TIMESTAMP].max()
    cutoff = train[C.USER_ID].map(last_time)
    assert (cutoff.isna() | (train[C.TIMESTAMP] < cutoff)).all()
    oracle = heldout.assign(**{C.SCORE: 1.0})
    filler = pd.DataFrame([(u, p, 0.0) for u in heldout[C.USER_ID] for p in smoke["shop"].product_ids[:10]],
                          columns=[C.USER_ID, C.PRODUCT_ID, C.SCORE])
    filler = filler.merge(heldout, how="left", indicator=True)
    filler = filler[filler["_merge"] == "left_only"].drop(columns="_merge")
    perfect = A.offline_metrics(pd.concat([oracle, filler]), heldout)
    assert perfect["hit@10"] == 1.0 and perfect["ndcg@10"] == 1.0
    pop = A.offline_metrics(smoke["recs"]["category"], heldout)
    assert 0 < pop["hit@10"] < 1 and pop["n_users"] == len(heldout)


# -- bad input ------------------------------------------------------------------------------------

def test_unknown_variant_names_are_named(tiny):
    rec = _static(["P00", "P01", "P02"])
    with pytest.raises(ValueError, match=r"unknown variant name\(s\) \['treatmnet'\]"):
        A.run_experiment(tiny, {C.CONTROL: rec, "treatmnet": rec}, k=3)
    with pytest.raises(ValueError, match=r"no recommender for variant\(s\) \['treatment'\]"):
        A.run_experiment(tiny, {C.CONTROL: rec}, k=3)
    per_user = A.run_experiment(tiny, {C.CONTROL: rec, C.TREATMENT: rec}, k=3)
    with pytest.raises(ValueError, match=r"unknown variant name\(s\) \['B'\]"):
        A.summarize_experiment(per_user.replace({C.TREATMENT: "B"}))
    with pytest.raises(ValueError, match=r"variant\(s\) \['treatment'\] have no users"):
        A.analyze_experiment(per_user[per_user[C.VARIANT] == C.CONTROL])


def test_empty_run_and_missing_columns(tiny):
    empty = pd.DataFrame(columns=[C.USER_ID, C.PRODUCT_ID, C.SCORE])
    with pytest.raises(ValueError, match="run is empty"):
        A.run_experiment(tiny, {C.CONTROL: empty, C.TREATMENT: empty}, k=3)
    with pytest.raises(ValueError, match="'score' or a 'rank' column"):
        A.recommendations(pd.DataFrame({C.USER_ID: ["u01"], C.PRODUCT_ID: ["P00"]}), ["u01"], 1)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['product_id'\]"):
        A.recommendations(pd.DataFrame({C.USER_ID: ["u01"], C.SCORE: [1.0]}), ["u01"], 1)
    with pytest.raises(ValueError, match="per_user is empty"):
        A.summarize_experiment(pd.DataFrame(columns=[C.USER_ID, C.VARIANT, C.IMPRESSIONS, C.CLICKS,
                                                     C.PURCHASES, C.REVENUE]))


def test_unknown_user_and_product_are_named(tiny):
    rec = _static(["P00", "P01", "P02"])
    with pytest.raises(ValueError, match=r"user id\(s\) are not in the world, e.g. \['ghost'\]"):
        A.run_experiment(tiny, {C.CONTROL: rec, C.TREATMENT: rec}, k=3, user_ids=["u01", "ghost"])
    with pytest.raises(ValueError, match=r"variant 'control'.*not in the world's catalogue, e.g. \['NOPE'\]"):
        A.run_experiment(tiny, {C.CONTROL: _static(["NOPE", "P01"]), C.TREATMENT: rec}, k=2, salt="x",
                         treatment_share=0.5)
    with pytest.raises(ValueError, match="user_ids is empty"):
        A.run_experiment(tiny, {C.CONTROL: rec, C.TREATMENT: rec}, k=3, user_ids=[])


def test_recommender_with_fewer_than_k_items_is_named(tiny):
    short = _static(["P00", "P01"])
    with pytest.raises(ValueError, match=r"variant '(control|treatment)': the recommender returned fewer "
                                         r"than k=3 products for \d+ user\(s\), e.g. u\d+: 2"):
        A.run_experiment(tiny, {C.CONTROL: short, C.TREATMENT: short}, k=3)
    dup = pd.DataFrame({C.USER_ID: ["u01", "u01"], C.PRODUCT_ID: ["P00", "P00"], C.RANK: [1, 2]})
    with pytest.raises(ValueError, match="twice"):
        A.recommendations(dup, ["u01"], 2)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.01])
def test_alpha_outside_0_1_is_refused(tiny, bad):
    per_user = pd.DataFrame({C.USER_ID: ["a", "b"], C.VARIANT: [C.CONTROL, C.TREATMENT],
                             C.IMPRESSIONS: [10, 10], C.CLICKS: [1, 2], C.PURCHASES: [0, 1],
                             C.REVENUE: [0.0, 5.0]})
    with pytest.raises(ValueError, match="alpha must be a number strictly between 0 and 1"):
        A.analyze_experiment(per_user, alpha=bad)
    sims = pd.DataFrame({A.RUN: [0], C.DAY: [0], A.P_VALUE: [0.5]})
    with pytest.raises(ValueError, match="alpha"):
        A.false_positive_rates(sims, alpha=bad)


def test_other_bad_settings(tiny):
    rec = _static(["P00", "P01", "P02"])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        A.run_experiment(tiny, {C.CONTROL: rec, C.TREATMENT: rec}, k=0)
    with pytest.raises(ValueError, match="visits"):
        A.run_experiment(tiny, {C.CONTROL: rec, C.TREATMENT: rec}, k=3, visits=0.5)
    with pytest.raises(ValueError, match="metric must be a per-user rate"):
        A.simulate_experiments(tiny, rec, k=3, metric=C.CTR)
    with pytest.raises(TypeError, match="variants must be a dict"):
        A.run_experiment(tiny, [rec, rec], k=3)
