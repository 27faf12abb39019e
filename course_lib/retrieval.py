"""Retrieval: BM25 (``bm25s``), dense vectors (exact numpy or faiss), hybrid fusion, query parsing.

A *run* is the tidy result of retrieving for many queries: a DataFrame with columns
``query_id, product_id, score, rank`` (rank 1 = best), one row per retrieved item. Every
``search_many`` returns one and ``course_lib.evaluation`` consumes it. ``search`` (one query)
returns ``product_id, score, rank``.

A typical hybrid pipeline::

    parsed = parse_query("red dress under $50")         # text "red dress", max_price 50, color "Red"
    bm25 = BM25Index.from_products(products)
    dense = DenseIndex(products[C.PRODUCT_ID], product_vectors, backend="faiss-hnsw")
    runs = [bm25.search_many(queries, k=100), dense.search_many(queries[C.QUERY_ID], query_vectors, k=100)]
    run = filter_run(reciprocal_rank_fusion(runs), products, queries)

Dense indexes score by inner product; with L2-normalised vectors (what ``course_lib.encoding``
produces) that is cosine similarity.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from . import columns as C
from .data import SchemaError
from .taxonomy import LEAVES

SCORE, RANK = C.SCORE, C.RANK
RUN_COLUMNS = (C.QUERY_ID, C.PRODUCT_ID, SCORE, RANK)
RESULT_COLUMNS = (C.PRODUCT_ID, SCORE, RANK)

BACKENDS = ("exact", "faiss-flat", "faiss-ivf", "faiss-hnsw")
_PARAMS: dict[str, dict[str, Any]] = {   # the knobs of each backend and their defaults
    "exact": {},
    "faiss-flat": {},
    "faiss-ivf": {"nlist": None, "nprobe": 16, "train_size": None, "niter": 25},
    "faiss-hnsw": {"M": 32, "efConstruction": 40, "efSearch": 64},
}
_FORMAT = "course_lib.DenseIndex/1"


# =========================================================================================
# helpers
# =========================================================================================
def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(f"{what} needs column(s) {missing}; the table has {list(df.columns)}")


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _check_query_text(query: object) -> str:
    if not isinstance(query, str):
        raise TypeError(f"a query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise ValueError("empty query")
    return query


def _as_ids(ids: Iterable, what: str = "ids") -> np.ndarray:
    """Ids as a 1-D numpy array of str or int (what ``np.save`` can store without pickle)."""
    arr = np.asarray(list(ids) if not isinstance(ids, (np.ndarray, pd.Series, pd.Index)) else ids)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind in "US" or arr.dtype.kind in "iu":
        return arr
    values = arr.tolist()
    if all(isinstance(v, str) for v in values):
        return np.asarray(values, dtype=str)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    raise TypeError(f"{what} must all be strings or all be integers")


def _check_unique(ids: np.ndarray, what: str = "ids") -> None:
    index = pd.Index(ids)
    if not index.is_unique:
        dupes = index[index.duplicated()].unique().tolist()
        raise ValueError(f"duplicate {what}: {dupes[:10]}")


def _empty_run(with_query: bool = True) -> pd.DataFrame:
    cols = RUN_COLUMNS if with_query else RESULT_COLUMNS
    return pd.DataFrame({c: pd.Series([], dtype="float64" if c == SCORE else "int64" if c == RANK
                                      else object) for c in cols})


def _rerank(df: pd.DataFrame) -> pd.DataFrame:
    """Renumber ``rank`` 1..n (per query when there is a ``query_id``) keeping the row order."""
    df = df.reset_index(drop=True)
    if C.QUERY_ID in df.columns:
        df[RANK] = df.groupby(C.QUERY_ID, sort=False).cumcount().astype("int64") + 1
    else:
        df[RANK] = np.arange(1, len(df) + 1, dtype="int64")
    return df


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` positions and scores of each row of ``scores``, best first; ties go to the lower
    position. ``k`` must be at most the number of columns."""
    n_rows, n = scores.shape
    if k < n:
        cand = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(scores, cand, axis=1).min(axis=1)
        for r in np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k):  # ties at the cut
            better = np.flatnonzero(scores[r] > kth[r])
            cand[r] = np.concatenate([better, np.flatnonzero(scores[r] == kth[r])[:k - len(better)]])
    else:
        cand = np.broadcast_to(np.arange(n), (n_rows, n))
    cand_scores = np.take_along_axis(scores, cand, axis=1)
    rows = np.repeat(np.arange(n_rows), cand.shape[1])
    order = np.lexsort((cand.ravel(), -cand_scores.ravel(), rows)).reshape(n_rows, -1)
    order -= (np.arange(n_rows) * cand.shape[1])[:, None]
    return np.take_along_axis(cand, order, axis=1), np.take_along_axis(cand_scores, order, axis=1)


# =========================================================================================
# BM25
# =========================================================================================
_HYPHENATED = re.compile(r"\b[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+\b")


def _join_hyphenated(text: str) -> str:
    """Append the hyphen-less form of hyphenated words with a digit ("SO-4120" -> + "SO4120")."""
    joined = [m.replace("-", "") for m in _HYPHENATED.findall(text) if any(ch.isdigit() for ch in m)]
    return f"{text} {' '.join(joined)}" if joined else text


def default_product_text(products: pd.DataFrame) -> pd.Series:
    """Title, description, brand and (leaf) category of each product joined by spaces; missing
    columns (all but ``title``) and missing values are skipped. Falls back to ``category_path``
    when there is no ``category`` column."""
    _require(products, [C.TITLE], "default_product_text")
    category = C.CATEGORY if C.CATEGORY in products.columns else C.CATEGORY_PATH
    cols = [c for c in (C.TITLE, C.DESCRIPTION, C.BRAND, category) if c in products.columns]
    text = pd.Series("", index=products.index, dtype=object)
    for col in cols:
        values = products[col].astype(object)
        text = text + " " + values.where(values.notna(), "").astype(str)
    return text.str.replace(r"\s+", " ", regex=True).str.strip()


class BM25Index:
    """Okapi BM25 over product texts with ``bm25s``.

    Tokenisation is bm25s's: lower-cased, words of 2+ letters or digits (regex ``\\b\\w\\w+\\b``,
    so a hyphen splits "SO-4120" into "so" and "4120" and drops one-letter words), and bm25s's
    33 English stop words removed. ``join_hyphenated=True`` also indexes the hyphen-less form of
    hyphenated words with a digit ("so4120"), so that model-number queries typed without the
    hyphen can match; plain BM25 (the default) cannot match them.

    Only products that share at least one word with the query are returned.
    """

    def __init__(self, ids: Sequence, texts: Sequence[str], k1: float = 1.5, b: float = 0.75,
                 method: str = "lucene", join_hyphenated: bool = False,
                 stemmer: Callable[[list[str]], list[str]] | None = None):
        import bm25s

        self._ids = _as_ids(ids)
        texts = [("" if t is None or (isinstance(t, float) and math.isnan(t)) else str(t)) for t in texts]
        if len(self._ids) != len(texts):
            raise ValueError(f"{len(self._ids)} ids but {len(texts)} texts")
        if len(texts) == 0:
            raise ValueError("empty index: no products to index")
        _check_unique(self._ids, "product ids")
        self.join_hyphenated = join_hyphenated
        self.stemmer = stemmer
        tokens = self._tokenize(texts)
        if not any(tokens):
            raise ValueError("empty index: the texts have no words left after stop-word removal")
        self._bm25 = bm25s.BM25(k1=k1, b=b, method=method)
        self._bm25.index(tokens, show_progress=False)
        self._vocab = self._bm25.vocab_dict

    @classmethod
    def from_products(cls, products: pd.DataFrame,
                      text_fn: Callable[[pd.DataFrame], pd.Series] | None = None,
                      **kwargs: Any) -> BM25Index:
        """Index ``products`` (needs ``product_id`` and ``title``). ``text_fn(products)`` returns one
        text per product; default ``default_product_text`` (title + description + brand + category)."""
        _require(products, [C.PRODUCT_ID], "BM25Index.from_products")
        texts = (text_fn or default_product_text)(products)
        return cls(products[C.PRODUCT_ID].to_numpy(), list(texts), **kwargs)

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        import bm25s

        if self.join_hyphenated:
            texts = [_join_hyphenated(t) for t in texts]
        tokens = bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)
        if self.stemmer is not None:
            tokens = [list(self.stemmer(t)) if t else [] for t in tokens]
        return [list(t) for t in tokens]

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> np.ndarray:
        return self._ids.copy()

    def tokens(self, text: str) -> list[str]:
        """The words of ``text`` as the index sees them (after lower-casing and stop words)."""
        return self._tokenize([text])[0]

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every product for ``query`` (0 where no word matches); raises
        ``ValueError("empty query")`` on a blank query and warns on a stop-words-only one."""
        _check_query_text(query)
        tokens = self.tokens(query)
        if not tokens:
            warnings.warn(f"query {query!r} has only stop words; BM25 returns nothing", UserWarning,
                          stacklevel=3)
            return np.zeros(len(self._ids), dtype=np.float32)
        known = [t for t in tokens if t in self._vocab]
        if not known:  # bm25s would crash on an empty token list
            return np.zeros(len(self._ids), dtype=np.float32)
        return np.asarray(self._bm25.get_scores(known), dtype=np.float32)

    def search(self, query: str, k: int = 10) -> pd.DataFrame:
        """Top-``k`` products for one query: ``product_id, score, rank``. Fewer rows when fewer
        products match (``k`` larger than the corpus is fine); none for a stop-words-only query."""
        k = _check_k(k)
        scores = self.scores(query)
        pos, top = _top_k(scores[None, :], min(k, len(scores)))
        keep = top[0] > 0
        pos, top = pos[0][keep], top[0][keep]
        return pd.DataFrame({C.PRODUCT_ID: self._ids[pos], SCORE: top.astype("float64"),
                             RANK: np.arange(1, len(pos) + 1, dtype="int64")})

    def search_many(self, queries: pd.DataFrame, k: int = 10) -> pd.DataFrame:
        """A run for ``queries`` (needs ``query_id`` and ``query``). Queries of only stop words
        give no rows (one warning names them); a blank query raises ``ValueError("empty query")``."""
        _require(queries, [C.QUERY_ID, C.QUERY], "BM25Index.search_many")
        k = _check_k(k)
        for qid, text in zip(queries[C.QUERY_ID], queries[C.QUERY]):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"empty query (query_id={qid!r})")
        frames, stop_only = [], []
        for qid, text in zip(queries[C.QUERY_ID], queries[C.QUERY]):
            if not self.tokens(text):
                stop_only.append(qid)
                continue
            res = self.search(text, k)
            res.insert(0, C.QUERY_ID, qid)
            frames.append(res)
        if stop_only:
            warnings.warn(f"{len(stop_only)} queries have only stop words and get no BM25 results: "
                          f"{stop_only[:10]}", UserWarning, stacklevel=2)
        frames = [f for f in frames if len(f)]
        if not frames:
            return _empty_run()
        return pd.concat(frames, ignore_index=True)[list(RUN_COLUMNS)]


# =========================================================================================
# dense
# =========================================================================================
def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    x = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


class DenseIndex:
    """Nearest-neighbour search by inner product (cosine on L2-normalised vectors), one API over
    several backends:

    - ``"exact"``: a numpy matrix product and ``argpartition``; exact, no extra memory (a
      float32 C-ordered array is kept by reference, not copied: do not change it afterwards).
    - ``"faiss-flat"``: ``faiss.IndexFlatIP``; exact, SIMD-optimised.
    - ``"faiss-ivf"``: ``faiss.IndexIVFFlat``, k-means (``niter`` iterations, default 25) into
      ``nlist`` lists (default about 4·sqrt(n), at most n/39), ``nprobe`` lists searched
      (default 16); trained on ``train_size`` random vectors of the first batch (default: all,
      faiss then samples 256 per list). Vectors added later go to the trained lists.
    - ``"faiss-hnsw"``: ``faiss.IndexHNSWFlat`` graph with ``M`` links, ``efConstruction``,
      ``efSearch`` (defaults 32, 40, 64).

    ``nprobe`` and ``efSearch`` can be changed after building. Vectors are float32 ``[n, dim]``.
    """

    def __init__(self, ids: Sequence, vectors: np.ndarray, backend: str = "exact", **params: Any):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        unknown = sorted(set(params) - set(_PARAMS[backend]))
        if unknown:
            raise ValueError(f"backend {backend!r} has no parameter(s) {unknown}; "
                             f"it takes {sorted(_PARAMS[backend])}")
        ids = _as_ids(ids)
        x = self._check_vectors(vectors, dim=None)
        if len(ids) != len(x):
            raise ValueError(f"{len(ids)} ids but {len(x)} vectors")
        if len(x) == 0:
            raise ValueError("empty index: no vectors to index")
        _check_unique(ids)
        self.backend = backend
        self.dim = int(x.shape[1])
        self._params = {**_PARAMS[backend], **params}
        self._ids = ids
        self._positions: pd.Index | None = None
        self._vectors: np.ndarray | None = None
        self._index = None
        if backend == "exact":
            self._vectors = x
        else:
            self._index = self._build(x)
            self._index.add(x)
            self._apply_search_params()

    # -- building -----------------------------------------------------------------------
    def _build(self, x: np.ndarray):
        import faiss

        if self.backend == "faiss-flat":
            return faiss.IndexFlatIP(self.dim)
        if self.backend == "faiss-hnsw":
            index = faiss.IndexHNSWFlat(self.dim, int(self._params["M"]), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(self._params["efConstruction"])
            return index
        n = len(x)
        nlist = self._params["nlist"]
        if nlist is None:
            nlist = max(1, min(int(round(4 * math.sqrt(n))), n // 39))
        nlist = int(nlist)
        if not 1 <= nlist <= n:
            raise ValueError(f"nlist must be between 1 and the number of vectors ({n}), got {nlist}")
        self._params["nlist"] = nlist
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        train = x
        size = self._params["train_size"]
        if size is not None and int(size) < n:
            if int(size) < nlist:
                raise ValueError(f"train_size ({size}) must be at least nlist ({nlist})")
            pick = np.random.default_rng(0).choice(n, size=int(size), replace=False)
            train = x[np.sort(pick)]
        index.cp.min_points_per_centroid = 1  # no warning for small (course-sized) data
        index.cp.niter = int(self._params["niter"])
        index.train(train)
        index.set_direct_map_type(faiss.DirectMap.Array)  # lets get_vectors reconstruct
        return index

    def _apply_search_params(self) -> None:
        if self.backend == "faiss-ivf":
            self._params["nprobe"] = max(1, min(int(self._params["nprobe"]), self._params["nlist"]))
            self._index.nprobe = self._params["nprobe"]
        elif self.backend == "faiss-hnsw":
            self._index.hnsw.efSearch = int(self._params["efSearch"])

    def _check_vectors(self, vectors: np.ndarray, dim: int | None) -> np.ndarray:
        x = np.asarray(vectors)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2:
            raise ValueError(f"vectors must be 2-D [n, dim], got shape {x.shape}")
        if dim is not None and x.shape[1] != dim:
            raise ValueError(f"vectors have dim {x.shape[1]} but the index expects dim {dim}")
        if x.shape[1] == 0:
            raise ValueError("vectors have dim 0")
        x = np.ascontiguousarray(x, dtype=np.float32)
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            raise ValueError(f"{int(bad.sum())} vector(s) contain NaN or infinity "
                             f"(first at row {int(np.flatnonzero(bad)[0])})")
        return x

    # -- properties -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> np.ndarray:
        return self._ids.copy()

    @property
    def params(self) -> dict[str, Any]:
        """The backend's parameters (a copy)."""
        return dict(self._params)

    @property
    def nprobe(self) -> int:
        """IVF lists searched per query (``faiss-ivf`` only); more = better recall, slower."""
        self._need("faiss-ivf", "nprobe")
        return int(self._params["nprobe"])

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._need("faiss-ivf", "nprobe")
        self._params["nprobe"] = _check_k(value)
        self._apply_search_params()

    @property
    def efSearch(self) -> int:  # noqa: N802 (faiss's name)
        """HNSW candidate list size per query (``faiss-hnsw`` only); more = better recall, slower."""
        self._need("faiss-hnsw", "efSearch")
        return int(self._params["efSearch"])

    @efSearch.setter
    def efSearch(self, value: int) -> None:  # noqa: N802
        self._need("faiss-hnsw", "efSearch")
        self._params["efSearch"] = _check_k(value)
        self._apply_search_params()

    def _need(self, backend: str, name: str) -> None:
        if self.backend != backend:
            raise AttributeError(f"{name} applies to the {backend!r} backend, not {self.backend!r}")

    def nbytes(self) -> int:
        """Bytes the vectors and the index structure take (ids not counted)."""
        if self._vectors is not None:
            return int(self._vectors.nbytes)
        import faiss

        return int(faiss.serialize_index(self._index).size)

    # -- updating and searching -------------------------------------------------------------
    def add(self, ids: Sequence, vectors: np.ndarray) -> None:
        """Add new products without touching the others (IVF keeps its trained lists)."""
        new_ids = _as_ids(ids)
        x = self._check_vectors(vectors, self.dim)
        if len(new_ids) != len(x):
            raise ValueError(f"{len(new_ids)} ids but {len(x)} vectors")
        if len(x) == 0:
            return
        all_ids = np.concatenate([self._ids, new_ids])
        _check_unique(all_ids)
        if self._vectors is not None:
            self._vectors = np.vstack([self._vectors, x])
        else:
            self._index.add(x)
        self._ids = all_ids
        self._positions = None

    def get_vectors(self, ids: Sequence) -> np.ndarray:
        """The stored vectors of ``ids`` ``[len(ids), dim]``; ``KeyError`` names unknown ids."""
        wanted = _as_ids(ids)
        if self._positions is None:
            self._positions = pd.Index(self._ids)
        pos = self._positions.get_indexer(wanted)
        if (pos < 0).any():
            raise KeyError(f"unknown product id(s): {wanted[pos < 0].tolist()[:10]}")
        if self._vectors is not None:
            return self._vectors[pos].copy()
        return np.vstack([self._index.reconstruct(int(p)) for p in pos]).astype(np.float32)

    def search(self, query_vectors: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ids and scores of each query, best first: two arrays ``[n_queries, k']`` with
        ``k' = min(k, len(index))``. A 1-D vector is one query. Where an approximate index finds
        fewer than ``k'`` items the row is padded with id ``""`` (or -1) and score ``-inf``."""
        k = min(_check_k(k), len(self._ids))
        q = self._check_vectors(query_vectors, self.dim)
        if self._vectors is not None:
            pos, scores = self._exact(q, k)
        else:
            scores, pos = self._index.search(q, k)
        found = pos >= 0
        ids = self._ids[np.where(found, pos, 0)]
        if not found.all():
            ids = ids.astype(object) if ids.dtype.kind in "US" else ids
            ids[~found] = "" if self._ids.dtype.kind in "US" else -1
            ids = ids.astype(self._ids.dtype)
            scores = np.where(found, scores, -np.inf)
        return ids, scores.astype(np.float32)

    def _exact(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self._vectors)
        chunk = max(1, (1 << 28) // (4 * n))  # at most 256 MB of scores at a time
        pos, scores = [], []
        for start in range(0, len(q), chunk):
            s = q[start:start + chunk] @ self._vectors.T
            p, t = _top_k(s, k)
            pos.append(p)
            scores.append(t)
        return np.vstack(pos), np.vstack(scores)

    def search_many(self, query_ids: Sequence, query_vectors: np.ndarray, k: int = 10) -> pd.DataFrame:
        """A run: ``query_id, product_id, score, rank`` for each query vector."""
        qids = list(query_ids)
        q = np.asarray(query_vectors)
        if len(qids) != (1 if q.ndim == 1 else len(q)):
            raise ValueError(f"{len(qids)} query ids but {1 if q.ndim == 1 else len(q)} query vectors")
        ids, scores = self.search(q, k)
        found = np.isfinite(scores)
        rank = np.cumsum(found, axis=1)
        qcol = np.repeat(np.asarray(qids, dtype=object), ids.shape[1])
        run = pd.DataFrame({C.QUERY_ID: qcol, C.PRODUCT_ID: ids.ravel().astype(object),
                            SCORE: scores.ravel().astype("float64"), RANK: rank.ravel().astype("int64")})
        return run[found.ravel()].reset_index(drop=True)

    # -- saving -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ids, backend, parameters and vectors/index to one ``.npz`` file, atomically:
        a temporary file in the same folder is renamed over ``path`` only once complete."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": _FORMAT, "backend": self.backend, "dim": self.dim, "params": self._params}
        arrays: dict[str, np.ndarray] = {"ids": self._ids, "meta": np.array(json.dumps(meta))}
        if self._vectors is not None:
            arrays["vectors"] = self._vectors
        else:
            import faiss

            arrays["faiss"] = faiss.serialize_index(self._index)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> DenseIndex:
        """Read an index written by ``save``."""
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path} is not a DenseIndex file (format {meta.get('format')!r})")
            self = cls.__new__(cls)
            self.backend, self.dim, self._params = meta["backend"], int(meta["dim"]), meta["params"]
            self._ids, self._positions = data["ids"], None
            self._vectors, self._index = None, None
            if "vectors" in data:
                self._vectors = np.ascontiguousarray(data["vectors"], dtype=np.float32)
            else:
                import faiss

                self._index = faiss.deserialize_index(data["faiss"])
                self._apply_search_params()
        return self


# =========================================================================================
# hybrid
# =========================================================================================
def reciprocal_rank_fusion(runs: Sequence[pd.DataFrame], k: int = 60,
                           weights: Sequence[float] | None = None,
                           top_k: int | None = None) -> pd.DataFrame:
    """Fuse runs with reciprocal rank fusion (Cormack et al., 2009):
    ``score(q, d) = sum_i weights[i] / (k + rank_i(q, d))`` over the runs that retrieved ``d``.

    Each run needs ``query_id, product_id, rank``. Ties are broken by the best single rank,
    then by ``product_id``, so the result does not depend on the order of rows. ``top_k`` keeps
    the best ``top_k`` per query.
    """
    if len(runs) == 0:
        raise ValueError("reciprocal_rank_fusion needs at least one run")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    weights = [1.0] * len(runs) if weights is None else [float(w) for w in weights]
    if len(weights) != len(runs):
        raise ValueError(f"{len(weights)} weights for {len(runs)} runs")
    if any(w < 0 or not math.isfinite(w) for w in weights):
        raise ValueError(f"weights must be finite and >= 0, got {weights}")
    parts = []
    for i, (run, w) in enumerate(zip(runs, weights)):
        _require(run, [C.QUERY_ID, C.PRODUCT_ID, RANK], f"reciprocal_rank_fusion (run {i})")
        dup = run.duplicated([C.QUERY_ID, C.PRODUCT_ID])
        if dup.any():
            first = run.loc[dup, [C.QUERY_ID, C.PRODUCT_ID]].iloc[0].tolist()
            raise ValueError(f"run {i} lists (query_id, product_id) {first} more than once")
        if (run[RANK] < 1).any():
            raise ValueError(f"run {i} has ranks below 1")
        part = run[[C.QUERY_ID, C.PRODUCT_ID, RANK]].astype({RANK: "int64"})
        part = part.assign(**{SCORE: w / (k + part[RANK].to_numpy(dtype="float64"))})
        parts.append(part)
    both = pd.concat(parts, ignore_index=True)
    if both.empty:
        return _empty_run()
    fused = (both.groupby([C.QUERY_ID, C.PRODUCT_ID], sort=False)
             .agg(**{SCORE: (SCORE, "sum"), "_best": (RANK, "min")}).reset_index())
    fused["_key"] = fused[SCORE].round(12)  # sums in another order may differ in the last bit
    fused = fused.sort_values([C.QUERY_ID, "_key", "_best", C.PRODUCT_ID],
                              ascending=[True, False, True, True], kind="mergesort")
    fused = _rerank(fused.drop(columns=["_best", "_key"]))
    if top_k is not None:
        fused = fused[fused[RANK] <= _check_k(top_k)].reset_index(drop=True)
    return fused[list(RUN_COLUMNS)]


# =========================================================================================
# query understanding
# =========================================================================================
@dataclass
class ParsedQuery:
    """What a shopper asked for: the words to search (``text``) and the constraints to filter by.

    ``text`` is the query without price, size and "cheap" words (colours stay: they are words of
    the product titles too). Prices are inclusive bounds in USD. ``cheap`` flags a wish for low
    prices without a number.
    """

    text: str
    max_price: float | None = None
    min_price: float | None = None
    color: str | None = None
    size: str | None = None
    cheap: bool = False
    raw: str = field(default="", repr=False)

    @property
    def has_constraints(self) -> bool:
        """Whether ``apply_filters`` would remove anything."""
        return any(v is not None for v in (self.max_price, self.min_price, self.color, self.size))


_COLOR_NAMES: dict[str, str] = {c.lower(): c for leaf in LEAVES for c in leaf.colors}
_COLOR_NAMES.setdefault("grey", _COLOR_NAMES.get("gray", "Gray"))
_COLOR_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _COLOR_NAMES), key=len, reverse=True))
                       + r")\b", re.IGNORECASE)

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_UNIT_AFTER = r"(?!\s*(?:\"|”|''|inch|inches|ml\b|l\b|liters?|litres?|mah|gb|tb|hz|w\b|mm|cm|oz|pack|pcs|cups?|person|people|pieces?|%))"
_DOLLAR = r"(?:\s*(?:dollars?|usd|bucks)\b)"
_AMOUNT = rf"(?:\$\s*)?(?:{_NUM})(?![\d,.]*\w){_UNIT_AFTER}{_DOLLAR}?"
_PRICE_PATTERNS: tuple[tuple[str, re.Pattern], ...] = (
    ("range", re.compile(rf"\b(?:between|from)\s+(?P<lo>{_AMOUNT})\s+(?:and|to|-)\s+(?P<hi>{_AMOUNT})",
                         re.IGNORECASE)),
    ("range", re.compile(rf"(?<![\w$.-])(?P<lo>\$\s*(?:{_NUM})|(?:{_NUM}))\s*(?:-|–|to)\s*"
                         rf"(?P<hi>\$\s*(?:{_NUM})|(?:{_NUM}))(?P<cur>{_DOLLAR})?(?![\w.])", re.IGNORECASE)),
    ("max", re.compile(rf"(?:\b(?:under|below|less\s+than|cheaper\s+than|up\s+to|at\s+most|"
                       rf"no\s+more\s+than|max(?:imum)?|within)\s+|<=?\s*)(?P<hi>{_AMOUNT})", re.IGNORECASE)),
    ("max", re.compile(rf"(?P<hi>\$\s*(?:{_NUM}){_DOLLAR}?)\s+or\s+(?:less|under|below|cheaper)\b",
                       re.IGNORECASE)),
    ("min", re.compile(rf"(?:\b(?:over|above|more\s+than|at\s+least|min(?:imum)?|starting\s+at)\s+"
                       rf"|>=?\s*)(?P<lo>{_AMOUNT})", re.IGNORECASE)),
    ("min", re.compile(rf"\bfrom\s+(?P<lo>\$\s*(?:{_NUM}){_DOLLAR}?)", re.IGNORECASE)),
    ("min", re.compile(rf"(?P<lo>\$\s*(?:{_NUM}){_DOLLAR}?)\s*(?:\+|or\s+more\b|and\s+up\b|or\s+above\b)",
                       re.IGNORECASE)),
)
_CHEAP_RE = re.compile(r"\b(?:cheap(?:est)?|inexpensive|affordable|budget|bargain|low[\s-]cost|"
                       r"low[\s-]price[d]?)\b", re.IGNORECASE)

_LETTER = {"xxs": "XXS", "xs": "XS", "s": "S", "m": "M", "l": "L", "xl": "XL", "xxl": "XXL",
           "2xl": "XXL", "xxxl": "XXXL", "3xl": "XXXL", "small": "S", "medium": "M", "large": "L",
           "extra small": "XS", "extra-small": "XS", "x-small": "XS", "extra large": "XL",
           "extra-large": "XL", "x-large": "XL", "xx-large": "XXL"}
_LETTER_ALT = "|".join(sorted(map(re.escape, _LETTER), key=len, reverse=True))
_INCH = r"(?:\"|”|''|-?inch(?:es)?\b)"
_SIZE_PATTERNS: tuple[tuple[re.Pattern, Callable[[re.Match], str]], ...] = (
    (re.compile(rf"\b(?:size\s+)?us\s*(?P<n>\d{{1,2}}(?:\.5)?)(?![\d.])(?!\s*{_INCH})", re.IGNORECASE),
     lambda m: f"US {float(m['n']):g}"),
    (re.compile(rf"\bsize\s+(?P<n>\d{{1,2}}(?:\.5)?)(?![\d.])(?!\s*{_INCH})", re.IGNORECASE),
     lambda m: f"US {float(m['n']):g}"),
    (re.compile(rf"(?<![\w.$])(?P<n>\d{{1,2}}(?:\.\d)?)\s*(?:{_INCH}|in\b)", re.IGNORECASE),
     lambda m: f"{float(m['n']):g} in"),
    (re.compile(rf"\bsize\s+(?P<s>{_LETTER_ALT})\b|\b(?P<t>{_LETTER_ALT})\s+size\b", re.IGNORECASE),
     lambda m: _LETTER[re.sub(r"\s+", " ", (m["s"] or m["t"]).lower())]),
    (re.compile(r"\b(?P<s>extra[\s-]small|extra[\s-]large|x-small|x-large|xx-large|medium)\b", re.IGNORECASE),
     lambda m: _LETTER[re.sub(r"\s+", " ", m["s"].lower())]),
    (re.compile(r"(?<![\w.])(?P<n>\d+(?:\.\d+)?)\s*(?P<u>ml|l|liters?|litres?)\b", re.IGNORECASE),
     lambda m: f"{float(m['n']) * (1 if m['u'].lower() == 'ml' else 1000):g} ml"),
    (re.compile(r"(?<![\w.])(?P<n>\d{1,3}(?:,\d{3})+|\d+)\s*mah\b", re.IGNORECASE),
     lambda m: f"{int(m['n'].replace(',', ''))} mAh"),
    (re.compile(r"\b(?P<b>twin|queen|king|full)[\s-]size\b|\b(?P<c>twin|queen|king)\b", re.IGNORECASE),
     lambda m: (m["b"] or m["c"]).title()),
)
_EDGE_WORDS = {"for", "at", "in", "with", "and", "or", "of", "a", "an", "the", "size", "priced", "price",
               "costing", "around", "between"}


def _amount(text: str) -> float:
    return float(re.sub(r"[^\d.]", "", text.replace(",", "")))


def parse_query(text: str) -> ParsedQuery:
    """Split a shopper's query into search words and constraints::

        parse_query("cheap red dress below $50")
        # ParsedQuery(text='red dress', max_price=50.0, color='Red', cheap=True)

    Prices: "under/below/less than/up to $50", "$50 or less" (max), "over/above/more than/at least
    $100", "$100+" (min), "$20-$40", "20 to 40 dollars", "between $20 and $40" (both); a number
    needs a price word or a "$"/"dollars". Colours: whole words of the taxonomy's colours ("grey"
    is Gray). Sizes: screens '15.6"', "15.6 inch" -> "15.6 in"; shoes "size 10", "US 10" ->
    "US 10"; clothing "size m", "medium", "large size" -> "M"/"L"; volumes "1.5l" -> "1500 ml";
    "10000 mah" -> "10000 mAh"; beds "queen" -> "Queen". Raises ``ValueError("empty query")``
    on a blank query.
    """
    _check_query_text(text)
    spans: list[tuple[int, int]] = []
    lo = hi = None

    def free(m: re.Match) -> bool:
        return all(m.end() <= a or m.start() >= b for a, b in spans)

    for kind, pattern in _PRICE_PATTERNS:
        for m in pattern.finditer(text):
            if not free(m):
                continue
            if kind == "range" and "cur" in pattern.groupindex:  # a bare range needs a currency
                if "$" not in m.group(0) and not m["cur"]:
                    continue
            if m.groupdict().get("lo"):
                lo = _amount(m["lo"])
            if m.groupdict().get("hi"):
                hi = _amount(m["hi"])
            spans.append(m.span())
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    cheap = False
    for m in _CHEAP_RE.finditer(text):
        cheap = True
        spans.append(m.span())
    size = None
    for pattern, make in _SIZE_PATTERNS:
        m = next((m for m in pattern.finditer(text) if free(m)), None)
        if m is not None:
            size = make(m)
            spans.append(m.span())
            break
    color = None
    for m in _COLOR_RE.finditer(text):
        if free(m):
            color = _COLOR_NAMES[m.group(1).lower()]
            break
    kept = text
    for a, b in sorted(spans, reverse=True):
        kept = kept[:a] + " " + kept[b:]
    words = re.sub(r"\s+", " ", re.sub(r"(?<!\w)[,;:!?/\-–]+|[,;:!?/\-–]+(?!\w)", " ", kept)).split()
    while spans and words and words[-1].lower() in _EDGE_WORDS:  # "dress for [under $50]"
        words.pop()
    while spans and words and words[0].lower() in _EDGE_WORDS:
        words.pop(0)
    return ParsedQuery(text=" ".join(words), max_price=hi, min_price=lo, color=color, size=size,
                       cheap=cheap, raw=text)


def _norm_size(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), None).map(
        lambda v: None if v is None or not str(v).strip() else re.sub(r"\s+", " ", str(v)).strip().casefold())


def _constraint_mask(rows: pd.DataFrame, parsed: ParsedQuery, strict: bool) -> np.ndarray:
    """Which rows (product attributes) satisfy ``parsed``; missing values pass when not strict."""
    mask = np.ones(len(rows), dtype=bool)
    if parsed.max_price is not None or parsed.min_price is not None:
        price = rows[C.PRICE].to_numpy(dtype="float64", na_value=np.nan)
        ok = np.ones(len(rows), dtype=bool)
        with np.errstate(invalid="ignore"):
            if parsed.max_price is not None:
                ok &= price <= parsed.max_price
            if parsed.min_price is not None:
                ok &= price >= parsed.min_price
        mask &= ok | (np.isnan(price) & (not strict))
    if parsed.color is not None:
        col = rows[C.COLOR].astype(object)
        missing = col.isna().to_numpy() | (col.astype(str).str.strip() == "").to_numpy()
        ok = col.astype(str).str.strip().str.casefold().to_numpy() == parsed.color.casefold()
        mask &= ok | (missing & (not strict))
    if parsed.size is not None:
        sizes = _norm_size(rows[C.SIZE])
        missing = sizes.isna().to_numpy()
        ok = (sizes == parsed.size.casefold()).to_numpy()
        mask &= ok | (missing & (not strict))
    return mask


def _needed_columns(parsed: Iterable[ParsedQuery]) -> list[str]:
    cols: list[str] = []
    for p in parsed:
        if (p.max_price is not None or p.min_price is not None) and C.PRICE not in cols:
            cols.append(C.PRICE)
        if p.color is not None and C.COLOR not in cols:
            cols.append(C.COLOR)
        if p.size is not None and C.SIZE not in cols:
            cols.append(C.SIZE)
    return cols


def _attributes(run: pd.DataFrame, products: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """The ``cols`` of each row's product, aligned with ``run``; KeyError names unknown ids."""
    _require(products, [C.PRODUCT_ID, *cols], "apply_filters")
    if C.PRICE in cols and not pd.api.types.is_numeric_dtype(products[C.PRICE]):
        raise TypeError(f"column {C.PRICE!r} must be numeric (clean it first), "
                        f"got dtype {products[C.PRICE].dtype}")
    table = products.set_index(C.PRODUCT_ID)[cols]
    if not table.index.is_unique:
        dupes = table.index[table.index.duplicated()].unique().tolist()
        raise ValueError(f"duplicate product ids in products: {dupes[:10]}")
    pos = table.index.get_indexer(run[C.PRODUCT_ID])
    if (pos < 0).any():
        unknown = pd.unique(run[C.PRODUCT_ID].to_numpy()[pos < 0]).tolist()
        raise KeyError(f"unknown product id(s), not in products: {unknown[:10]}")
    return table.iloc[pos].reset_index(drop=True)


def _ordered(run: pd.DataFrame) -> pd.DataFrame:
    _require(run, [C.PRODUCT_ID], "apply_filters")
    if RANK in run.columns:  # by rank, queries in order of first appearance
        ranks = run[RANK].to_numpy()
        if C.QUERY_ID in run.columns:
            order = np.lexsort((ranks, pd.factorize(run[C.QUERY_ID])[0]))
        else:
            order = np.argsort(ranks, kind="stable")
        run = run.iloc[order]
    return run.reset_index(drop=True)


def apply_filters(run_or_results: pd.DataFrame, products: pd.DataFrame, parsed: ParsedQuery,
                  strict: bool = True) -> pd.DataFrame:
    """Keep the rows whose product satisfies ``parsed`` and renumber ``rank`` 1..n (per query).

    Takes a run or one query's results (needs ``product_id``; ordered by ``rank`` when present).
    ``products`` needs ``product_id`` and, for the constraints present, a numeric ``price``,
    ``color`` (compared case-insensitively) and ``size`` (clean form, e.g. "US 10", "15.6 in").
    ``strict=False`` keeps products whose constrained attribute is missing.
    """
    run = _ordered(run_or_results)
    cols = _needed_columns([parsed])
    if not cols:
        return _rerank(run)
    attrs = _attributes(run, products, cols)
    return _rerank(run[_constraint_mask(attrs, parsed, strict)])


def filter_run(run: pd.DataFrame, products: pd.DataFrame, queries: pd.DataFrame,
               strict: bool = True) -> pd.DataFrame:
    """``apply_filters`` with each query's own constraints, parsed from ``queries``
    (``query_id``, ``query``). Queries without constraints keep all their rows."""
    _require(run, [C.QUERY_ID, C.PRODUCT_ID], "filter_run")
    _require(queries, [C.QUERY_ID, C.QUERY], "filter_run")
    texts = dict(zip(queries[C.QUERY_ID], queries[C.QUERY]))
    unknown = [q for q in pd.unique(run[C.QUERY_ID]) if q not in texts]
    if unknown:
        raise KeyError(f"unknown query id(s), not in queries: {unknown[:10]}")
    run = _ordered(run)
    parsed = {q: parse_query(texts[q]) for q in pd.unique(run[C.QUERY_ID])}
    cols = _needed_columns(parsed.values())
    if not cols:
        return _rerank(run)
    attrs = _attributes(run, products, cols)
    keep = np.ones(len(run), dtype=bool)
    for qid, rows in run.groupby(C.QUERY_ID, sort=False).indices.items():
        p = parsed[qid]
        if p.has_constraints:
            keep[rows] = _constraint_mask(attrs.iloc[rows], p, strict)
    return _rerank(run[keep])
