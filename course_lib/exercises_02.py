"""Exercise checkers of lesson 02 (BERT encoding and semantic search).

One section per exercise: the reference answer, plausible wrong answers, then the checker.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import numpy as np

from . import encoding
from .evaluation import ndcg_at_k
from .exercises import exercise

# -- 02.ndcg_at_k ---------------------------------------------------------------------------
# The learner writes ndcg_at_k(ranked_ids: list[str], gains: dict[str, float], k: int) -> float
# with linear gains (gain / log2(rank + 1)) and the ideal DCG taken from ALL judged gains.
# The reference answer is course_lib.evaluation.ndcg_at_k.


def _dcg(gain_list: list[float]) -> float:
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gain_list, start=1))


def _ndcg_ideal_from_retrieved(ranked_ids: list[str], gains: dict[str, float], k: int) -> float:
    """Wrong: the ideal ranking only reorders what was retrieved, so missing items cost nothing."""
    got = [gains.get(pid, 0.0) for pid in ranked_ids[:k]]
    return _dcg(got) / _dcg(sorted(got, reverse=True))


def _ndcg_log2_rank(ranked_ids: list[str], gains: dict[str, float], k: int) -> float:
    """Wrong: discount log2(rank) instead of log2(rank + 1): divides by zero at rank 1."""
    def dcg(gain_list: list[float]) -> float:
        return sum(g / math.log2(rank) for rank, g in enumerate(gain_list, start=1))
    return dcg([gains.get(pid, 0.0) for pid in ranked_ids[:k]]) / dcg(
        sorted(gains.values(), reverse=True)[:k])


def _ndcg_log2_rank_floored(ranked_ids: list[str], gains: dict[str, float], k: int) -> float:
    """Wrong: "patched" log2(rank) with max(1, log2(rank)): ranks 1 and 2 are not discounted."""
    def dcg(gain_list: list[float]) -> float:
        return sum(g / max(1.0, math.log2(rank)) for rank, g in enumerate(gain_list, start=1))
    return dcg([gains.get(pid, 0.0) for pid in ranked_ids[:k]]) / dcg(
        sorted(gains.values(), reverse=True)[:k])


def _ndcg_no_cut(ranked_ids: list[str], gains: dict[str, float], k: int) -> float:
    """Wrong: forgets to cut the ranking and the ideal ranking at k."""
    return _dcg([gains.get(pid, 0.0) for pid in ranked_ids]) / _dcg(sorted(gains.values(), reverse=True))


def _ndcg_exponential_gain(ranked_ids: list[str], gains: dict[str, float], k: int) -> float:
    """Wrong here: the exponential form 2**gain - 1 (the course uses the linear gain)."""
    expo = {pid: 2.0 ** g - 1.0 for pid, g in gains.items()}
    return _dcg([expo.get(pid, 0.0) for pid in ranked_ids[:k]]) / _dcg(
        sorted(expo.values(), reverse=True)[:k])


def _ndcg_unjudged_keyerror(ranked_ids: list[str], gains: dict[str, float], k: int) -> float:
    """Wrong: ``gains[pid]`` fails on a retrieved product nobody judged."""
    return _dcg([gains[pid] for pid in ranked_ids[:k]]) / _dcg(sorted(gains.values(), reverse=True)[:k])


_NDCG_MISTAKES: list[tuple[Callable[..., float], str]] = [
    (_ndcg_ideal_from_retrieved,
     "the ideal DCG must use ALL judged gains of the query (sorted best first, cut at k), "
     "including relevant products your ranking did not retrieve."),
    (_ndcg_log2_rank_floored,
     "the discount at rank r is log2(r + 1): rank 1 is divided by log2(2) = 1, rank 2 by log2(3)."),
    (_ndcg_no_cut, "only the top k count: cut both the ranking and the ideal ranking at k."),
    (_ndcg_exponential_gain,
     "this course uses the linear gain, gain / log2(rank + 1), not 2**gain - 1."),
]


def _diagnose(call: tuple[list[str], dict[str, float], int], got: Any) -> str:
    """The hint of the known mistake that reproduces ``got``, or ''."""
    if not isinstance(got, numbers.Real) or isinstance(got, bool):
        return "return a float." if got is None else ""
    if not math.isfinite(got):
        return ("a division by zero? The discount at rank r is log2(r + 1): rank 1 is divided "
                "by log2(2) = 1, never by log2(1) = 0.")
    for mistake, hint in _NDCG_MISTAKES:
        try:
            value = mistake(*call)
        except (ArithmeticError, KeyError):
            continue
        if math.isclose(value, got, rel_tol=1e-6, abs_tol=1e-9):
            return hint
    return ""


# (ranked_ids, gains, k): each case exposes one mistake.
_NDCG_CASES: list[tuple[list[str], dict[str, float], int]] = [
    # perfect ranking: DCG = IDCG = 1/1 + 0.1/log2(3) -> 1.0
    (["p1", "p2"], {"p1": 1.0, "p2": 0.1}, 2),
    # swapped: DCG = 0.1/1 + 1/log2(3) = 0.7309, IDCG = 1.0631 -> 0.6876
    (["p2", "p1"], {"p1": 1.0, "p2": 0.1}, 2),
    # an unjudged product has gain 0: DCG = 1/log2(3), IDCG = 1 -> 0.6309
    (["p9", "p1"], {"p1": 1.0, "p2": 0.0}, 2),
    # a relevant product (p3) is not retrieved: DCG = 1, IDCG = 1 + 1/log2(3) -> 0.6131
    (["p1", "p2"], {"p1": 1.0, "p2": 0.0, "p3": 1.0}, 2),
    # only the top k=1 counts: DCG@1 = 0 -> 0.0
    (["p2", "p1", "p3"], {"p1": 1.0, "p2": 0.0, "p3": 0.1}, 1),
    # k larger than the ranking, graded ESCI gains E/S/C/I:
    # DCG = 0.1/1 + 0.01/log2(3) + 1/2 = 0.6063, IDCG = 1 + 0.1/log2(3) + 0.01/2 = 1.0681 -> 0.5677
    (["s", "c", "e", "i"], {"e": 1.0, "s": 0.1, "c": 0.01, "i": 0.0}, 10),
]


@exercise(
    "02.ndcg_at_k",
    solution=ndcg_at_k,
    wrong=[_ndcg_ideal_from_retrieved, _ndcg_log2_rank, _ndcg_log2_rank_floored, _ndcg_no_cut,
           _ndcg_exponential_gain, _ndcg_unjudged_keyerror],
    hint="DCG@k = sum of gain / log2(rank + 1) over the top k; divide by the DCG of the ideal "
         "ranking of all judged gains.",
)
def _check_ndcg_at_k(fn: Callable[..., Any]) -> None:
    for ranked, gains, k in _NDCG_CASES:
        call = f"ndcg_at_k({ranked!r}, {gains!r}, k={k})"
        expected = ndcg_at_k(ranked, gains, k)
        try:
            got = fn(list(ranked), dict(gains), k)
        except ZeroDivisionError as err:
            raise AssertionError(
                f"{call} divided by zero ({err}): the discount at rank r is log2(r + 1), "
                "so rank 1 is divided by log2(2) = 1, never by log2(1) = 0.") from None
        except KeyError as err:
            raise AssertionError(
                f"{call} raised KeyError {err}: a retrieved product that nobody judged has "
                "gain 0 (use gains.get(product_id, 0.0)).") from None
        ok = (isinstance(got, numbers.Real) and not isinstance(got, bool)
              and math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9))
        if not ok:
            why = _diagnose((ranked, gains, k), got)
            if isinstance(got, numbers.Real) and not isinstance(got, bool):
                got = float(got)  # numpy scalars print as plain numbers
            raise AssertionError(f"{call} should return about {expected:.4f}, got {got!r}."
                                 + (f" {why[0].upper()}{why[1:]}" if why else ""))


# -- 02.mean_pool ------------------------------------------------------------------------------
# The learner writes mean_pool(last_hidden [batch, tokens, dim], attention_mask [batch, tokens])
# with torch tensors: the average of each text's real-token vectors (padding excluded).

def _pool_case():
    import torch

    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    return hidden, mask


def _mean_pool_with_padding(last_hidden, attention_mask):
    """Wrong: averages over every position, padding included."""
    return last_hidden.mean(dim=1)


def _sum_pool(last_hidden, attention_mask):
    """Wrong: sums the real tokens but forgets to divide by their count."""
    return (last_hidden * attention_mask.unsqueeze(-1)).sum(dim=1)


@exercise("02.mean_pool", solution=encoding.mean_pool, wrong=[_mean_pool_with_padding, _sum_pool],
          hint="multiply by the mask, sum over tokens, divide by the number of real tokens")
def _check_mean_pool(fn: Callable[..., Any]) -> None:
    import torch

    hidden, mask = _pool_case()
    got = fn(hidden, mask)
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != (2, 3):
        shape = tuple(getattr(got, "shape", ()))
        raise AssertionError(f"expected a tensor of shape (2, 3) (batch, dim), got {type(got).__name__} of shape {shape}")
    expected = torch.tensor([[4.5, 5.5, 6.5], [13.5, 14.5, 15.5]])
    if not torch.allclose(got.float(), expected, atol=1e-5):
        row = got[1].tolist()
        if torch.allclose(got[1], hidden[1].mean(dim=0)):
            raise AssertionError("the second text has 2 real tokens and 2 padding tokens; your average "
                                 f"includes the padding ({row} instead of [13.5, 14.5, 15.5]): use the attention mask")
        raise AssertionError(f"mean_pool(hidden, mask) should be {expected.tolist()}, got {got.tolist()}")


# -- 02.cosine_top_k ---------------------------------------------------------------------------
# The learner writes cosine_top_k(query [dim], matrix [n, dim], k) -> indices of the k rows most
# cosine-similar to the query, most similar first. Vectors are NOT normalised in the checker.

def cosine_top_k(query: np.ndarray, matrix: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` rows of ``matrix`` with the highest cosine similarity to ``query``."""
    sims = (matrix @ query) / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query) + 1e-12)
    return np.argsort(-sims, kind="stable")[:k]


def _dot_top_k(query, matrix, k):
    """Wrong: the dot product favours long vectors; it equals cosine only for unit vectors."""
    return np.argsort(-(matrix @ query), kind="stable")[:k]


def _ascending_top_k(query, matrix, k):
    """Wrong: argsort sorts ascending, so this returns the LEAST similar rows."""
    sims = (matrix @ query) / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))
    return np.argsort(sims)[:k]


@exercise("02.cosine_top_k", solution=cosine_top_k, wrong=[_dot_top_k, _ascending_top_k],
          hint="normalise both sides (or divide by the norms), then sort from high to low")
def _check_cosine_top_k(fn: Callable[..., Any]) -> None:
    query = np.array([1.0, 0.0])
    matrix = np.array([[10.0, 10.0],   # 45 degrees, long
                       [1.0, 0.1],     # almost parallel, short -> most similar
                       [0.0, 1.0],     # orthogonal
                       [-1.0, 0.0],    # opposite
                       [2.0, 1.0]])    # 27 degrees
    got = [int(i) for i in np.asarray(fn(query, matrix, 3)).ravel()]
    expected = [1, 4, 0]
    if got != expected:
        hint = ""
        if got[:1] == [0]:
            hint = " Row 0 is long, not close in direction: divide by the norms (cosine, not dot product)."
        elif got[:1] == [3]:
            hint = " You returned the least similar rows first: sort from high to low."
        raise AssertionError(f"cosine_top_k(query=[1, 0], matrix, k=3) should be {expected}, got {got}.{hint}")
