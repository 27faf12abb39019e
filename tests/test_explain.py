"""course_lib.explain: reasons from the ranker's own numbers, checked by deleting them (smoke world)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from course_lib import columns as C
from course_lib import explain as X
from course_lib import recommend as R
from course_lib import recommend_rank as RR
from course_lib.cleaning import load_clean
from course_lib.exercises import check
from course_lib.mindmap import MindMap
from fakes import FakeEncoder, category_catalog


@pytest.fixture(scope="module")
def fitted():
    """The smoke world (category-structured vectors), a logistic and an MLP ranker trained on it."""
    tables = load_clean("smoke")
    products, events = tables[C.PRODUCTS], tables[C.EVENTS]
    catalog = category_catalog(products)
    rec = X.fit_recommender(products, events, catalog, encoder=FakeEncoder(64), n_users=12, n_candidates=30, seed=0)
    mlp = RR.train_ranker(rec.train_rows, "mlp", seed=0)
    return {"rec": rec, "mlp": mlp, "products": products, "events": events, "catalog": catalog}


def top_rows(rec: X.ExplainedRecommender, n_users: int = 6, k: int = 5) -> pd.DataFrame:
    return pd.concat([rec.recommend(u, k) for u in rec.users[:n_users]], ignore_index=True)


def reset(rows: pd.DataFrame, ranker: RR.Ranker, features) -> pd.DataFrame:
    """The rows with ``features`` set to the ranker's training mean (independent of explain.py)."""
    out = rows.copy()
    for f in features:
        out[f] = float(ranker.mean[ranker.features.index(f)])
    return out


def test_reasons_cover_every_feature_once():
    table = X.reason_table()
    assert table[X.FEATURE].tolist() == list(RR.FEATURES)
    assert set(table[C.REASON]) == set(X.REASONS)
    with pytest.raises(ValueError, match="'popularity' is under two reasons"):
        X.reason_table(reasons={"a": ("popularity",), "b": ("popularity",)})
    # a feature in no reason is its own reason
    assert X.reason_table(("sim_mean", "extra"))[C.REASON].tolist() == [X.SIMILAR, "extra"]


def test_logistic_contributions_are_w_times_z_and_add_up(fitted):
    rec = fitted["rec"]
    ranker, rows = rec.ranker, top_rows(rec)
    per_feature = X.feature_contributions(ranker, rows)
    z = (rows[list(ranker.features)].to_numpy(np.float32) - ranker.mean) / ranker.std
    expected = z * ranker.weights().to_numpy()
    np.testing.assert_allclose(per_feature[C.CONTRIBUTION].to_numpy().reshape(expected.shape), expected, atol=1e-5)
    grouped = X.group_contributions(per_feature)
    np.testing.assert_allclose(grouped[C.CONTRIBUTION], X.explain(ranker, rows)[C.CONTRIBUTION], atol=1e-6)
    check = X.additivity(ranker, rows)
    assert check["baseline"].iloc[0] == pytest.approx(float(ranker.net[0].bias.item()), abs=1e-6)
    assert check["gap"].abs().max() < 1e-4
    # one row as a Series works too
    one = X.explain(ranker, rows.iloc[0])
    assert one[C.REASON].tolist() == list(X.REASONS) and len(one) == len(X.REASONS)


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_removing_the_top_reason_lowers_the_score_most(fitted, kind):
    """The issue's faithfulness test, on the real trained rankers of the smoke world."""
    rec = fitted["rec"]
    ranker = rec.ranker if kind == "logistic" else fitted["mlp"]
    rows = top_rows(rec, n_users=6, k=5)
    assert rows[C.USER_ID].nunique() == 6 and len(rows) == 30
    contrib = X.explain(ranker, rows)
    score = ranker.predict(rows)
    for i, (_, row) in enumerate(rows.iterrows()):
        mine = contrib.iloc[i * len(X.REASONS):(i + 1) * len(X.REASONS)]
        assert (mine[C.PRODUCT_ID] == row[C.PRODUCT_ID]).all()
        top = mine.sort_values(C.CONTRIBUTION, ascending=False)[C.REASON].iloc[0]
        drops = {reason: score[i] - ranker.predict(reset(rows.iloc[[i]], ranker, feats))[0]
                 for reason, feats in X.REASONS.items()}
        assert drops[top] == pytest.approx(max(drops.values()), abs=1e-5), (row[C.PRODUCT_ID], drops)
        if kind == "logistic":   # exact: each reason's drop is its contribution
            assert drops[top] > 0
            np.testing.assert_allclose([drops[r] for r in mine[C.REASON]], mine[C.CONTRIBUTION], atol=1e-5)
    assert X.faithfulness(ranker, rows)["agree"].all()


def test_integrated_gradients_add_up_for_the_mlp(fitted):
    rows = top_rows(fitted["rec"])
    mlp = fitted["mlp"]
    ig = X.additivity(mlp, rows, method="integrated_gradients")
    occ = X.additivity(mlp, rows, method="occlusion")
    assert ig["gap"].abs().max() < 0.05
    assert ig["gap"].abs().mean() < occ["gap"].abs().mean() + 1e-9
    assert X.faithfulness(mlp, rows, method="integrated_gradients")["agree"].mean() >= 0.5
    with pytest.raises(ValueError, match="needs a logistic ranker"):
        X.explain(mlp, rows, method="exact")
    with pytest.raises(ValueError, match="unknown explanation method 'shap'"):
        X.explain(mlp, rows, method="shap")


def test_why_this_item_for_one_user_uses_the_ranker_numbers(fitted):
    rec = fitted["rec"]
    user = rec.users[0]
    recs = rec.recommend(user, 4)
    assert recs[C.RANK].tolist() == [1, 2, 3, 4] and recs[C.SCORE].is_monotonic_decreasing
    m = X.why_this_item_for(user, rec.ranker, rec.features, fitted["products"], history=rec.history, k=4)
    assert isinstance(m, MindMap)
    src = m.source
    contrib = rec.explain(user, 4)
    for pid in recs[C.PRODUCT_ID]:
        assert f"item/{pid}" in src
        best = X.top_reasons(contrib[contrib[C.PRODUCT_ID] == pid], 3)
        assert best[C.REASON].iloc[0] in src
    interests = rec.interests(user)
    assert interests[C.CATEGORY].iloc[0] in src
    assert rec.why_map(user, 4).source == src


def test_errors_name_the_unknown_user_and_product(fitted):
    rec = fitted["rec"]
    with pytest.raises(KeyError, match="unknown user id 'u_nobody'"):
        rec.recommend("u_nobody")
    with pytest.raises(KeyError, match="unknown user id 'u_nobody'"):
        X.why_this_item_for("u_nobody", rec.ranker, rec.features, fitted["products"])
    user = rec.users[0]
    with pytest.raises(KeyError, match="product 'P_NOPE' is not among user"):
        rec.explain_product(user, "P_NOPE")
    pid = rec.recommend(user, 1)[C.PRODUCT_ID].iloc[0]
    assert rec.explain_product(user, pid)[C.PRODUCT_ID].eq(pid).all()
    with pytest.raises(ValueError, match="query is empty"):
        rec.search("   ")
    with pytest.raises(KeyError, match="unknown user id"):
        X.fit_recommender(fitted["products"], fitted["events"], fitted["catalog"], users=["u_nobody"],
                          n_train_users=20, n_candidates=10)


def test_flag_suspicious_outside_interests_or_carried_by_popularity():
    recs = pd.DataFrame({C.PRODUCT_ID: ["a", "b", "c"], C.CATEGORY: ["Mugs", "Lamps", "Mugs"]})
    contrib = pd.DataFrame({C.PRODUCT_ID: ["a", "a", "b", "b", "c", "c"],
                            C.REASON: [X.CATEGORY, X.POPULAR] * 3,
                            C.CONTRIBUTION: [0.9, 0.2, 0.1, 0.5, -0.3, 0.8]})
    out = X.flag_suspicious(recs, contrib, {"Mugs": 0.8, "Shoes": 0.2})
    assert out["suspicious"].tolist() == [False, True, True]
    assert out["why"].tolist() == ["", "outside your interests", "carried by popularity, the category counts against it"]
    assert out["top_reason"].tolist() == [X.CATEGORY, X.POPULAR, X.POPULAR]


def test_search_and_query_map(fitted):
    rec = fitted["rec"]
    hits = rec.search("wireless earbuds", 3)
    assert hits[C.RANK].tolist() == [1, 2, 3] and hits[C.SCORE].is_monotonic_decreasing
    src = rec.query_map("wireless earbuds", 3).source
    assert all(f"item/{pid}" in src for pid in hits[C.PRODUCT_ID])


def test_exercise_references_agree_with_the_library(fitted):
    from course_lib import exercises_06 as E

    ranker = fitted["rec"].ranker
    row = top_rows(fitted["rec"], 1, 1).iloc[0]
    w = ranker.weights()
    mean, std = (pd.Series(a, index=ranker.features) for a in (ranker.mean, ranker.std))
    per_feature = E.logistic_contribution(w, mean, std, row[list(ranker.features)].astype(float))
    reasons = E.group_reasons(per_feature, {r: list(f) for r, f in X.REASONS.items()})
    lib = X.explain(ranker, row).set_index(C.REASON)[C.CONTRIBUTION]
    np.testing.assert_allclose(reasons.reindex(lib.index), lib, atol=1e-5)
    assert E.top_reason(reasons) == X.top_reasons(X.explain(ranker, row))[C.REASON].iloc[0]


def test_exercise_hints_name_the_mistake(capsys):
    from course_lib import exercises_06 as E

    for name, answer, words in [
        ("06.logistic_contribution", E._contrib_no_std, "by the training std"),
        ("06.group_reasons", E._group_abs, "eep the signs"),
        ("06.top_reason", E._top_abs, "pulls the item down"),
        ("06.outside_interests", E._outside_membership, "compare with min_share"),
    ]:
        check(name, answer)
        assert words in capsys.readouterr().out, (name, answer.__name__)


def test_the_map_edges_add_up_to_the_shown_score(fitted):
    import re

    rec = fitted["rec"]
    user = rec.users[1]
    recs = rec.recommend(user, 3)
    src = rec.why_map(user, 3).source
    base = X.baseline_score(rec.ranker)
    for pid, score in zip(recs[C.PRODUCT_ID], recs[C.SCORE]):
        shown = re.search(rf'"item/{pid}" \[.*?label="score ([-+0-9.e]+)"', src, re.S)
        edge = re.search(rf'-> "item/{pid}" \[[^\]]*label="score ([-+0-9.e]+)"', src)
        value = float((edge or shown).group(1))
        assert value == pytest.approx(score - base, abs=5e-3 + 1e-3 * abs(score - base))
