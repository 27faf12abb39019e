"""Exercise checkers of lesson 03 (fine-tuning BERT for search).

One section per exercise: the reference answer, plausible wrong answers, then the checker.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable

from .exercises import exercise

# -- 03.info_nce --------------------------------------------------------------------------------
# The learner writes info_nce_loss(query_emb [B, dim], product_emb [B, dim], temperature) -> a
# scalar tensor: L2-normalise both, cosine similarities / temperature, cross-entropy with the
# diagonal as the target (query i's product is product i). No hard negatives here.


def info_nce_loss(query_emb, product_emb, temperature: float = 0.05):
    """Reference: ``course_lib.finetune.info_nce_loss`` without hard negatives."""
    from .finetune import info_nce_loss as reference

    return reference(query_emb, product_emb, temperature)


def _parts(query_emb, product_emb):
    import torch
    import torch.nn.functional as F

    q = F.normalize(query_emb.float(), dim=-1)
    p = F.normalize(product_emb.float(), dim=-1)
    return q, p, torch.arange(len(q))


def _info_nce_no_temperature(query_emb, product_emb, temperature=0.05):
    """Wrong: forgets to divide by the temperature (cosines in [-1, 1] are too flat a softmax)."""
    import torch.nn.functional as F

    q, p, target = _parts(query_emb, product_emb)
    return F.cross_entropy(q @ p.T, target)


def _info_nce_no_normalisation(query_emb, product_emb, temperature=0.05):
    """Wrong: dot products of raw embeddings instead of cosine similarities."""
    import torch
    import torch.nn.functional as F

    logits = query_emb.float() @ product_emb.float().T / temperature
    return F.cross_entropy(logits, torch.arange(len(logits)))


def _info_nce_transposed(query_emb, product_emb, temperature=0.05):
    """Wrong: rows are products (each product picks its query), not each query its product."""
    import torch.nn.functional as F

    q, p, target = _parts(query_emb, product_emb)
    return F.cross_entropy(p @ q.T / temperature, target)


def _info_nce_target_zero(query_emb, product_emb, temperature=0.05):
    """Wrong: target 0 for every row, as if product 0 were everyone's positive."""
    import torch
    import torch.nn.functional as F

    q, p, _ = _parts(query_emb, product_emb)
    return F.cross_entropy(q @ p.T / temperature, torch.zeros(len(q), dtype=torch.long))


def _info_nce_times_temperature(query_emb, product_emb, temperature=0.05):
    """Wrong: multiplies by the temperature instead of dividing."""
    import torch.nn.functional as F

    q, p, target = _parts(query_emb, product_emb)
    return F.cross_entropy(q @ p.T * temperature, target)


_INFO_NCE_MISTAKES: list[tuple[Callable[..., Any], str]] = [
    (_info_nce_no_temperature, "the similarities are not divided by the temperature."),
    (_info_nce_times_temperature, "the similarities are multiplied by the temperature; divide them."),
    (_info_nce_no_normalisation,
     "the embeddings are not L2-normalised (F.normalize(x, dim=-1)): the loss uses cosine "
     "similarities, so a long vector must not win just by being long."),
    (_info_nce_transposed,
     "the matrix is transposed: each ROW must be a query scored against all products "
     "(query_emb @ product_emb.T), not a product against all queries."),
    (_info_nce_target_zero,
     "the target is wrong: row i's target is i (torch.arange(batch)), because query i's "
     "positive is product i."),
]


def _info_nce_cases():
    import torch

    # 2 x 2, hand-computed: the normalised queries are e1 and e2, the products (1, 1)/sqrt(2)
    # and e2. With temperature 0.5 the logits are [[1.414, 0], [1.414, 2]]: row 0 loses
    # log(1 + e^-1.414) = 0.2177, row 1 log(1 + e^-0.586) = 0.4426 -> mean 0.3301.
    small = (torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([[1.0, 1.0], [0.0, 2.0]]), 0.5)
    g = torch.Generator().manual_seed(3)
    scales = torch.tensor([[1.0], [4.0], [0.5]])
    larger = (torch.randn(3, 4, generator=g) * scales, torch.randn(3, 4, generator=g) * scales.flip(0),
              0.1)
    return [("info_nce_loss(query_emb=[[2, 0], [0, 3]], product_emb=[[1, 1], [0, 2]], "
             "temperature=0.5)", *small),
            ("info_nce_loss(...) on a random batch of 3 x 4 embeddings of different lengths, "
             "temperature=0.1", *larger)]


def _as_float(value: Any) -> float | None:
    try:
        import torch

        if isinstance(value, torch.Tensor):
            return float(value.detach().reshape(-1)[0]) if value.numel() == 1 else None
    except ImportError:  # pragma: no cover - torch is installed with the course
        pass
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return None


@exercise(
    "03.info_nce",
    solution=info_nce_loss,
    wrong=[_info_nce_no_temperature, _info_nce_no_normalisation, _info_nce_transposed,
           _info_nce_target_zero, _info_nce_times_temperature],
    hint="normalise both, logits = q @ p.T / temperature, cross-entropy with target "
         "torch.arange(batch).",
)
def _check_info_nce(fn: Callable[..., Any]) -> None:
    for call, q, p, temperature in _info_nce_cases():
        expected = float(info_nce_loss(q, p, temperature))
        got_value = fn(q.clone(), p.clone(), temperature)
        got = _as_float(got_value)
        if got is None:
            shape = tuple(getattr(got_value, "shape", ()))
            raise AssertionError(f"{call} should return a scalar tensor (the mean loss over the "
                                 f"batch), got {type(got_value).__name__} of shape {shape}. "
                                 "F.cross_entropy averages over the rows by default.")
        if not math.isclose(got, expected, rel_tol=1e-4, abs_tol=1e-5):
            why = ""
            for mistake, hint in _INFO_NCE_MISTAKES:
                if math.isclose(float(mistake(q, p, temperature)), got, rel_tol=1e-4, abs_tol=1e-5):
                    why = f" Likely cause: {hint}"
                    break
            raise AssertionError(f"{call} should return about {expected:.4f}, got {got:.4f}.{why}")


# -- 03.hard_negatives ----------------------------------------------------------------------------
# The learner writes pick_hard_negative(ranked_ids, positives) -> the highest-ranked id that is
# not a positive, or None when every id is a positive.


def pick_hard_negative(ranked_ids: list[str], positives: set[str]) -> str | None:
    """The best-ranked id of ``ranked_ids`` that is not in ``positives``; None if there is none."""
    return next((pid for pid in ranked_ids if pid not in positives), None)


def _pick_top(ranked_ids: list[str], positives: set[str]) -> str | None:
    """Wrong: the top result, even when it is a positive (a false negative)."""
    return ranked_ids[0] if ranked_ids else None


def _pick_lowest(ranked_ids: list[str], positives: set[str]) -> str | None:
    """Wrong: the lowest-ranked non-positive: an easy negative, not a hard one."""
    return next((pid for pid in reversed(ranked_ids) if pid not in positives), None)


def _pick_first_positive(ranked_ids: list[str], positives: set[str]) -> str | None:
    """Wrong: the test is inverted: returns the best-ranked positive."""
    return next((pid for pid in ranked_ids if pid in positives), None)


_PICK_CASES: list[tuple[list[str], set[str], str | None]] = [
    (["p1", "p2", "p3", "p4"], {"p1"}, "p2"),          # the top one is a positive: skip it
    (["p7", "p1", "p8", "p9"], {"p1"}, "p7"),          # the top one is already a negative
    (["p1", "p2", "p3", "p4"], {"p1", "p2"}, "p3"),    # skip every positive, not only the first
    (["p1", "p2"], {"p1", "p2"}, None),                # nothing left: None
    ([], set(), None),
]


@exercise(
    "03.hard_negatives",
    solution=pick_hard_negative,
    wrong=[_pick_top, _pick_lowest, _pick_first_positive],
    hint="walk down the ranking from the top and return the first id that is not a positive.",
)
def _check_hard_negatives(fn: Callable[..., Any]) -> None:
    for ranked, positives, expected in _PICK_CASES:
        got = fn(list(ranked), set(positives))
        call = f"pick_hard_negative({ranked!r}, {set(positives) or 'set()'})"
        if got is not None and not isinstance(got, str):
            raise AssertionError(f"{call} should return one id (a string) or None, got "
                                 f"{type(got).__name__} {got!r}: return the first non-positive "
                                 "id only, not all of them.")
        if got == expected:
            continue
        if got in positives:
            why = (f" {got!r} is a positive of the query: used as a negative it would teach the "
                   "model to push a right answer away (a false negative).")
        elif expected is None:
            why = " Every id is a positive here, so there is no negative to return: return None."
        elif got is not None and got in ranked and ranked.index(got) > ranked.index(expected):
            why = (f" {got!r} is a negative, but {expected!r} is ranked higher: the hardest "
                   "negative is the best-ranked one, the one the model confuses most easily.")
        else:
            why = ""
        raise AssertionError(f"{call} should return {expected!r}, got {got!r}.{why}")


# -- 03.warmup ------------------------------------------------------------------------------------
# The learner writes warmup_lr_multiplier(step, max_steps, warmup_steps): linear warm-up from 0
# to 1 over warmup_steps, then linear decay to 0 at max_steps (step = optimizer steps already
# taken, 0 for the first one). The reference is course_lib.training.linear_warmup_schedule.


def warmup_lr_multiplier(step: int, max_steps: int, warmup_steps: int) -> float:
    """Reference: ``course_lib.training.linear_warmup_schedule``."""
    from .training import linear_warmup_schedule

    return linear_warmup_schedule(step, max_steps, warmup_steps)


def _warmup_no_decay(step: int, max_steps: int, warmup_steps: int) -> float:
    """Wrong: warms up, then stays at 1.0 (no decay)."""
    return step / warmup_steps if step < warmup_steps else 1.0


def _warmup_plus_one(step: int, max_steps: int, warmup_steps: int) -> float:
    """Wrong: off by one: counts steps from 1, so the first step already has lr > 0 and the
    warm-up reaches 1.0 a step early."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (max_steps - step) / max(1, max_steps - warmup_steps))


def _warmup_decay_whole_run(step: int, max_steps: int, warmup_steps: int) -> float:
    """Wrong: decays over max_steps instead of (max_steps - warmup_steps): drops after warm-up."""
    return step / warmup_steps if step < warmup_steps else max(0.0, (max_steps - step) / max_steps)


def _warmup_divides_by_zero(step: int, max_steps: int, warmup_steps: int) -> float:
    """Wrong: ``step <= warmup_steps`` divides by zero when there is no warm-up."""
    if step <= warmup_steps:
        return step / warmup_steps
    return (max_steps - step) / (max_steps - warmup_steps)


_WARMUP_CASES: list[tuple[int, int, int]] = [
    (0, 100, 10), (5, 100, 10), (9, 100, 10), (10, 100, 10), (11, 100, 10), (55, 100, 10),
    (100, 100, 10), (0, 10, 0), (3, 10, 0),
]

_WARMUP_MISTAKES: list[tuple[Callable[..., float], str]] = [
    (_warmup_no_decay, "no decay: after the warm-up the multiplier must fall linearly to 0 at "
                      "max_steps."),
    (_warmup_plus_one,
     "off by one: step counts the optimizer steps already taken, so step 0 (the first update) "
     "has multiplier 0/warmup_steps = 0 and the warm-up reaches 1.0 at step == warmup_steps."),
    (_warmup_decay_whole_run,
     "the decay is spread over the whole run: it goes from 1.0 at step == warmup_steps to 0 "
     "at max_steps, so divide by (max_steps - warmup_steps), not by max_steps."),
]


@exercise(
    "03.warmup",
    solution=warmup_lr_multiplier,
    wrong=[_warmup_no_decay, _warmup_plus_one, _warmup_decay_whole_run, _warmup_divides_by_zero],
    hint="step / warmup_steps while step < warmup_steps, then (max_steps - step) / "
         "(max_steps - warmup_steps), never below 0.",
)
def _check_warmup(fn: Callable[..., Any]) -> None:
    for step, max_steps, warmup in _WARMUP_CASES:
        call = f"warmup_lr_multiplier(step={step}, max_steps={max_steps}, warmup_steps={warmup})"
        expected = warmup_lr_multiplier(step, max_steps, warmup)
        try:
            got = fn(step, max_steps, warmup)
        except ZeroDivisionError:
            raise AssertionError(
                f"{call} divided by zero: with warmup_steps=0 there is no warm-up at all, so "
                "use the warm-up formula only while step < warmup_steps (strictly less)."
            ) from None
        ok = (isinstance(got, numbers.Real) and not isinstance(got, bool)
              and math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9))
        if not ok:
            why = ""
            for mistake, hint in _WARMUP_MISTAKES:
                try:
                    if isinstance(got, numbers.Real) and math.isclose(
                            mistake(step, max_steps, warmup), got, rel_tol=1e-9, abs_tol=1e-9):
                        why = f" Likely cause: {hint}"
                        break
                except ZeroDivisionError:
                    continue
            shown = f"{float(got):.4f}" if isinstance(got, numbers.Real) else repr(got)
            raise AssertionError(f"{call} should return {expected:.4f}, got {shown}.{why}")
