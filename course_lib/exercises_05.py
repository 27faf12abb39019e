"""Exercise checkers of lesson 05 (A/B testing: from offline metrics to online wins).

One section per exercise: the reference answer, plausible wrong answers, then the checker.
"""
from __future__ import annotations

import hashlib
import math
import numbers
import random
from typing import Any, Callable

import numpy as np
from scipy import stats as sps

from . import columns as C
from .exercises import exercise
from .stats import sample_size_two_proportions


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _diagnose(mistakes: list[tuple[Callable[..., Any], str]], args: tuple, got: Any,
              rel: float = 1e-6) -> str:
    """The hint of the first known mistake that reproduces ``got`` on ``args``, or ''."""
    for mistake, hint in mistakes:
        try:
            value = mistake(*args)
        except (ArithmeticError, ValueError, IndexError):
            continue
        if _is_number(got) and math.isclose(float(value), float(got), rel_tol=rel, abs_tol=1e-12):
            return f" {hint[0].upper()}{hint[1:]}"
    return ""


# -- 05.z_statistic -----------------------------------------------------------------------------
# The learner writes two_proportion_z(successes_a, n_a, successes_b, n_b) -> float: the z statistic
# (p_b - p_a) / SE with the POOLED standard error sqrt(p (1 - p) (1/n_a + 1/n_b)), p = all
# successes / all users. The reference is course_lib.stats.z_statistic.

def two_proportion_z(successes_a: int, n_a: int, successes_b: int, n_b: int) -> float:
    """Reference: pooled two-proportion z statistic of ``p_b - p_a``."""
    p_a, p_b = successes_a / n_a, successes_b / n_b
    pooled = (successes_a + successes_b) / (n_a + n_b)
    return (p_b - p_a) / math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))


def _z_unpooled(xa: int, na: int, xb: int, nb: int) -> float:
    """Wrong here: the unpooled (Wald) standard error, which belongs to the CI, not the test."""
    pa, pb = xa / na, xb / nb
    return (pb - pa) / math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)


def _z_reversed(xa: int, na: int, xb: int, nb: int) -> float:
    """Wrong: a - b instead of b - a (treatment better must give z > 0)."""
    return -two_proportion_z(xa, na, xb, nb)


def _z_no_sqrt(xa: int, na: int, xb: int, nb: int) -> float:
    """Wrong: divides by the variance instead of the standard error."""
    pa, pb, p = xa / na, xb / nb, (xa + xb) / (na + nb)
    return (pb - pa) / (p * (1 - p) * (1 / na + 1 / nb))


def _z_mean_of_rates(xa: int, na: int, xb: int, nb: int) -> float:
    """Wrong: pools by averaging the two rates, which ignores unequal arm sizes."""
    pa, pb = xa / na, xb / nb
    p = (pa + pb) / 2
    return (pb - pa) / math.sqrt(p * (1 - p) * (1 / na + 1 / nb))


def _z_total_n(xa: int, na: int, xb: int, nb: int) -> float:
    """Wrong: one 1/(n_a + n_b) instead of 1/n_a + 1/n_b."""
    pa, pb, p = xa / na, xb / nb, (xa + xb) / (na + nb)
    return (pb - pa) / math.sqrt(p * (1 - p) / (na + nb))


_Z_MISTAKES = [
    (_z_reversed, "the sign is reversed: compute p_b - p_a, so a better treatment gives z > 0."),
    (_z_unpooled, "that is the unpooled standard error. Under the null hypothesis both arms share "
                  "one rate: pool all successes over all users, p = (x_a + x_b) / (n_a + n_b)."),
    (_z_no_sqrt, "divide by the standard error, the square root of the variance."),
    (_z_mean_of_rates, "the pooled rate is all successes over all users, (x_a + x_b) / (n_a + n_b), "
                       "not the mean of the two rates (they differ when the arms differ in size)."),
    (_z_total_n, "the variance of a difference adds both arms: p (1 - p) (1/n_a + 1/n_b)."),
]

_Z_CASES = [(100, 1000, 130, 1000), (45, 600, 50, 400), (120, 1000, 90, 1000), (30, 200, 30, 200),
            (512, 5000, 590, 5100)]


@exercise(
    "05.z_statistic",
    solution=two_proportion_z,
    wrong=[_z_unpooled, _z_reversed, _z_no_sqrt, _z_mean_of_rates, _z_total_n],
    hint="z = (p_b - p_a) / sqrt(p (1 - p) (1/n_a + 1/n_b)) with p the pooled rate "
         "(x_a + x_b) / (n_a + n_b).",
)
def _check_z_statistic(fn: Callable[..., Any]) -> None:
    for case in _Z_CASES:
        expected = two_proportion_z(*case)
        got = fn(*case)
        call = "two_proportion_z({}, {}, {}, {})".format(*case)
        if not (_is_number(got) and math.isclose(float(got), expected, rel_tol=1e-6, abs_tol=1e-9)):
            shown = float(got) if _is_number(got) else got
            raise AssertionError(f"{call} should return about {expected:.4f}, got {shown!r}."
                                 + _diagnose(_Z_MISTAKES, case, got))


# -- 05.sample_size ----------------------------------------------------------------------------
# The learner writes sample_size_per_arm(p_baseline, mde, alpha=0.05, power=0.8) -> int:
# n = (z_(1-alpha/2) sqrt(2 p (1-p)) + z_power sqrt(p1 (1-p1) + p2 (1-p2)))**2 / mde**2, rounded
# up, with p2 = p1 + mde and p = (p1 + p2) / 2. The reference is
# course_lib.stats.sample_size_two_proportions.

def sample_size_per_arm(p_baseline: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Reference: users per arm for a two-sided two-proportion z-test."""
    return sample_size_two_proportions(p_baseline, mde, alpha, power)


def _n_formula(p1: float, mde: float, z_alpha: float, z_power: float, pooled_alpha: bool = True) -> float:
    p2 = p1 + mde
    p_bar = (p1 + p2) / 2
    spread = math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    first = z_alpha * (math.sqrt(2 * p_bar * (1 - p_bar)) if pooled_alpha else spread)
    return (first + z_power * spread) ** 2 / mde ** 2


def _q(p: float) -> float:
    return float(sps.norm.ppf(p))


def _n_one_sided(p1: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Wrong: z_(1 - alpha) (a one-sided test) instead of z_(1 - alpha/2)."""
    return math.ceil(_n_formula(p1, mde, _q(1 - alpha), _q(power)))


def _n_no_power(p1: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Wrong: forgets the power term (this gives 50% power)."""
    return math.ceil(_n_formula(p1, mde, _q(1 - alpha / 2), 0.0))


def _n_rounded_down(p1: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Wrong: int() rounds down, leaving the experiment a little short of its power."""
    return int(_n_formula(p1, mde, _q(1 - alpha / 2), _q(power)))


def _n_beta_quantile(p1: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Wrong: z_(1 - power) = -z_power, which shrinks n instead of growing it."""
    return math.ceil(_n_formula(p1, mde, _q(1 - alpha / 2), _q(1 - power)))


def _n_unpooled_alpha(p1: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Wrong here: the unpooled spread in the alpha term too (another textbook variant)."""
    return math.ceil(_n_formula(p1, mde, _q(1 - alpha / 2), _q(power), pooled_alpha=False))


def _n_total(p1: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Wrong: the total over both arms instead of per arm."""
    return 2 * sample_size_per_arm(p1, mde, alpha, power)


_N_MISTAKES = [
    (_n_one_sided, "use z of 1 - alpha/2 for a two-sided test (1.96 at alpha = 0.05), not 1 - alpha."),
    (_n_no_power, "the power term is missing: add z_power * sqrt(p1 (1 - p1) + p2 (1 - p2)) "
                  "before squaring (z_power = 0.84 for 80% power)."),
    (_n_rounded_down, "round UP (math.ceil): a fraction of a user must become a whole one."),
    (_n_beta_quantile, "z_power is the quantile at `power` (0.84 for 0.8), not at 1 - power."),
    (_n_unpooled_alpha, "the alpha term uses the pooled spread sqrt(2 p (1 - p)) with p = (p1 + p2) / 2; "
                        "only the power term uses sqrt(p1 (1 - p1) + p2 (1 - p2))."),
    (_n_total, "that is the total of both arms; return the number of users per arm."),
]

_N_CASES = [((0.10, 0.02), {}), ((0.5, 0.25), {"power": 0.9}), ((0.05, 0.01), {"alpha": 0.01}),
            ((0.30, -0.03), {}), ((0.6, 0.05), {"alpha": 0.1, "power": 0.95})]


@exercise(
    "05.sample_size",
    solution=sample_size_per_arm,
    wrong=[_n_one_sided, _n_no_power, _n_rounded_down, _n_beta_quantile, _n_unpooled_alpha, _n_total],
    hint="n = (z_(1-alpha/2) sqrt(2 p (1-p)) + z_power sqrt(p1 (1-p1) + p2 (1-p2)))**2 / mde**2, "
         "rounded up; p2 = p1 + mde, p = (p1 + p2) / 2, z from scipy.stats.norm.ppf.",
)
def _check_sample_size(fn: Callable[..., Any]) -> None:
    for args, kwargs in _N_CASES:
        expected = sample_size_per_arm(*args, **kwargs)
        got = fn(*args, **kwargs)
        call = "sample_size_per_arm({})".format(
            ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())]))
        if isinstance(got, float) and got.is_integer():
            got = int(got)
        if isinstance(got, (int, np.integer)) and not isinstance(got, bool) and int(got) == expected:
            continue
        full = (*args, kwargs.get("alpha", 0.05), kwargs.get("power", 0.8))
        why = _diagnose(_N_MISTAKES, full, got)
        if not why and _is_number(got) and not float(got).is_integer():
            why = " Return a whole number of users, rounded up (math.ceil)."
        raise AssertionError(f"{call} should return {expected}, got {got!r}.{why}")


# -- 05.bootstrap_ci ---------------------------------------------------------------------------
# The learner writes bootstrap_diff_ci(a, b, n_resamples=2000, confidence=0.95, seed=0) -> (low, high):
# the percentile bootstrap CI of mean(b) - mean(a) for two INDEPENDENT samples (each resampled on its
# own, with replacement, with numpy.random.default_rng(seed)). Checked against the normal-theory
# interval, since two correct bootstraps differ by their random draws.

def bootstrap_diff_ci(a: Any, b: Any, n_resamples: int = 2000, confidence: float = 0.95,
                      seed: int = 0) -> tuple[float, float]:
    """Reference: percentile bootstrap CI of ``mean(b) - mean(a)``."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    means_a = a[rng.integers(0, len(a), size=(n_resamples, len(a)))].mean(axis=1)
    means_b = b[rng.integers(0, len(b), size=(n_resamples, len(b)))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means_b - means_a, [tail, 1 - tail])
    return float(low), float(high)


def _boot_paired(a, b, n_resamples=2000, confidence=0.95, seed=0):
    """Wrong: one set of indices for both samples, as if users were paired (fails on unequal sizes)."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    idx = rng.integers(0, len(a), size=(n_resamples, len(a)))
    diffs = b[idx].mean(axis=1) - a[idx].mean(axis=1)
    tail = (1 - confidence) / 2
    return tuple(np.quantile(diffs, [tail, 1 - tail]))


def _boot_only_b(a, b, n_resamples=2000, confidence=0.95, seed=0):
    """Wrong: resamples b only; a's uncertainty is forgotten (too narrow)."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diffs = b[rng.integers(0, len(b), size=(n_resamples, len(b)))].mean(axis=1) - a.mean()
    tail = (1 - confidence) / 2
    return tuple(np.quantile(diffs, [tail, 1 - tail]))


def _boot_reversed(a, b, n_resamples=2000, confidence=0.95, seed=0):
    """Wrong: the CI of mean(a) - mean(b)."""
    low, high = bootstrap_diff_ci(a, b, n_resamples, confidence, seed)
    return -high, -low


def _boot_confidence_as_tail(a, b, n_resamples=2000, confidence=0.95, seed=0):
    """Wrong: percentiles (1 - confidence) and confidence: a 90% interval when asked for 95%."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diffs = (b[rng.integers(0, len(b), size=(n_resamples, len(b)))].mean(axis=1)
             - a[rng.integers(0, len(a), size=(n_resamples, len(a)))].mean(axis=1))
    return tuple(np.quantile(diffs, [1 - confidence, confidence]))


def _boot_values_not_means(a, b, n_resamples=2000, confidence=0.95, seed=0):
    """Wrong: the spread of single differences b_i - a_j, not of the difference in MEANS."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diffs = rng.choice(b, n_resamples) - rng.choice(a, n_resamples)
    tail = (1 - confidence) / 2
    return tuple(np.quantile(diffs, [tail, 1 - tail]))


def _boot_unseeded(a, b, n_resamples=2000, confidence=0.95, seed=0):
    """Wrong: ignores the seed, so the same call gives a different interval every time."""
    return bootstrap_diff_ci(a, b, n_resamples, confidence, seed=random.randrange(2**31))


def _boot_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    return rng.normal(10.0, 3.0, 300), rng.normal(11.0, 3.0, 200)


@exercise(
    "05.bootstrap_ci",
    solution=bootstrap_diff_ci,
    wrong=[_boot_paired, _boot_only_b, _boot_reversed, _boot_confidence_as_tail,
           _boot_values_not_means, _boot_unseeded],
    hint="resample a and b separately with replacement (rng.integers(0, len(x), size=(n_resamples, "
         "len(x)))), take the difference of the resampled means, and return its (1-c)/2 and "
         "(1+c)/2 quantiles.",
)
def _check_bootstrap_ci(fn: Callable[..., Any]) -> None:
    a, b = _boot_data()
    for confidence in (0.95, 0.8):
        call = f"bootstrap_diff_ci(a, b, confidence={confidence})"
        try:
            got = fn(a.copy(), b.copy(), 2000, confidence, 0)
        except IndexError as err:
            raise AssertionError(f"{call} raised IndexError ({err}) with len(a)={len(a)} and "
                                 f"len(b)={len(b)}: the arms are independent samples of different "
                                 "sizes, so resample each with its own indices.") from None
        if (not isinstance(got, (tuple, list)) or len(got) != 2
                or not all(_is_number(v) for v in got)):
            raise AssertionError(f"{call} should return a pair (low, high) of floats, got {got!r}.")
        low, high = map(float, got)
        diff = b.mean() - a.mean()
        se = math.sqrt(a.var() / len(a) + b.var() / len(b))
        width = 2 * _q(1 - (1 - confidence) / 2) * se
        if not low < high:
            raise AssertionError(f"{call} returned ({low:.3f}, {high:.3f}): low must be below high.")
        if not low < diff < high:
            hint = (" That is the interval of mean(a) - mean(b); compute mean(b) - mean(a)."
                    if low < -diff < high else "")
            raise AssertionError(f"{call} returned ({low:.3f}, {high:.3f}), which does not contain "
                                 f"the observed difference mean(b) - mean(a) = {diff:.3f}.{hint}")
        ratio = (high - low) / width
        if not 0.9 < ratio < 1.1:
            hints = {True: " Too narrow: resample BOTH samples, and take the (1 - c)/2 and (1 + c)/2 "
                           "quantiles (2.5% and 97.5% for 95%).",
                     False: " Too wide: bootstrap the difference of the resampled MEANS, not of "
                            "single values."}
            raise AssertionError(f"{call} returned an interval {high - low:.3f} wide; a "
                                 f"{confidence:.0%} interval here is about {width:.3f} wide."
                                 + hints[ratio < 1])
    again = fn(a.copy(), b.copy(), 2000, 0.95, 0)
    first = fn(a.copy(), b.copy(), 2000, 0.95, 0)
    if tuple(map(float, again)) != tuple(map(float, first)):
        raise AssertionError("two calls with seed=0 gave different intervals; draw the resamples "
                             "from np.random.default_rng(seed) so results repeat.")


# -- 05.assign_variant -------------------------------------------------------------------------
# The learner writes assign_variant(user_id, salt, treatment_share=0.5) -> "control" | "treatment",
# deterministic, salted, in the right proportion. The recipe of the lesson (and of
# course_lib.abtest.hash_bucket): bucket = int(sha256(f"{salt}:{user_id}").hexdigest()[:15], 16) / 16**15,
# treatment when bucket < treatment_share. Other good hashes pass too: the checker tests properties.

def assign_variant(user_id: str, salt: str, treatment_share: float = 0.5) -> str:
    """Reference: a salted SHA-256 bucket in [0, 1)."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode("utf-8")).hexdigest()
    return C.TREATMENT if int(digest[:15], 16) / 16 ** 15 < treatment_share else C.CONTROL


def _assign_random(user_id, salt, treatment_share=0.5):
    """Wrong: a fresh coin flip at every call, so a returning user may switch arms."""
    return C.TREATMENT if random.random() < treatment_share else C.CONTROL


def _assign_no_salt(user_id, salt, treatment_share=0.5):
    """Wrong: ignores the salt, so every experiment splits users the same way."""
    digest = hashlib.sha256(user_id.encode("utf-8")).hexdigest()
    return C.TREATMENT if int(digest[:15], 16) / 16 ** 15 < treatment_share else C.CONTROL


def _assign_last_digit(user_id, salt, treatment_share=0.5):
    """Wrong: the parity of the last character: no salt, and ignores treatment_share."""
    return C.TREATMENT if ord(user_id[-1]) % 2 else C.CONTROL


def _assign_ignores_share(user_id, salt, treatment_share=0.5):
    """Wrong: always 50/50, whatever treatment_share says."""
    return assign_variant(user_id, salt, 0.5)


def _assign_reversed(user_id, salt, treatment_share=0.5):
    """Wrong: bucket < share goes to control, so the treatment gets 1 - share."""
    variant = assign_variant(user_id, salt, treatment_share)
    return C.CONTROL if variant == C.TREATMENT else C.TREATMENT


def _assign_bool(user_id, salt, treatment_share=0.5):
    """Wrong: returns True/False instead of the variant names."""
    return assign_variant(user_id, salt, treatment_share) == C.TREATMENT


_ASSIGN_IDS = [f"u_{i:06d}" for i in range(4000)]


def _share(fn: Callable[..., Any], salt: str, treatment_share: float | None = None) -> list:
    extra = () if treatment_share is None else (treatment_share,)
    return [fn(uid, salt, *extra) for uid in _ASSIGN_IDS]


@exercise(
    "05.assign_variant",
    solution=assign_variant,
    wrong=[_assign_random, _assign_no_salt, _assign_last_digit, _assign_ignores_share, _assign_reversed,
           _assign_bool],
    hint="hash f'{salt}:{user_id}' with hashlib.sha256, turn the first 15 hex digits into a number in "
         "[0, 1) and compare it with treatment_share.",
)
def _check_assign_variant(fn: Callable[..., Any]) -> None:
    first = _share(fn, "exp-1")
    bad = sorted({repr(v) for v in first} - {repr(C.CONTROL), repr(C.TREATMENT)})
    if bad:
        raise AssertionError(f"assign_variant should return {C.CONTROL!r} or {C.TREATMENT!r}, "
                             f"got {', '.join(bad[:3])}.")
    changed = sum(x != y for x, y in zip(_share(fn, "exp-1"), first))
    if changed:
        raise AssertionError(f"called twice with the same salt, {changed} of {len(first)} users "
                             "switched arms; a returning user must always get the same variant "
                             "(no random numbers: hash the salt and the user id).")
    share = first.count(C.TREATMENT) / len(first)
    if not 0.46 < share < 0.54:
        raise AssertionError(f"with treatment_share=0.5, {share:.1%} of {len(first)} users went to "
                             "treatment; expected about 50%.")
    other = _share(fn, "exp-2")
    same = sum(x == y for x, y in zip(first, other)) / len(first)
    if same > 0.6:
        raise AssertionError(f"with a new salt {same:.0%} of users kept their arm; the salt must "
                             "reshuffle users (about 50% keep their arm), or every experiment "
                             "gets the same treatment group.")
    share = _share(fn, "exp-1", 0.2).count(C.TREATMENT) / len(first)
    if not 0.17 < share < 0.23:
        raise AssertionError(f"with treatment_share=0.2, {share:.1%} of users went to treatment; "
                             "expected about 20%.")
