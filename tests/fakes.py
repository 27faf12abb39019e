"""Stand-ins shared by the recommendation tests: no BERT model needed."""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from course_lib import columns as C
from course_lib import recommend as R


class FakeEncoder:
    """A deterministic stand-in for a BERT encoder: a text's vector is seeded by its CRC."""

    def __init__(self, dim: int = 8):
        self.dim, self.calls = dim, 0

    def encode(self, texts):
        self.calls += 1
        return np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim)
                         for t in texts])


def category_catalog(products: pd.DataFrame, dim: int = 64, noise: float = 0.3,
                     seed: int = 0) -> R.Catalog:
    """A catalogue whose vectors cluster by category (one axis per category, plus noise)."""
    codes, _ = pd.factorize(products[C.CATEGORY])
    vectors = np.eye(dim)[codes % dim] + noise * np.random.default_rng(seed).normal(
        size=(len(products), dim))
    return R.Catalog(products, vectors)
