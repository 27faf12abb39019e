"""Exercise checkers of lesson 08 (deployment).

One section per exercise: the reference answer, plausible wrong answers, then the checker.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from .exercises import exercise, expect_close


# -- 08.latency_percentiles ----------------------------------------------------------------------
# Service levels are percentiles of single-call times: p50 (the median) and p99 (the slow tail).


def latency_percentiles(seconds: list[float]) -> dict[str, float]:
    """``{"p50_ms": ..., "p99_ms": ...}`` of call times given in seconds."""
    ms = np.asarray(seconds, dtype=float) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def _lat_mean(seconds):
    """Wrong: the mean instead of the median."""
    ms = np.asarray(seconds, dtype=float) * 1000
    return {"p50_ms": float(ms.mean()), "p99_ms": float(np.percentile(ms, 99))}


def _lat_seconds(seconds):
    """Wrong: left in seconds."""
    s = np.asarray(seconds, dtype=float)
    return {"p50_ms": float(np.percentile(s, 50)), "p99_ms": float(np.percentile(s, 99))}


def _lat_max(seconds):
    """Wrong: the maximum instead of the 99th percentile."""
    ms = np.asarray(seconds, dtype=float) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(ms.max())}


def _lat_p90(seconds):
    """Wrong: the 90th percentile."""
    ms = np.asarray(seconds, dtype=float) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 90))}


@exercise("08.latency_percentiles", solution=latency_percentiles, wrong=[_lat_mean, _lat_seconds, _lat_max, _lat_p90],
          hint="convert to milliseconds (× 1000), then np.percentile(ms, 50) and np.percentile(ms, 99)")
def _check_latency(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(8)
    times = list(np.concatenate([rng.uniform(0.004, 0.006, 990), rng.uniform(0.02, 0.2, 10)]))
    call = "latency_percentiles(times)"
    got = fn(list(times))
    if not isinstance(got, dict) or not {"p50_ms", "p99_ms"} <= set(got):
        raise AssertionError(f"{call} should return a dict with keys 'p50_ms' and 'p99_ms', got {got!r}.")
    want = latency_percentiles(times)
    for key, why in (("p50_ms", "p50 is the median (np.percentile(ms, 50)), not the mean; times in milliseconds."),
                     ("p99_ms", "p99 is np.percentile(ms, 99): not the maximum, not p90; times in milliseconds.")):
        try:
            expect_close(float(got[key]), want[key], f"{call}[{key!r}]", tol=1e-6)
        except (AssertionError, TypeError, ValueError) as err:
            raise AssertionError(f"{err} {why}") from None


# -- 08.pq_bytes_per_vector ----------------------------------------------------------------------
# IVF-PQ stores m codes of nbits bits per vector, plus its id (8 bytes): 48 × 8 bits + 8 = 56 bytes.


def pq_bytes_per_vector(m: int, nbits: int, id_bytes: int = 8) -> float:
    """Bytes an IVF-PQ index stores per vector: ``m × nbits / 8`` code bytes plus the id."""
    return m * nbits / 8 + id_bytes


def _pq_bits(m, nbits, id_bytes=8):
    """Wrong: bits, not bytes."""
    return m * nbits + id_bytes


def _pq_no_id(m, nbits, id_bytes=8):
    """Wrong: forgets the id."""
    return m * nbits / 8


def _pq_float(m, nbits, id_bytes=8):
    """Wrong: a float32 per sub-vector."""
    return m * 4 + id_bytes


@exercise("08.pq_bytes_per_vector", solution=pq_bytes_per_vector, wrong=[_pq_bits, _pq_no_id, _pq_float],
          hint="each of the m sub-vectors is one code of nbits bits (nbits / 8 bytes); add the id's bytes")
def _check_pq(fn: Callable[..., Any]) -> None:
    for m, nbits, id_bytes in ((48, 8, 8), (96, 8, 8), (32, 4, 8), (64, 8, 4)):
        call = f"pq_bytes_per_vector(m={m}, nbits={nbits}, id_bytes={id_bytes})"
        expect_close(fn(m, nbits, id_bytes), pq_bytes_per_vector(m, nbits, id_bytes), call)


# -- 08.products_to_encode ----------------------------------------------------------------------
# An incremental update encodes only the products the index does not hold yet, in catalogue order.


def products_to_encode(index_ids: list[str], products: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``products`` whose ``product_id`` is not in ``index_ids`` (order kept)."""
    return products[~products["product_id"].isin(set(index_ids))]


def _encode_all(index_ids, products):
    """Wrong: re-encodes the whole catalogue."""
    return products


def _encode_known(index_ids, products):
    """Wrong: the products already indexed."""
    return products[products["product_id"].isin(set(index_ids))]


def _encode_sorted(index_ids, products):
    """Wrong: loses the catalogue order."""
    new = products[~products["product_id"].isin(set(index_ids))]
    return new.sort_values("product_id", ascending=False)


@exercise("08.products_to_encode", solution=products_to_encode, wrong=[_encode_all, _encode_known, _encode_sorted],
          hint="keep the rows whose product_id is NOT in index_ids: products[~products['product_id'].isin(...)]")
def _check_products_to_encode(fn: Callable[..., Any]) -> None:
    products = pd.DataFrame({"product_id": ["P3", "P1", "P9", "P2", "P7"], "title": list("abcde")})
    index_ids = ["P1", "P2", "P5"]
    call = "products_to_encode(['P1', 'P2', 'P5'], products with P3, P1, P9, P2, P7)"
    got = fn(list(index_ids), products.copy())
    if not isinstance(got, pd.DataFrame) or "product_id" not in got.columns:
        raise AssertionError(f"{call} should return a DataFrame with a product_id column, got {type(got).__name__}.")
    ids = got["product_id"].tolist()
    if ids != ["P3", "P9", "P7"]:
        raise AssertionError(f"{call} should return products ['P3', 'P9', 'P7'] (new ones, catalogue order), got {ids}.")
