"""Statistics of online experiments: is a difference between two variants real, and how many
users does an experiment need to find it?

* :func:`two_proportion_ztest`: a difference in a per-user rate (conversion, user click rate),
  with the pooled standard error for the test and the unpooled one for the confidence interval;
  :func:`z_statistic` and :func:`p_value_from_z` are the array versions the simulations use.
* :func:`bootstrap_diff_ci`: percentile bootstrap CI of ``mean(b) - mean(a)`` for two independent
  samples (revenue per user), or of a difference in ratios ``sum(x) / sum(n)`` (CTR) when
  denominators are given; :func:`welch_ttest` is the parametric companion.
* :func:`sample_size_two_proportions`, :func:`power_two_proportions` and
  :func:`minimum_detectable_effect`: the three faces of one power formula (the one of R's
  ``power.prop.test``).
* :func:`binomial_ci` (Clopper-Pearson) and :func:`binomial_acceptance_interval` for rates such as
  an A/A test's false-positive rate; :func:`srm_test`, the sample-ratio-mismatch check.

Conventions: ``a`` is the control, ``b`` the treatment, and every difference is ``b - a``. The
minimum detectable effect ``mde`` is an *absolute* difference in the rate (0.02 = two percentage
points). ``alpha`` and ``power`` lie strictly between 0 and 1.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

ALTERNATIVES = ("two-sided", "larger", "smaller")
SRM_THRESHOLD = 0.001  # a sample-ratio mismatch is flagged below this p-value (a common choice)


# -- checks -----------------------------------------------------------------------------------

def check_probability(value: Any, name: str) -> float:
    """``value`` as a float strictly between 0 and 1, else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def _check_count(value: Any, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_alternative(alternative: str) -> str:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"unknown alternative {alternative!r}; use one of {ALTERNATIVES}")
    return alternative


def _z(q: float) -> float:
    return float(stats.norm.ppf(q))


# -- two proportions --------------------------------------------------------------------------

def z_statistic(successes_a: Any, n_a: Any, successes_b: Any, n_b: Any) -> np.ndarray:
    """Two-proportion z statistic ``(p_b - p_a) / SE_pooled`` (element-wise over arrays).

    ``SE_pooled = sqrt(p (1 - p) (1/n_a + 1/n_b))`` with ``p`` the pooled rate. Where the pooled
    rate is 0 or 1 (no variation at all) z is 0: no evidence of a difference.
    """
    xa, na, xb, nb = (np.asarray(v, dtype=float) for v in (successes_a, n_a, successes_b, n_b))
    pooled = (xa + xb) / (na + nb)
    se = np.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (xb / nb - xa / na) / np.where(se > 0, se, 1.0), 0.0)
    return z


def p_value_from_z(z: Any, alternative: str = "two-sided") -> np.ndarray:
    """The p-value of a standard normal statistic: two-sided ``2 P(Z > |z|)``, ``"larger"``
    (treatment better) ``P(Z > z)``, ``"smaller"`` ``P(Z < z)``."""
    z = np.asarray(z, dtype=float)
    alternative = _check_alternative(alternative)
    if alternative == "two-sided":
        return 2 * stats.norm.sf(np.abs(z))
    return stats.norm.sf(z) if alternative == "larger" else stats.norm.cdf(z)


@dataclass(frozen=True)
class ZTest:
    """Result of :func:`two_proportion_ztest`: rates, their difference ``b - a`` with a CI, z, p."""

    p_a: float
    p_b: float
    n_a: int
    n_b: int
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    alpha: float

    @property
    def diff(self) -> float:
        return self.p_b - self.p_a

    @property
    def significant(self) -> bool:
        """True when ``p_value < alpha``."""
        return self.p_value < self.alpha

    def __str__(self) -> str:
        return (f"{self.p_a:.4f} (n={self.n_a}) -> {self.p_b:.4f} (n={self.n_b}): difference "
                f"{self.diff:+.4f}, {1 - self.alpha:.0%} CI [{self.ci_low:+.4f}, {self.ci_high:+.4f}], "
                f"z = {self.z:.3f}, p = {self.p_value:.4f}")


def two_proportion_ztest(successes_a: int, n_a: int, successes_b: int, n_b: int,
                         alpha: float = 0.05, alternative: str = "two-sided") -> ZTest:
    """Is rate ``b`` different from rate ``a``? z uses the pooled standard error (the null
    hypothesis says both rates are equal); the Wald CI of ``p_b - p_a`` uses the unpooled one.

    The two-sided test equals the chi-square test of the 2x2 table without continuity correction
    (``z**2 == chi2``).
    """
    n_a, n_b = _check_count(n_a, "n_a", 1), _check_count(n_b, "n_b", 1)
    successes_a = _check_count(successes_a, "successes_a")
    successes_b = _check_count(successes_b, "successes_b")
    for x, n, name in ((successes_a, n_a, "successes_a"), (successes_b, n_b, "successes_b")):
        if x > n:
            raise ValueError(f"{name}={x} is more than its number of trials {n}")
    alpha = check_probability(alpha, "alpha")
    z = float(z_statistic(successes_a, n_a, successes_b, n_b))
    p_a, p_b = successes_a / n_a, successes_b / n_b
    se = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    half = _z(1 - alpha / 2) * se
    return ZTest(p_a, p_b, n_a, n_b, z, float(p_value_from_z(z, alternative)),
                 p_b - p_a - half, p_b - p_a + half, alpha)


# -- differences in means (and ratios) --------------------------------------------------------

@dataclass(frozen=True)
class DiffCI:
    """A difference ``b - a`` with its bootstrap confidence interval."""

    diff: float
    low: float
    high: float
    confidence: float
    n_a: int
    n_b: int
    se: float = math.nan  # the bootstrap standard error of the difference

    @property
    def p_value(self) -> float:
        """Two-sided p-value of the normal approximation ``diff / se`` (NaN without ``se``)."""
        if math.isnan(self.se):
            return math.nan
        if self.se == 0:  # every resample gave the same difference
            return 1.0 if self.diff == 0 else 0.0
        return float(p_value_from_z(self.diff / self.se))

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return (f"difference {self.diff:+.4f}, {self.confidence:.0%} CI [{self.low:+.4f}, "
                f"{self.high:+.4f}] (n = {self.n_a} and {self.n_b})")


def _sample(values: Any, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array of numbers, got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError(f"{name} has {int(np.isnan(x).sum())} missing (NaN) value(s)")
    return x


def _boot_stat(rng: np.random.Generator, x: np.ndarray, den: np.ndarray | None,
               n: int) -> np.ndarray:
    """``n`` bootstrap replicates of mean(x), or of sum(x) / sum(den), in bounded memory."""
    out = np.empty(n)
    chunk = max(1, 2_000_000 // x.size)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        out[start:stop] = (x[idx].mean(axis=1) if den is None
                           else x[idx].sum(axis=1) / den[idx].sum(axis=1))
    return out


def bootstrap_diff_ci(a: Any, b: Any, n_resamples: int = 2000, confidence: float = 0.95,
                      seed: int = 0, *, a_den: Any = None, b_den: Any = None) -> DiffCI:
    """Percentile bootstrap CI of ``mean(b) - mean(a)`` for two *independent* samples: each
    sample is resampled on its own (users of one arm are not paired with users of the other).

    With denominators (``a_den``, ``b_den``: one per user, e.g. impressions) the statistic is the
    ratio of sums, e.g. CTR = clicks / impressions, and resampling users keeps each user's clicks
    with their impressions (a cluster bootstrap). Uses ``numpy.random.default_rng(seed)``.
    """
    n_resamples = _check_count(n_resamples, "n_resamples", 1)
    confidence = check_probability(confidence, "confidence")
    x, y = _sample(a, "a"), _sample(b, "b")
    if (a_den is None) != (b_den is None):
        raise ValueError("give both a_den and b_den (a ratio metric) or neither (a mean)")
    dx = dy = None
    if a_den is not None:
        dx, dy = _sample(a_den, "a_den"), _sample(b_den, "b_den")
        if dx.shape != x.shape or dy.shape != y.shape:
            raise ValueError("a_den and b_den must have one value per value of a and b")
        if dx.sum() <= 0 or dy.sum() <= 0:
            raise ValueError("the denominators must have a positive sum")
    rng = np.random.default_rng(seed)
    diffs = _boot_stat(rng, y, dy, n_resamples) - _boot_stat(rng, x, dx, n_resamples)
    point = (y.mean() - x.mean()) if dx is None else (y.sum() / dy.sum() - x.sum() / dx.sum())
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return DiffCI(float(point), float(low), float(high), confidence, int(x.size), int(y.size),
                  float(diffs.std(ddof=1)) if n_resamples > 1 else math.nan)


def welch_ttest(a: Any, b: Any) -> tuple[float, float]:
    """``(t, two-sided p)`` of Welch's t-test of ``mean(b) - mean(a)`` (unequal variances)."""
    x, y = _sample(a, "a"), _sample(b, "b")
    if x.size < 2 or y.size < 2:
        raise ValueError("Welch's t-test needs at least 2 values in each sample")
    result = stats.ttest_ind(y, x, equal_var=False)
    t, p = float(result.statistic), float(result.pvalue)
    return (0.0, 1.0) if math.isnan(t) else (t, p)


# -- power and sample size ---------------------------------------------------------------------

def _rates(p_baseline: Any, mde: Any) -> tuple[float, float]:
    p1 = check_probability(p_baseline, "p_baseline")
    if isinstance(mde, bool) or not isinstance(mde, numbers.Real) or mde == 0:
        raise ValueError(f"mde (an absolute difference in the rate, e.g. 0.02) must be a non-zero "
                         f"number, got {mde!r}")
    p2 = p1 + float(mde)
    if not 0 < p2 < 1:
        raise ValueError(f"p_baseline + mde = {p2:.4g} is not a rate strictly between 0 and 1")
    return p1, p2


def _z_alpha(alpha: float, alternative: str) -> float:
    alternative = _check_alternative(alternative)
    return _z(1 - alpha / 2) if alternative == "two-sided" else _z(1 - alpha)


def sample_size_two_proportions(p_baseline: float, mde: float, alpha: float = 0.05,
                                power: float = 0.8, alternative: str = "two-sided") -> int:
    """Users per arm to detect ``p_baseline -> p_baseline + mde`` with the two-proportion z-test:

    ``n = (z_alpha sqrt(2 p (1 - p)) + z_power sqrt(p1 (1 - p1) + p2 (1 - p2)))**2 / mde**2``

    with ``p = (p1 + p2) / 2``, ``z_alpha = z_(1 - alpha/2)`` (two-sided) and
    ``z_power = z_power``, rounded up. The same formula as R's ``power.prop.test``:
    ``p_baseline=0.5, mde=0.25, power=0.9`` gives 76.65 -> 77.
    """
    p1, p2 = _rates(p_baseline, mde)
    alpha, power = check_probability(alpha, "alpha"), check_probability(power, "power")
    p_bar = (p1 + p2) / 2
    root = (_z_alpha(alpha, alternative) * math.sqrt(2 * p_bar * (1 - p_bar))
            + _z(power) * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2)))
    return math.ceil(root ** 2 / (p2 - p1) ** 2 - 1e-9)


def power_two_proportions(p_baseline: float, mde: float, n_per_arm: float, alpha: float = 0.05,
                          alternative: str = "two-sided") -> float:
    """Power of the two-proportion z-test with ``n_per_arm`` users in each arm (the inverse of
    :func:`sample_size_two_proportions`; R's ``power.prop.test(n=50, p1=.5, p2=.75)`` gives 0.7402).
    The far tail of a two-sided test is ignored, as in R's default."""
    p1, p2 = _rates(p_baseline, mde)
    alpha = check_probability(alpha, "alpha")
    if isinstance(n_per_arm, bool) or not isinstance(n_per_arm, numbers.Real) or n_per_arm <= 0:
        raise ValueError(f"n_per_arm must be a positive number, got {n_per_arm!r}")
    p_bar = (p1 + p2) / 2
    z = ((math.sqrt(n_per_arm) * abs(p2 - p1)
          - _z_alpha(alpha, alternative) * math.sqrt(2 * p_bar * (1 - p_bar)))
         / math.sqrt(p1 * (1 - p1) + p2 * (1 - p2)))
    return float(stats.norm.cdf(z))


def minimum_detectable_effect(p_baseline: float, n_per_arm: float, alpha: float = 0.05,
                              power: float = 0.8, alternative: str = "two-sided") -> float:
    """The smallest absolute lift ``mde > 0`` that ``n_per_arm`` users per arm detect with the
    given power (solves :func:`power_two_proportions` for ``mde``)."""
    p1 = check_probability(p_baseline, "p_baseline")
    power = check_probability(power, "power")
    check_probability(alpha, "alpha")
    top = 1 - p1 - 1e-9
    if power_two_proportions(p1, top, n_per_arm, alpha, alternative) < power:
        raise ValueError(f"{n_per_arm} users per arm cannot reach power {power} from "
                         f"p_baseline={p1}: no lift is large enough")
    return float(optimize.brentq(
        lambda d: power_two_proportions(p1, d, n_per_arm, alpha, alternative) - power, 1e-9, top,
        xtol=1e-10))


# -- rates of events (false positives) and sample ratios ----------------------------------------

def binomial_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of a rate ``successes / n``."""
    n = _check_count(n, "n", 1)
    successes = _check_count(successes, "successes")
    if successes > n:
        raise ValueError(f"successes={successes} is more than n={n}")
    ci = stats.binomtest(successes, n).proportion_ci(check_probability(confidence, "confidence"))
    return float(ci.low), float(ci.high)


def binomial_acceptance_interval(rate: float, n: int, confidence: float = 0.99) -> tuple[float, float]:
    """Where an observed rate over ``n`` trials falls with probability ``confidence`` when the
    true rate is ``rate``: e.g. the false-positive rate of ``n`` A/A tests at ``alpha``."""
    rate = check_probability(rate, "rate")
    n = _check_count(n, "n", 1)
    low, high = stats.binom.interval(check_probability(confidence, "confidence"), n, rate)
    return float(low) / n, float(high) / n


@dataclass(frozen=True)
class SRMResult:
    """Sample-ratio-mismatch check: observed arm sizes against the designed split."""

    n_control: int
    n_treatment: int
    expected_share: float
    chi2: float
    p_value: float
    threshold: float = SRM_THRESHOLD

    @property
    def observed_share(self) -> float:
        return self.n_treatment / (self.n_control + self.n_treatment)

    @property
    def ok(self) -> bool:
        """False when the split is too unlikely under the design (p below the threshold)."""
        return self.p_value >= self.threshold

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "SAMPLE RATIO MISMATCH: do not trust this experiment"
        return (f"control {self.n_control}, treatment {self.n_treatment} (treatment share "
                f"{self.observed_share:.3f}, designed {self.expected_share:.3f}): chi2 = {self.chi2:.2f}, "
                f"p = {self.p_value:.4g} -> {verdict}")


def srm_test(n_control: int, n_treatment: int, expected_share: float = 0.5,
             threshold: float = SRM_THRESHOLD) -> SRMResult:
    """Chi-square goodness-of-fit test of the arm sizes against the designed treatment share.
    A tiny p-value means assignment or logging is broken, and the experiment's results cannot be
    trusted, whatever they say."""
    n_control = _check_count(n_control, "n_control")
    n_treatment = _check_count(n_treatment, "n_treatment")
    if n_control + n_treatment == 0:
        raise ValueError("no users in either variant: nothing to check")
    share = check_probability(expected_share, "expected_share")
    total = n_control + n_treatment
    chi2, p = stats.chisquare([n_control, n_treatment], [total * (1 - share), total * share])
    return SRMResult(n_control, n_treatment, share, float(chi2), float(p),
                     check_probability(threshold, "threshold"))
