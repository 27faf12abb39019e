"""Deployment: a smaller, faster encoder, an index that grows, one object that serves, and scale.

- **Quantisation**: :func:`quantize_encoder` turns the encoder's ``nn.Linear`` layers into dynamic
  int8 ones (``torch.ao.quantization.quantize_dynamic``, CPU); :func:`compare_quantized` measures
  size, speed and ndcg@10 of both models side by side in one run.
- **Incremental updates**: :func:`add_products_to_index` encodes only the new products and appends
  them to a saved :class:`~course_lib.retrieval.DenseIndex`; the old vectors stay byte-identical.
- **Serving**: :func:`save_artifacts` writes the encoder, the index, the products and the fitted
  recommender into one folder atomically; :class:`Recommender` loads it and answers ``search``,
  ``recommend`` and ``explain``; :func:`latency_report` gives p50/p99 of each.
- **Scale**: :func:`stream_encode` encodes a parquet file batch by batch into shards (atomic,
  resumable); :func:`compressed_index_table` measures faiss IVF-PQ memory and recall against exact
  search, extrapolated to 10 million products.

The live shop widget is in :mod:`course_lib.shop_demo`::

    q = quantize_encoder(encoder)                                 # int8 copy on the CPU
    save_artifacts("shop", encoder=encoder, index=index, recommender=recommender)
    shop = Recommender.load("shop")
    shop.search("wireless earbuds"); shop.recommend(user_id); shop.explain(user_id, product_id)
"""
from __future__ import annotations

import copy
import io
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import columns as C
from .encoding import Encoder, load_encoder, product_texts, write_atomic
from .evaluation import evaluate, summarize
from .explain import ExplainedRecommender
from .recommend import Catalog
from .recommend_rank import Ranker
from .retrieval import DenseIndex

__all__ = [
    "QuantizedEncoder", "quantize_encoder", "model_size_mb", "encoding_speed", "search_ndcg",
    "compare_quantized", "with_ratio", "new_products", "add_products_to_index", "save_ranker",
    "load_ranker", "save_artifacts", "Recommender", "MissingArtifactError", "latency_report",
    "stream_encode", "load_shards", "synthetic_vectors", "compressed_index_table",
]

ARTIFACTS = {  # what save_artifacts writes, by role
    "manifest": "manifest.json", "encoder": "encoder", "index": "index.npz",
    "products": "products.parquet", "ranker": "ranker.json", "ranker_weights": "ranker.npz",
    "features": "features.parquet", "history": "history.parquet",
}
_FORMAT = "course_lib.serving/1"


# =========================================================================================
# helpers
# =========================================================================================
def _write_atomic(path: Path, write: Callable[[Any], Any]) -> Path:
    """``encoding.write_atomic`` into a folder that is created if missing; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, write)
    return path


def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"{what} needs column(s) {missing}; the table has {list(df.columns)}")


def _check_query(query: object) -> str:
    if not isinstance(query, str):
        raise TypeError(f"a query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise ValueError("the query is empty: type a few words, e.g. 'wireless earbuds'")
    return query.strip()


# =========================================================================================
# 1. dynamic int8 quantisation
# =========================================================================================
class QuantizedEncoder(Encoder):
    """An :class:`Encoder` whose linear layers run in int8 (CPU only). Its fingerprint is the
    float model's plus the quantisation recipe, so an ``EmbeddingStore`` can cache its vectors."""

    source_fingerprint: str = ""
    recipe: str = ""

    def fingerprint(self) -> str:
        import hashlib

        import torch

        recipe = f"{self.source_fingerprint}|quantize_dynamic|qint8|{self.recipe}|torch {torch.__version__}"
        return hashlib.sha256(recipe.encode()).hexdigest()


KEEP_FLOAT = ("encoder.layer.0.output.dense", "encoder.layer.1.output.dense")
"""Linear layers :func:`quantize_encoder` leaves in float by default: the feed-forward output
projections of MiniLM's first two layers, whose inputs (after GELU) have outliers that one int8
scale per batch cannot hold (measured: mean cosine to the float vectors 0.981 with every layer
int8, 0.988 with these two kept float)."""


def quantize_encoder(encoder: Encoder, *, per_channel: bool = True,
                     keep_float: Sequence[str] = KEEP_FLOAT,
                     quantize_embeddings: bool = True) -> QuantizedEncoder:
    """An int8 copy of ``encoder`` (the original is untouched): its ``nn.Linear`` layers get int8
    weights (one scale per output channel when ``per_channel``) and activations quantised per
    batch at run time (``torch.ao.quantization.quantize_dynamic``); LayerNorm and the layers named
    in ``keep_float`` stay float. With ``quantize_embeddings`` the word-embedding table (for
    MiniLM 47 of its 91 MB) is stored in 8 bits too, one scale per row (a lookup, so no speed
    change; it shrinks the file from 0.69x to 0.30x of float). The copy runs on the CPU, where
    int8 matrix products (fbgemm / x86) are fast."""
    import warnings

    import torch
    from torch import nn
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    if not isinstance(encoder, Encoder):
        raise TypeError(f"quantize_encoder needs a course_lib Encoder, got {type(encoder).__name__}")
    if isinstance(encoder, QuantizedEncoder):
        raise ValueError(f"{encoder.name!r} is already quantised")
    model = copy.deepcopy(encoder.model).to("cpu").eval()
    linear = [name for name, mod in model.named_modules() if isinstance(mod, nn.Linear)]
    unknown = sorted(set(keep_float) - set(linear))
    if unknown and keep_float is not KEEP_FLOAT:
        raise ValueError(f"keep_float names no Linear layer of the model: {unknown[:3]} (e.g. {linear[:2]})")
    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    spec: dict[str, Any] = {name: qconfig for name in linear if name not in set(keep_float)}
    if quantize_embeddings:
        from torch.ao.quantization import float_qparams_weight_only_qconfig

        table = model.get_input_embeddings()
        spec.update({name: float_qparams_weight_only_qconfig
                     for name, mod in model.named_modules() if mod is table})
    with warnings.catch_warnings():   # torch.ao.quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        qmodel = torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)
    q = QuantizedEncoder(name=f"{encoder.name} (int8)", tokenizer=encoder.tokenizer, model=qmodel,
                         max_length=encoder.max_length)
    q.source_fingerprint = encoder.fingerprint()
    q.recipe = (f"per_channel={per_channel}, keep_float={sorted(set(keep_float) & set(linear))}, "
                f"embeddings={quantize_embeddings}")
    return q


def model_size_mb(encoder: Encoder) -> float:
    """MB (10^6 bytes) of the model's state dict serialised with ``torch.save`` (what a
    deployment ships; int8 weights count one byte each)."""
    import torch

    buffer = io.BytesIO()
    torch.save(encoder.model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / 1e6


def encoding_speed(encoder: Encoder, texts: Sequence[str], batch_size: int = 64, repeats: int = 1) -> float:
    """Texts per second of ``encoder.encode(texts)`` (after one warm-up batch; best of ``repeats``)."""
    texts = list(texts)
    if not texts:
        raise ValueError("encoding_speed needs at least one text")
    encoder.encode(texts[:batch_size], batch_size=batch_size, show_progress=False)
    best = math.inf
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        encoder.encode(texts, batch_size=batch_size, show_progress=False)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def search_ndcg(product_ids: Sequence, product_vectors: np.ndarray, query_ids: Sequence,
                query_vectors: np.ndarray, qrels: pd.DataFrame, k: int = 10) -> float:
    """ndcg@``k`` of exact dense search (``qrels``: query_id, product_id, esci_label)."""
    index = DenseIndex(product_ids, product_vectors)
    run = index.search_many(list(query_ids), query_vectors, k=k)
    queries = pd.DataFrame({C.QUERY_ID: list(query_ids)})
    per_query = evaluate(run, qrels, [f"ndcg@{k}"], queries=queries)
    return float(summarize(per_query, by=None)[f"ndcg@{k}"].iloc[-1])


def compare_quantized(encoder: Encoder, quantized: Encoder, products: pd.DataFrame, queries: pd.DataFrame,
                      qrels: pd.DataFrame, *, n_speed: int = 512, batch_size: int = 64, repeats: int = 1,
                      product_vectors: np.ndarray | None = None, store: Any = None,
                      store_name: str | None = None, int8_products: bool = True) -> pd.DataFrame:
    """Float and int8 side by side, measured in one run: ``size_mb``, ``texts_per_s`` (the first
    ``n_speed`` product texts, timed alternately) and ``ndcg@10`` of dense search over all
    ``products`` for ``queries`` (e.g. the test split).

    Rows: ``float32``; ``int8`` (queries and catalogue encoded by the int8 model; only with
    ``int8_products``); ``int8 (queries)`` (int8 queries searched against the float product
    vectors: the catalogue is encoded offline, only the query is on the request path).
    ``product_vectors``: the float model's product vectors if already computed; ``store`` (an
    ``EmbeddingStore``) with ``store_name`` caches the int8 ones under ``{store_name}-int8``."""
    _require(products, [C.PRODUCT_ID], "compare_quantized: products")
    _require(queries, [C.QUERY_ID, C.QUERY], "compare_quantized: queries")
    if len(queries) == 0:
        raise ValueError("compare_quantized: no queries to evaluate")
    texts, ids = product_texts(products).tolist(), products[C.PRODUCT_ID].tolist()
    sample = texts[:n_speed]
    speeds: dict[str, list[float]] = {"float32": [], "int8": []}
    for _ in range(max(1, repeats)):          # alternate, so a busy CPU hurts both alike
        speeds["float32"].append(encoding_speed(encoder, sample, batch_size))
        speeds["int8"].append(encoding_speed(quantized, sample, batch_size))

    def vectors_of(enc: Encoder, suffix: str) -> np.ndarray:
        if store is not None and store_name:
            return store.get_or_encode(f"{store_name}{suffix}", ids, texts, enc, batch_size=batch_size)
        return enc.encode(texts, batch_size=batch_size, show_progress=False)

    float_vectors = (np.asarray(product_vectors, dtype=np.float32) if product_vectors is not None
                     else vectors_of(encoder, ""))
    query_texts = queries[C.QUERY].tolist()
    float_queries = encoder.encode(query_texts, batch_size=batch_size, show_progress=False)
    int8_queries = quantized.encode(query_texts, batch_size=batch_size, show_progress=False)
    searches = {"float32": ("float32", float_vectors, float_queries)}
    if int8_products:
        searches["int8"] = ("int8", vectors_of(quantized, "-int8"), int8_queries)
    searches["int8 (queries)"] = ("int8", float_vectors, int8_queries)
    rows = {}
    for name, (model, vectors, query_vectors) in searches.items():
        enc = encoder if model == "float32" else quantized
        rows[name] = {"size_mb": model_size_mb(enc), "texts_per_s": max(speeds[model]),
                      "ndcg@10": search_ndcg(ids, vectors, queries[C.QUERY_ID], query_vectors, qrels)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table


def with_ratio(table: pd.DataFrame, new: str, old: str, name: str | None = None) -> pd.DataFrame:
    """``table`` plus a row ``new / old`` (each column's ratio), e.g. ``int8 / float32``."""
    for label in (new, old):
        if label not in table.index:
            raise KeyError(f"no row {label!r} in the table; it has {list(table.index)}")
    ratio = (table.loc[new] / table.loc[old]).rename(name or f"{new} / {old}")
    return pd.concat([table, ratio.to_frame().T])


# =========================================================================================
# 2. incremental updates
# =========================================================================================
def new_products(index_ids: Sequence, products: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``products`` whose ``product_id`` is not in ``index_ids``, in their order."""
    _require(products, [C.PRODUCT_ID], "new_products")
    known = set(np.asarray(index_ids).tolist())
    return products[~products[C.PRODUCT_ID].isin(known)]


def add_products_to_index(index_path: str | os.PathLike, products: pd.DataFrame, encoder: Any, *,
                          batch_size: int = 64) -> tuple[DenseIndex, int]:
    """Add the products of ``products`` that a saved index lacks, encoding only their texts, and
    save the index again atomically. Returns ``(index, number added)``; ids already there are
    skipped (their vectors are not recomputed). BM25 has no incremental add: rebuilding it is
    cheap (about a second for 5,000 products), so rebuild it from the full table."""
    path = Path(index_path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved index at {path}")
    index = DenseIndex.load(path)
    fresh = new_products(index.ids, products)
    if fresh.empty:
        return index, 0
    vectors = encoder.encode(product_texts(fresh).tolist(), batch_size=batch_size, show_progress=False)
    index.add(fresh[C.PRODUCT_ID].to_numpy(), vectors)
    index.save(path)
    return index, len(fresh)


# =========================================================================================
# 3. one object that serves: saved artifacts -> Recommender
# =========================================================================================
class MissingArtifactError(FileNotFoundError):
    """An artifact folder lacks a file that ``Recommender.load`` needs (the message names it)."""


def save_ranker(ranker: Ranker, folder: Path) -> None:
    """``ranker.json`` (kind, features, layer sizes) and ``ranker.npz`` (standardisation and
    weights), each written atomically."""
    state = {k: v.detach().cpu().numpy() for k, v in ranker.net.state_dict().items()}
    sizes = [int(m.out_features) for m in ranker.net if hasattr(m, "out_features")]
    meta = {"kind": ranker.kind, "features": list(ranker.features), "sizes": sizes, "keys": list(state)}
    arrays = {"mean": np.asarray(ranker.mean, np.float32), "std": np.asarray(ranker.std, np.float32),
              **{f"net.{k}": v for k, v in state.items()}}
    _write_atomic(folder / ARTIFACTS["ranker_weights"], lambda f: np.savez(f, **arrays))
    _write_atomic(folder / ARTIFACTS["ranker"], lambda f: f.write(json.dumps(meta, indent=1).encode()))


def load_ranker(folder: Path) -> Ranker:
    """The ranker written by :func:`save_ranker`."""
    import torch
    from torch import nn

    meta = json.loads((folder / ARTIFACTS["ranker"]).read_text())
    with np.load(folder / ARTIFACTS["ranker_weights"], allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    layers: list[Any] = []
    width = len(meta["features"])
    for i, size in enumerate(meta["sizes"]):
        layers.append(nn.Linear(width, size))
        if i < len(meta["sizes"]) - 1:
            layers.append(nn.ReLU())
        width = size
    net = nn.Sequential(*layers)
    net.load_state_dict({k: torch.from_numpy(arrays[f"net.{k}"]) for k in meta["keys"]})
    net.eval()
    return Ranker(meta["kind"], meta["features"], arrays["mean"], arrays["std"], net)


def _write_table(df: pd.DataFrame, path: Path) -> None:
    _write_atomic(path, lambda f: df.reset_index(drop=True).to_parquet(f, index=False))


def save_artifacts(directory: str | os.PathLike, *, encoder: Encoder, index: DenseIndex,
                   recommender: ExplainedRecommender, products: pd.DataFrame | None = None,
                   quantize: bool = False) -> Path:
    """Write everything :class:`Recommender` needs into ``directory``, atomically: the files go
    to a temporary sibling folder, which replaces ``directory`` only once complete (a reader sees
    the old artifacts or the new ones, never a mix).

    ``encoder`` is saved with ``save_pretrained`` (safetensors); ``quantize=True`` makes the
    loaded one int8. ``index`` must hold every product (its vectors rebuild the catalogue);
    ``recommender`` gives the ranker, the candidates' features and the known history.
    """
    target = Path(directory)
    products = recommender.products if products is None else products
    _require(products, [C.PRODUCT_ID, C.CATEGORY, C.BRAND, C.PRICE], "save_artifacts: products")
    missing = np.setdiff1d(products[C.PRODUCT_ID].to_numpy(), index.ids)
    if len(missing):
        raise ValueError(f"save_artifacts: the index lacks {len(missing)} product(s), e.g. {missing[:3].tolist()}")
    if isinstance(encoder, QuantizedEncoder):
        raise ValueError("save the float encoder and pass quantize=True: int8 models are rebuilt on load")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        encoder.model.save_pretrained(tmp / ARTIFACTS["encoder"], safe_serialization=True)
        encoder.tokenizer.save_pretrained(tmp / ARTIFACTS["encoder"])
        index.save(tmp / ARTIFACTS["index"])
        _write_table(products, tmp / ARTIFACTS["products"])
        ranker = recommender.ranker
        save_ranker(ranker, tmp)
        keys = [C.USER_ID, C.PRODUCT_ID, *ranker.features]
        _write_table(recommender.features[keys], tmp / ARTIFACTS["features"])
        has_history = recommender.history is not None
        if has_history:
            _write_table(recommender.history, tmp / ARTIFACTS["history"])
        manifest = {"format": _FORMAT, "encoder_name": encoder.name, "max_length": encoder.max_length,
                    "quantize": bool(quantize), "method": recommender.method, "has_history": has_history,
                    "products": len(products), "users": len(recommender.users)}
        _write_atomic(tmp / ARTIFACTS["manifest"], lambda f: f.write(json.dumps(manifest, indent=1).encode()))
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


class Recommender:
    """The shop's serving object, loaded from one artifact folder (:meth:`load`).

    ``search(query)``: dense search over the index; ``recommend(user_id)``: the ranker's top
    ``k`` of the user's candidates; ``explain(user_id, product_id)``: the reasons of one of them.
    Errors name the bad input: ``ValueError`` for an empty query, ``KeyError`` for an unknown
    user or product id.
    """

    def __init__(self, encoder: Any, index: DenseIndex, explained: ExplainedRecommender):
        self.encoder, self.index, self.explained = encoder, index, explained
        self.products = explained.products
        self._info = self.products.set_index(C.PRODUCT_ID)

    def __repr__(self) -> str:
        return (f"Recommender({len(self.products):,} products, {len(self.explained.users)} users, "
                f"{self.index.backend} index, encoder {getattr(self.encoder, 'name', '?')!r})")

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str = "cpu") -> Recommender:
        """Load the artifacts written by :func:`save_artifacts`; ``MissingArtifactError`` names a
        missing file."""
        folder = Path(directory)
        if not folder.is_dir():
            raise MissingArtifactError(f"no artifact folder at {folder}")
        manifest_path = folder / ARTIFACTS["manifest"]
        if not manifest_path.is_file():
            raise MissingArtifactError(f"{folder} has no {ARTIFACTS['manifest']}: it was not written by save_artifacts")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != _FORMAT:
            raise ValueError(f"{manifest_path}: unknown format {manifest.get('format')!r}")
        needed = ["encoder", "index", "products", "ranker", "ranker_weights", "features"]
        needed += ["history"] if manifest["has_history"] else []
        for role in needed:
            if not (folder / ARTIFACTS[role]).exists():
                raise MissingArtifactError(f"artifact {ARTIFACTS[role]!r} ({role}) is missing from {folder}")
        encoder = load_encoder(folder / ARTIFACTS["encoder"], device=device, max_length=manifest["max_length"])
        encoder.name = manifest["encoder_name"]
        if manifest["quantize"]:
            encoder = quantize_encoder(encoder)
        index = DenseIndex.load(folder / ARTIFACTS["index"])
        products = pd.read_parquet(folder / ARTIFACTS["products"])
        catalog = Catalog(products, index.get_vectors(products[C.PRODUCT_ID].to_numpy()))
        history = pd.read_parquet(folder / ARTIFACTS["history"]) if manifest["has_history"] else None
        explained = ExplainedRecommender(load_ranker(folder), pd.read_parquet(folder / ARTIFACTS["features"]),
                                         products, history=history, catalog=catalog, encoder=encoder,
                                         method=manifest["method"])
        return cls(encoder, index, explained)

    @property
    def users(self) -> list:
        return self.explained.users

    def search(self, query: str, k: int = 10) -> pd.DataFrame:
        """``rank, product_id, title, category, price, score`` of the ``k`` closest products."""
        text = _check_query(query)
        q = np.asarray(self.encoder.encode([text], show_progress=False), dtype=np.float32)
        ids, scores = self.index.search(q, k)
        found = np.isfinite(scores[0])
        out = pd.DataFrame({C.PRODUCT_ID: ids[0][found], C.SCORE: scores[0][found].astype(float)})
        cols = [c for c in (C.TITLE, C.CATEGORY, C.PRICE) if c in self._info.columns]
        out = out.join(self._info[cols], on=C.PRODUCT_ID)
        out.insert(0, C.RANK, np.arange(1, len(out) + 1))
        return out[[C.RANK, C.PRODUCT_ID, *cols, C.SCORE]]

    def recommend(self, user_id: Hashable, k: int = 10) -> pd.DataFrame:
        """``rank, user_id, product_id, title, category, price, score`` (``KeyError`` for an unknown user)."""
        recs = self.explained.recommend(user_id, k)
        return recs[[c for c in (C.RANK, C.USER_ID, C.PRODUCT_ID, C.TITLE, C.CATEGORY, C.PRICE, C.SCORE)
                     if c in recs.columns]]

    def explain(self, user_id: Hashable, product_id: Hashable) -> pd.DataFrame:
        """``reason, contribution`` of one of the user's candidates, largest first."""
        if product_id not in self._info.index:
            raise KeyError(f"unknown product id {product_id!r}: not in the catalogue of {len(self._info):,} products")
        self.explained.recommend(user_id, 1)          # KeyError naming an unknown user
        out = self.explained.explain_product(user_id, product_id)[[C.REASON, C.CONTRIBUTION]]
        return out.sort_values(C.CONTRIBUTION, ascending=False, kind="stable").reset_index(drop=True)


def latency_report(recommender: Recommender, queries: Sequence[str], user_ids: Sequence[Hashable], *,
                   n: int = 200, k: int = 10, warmup: int = 3) -> pd.DataFrame:
    """Per operation (``search``, ``recommend``, ``explain``): ``calls``, ``p50_ms``, ``p99_ms``,
    ``mean_ms`` over ``n`` single calls each (``time.perf_counter``), cycling through ``queries``
    and ``user_ids``; ``explain`` asks about each user's top item. ``warmup`` calls are not timed."""
    queries, user_ids = list(queries), list(user_ids)
    if not queries or not user_ids:
        raise ValueError("latency_report needs at least one query and one user id")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tops = {u: recommender.recommend(u, 1)[C.PRODUCT_ID].iloc[0] for u in dict.fromkeys(user_ids)}
    calls: dict[str, Callable[[int], Any]] = {
        "search": lambda i: recommender.search(queries[i % len(queries)], k),
        "recommend": lambda i: recommender.recommend(user_ids[i % len(user_ids)], k),
        "explain": lambda i: recommender.explain(user_ids[i % len(user_ids)], tops[user_ids[i % len(user_ids)]]),
    }
    rows = {}
    for name, call in calls.items():
        for i in range(warmup):
            call(i)
        times = np.empty(n)
        for i in range(n):
            start = time.perf_counter()
            call(i)
            times[i] = time.perf_counter() - start
        ms = times * 1e3
        rows[name] = {"calls": n, "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                      "mean_ms": float(ms.mean())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "operation"
    return table


# =========================================================================================
# 4. scale: streaming encoding into shards, compressed indexes
# =========================================================================================
_SHARD = "shard-{:05d}.npz"
_STREAM_META = "stream.json"


def stream_encode(parquet_path: str | os.PathLike, out_dir: str | os.PathLike, encoder: Any, *,
                  batch_rows: int = 1024, id_column: str = C.PRODUCT_ID,
                  text_fn: Callable[[pd.DataFrame], pd.Series] = product_texts,
                  batch_size: int = 64) -> dict[str, int]:
    """Encode a parquet table batch by batch (``ParquetFile.iter_batches``), one shard
    ``shard-NNNNN.npz`` (ids + float32 vectors) per batch, each written atomically. Memory holds
    one batch, never the table. Run it again after a crash and it resumes: shards already on disk
    are checked (their ids must match the batch) and skipped.

    Returns ``{"shards": ..., "encoded": ..., "skipped": ..., "rows": ...}``. ``ValueError`` when
    ``out_dir`` holds shards of another file or another ``batch_rows``.
    """
    import pyarrow.parquet as pq

    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    source, out = Path(parquet_path), Path(out_dir)
    if not source.is_file():
        raise FileNotFoundError(f"no parquet file at {source}")
    pf = pq.ParquetFile(source)
    if id_column not in pf.schema_arrow.names:
        raise KeyError(f"{source.name} has no column {id_column!r}; it has {pf.schema_arrow.names}")
    meta = {"source": source.name, "rows": pf.metadata.num_rows, "batch_rows": batch_rows,
            "id_column": id_column, "encoder": str(getattr(encoder, "name", type(encoder).__name__))}
    meta_path = out / _STREAM_META
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        changed = [k for k in meta if old.get(k) != meta[k]]
        if changed:
            raise ValueError(f"{out} holds shards of another run ({', '.join(f'{k}: {old.get(k)!r} -> {meta[k]!r}' for k in changed)}); "
                             "use a new folder or delete it")
    else:
        _write_atomic(meta_path, lambda f: f.write(json.dumps(meta, indent=1).encode()))
    encoded = skipped = 0
    for i, batch in enumerate(pf.iter_batches(batch_size=batch_rows)):
        df = batch.to_pandas()
        ids = df[id_column].to_numpy()
        path = out / _SHARD.format(i)
        if path.is_file():
            with np.load(path, allow_pickle=False) as shard:
                if not np.array_equal(shard["ids"].astype(ids.dtype), ids):
                    raise ValueError(f"{path.name} does not hold the ids of batch {i}: the source changed")
            skipped += 1
            continue
        texts = text_fn(df).tolist()
        vectors = np.asarray(encoder.encode(texts, batch_size=batch_size, show_progress=False)
                             if isinstance(encoder, Encoder) else encoder.encode(texts), dtype=np.float32)
        _write_atomic(path, lambda f: np.savez(f, ids=ids.astype(str) if ids.dtype == object else ids,
                                               vectors=vectors))
        encoded += 1
    return {"shards": encoded + skipped, "encoded": encoded, "skipped": skipped, "rows": meta["rows"]}


def load_shards(out_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, vectors)`` of every shard of ``out_dir`` in order (what a one-pass encode gives)."""
    out = Path(out_dir)
    paths = sorted(out.glob("shard-*.npz"))
    if not paths:
        raise FileNotFoundError(f"no shards in {out}")
    ids, vectors = [], []
    for p in paths:
        with np.load(p, allow_pickle=False) as shard:
            ids.append(shard["ids"])
            vectors.append(shard["vectors"])
    return np.concatenate(ids), np.vstack(vectors)


def synthetic_vectors(n: int, dim: int = 384, n_clusters: int | None = None, latent_dim: int = 48,
                      seed: int = 0, chunk: int = 100_000) -> np.ndarray:
    """``n`` L2-normalised float32 vectors shaped like sentence embeddings (as in
    ``benchmarks/bench_retrieval.py``): sub-clusters (default sqrt(n)) of 30 "categories", noise
    mostly in a shared ``latent_dim``-dimensional subspace (embeddings have a low intrinsic
    dimension), plus a little isotropic noise. For queries from the same clusters, draw
    ``n + n_queries`` vectors and split them."""
    rng = np.random.default_rng(seed)
    n_clusters = n_clusters or max(10, int(math.sqrt(n)))
    tops = rng.standard_normal((30, dim), dtype=np.float32)
    tops /= np.linalg.norm(tops, axis=1, keepdims=True)
    centres = tops[rng.integers(30, size=n_clusters)] + 0.8 * rng.standard_normal(
        (n_clusters, dim), dtype=np.float32) / np.float32(math.sqrt(dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    basis = rng.standard_normal((latent_dim, dim), dtype=np.float32) / np.float32(math.sqrt(dim))
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = centres[rng.integers(n_clusters, size=m)]
        x += 0.9 * (rng.standard_normal((m, latent_dim), dtype=np.float32) @ basis) / np.float32(math.sqrt(latent_dim))
        x += 0.4 * rng.standard_normal((m, dim), dtype=np.float32) / np.float32(math.sqrt(dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start:start + m] = x
    return out


def _serialized_bytes(index: Any) -> int:
    import faiss

    return int(faiss.serialize_index(index).size)


def _single_query_ms(index: Any, queries: np.ndarray, k: int, threads: int) -> np.ndarray:
    """Milliseconds of each single-query search with ``threads`` OpenMP threads."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, threads))
    try:
        out = np.empty(len(queries))
        for i, row in enumerate(queries):
            t = time.perf_counter()
            index.search(row[None, :], k)
            out[i] = (time.perf_counter() - t) * 1e3
    finally:
        faiss.omp_set_num_threads(before)
    return out


def compressed_index_table(vectors: np.ndarray, queries: np.ndarray, *, k: int = 10, m: int = 48,
                           nbits: int = 8, nlist: int | None = None, nprobe: int = 16, opq: bool = False,
                           train_size: int = 50_000, extrapolate_to: int = 10_000_000,
                           search_threads: int = 1, threads: int | None = None,
                           seed: int = 0) -> pd.DataFrame:
    """faiss indexes side by side on ``vectors`` (L2-normalised, inner product): exact flat,
    IVF-Flat, IVF-PQ (``m`` sub-vectors of ``nbits`` bits) and, with ``opq``, OPQ + IVF-PQ.

    Columns: ``build_s``, ``bytes_per_vector`` (``faiss.serialize_index`` size / n),
    ``fixed_mb`` (the trained, empty index: centroids, codebooks), ``p50_ms`` (single queries on
    ``search_threads`` threads: a server answers concurrent queries on the other cores),
    ``recall@k`` (share of the exact top ``k`` found), and ``gb_at_{N}``: memory *extrapolated* to
    ``extrapolate_to`` vectors as fixed + per-vector bytes × N (not measured at that size).
    ``threads``: faiss OpenMP threads for building (default: faiss's; 1 is faster on a busy
    2-core machine). PQ is trained without polysemous codes (the factory's ``np`` suffix).
    """
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    n, dim = x.shape
    if dim % m:
        raise ValueError(f"m={m} must divide the dimension {dim}")
    nlist = nlist or max(1, min(int(round(4 * math.sqrt(n))), n // 39))
    pick = np.random.default_rng(seed).choice(n, size=min(n, train_size), replace=False)
    train = x[np.sort(pick)]
    specs = {"flat (exact)": "Flat", f"IVF{nlist},Flat": f"IVF{nlist},Flat",   # "np": no polysemous
             f"IVF{nlist},PQ{m}x{nbits}": f"IVF{nlist},PQ{m}x{nbits}np"}       # training (slow, unused)
    if opq:
        specs[f"OPQ{m},IVF{nlist},PQ{m}x{nbits}"] = f"OPQ{m},IVF{nlist},PQ{m}x{nbits}np"
    exact = None
    rows = {}
    before = faiss.omp_get_max_threads()
    if threads:
        faiss.omp_set_num_threads(threads)
    try:
        for label, spec in specs.items():
            rows[label] = _measure(spec, dim, x, q, train, k, nlist, nprobe, search_threads, extrapolate_to)
            if exact is None:
                exact = rows[label].pop("_found")
            found = rows[label].pop("_found", exact)
            rows[label][f"recall@{k}"] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, exact)]))
    finally:
        faiss.omp_set_num_threads(before)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table = table[[c for c in table.columns if not c.startswith("gb_at")] + [c for c in table.columns if c.startswith("gb_at")]]
    table.index.name = "index"
    table.attrs.update(n=n, dim=dim, nlist=nlist, nprobe=min(nprobe, nlist), m=m, nbits=nbits)
    return table


def _measure(spec: str, dim: int, x: np.ndarray, q: np.ndarray, train: np.ndarray, k: int, nlist: int,
             nprobe: int, search_threads: int, extrapolate_to: int) -> dict[str, Any]:
    """Build one faiss index from its factory ``spec`` and measure it (``_found``: its top ``k``)."""
    import faiss

    n = len(x)
    start = time.perf_counter()
    index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(train)
    fixed = _serialized_bytes(index)
    index.add(x)
    build = time.perf_counter() - start
    if "IVF" in spec:
        faiss.extract_index_ivf(index).nprobe = min(nprobe, nlist)
    _, found = index.search(q, k)
    times = _single_query_ms(index, q[:200], k, search_threads)
    total = _serialized_bytes(index)
    per_vector = (total - fixed) / n
    return {"build_s": build, "bytes_per_vector": total / n, "fixed_mb": fixed / 1e6,
            "p50_ms": float(np.median(times)), "_found": found,
            f"gb_at_{extrapolate_to:,}".replace(",", "_"): (fixed + per_vector * extrapolate_to) / 1e9}
