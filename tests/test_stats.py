"""course_lib.stats: z-test, bootstrap, power and sample size, SRM, binomial intervals; and the
checkers of lesson 05's exercises."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from course_lib import stats as S
from course_lib.exercises import check, solution_for, stub, wrong_answers_for

# -- two-proportion z-test --------------------------------------------------------------------


def test_ztest_matches_hand_computation():
    xa, na, xb, nb = 100, 1000, 130, 1000
    pooled = 230 / 2000
    z_hand = (0.13 - 0.10) / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    result = S.two_proportion_ztest(xa, na, xb, nb)
    assert result.z == pytest.approx(z_hand, rel=1e-12)
    assert result.p_value == pytest.approx(2 * (1 - sps.norm.cdf(z_hand)), rel=1e-9)
    se = math.sqrt(0.1 * 0.9 / 1000 + 0.13 * 0.87 / 1000)
    assert result.ci_low == pytest.approx(0.03 - 1.959963985 * se, rel=1e-6)
    assert result.ci_high == pytest.approx(0.03 + 1.959963985 * se, rel=1e-6)
    assert result.diff == pytest.approx(0.03) and result.significant


@pytest.mark.parametrize("xa, na, xb, nb", [(100, 1000, 130, 1000), (45, 600, 50, 400), (7, 30, 2, 41)])
def test_z_squared_equals_chi2_without_correction(xa, na, xb, nb):
    chi2, p, _, _ = sps.chi2_contingency([[xa, na - xa], [xb, nb - xb]], correction=False)
    result = S.two_proportion_ztest(xa, na, xb, nb)
    assert result.z ** 2 == pytest.approx(chi2, rel=1e-9)
    assert result.p_value == pytest.approx(p, rel=1e-9)


def test_one_sided_alternatives_and_array_version():
    two = S.two_proportion_ztest(100, 1000, 130, 1000)
    larger = S.two_proportion_ztest(100, 1000, 130, 1000, alternative="larger")
    smaller = S.two_proportion_ztest(100, 1000, 130, 1000, alternative="smaller")
    assert larger.p_value == pytest.approx(two.p_value / 2)
    assert smaller.p_value == pytest.approx(1 - two.p_value / 2)
    z = S.z_statistic([100, 45, 0], [1000, 600, 10], [130, 50, 0], [1000, 400, 10])
    assert z[0] == pytest.approx(two.z) and z[2] == 0.0  # no variation at all: z = 0
    with pytest.raises(ValueError, match="alternative"):
        S.p_value_from_z(1.0, "bigger")


@pytest.mark.parametrize("args, match", [
    ((5, 0, 5, 10), "n_a"), ((11, 10, 5, 10), "successes_a=11 is more than"),
    ((1, 10, -1, 10), "successes_b"), ((1.5, 10, 1, 10), "successes_a"),
])
def test_ztest_rejects_bad_counts(args, match):
    with pytest.raises(ValueError, match=match):
        S.two_proportion_ztest(*args)


@pytest.mark.parametrize("alpha", [0, 1, 1.5, -0.1, True, "0.05", float("nan")])
def test_alpha_outside_0_1_is_refused(alpha):
    with pytest.raises(ValueError, match="alpha must be a number strictly between 0 and 1"):
        S.two_proportion_ztest(10, 100, 12, 100, alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        S.sample_size_two_proportions(0.1, 0.02, alpha=alpha)


# -- bootstrap ---------------------------------------------------------------------------------


def test_bootstrap_diff_ci_agrees_with_normal_theory():
    rng = np.random.default_rng(0)
    a, b = rng.normal(10, 3, 400), rng.normal(10.8, 4, 300)
    ci = S.bootstrap_diff_ci(a, b, n_resamples=4000, seed=1)
    se = math.sqrt(a.var() / len(a) + b.var() / len(b))
    assert ci.diff == pytest.approx(b.mean() - a.mean())
    assert ci.low == pytest.approx(ci.diff - 1.96 * se, abs=0.1 * se)
    assert ci.high == pytest.approx(ci.diff + 1.96 * se, abs=0.1 * se)
    assert ci.se == pytest.approx(se, rel=0.05)
    assert ci.significant and ci.p_value < 0.05
    assert S.bootstrap_diff_ci(a, b, n_resamples=500, seed=1) == S.bootstrap_diff_ci(a, b, n_resamples=500, seed=1)
    assert "95% CI" in str(ci)


def test_bootstrap_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    covered = 0
    for i in range(200):
        a, b = rng.exponential(1.0, 80), rng.exponential(1.5, 60)  # skewed, like revenue
        ci = S.bootstrap_diff_ci(a, b, n_resamples=400, seed=i)
        covered += ci.low < 0.5 < ci.high
    assert 0.88 <= covered / 200 <= 0.99


def test_bootstrap_ratio_metric_is_a_ratio_of_sums():
    clicks_a, imps_a = np.array([1, 0, 3, 2]), np.array([10, 10, 20, 10])
    clicks_b, imps_b = np.array([2, 4, 1]), np.array([10, 20, 10])
    ci = S.bootstrap_diff_ci(clicks_a, clicks_b, n_resamples=300, a_den=imps_a, b_den=imps_b)
    assert ci.diff == pytest.approx(7 / 40 - 6 / 50)
    assert ci.low <= ci.diff <= ci.high


@pytest.mark.parametrize("kwargs, match", [
    ({"a": [], "b": [1.0]}, "a must be a non-empty"),
    ({"a": [1.0, np.nan], "b": [1.0]}, "missing"),
    ({"a": [1.0], "b": [1.0], "a_den": [1.0]}, "both a_den and b_den"),
    ({"a": [1.0], "b": [1.0], "a_den": [1.0, 2.0], "b_den": [1.0]}, "one value per value"),
    ({"a": [1.0], "b": [1.0], "confidence": 1.0}, "confidence"),
    ({"a": [1.0], "b": [1.0], "n_resamples": 0}, "n_resamples"),
])
def test_bootstrap_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        S.bootstrap_diff_ci(**kwargs)


def test_welch_matches_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 50), rng.normal(0.3, 2, 70)
    t, p = S.welch_ttest(a, b)
    ref = sps.ttest_ind(b, a, equal_var=False)
    assert (t, p) == pytest.approx((ref.statistic, ref.pvalue))
    assert S.welch_ttest([0.0, 0.0], [0.0, 0.0]) == (0.0, 1.0)


# -- power and sample size ----------------------------------------------------------------------


def test_sample_size_matches_r_power_prop_test():
    # R: power.prop.test(p1 = .50, p2 = .75, power = .90) -> n = 76.65294 (its documented example)
    assert S.sample_size_two_proportions(0.5, 0.25, power=0.9) == 77
    # R: power.prop.test(n = 50, p1 = .50, p2 = .75) -> power = 0.7401659
    assert S.power_two_proportions(0.5, 0.25, 50) == pytest.approx(0.7401659, abs=1e-7)
    # the textbook 10% -> 12% case: 3841 per arm (R gives n = 3840.847)
    assert S.sample_size_two_proportions(0.10, 0.02) == 3841
    # Lehr's rule of thumb n = 16 p (1 - p) / mde^2 is close (it is the same formula, rounded)
    assert S.sample_size_two_proportions(0.10, 0.02) == pytest.approx(16 * 0.11 * 0.89 / 0.02 ** 2, rel=0.03)


def test_power_size_and_mde_are_inverses():
    n = S.sample_size_two_proportions(0.2, 0.03, alpha=0.05, power=0.8)
    assert S.power_two_proportions(0.2, 0.03, n) >= 0.8 > S.power_two_proportions(0.2, 0.03, n - 1)
    assert S.minimum_detectable_effect(0.2, n) == pytest.approx(0.03, rel=1e-3)
    assert S.sample_size_two_proportions(0.2, -0.03) > 0  # a drop is detectable too
    assert S.sample_size_two_proportions(0.2, 0.03, alternative="larger") < n
    with pytest.raises(ValueError, match="no lift is large enough"):
        S.minimum_detectable_effect(0.5, 3, power=0.99)


def test_power_matches_simulation():
    rng = np.random.default_rng(7)
    n, runs = 77, 4000
    xa, xb = rng.binomial(n, 0.5, runs), rng.binomial(n, 0.75, runs)
    rejected = (S.p_value_from_z(S.z_statistic(xa, n, xb, n)) < 0.05).mean()
    low, high = S.binomial_acceptance_interval(S.power_two_proportions(0.5, 0.25, n), runs, 0.999)
    assert low <= rejected <= high


@pytest.mark.parametrize("power", [0, 1, 1.2, -0.5])
def test_power_outside_0_1_is_refused(power):
    with pytest.raises(ValueError, match="power must be a number strictly between 0 and 1"):
        S.sample_size_two_proportions(0.1, 0.02, power=power)
    with pytest.raises(ValueError, match="power"):
        S.minimum_detectable_effect(0.1, 1000, power=power)


@pytest.mark.parametrize("p, mde, match", [
    (0.0, 0.1, "p_baseline"), (0.95, 0.1, "not a rate"), (0.1, 0, "mde"), (0.1, "2%", "mde")])
def test_sample_size_bad_rates(p, mde, match):
    with pytest.raises(ValueError, match=match):
        S.sample_size_two_proportions(p, mde)


def test_power_needs_positive_n():
    with pytest.raises(ValueError, match="n_per_arm"):
        S.power_two_proportions(0.1, 0.02, 0)


# -- binomial intervals and sample-ratio mismatch ----------------------------------------------


def test_binomial_intervals():
    low, high = S.binomial_ci(25, 500)
    ref = sps.binomtest(25, 500).proportion_ci(0.95)
    assert (low, high) == pytest.approx((ref.low, ref.high))
    low, high = S.binomial_acceptance_interval(0.05, 500, 0.99)
    assert (low, high) == pytest.approx((13 / 500, 38 / 500))  # scipy.stats.binom.interval
    inside = sps.binom.cdf(high * 500, 500, 0.05) - sps.binom.cdf(low * 500 - 1, 500, 0.05)
    assert inside >= 0.99
    with pytest.raises(ValueError, match="more than n"):
        S.binomial_ci(6, 5)


def test_srm_test():
    fine = S.srm_test(5010, 4990)
    assert fine.ok and fine.p_value == pytest.approx(sps.chisquare([5010, 4990]).pvalue)
    broken = S.srm_test(5000, 4600)  # the treatment lost 8% of its users
    assert not broken.ok and "SAMPLE RATIO MISMATCH" in str(broken)
    skewed = S.srm_test(8000, 2000, expected_share=0.2)
    assert skewed.ok and skewed.observed_share == pytest.approx(0.2)
    with pytest.raises(ValueError, match="no users"):
        S.srm_test(0, 0)
    with pytest.raises(ValueError, match="expected_share"):
        S.srm_test(10, 10, expected_share=1.0)


# -- lesson 05's exercise checkers --------------------------------------------------------------

EXERCISES = ["05.z_statistic", "05.sample_size", "05.bootstrap_ci", "05.assign_variant"]


@pytest.mark.parametrize("name", EXERCISES)
def test_exercise_accepts_solution_and_reports_stub(name, capsys):
    assert check(name, solution_for(name)) is True
    assert capsys.readouterr().out == f"✅ {name}: correct!\n"
    assert check(name, stub) is False
    assert capsys.readouterr().out.startswith(f"⏭ {name}: not attempted yet")


@pytest.mark.parametrize("name, index", [(n, i) for n in EXERCISES for i in range(len(wrong_answers_for(n)))])
def test_exercise_rejects_each_wrong_answer_with_one_line(name, index, capsys):
    wrong = wrong_answers_for(name)[index]
    assert check(name, wrong) is False, f"{name}: {wrong.__name__} was accepted"
    out = capsys.readouterr().out
    assert out.startswith(f"❌ {name}: ") and out.count("\n") == 1, out


def test_exercise_hints_name_the_mistake(capsys):
    from course_lib import exercises_05 as E

    for name, answer, words in [
        ("05.z_statistic", E._z_unpooled, "pool all successes"),
        ("05.z_statistic", E._z_reversed, "sign is reversed"),
        ("05.sample_size", E._n_one_sided, "1 - alpha/2"),
        ("05.sample_size", E._n_rounded_down, "UP (math.ceil)"),
        ("05.bootstrap_ci", E._boot_only_b, "resample BOTH"),
        ("05.bootstrap_ci", E._boot_paired, "its own indices"),
        ("05.assign_variant", E._assign_no_salt, "new salt"),
        ("05.assign_variant", E._assign_random, "switched arms"),
    ]:
        check(name, answer)
        assert words in capsys.readouterr().out, (name, answer.__name__)


def test_library_and_exercise_references_agree():
    from course_lib import abtest
    from course_lib import exercises_05 as E

    ids = [f"u_{i}" for i in range(300)]
    table = abtest.assign_variants(ids, "exp-9", 0.3)
    assert table["variant"].tolist() == [E.assign_variant(u, "exp-9", 0.3) for u in ids]
    assert E.two_proportion_z(45, 600, 50, 400) == pytest.approx(float(S.z_statistic(45, 600, 50, 400)))
    a, b = np.arange(50.0), np.arange(40.0) + 3
    low, high = E.bootstrap_diff_ci(a, b, 2000, 0.95, 0)
    ci = S.bootstrap_diff_ci(a, b, 2000, 0.95, 0)
    assert (low, high) == pytest.approx((ci.low, ci.high), abs=0.8)
