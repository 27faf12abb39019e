"""Fine-tuning: (query, product) pairs -> a better bi-encoder, or a cross-encoder reranker.

The lesson-03 pipeline::

    pairs = training_pairs(queries, qrels, products)                 # train split, Exact labels
    tuned = fine_tune_bi_encoder(encoder, pairs, val_queries=val, qrels=qrels, products=products,
                                 output_dir="models/bi-encoder")     # config: default_config()
    tuned.encoder.encode(["earbuds"])                                # the fine-tuned encoder
    lora = fine_tune_bi_encoder(encoder, pairs, lora=LoraSettings(), ...)   # 0.3% of the weights
    cross, _ = fine_tune_cross_encoder(CrossEncoder.from_pretrained(), queries, qrels, products,
                                       candidates=train_run, val_run=val_run)
    reranked = rerank(test_run, queries, products, cross, top_n=50)

**Loss.** The bi-encoder learns with the *multiple-negatives ranking* (InfoNCE) loss: in a batch
of B (query, product) pairs, each query must pick its own product among the B products of the
batch (and the mined hard negatives, if any: ``mine_hard_negatives``). The other products are
free negatives.

**Batches.** A product that appears twice in a batch, or that is a positive of another query of
the batch, would be counted as a negative of a query it matches (a *false negative*). Batches are
therefore built so that each query appears at most once, each product at most once, and no
product of the batch (hard negatives included) is a positive of another query of the batch. They
are drawn statelessly from ``(seed, step)``, so a resumed run sees exactly the same batches.

**Reranking.** The cross-encoder reads query and product together. Trained for the few steps a
CPU affords, it is weaker alone than the fine-tuned bi-encoder, but its score blended with the
bi-encoder's (weight ``alpha``, chosen on validation queries) ranks better than either.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import columns as C
from .config import get_settings
from .encoding import DEFAULT_MODEL, DEFAULT_MODEL_NAME, Encoder, mean_pool, product_texts

if TYPE_CHECKING:
    import torch

    from .training import TrainConfig, TrainResult

__all__ = [
    "PRODUCT_TEXT", "NEGATIVE_ID", "NEGATIVE_TEXT", "PAIR_COLUMNS", "ALPHAS", "CROSS_LOSSES",
    "LoraSettings", "FineTuneResult", "CrossEncoder", "training_pairs", "check_disjoint_splits",
    "info_nce_loss", "mine_hard_negatives", "default_config", "fine_tune_bi_encoder",
    "fine_tune_cross_encoder", "rerank", "fine_tune_from_dataframe", "count_parameters",
]

# pair columns (TODO(columns.py): move next to the other column names)
PRODUCT_TEXT = "product_text"
NEGATIVE_ID = "negative_id"
NEGATIVE_TEXT = "negative_text"
PAIR_COLUMNS = (C.QUERY_ID, C.QUERY, C.PRODUCT_ID, PRODUCT_TEXT)

QUERY_MAX_LENGTH = 32        # tokens kept of a query (queries are short; longer ones are cut)
CPU_MAX_LENGTH = 32          # tokens kept of a product text when fine-tuning on a CPU
EVAL_METRICS = ("ndcg@10", "recall@100")
META_FILE = "course_lib_finetune.json"


# =============================================================================================
# helpers
# =============================================================================================

def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"{what} needs column(s) {missing}; the table has {list(df.columns)}")


def _blank(value: object) -> bool:
    return not isinstance(value, str) or not value.strip()


def _texts_of(products: pd.DataFrame) -> pd.Series:
    """The text of each product: its ``product_text`` column if it has one, else
    ``encoding.product_texts`` (title. category. description)."""
    if PRODUCT_TEXT in products.columns:
        texts = products[PRODUCT_TEXT]
        bad = [pid for pid, t in zip(products[C.PRODUCT_ID], texts) if _blank(t)]
        if bad:
            raise ValueError(f"{len(bad)} product(s) have an empty {PRODUCT_TEXT!r}, e.g. {bad[:3]}")
        return texts.astype(object)
    return product_texts(products)


@contextlib.contextmanager
def _quiet_transformers() -> Any:
    """No progress bars ("Writing model shards"), info logs or deprecation warnings from
    transformers/peft inside the block: notebook outputs stay the same from run to run."""
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)")
            yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        hf_logging.set_verbosity(verbosity)


def count_parameters(model: Any) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts of a torch module (``requires_grad`` = trainable)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return int(trainable), int(total)


# =============================================================================================
# 1. data
# =============================================================================================

def training_pairs(queries: pd.DataFrame, qrels: pd.DataFrame, products: pd.DataFrame,
                   split: str | None = C.TRAIN, labels: Sequence[str] = C.RELEVANT_LABELS
                   ) -> pd.DataFrame:
    """The positive (query, product) pairs of ``split``: one row per judged pair whose ESCI label
    is in ``labels`` (default Exact only).

    Needs ``queries`` (query_id, query, split), ``qrels`` (query_id, product_id, esci_label) and
    ``products`` (product_id and title/category/description, or a ``product_text`` column).
    ``split=None`` takes every query. Returns ``query_id, query, product_id, product_text`` in the
    order of ``queries``, then ``product_id``.

    Raises ``ValueError`` for labels outside the ESCI scheme (named), an unknown split, an empty
    query or product text (the id is named), no pair at all; ``KeyError`` for a missing column
    and for qrels ids that are not in ``queries`` / ``products`` (named).
    """
    labels = (labels,) if isinstance(labels, str) else tuple(labels)
    unknown = [lab for lab in labels if lab not in C.ESCI_LABELS]
    if unknown or not labels:
        raise ValueError(f"labels {unknown or '()'} are not ESCI labels; choose among "
                         f"{list(C.ESCI_LABELS)} (E = Exact, S = Substitute, C = Complement, "
                         "I = Irrelevant)")
    _require(queries, [C.QUERY_ID, C.QUERY] + ([C.SPLIT] if split is not None else []), "queries")
    _require(qrels, [C.QUERY_ID, C.PRODUCT_ID, C.ESCI_LABEL], "qrels")
    _require(products, [C.PRODUCT_ID], "products")
    if split is not None and split not in C.SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(C.SPLITS)} or None")
    bad_labels = sorted({str(x) for x in qrels[C.ESCI_LABEL].unique()} - set(C.ESCI_LABELS))
    if bad_labels:
        raise ValueError(f"qrels has {C.ESCI_LABEL} value(s) {bad_labels} outside the ESCI scheme "
                         f"{list(C.ESCI_LABELS)}")
    unknown_q = pd.Index(qrels[C.QUERY_ID].unique()).difference(pd.Index(queries[C.QUERY_ID]))
    if len(unknown_q):
        raise KeyError(f"qrels has {len(unknown_q)} query_id(s) that are not in queries, e.g. "
                       f"{unknown_q[:5].tolist()}")

    chosen = queries if split is None else queries[queries[C.SPLIT] == split]
    blank = [qid for qid, q in zip(chosen[C.QUERY_ID], chosen[C.QUERY]) if _blank(q)]
    if blank:
        raise ValueError(f"{len(blank)} {split or ''} query(ies) have an empty text, e.g. "
                         f"query_id {blank[:5]}")
    rel = qrels[qrels[C.ESCI_LABEL].isin(labels) & qrels[C.QUERY_ID].isin(chosen[C.QUERY_ID])]
    unknown_p = pd.Index(rel[C.PRODUCT_ID].unique()).difference(pd.Index(products[C.PRODUCT_ID]))
    if len(unknown_p):
        raise KeyError(f"qrels names {len(unknown_p)} product_id(s) that are not in products, "
                       f"e.g. {unknown_p[:5].tolist()}")
    if rel.empty:
        raise ValueError(f"no {'/'.join(labels)} pair in split {split!r}: {len(chosen)} queries, "
                         f"none with such a label in qrels")
    needed = products[products[C.PRODUCT_ID].isin(rel[C.PRODUCT_ID])]
    text = pd.Series(_texts_of(needed).to_numpy(), index=needed[C.PRODUCT_ID].to_numpy())
    order = pd.Series(np.arange(len(chosen)), index=chosen[C.QUERY_ID].to_numpy())
    pairs = rel[[C.QUERY_ID, C.PRODUCT_ID]].drop_duplicates().copy()
    pairs[C.QUERY] = pairs[C.QUERY_ID].map(chosen.drop_duplicates(C.QUERY_ID)
                                           .set_index(C.QUERY_ID)[C.QUERY])
    pairs[PRODUCT_TEXT] = pairs[C.PRODUCT_ID].map(text)
    pairs["_order"] = pairs[C.QUERY_ID].map(order)
    pairs = pairs.sort_values(["_order", C.PRODUCT_ID], kind="stable")
    return pairs[list(PAIR_COLUMNS)].reset_index(drop=True)


def _norm_text(text: object) -> str:
    return " ".join(str(text).lower().split())


def check_disjoint_splits(queries: pd.DataFrame) -> None:
    """Raise ``ValueError`` if a ``query_id``, or a query text (case and spaces ignored), appears
    in two splits: a test query seen in training would make the test score a lie.

    Needs ``query_id``, ``query`` and ``split``. Returns None when the splits are disjoint.
    """
    _require(queries, [C.QUERY_ID, C.QUERY, C.SPLIT], "queries")
    for key, what in ((queries[C.QUERY_ID], "query_id"), (queries[C.QUERY].map(_norm_text), "query text")):
        n_splits = queries[C.SPLIT].groupby(key.to_numpy()).nunique()
        shared = n_splits[n_splits > 1]
        if len(shared):
            first = shared.index[0]
            where = sorted(queries.loc[key.to_numpy() == first, C.SPLIT].unique())
            raise ValueError(f"{len(shared)} {what}(s) appear in more than one split, e.g. "
                             f"{first!r} in {where}; a query must belong to one split only")


# =============================================================================================
# 2. the loss
# =============================================================================================

def info_nce_loss(query_emb: "torch.Tensor", product_emb: "torch.Tensor", temperature: float = 0.05,
                  hard_negative_emb: "torch.Tensor | None" = None) -> "torch.Tensor":
    """Multiple-negatives ranking (InfoNCE) loss of a batch of B (query, product) pairs.

    Row ``i`` of ``query_emb`` [B, dim] matches row ``i`` of ``product_emb`` [B, dim]; every other
    product of the batch is a negative, and so is every row of ``hard_negative_emb`` [H, dim]
    (appended as H extra columns, shared by all queries). Embeddings are L2-normalised here, the
    cosine similarities divided by ``temperature``, and the loss is the mean cross-entropy with
    the diagonal as the target::

        logits = [q @ p.T | q @ n.T] / temperature        # [B, B + H]
        loss = cross_entropy(logits, [0, 1, ..., B-1])

    The batch must not hold the same product twice, nor a product that is a positive of another
    of its queries: those would be false negatives (the batches of ``fine_tune_bi_encoder`` never
    do).
    """
    import torch
    import torch.nn.functional as F

    if query_emb.ndim != 2 or product_emb.ndim != 2 or query_emb.shape != product_emb.shape:
        raise ValueError(f"query_emb and product_emb must both be [batch, dim] of the same shape, "
                         f"got {tuple(query_emb.shape)} and {tuple(product_emb.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    q = F.normalize(query_emb.float(), p=2, dim=-1)
    docs = F.normalize(product_emb.float(), p=2, dim=-1)
    if hard_negative_emb is not None:
        if hard_negative_emb.ndim != 2 or hard_negative_emb.shape[1] != q.shape[1]:
            raise ValueError(f"hard_negative_emb must be [n, {q.shape[1]}], got "
                             f"{tuple(hard_negative_emb.shape)}")
        docs = torch.cat([docs, F.normalize(hard_negative_emb.float(), p=2, dim=-1)])
    logits = q @ docs.T / temperature
    target = torch.arange(len(q), device=q.device)
    return F.cross_entropy(logits, target)


# =============================================================================================
# 3. hard negatives
# =============================================================================================

def mine_hard_negatives(pairs: pd.DataFrame, encoder_or_vectors: "Encoder | tuple[Encoder, np.ndarray]",
                        products: pd.DataFrame, qrels: pd.DataFrame, k: int = 20, skip_top: int = 0,
                        *, seed: int = 42, exclude_substitutes: bool = False,
                        batch_size: int = 64) -> pd.DataFrame:
    """Add ``negative_id`` and ``negative_text`` to ``pairs``: for each pair, a product that the
    dense model ranks high for the query but that is not a positive of it.

    ``encoder_or_vectors`` is the (pretrained) ``Encoder``, or ``(encoder, product_vectors)`` with
    the vectors of lesson 02's ``EmbeddingStore`` (rows aligned with ``products``), so that only
    the queries are encoded. For each query, products labelled E (and S with
    ``exclude_substitutes``) in ``qrels``, and the query's own products in ``pairs``, are left out;
    of the rest the ranks ``skip_top + 1 .. skip_top + k`` are the candidates (``skip_top`` skips
    the very top, where unjudged true matches hide in real data), and each pair draws one of them
    at random (``seed``), so pairs of the same query get different negatives.
    """
    _require(pairs, [C.QUERY_ID, C.QUERY, C.PRODUCT_ID], "pairs")
    _require(qrels, [C.QUERY_ID, C.PRODUCT_ID, C.ESCI_LABEL], "qrels")
    _require(products, [C.PRODUCT_ID], "products")
    if k < 1 or skip_top < 0:
        raise ValueError(f"k must be >= 1 and skip_top >= 0, got k={k}, skip_top={skip_top}")
    if isinstance(encoder_or_vectors, tuple):
        encoder, product_vectors = encoder_or_vectors
        product_vectors = np.asarray(product_vectors, dtype=np.float32)
        if product_vectors.shape != (len(products), encoder.dim):
            raise ValueError(f"product_vectors have shape {product_vectors.shape}; expected "
                             f"({len(products)}, {encoder.dim}): one row per product, in the "
                             "order of products")
    else:
        encoder, product_vectors = encoder_or_vectors, None
    if not isinstance(encoder, Encoder):
        raise TypeError("encoder_or_vectors must be an Encoder or a tuple (encoder, "
                        f"product_vectors), got {type(encoder).__name__}")
    ids = products[C.PRODUCT_ID].to_numpy()
    texts = _texts_of(products).to_numpy()
    if product_vectors is None:
        product_vectors = encoder.encode(list(texts), batch_size=batch_size)
    n_products = len(ids)
    if skip_top + k > n_products - 1:
        raise ValueError(f"skip_top + k = {skip_top + k} is more than the {n_products} products allow")
    position = pd.Series(np.arange(n_products), index=ids)
    unknown = pd.Index(pairs[C.PRODUCT_ID].unique()).difference(position.index)
    if len(unknown):
        raise KeyError(f"pairs has product_id(s) not in products, e.g. {unknown[:5].tolist()}")

    excluded_labels = ("E", "S") if exclude_substitutes else ("E",)
    excluded = qrels[qrels[C.ESCI_LABEL].isin(excluded_labels)]
    exclude_by_q: dict[Any, set] = {}
    for frame in (excluded[[C.QUERY_ID, C.PRODUCT_ID]], pairs[[C.QUERY_ID, C.PRODUCT_ID]]):
        for qid, pid in zip(frame[C.QUERY_ID], frame[C.PRODUCT_ID]):
            exclude_by_q.setdefault(qid, set()).add(pid)
    first = pairs.drop_duplicates(C.QUERY_ID)
    qids, qtexts = first[C.QUERY_ID].tolist(), first[C.QUERY].tolist()
    query_vectors = encoder.encode(qtexts, batch_size=batch_size)
    candidates: dict[Any, np.ndarray] = {}
    for start in range(0, len(qids), 256):
        scores = query_vectors[start:start + 256] @ product_vectors.T
        for row, qid in enumerate(qids[start:start + 256]):
            s = scores[row]
            bad = position.reindex(list(exclude_by_q.get(qid, ()))).dropna().astype(int).to_numpy()
            s[bad] = -np.inf
            top = np.argsort(-s, kind="stable")[:skip_top + k]
            top = top[np.isfinite(s[top])][skip_top:]
            if len(top) == 0:
                raise ValueError(f"query {qid!r} has no product left to use as a negative")
            candidates[qid] = top
    rng = np.random.default_rng(seed)
    draws = rng.random(len(pairs))
    picks = [candidates[qid][int(u * len(candidates[qid]))]
             for qid, u in zip(pairs[C.QUERY_ID], draws)]
    out = pairs.copy()
    out[NEGATIVE_ID] = ids[picks]
    out[NEGATIVE_TEXT] = texts[picks]
    return out


# =============================================================================================
# 4. bi-encoder fine-tuning
# =============================================================================================

@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters (``peft``): rank ``r``, scale ``alpha / r``, ``dropout`` on the adapter input,
    on the attention projections named in ``target_modules`` (BERT: query, key, value, dense)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ("query", "value")

    def to_peft(self) -> Any:
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.target_modules), bias="none")


@dataclass
class FineTuneResult:
    """What ``fine_tune_bi_encoder`` returns: the fine-tuned ``encoder`` (LoRA merged), the
    ``TrainResult``, the trainable and total parameter counts during training, and where the
    model was saved (None if not saved)."""

    encoder: Encoder
    result: "TrainResult"
    trainable_parameters: int
    total_parameters: int
    output_dir: Path | None = None
    lora: LoraSettings | None = None

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_parameters / self.total_parameters

    def __repr__(self) -> str:
        return (f"FineTuneResult({self.encoder!r}, trainable={self.trainable_parameters:,} of "
                f"{self.total_parameters:,} ({self.trainable_fraction:.2%}), "
                f"lora={self.lora is not None}, output_dir={self.output_dir}, {self.result!r})")


FULL_LR, LORA_LR, CROSS_LR = 1e-4, 2e-3, 2e-4   # chosen on the workshop validation queries


def default_config(settings: Any = None, device: Any = None, lora: bool = False,
                   **overrides: Any) -> "TrainConfig":
    """The fine-tuning ``TrainConfig`` of a profile (default: ``get_settings()``): its
    ``train_steps``, ``train_batch_size``, seed and precision; lr 1e-4 (2e-3 with ``lora``: the
    adapters start at zero and are few); two evaluations on a CPU (each encodes the whole
    catalogue, about the cost of 25 training steps there), ten on a GPU. ``overrides`` replace
    any field."""
    from .config import try_gpu
    from .training import TrainConfig

    settings = settings or get_settings()
    device = try_gpu() if device is None else device
    evals = 10 if getattr(device, "type", str(device)) == "cuda" else 2
    base = {"lr": LORA_LR if lora else FULL_LR,
            "eval_every": max(1, math.ceil(settings.train_steps / evals))}
    return TrainConfig.from_settings(settings, **{**base, **overrides})


class _PairBatches:
    """Stateless batches of pairs: ``indices(micro_step)`` depends only on (seed, micro_step).

    Queries are visited in a random order per epoch (a pass over the queries); each query gives one
    of its positive pairs at random. A pair is skipped when its query is already in the batch, when
    its product (or hard negative) is already in the batch, when its product or hard negative is a
    positive of a query of the batch, or when one of its query's positives is already in the batch:
    all of these would be false negatives. A batch can then hold fewer than ``batch_size`` pairs.
    """

    def __init__(self, pairs: pd.DataFrame, batch_size: int, seed: int, with_negatives: bool):
        self.seed, self.batch_size, self.with_negatives = int(seed), int(batch_size), with_negatives
        codes, self.query_ids = pd.factorize(pairs[C.QUERY_ID])
        self.rows = [np.flatnonzero(codes == i) for i in range(len(self.query_ids))]
        self.products = pairs[C.PRODUCT_ID].to_numpy()
        self.negatives = pairs[NEGATIVE_ID].to_numpy() if with_negatives else None
        self.positives = [frozenset(self.products[r]) for r in self.rows]

    def indices(self, micro_step: int) -> list[int]:
        n, size = len(self.rows), self.batch_size
        epoch, offset = divmod(micro_step * size, n)
        order = np.random.default_rng([self.seed, epoch]).permutation(n)
        rng = np.random.default_rng([self.seed, 7919, micro_step])
        chosen: list[int] = []
        used: set = set()      # products and negatives in the batch
        blocked: set = set()   # positives of the queries in the batch
        for j in range(n):
            if len(chosen) == size:
                break
            q = int(order[(offset + j) % n])
            positives = self.positives[q]
            if not used.isdisjoint(positives):
                continue
            for row in rng.permutation(self.rows[q]):
                product = self.products[row]
                if product in blocked:
                    continue
                if self.with_negatives:
                    negative = self.negatives[row]
                    if negative in blocked or negative in used or negative in positives:
                        continue
                    used.add(negative)
                chosen.append(int(row))
                used.add(product)
                blocked |= positives
                break
        return chosen


def _tokenize(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, "torch.Tensor"]:
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt", return_token_type_ids=False)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def _embed(model: Any, batch: dict[str, "torch.Tensor"]) -> "torch.Tensor":
    hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    return mean_pool(hidden, batch["attention_mask"])


def _dense_metrics(encoder: Encoder, queries: pd.DataFrame, qrels: pd.DataFrame,
                   product_ids: np.ndarray, product_vectors: np.ndarray) -> dict[str, float]:
    from .evaluation import evaluate
    from .retrieval import DenseIndex

    index = DenseIndex(product_ids, product_vectors)
    query_vectors = encoder.encode(queries[C.QUERY].tolist(), batch_size=128, show_progress=False)
    run = index.search_many(queries[C.QUERY_ID].tolist(), query_vectors, k=100)
    per_query = evaluate(run, qrels, EVAL_METRICS, queries=queries)
    return {m: float(per_query[m].mean()) for m in EVAL_METRICS}


def _pick_val_queries(val_queries: pd.DataFrame, qrels: pd.DataFrame, n: int | None,
                      seed: int) -> pd.DataFrame:
    _require(val_queries, [C.QUERY_ID, C.QUERY], "val_queries")
    judged = val_queries[val_queries[C.QUERY_ID].isin(qrels[C.QUERY_ID])]
    if judged.empty:
        raise ValueError("none of the val_queries has judgments in qrels")
    if n is not None and len(judged) > n:
        judged = judged.sample(n=n, random_state=seed).sort_index()
    return judged


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move the complete folder ``tmp`` to ``final``; an existing model folder there is replaced
    (renamed aside, then deleted), so ``final`` always holds a complete model or nothing new."""
    if final.exists():
        old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.replace(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _check_output_dir(output_dir: str | os.PathLike) -> Path:
    """The absolute ``output_dir``; raises ``ValueError`` if it is a file or a non-empty folder
    that is not a model folder (it would be replaced)."""
    final = Path(output_dir).expanduser().resolve()
    if final.exists():
        if not final.is_dir():
            raise ValueError(f"output_dir {final} is a file")
        if any(final.iterdir()) and not (final / "config.json").is_file():
            raise ValueError(f"output_dir {final} exists and is not a model folder (no "
                             "config.json); refusing to replace it: choose an empty or new folder")
    return final


def _prepare_output(output_dir: str | os.PathLike) -> tuple[Path, Path]:
    final = _check_output_dir(output_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    return final, tmp


def _save_encoder(model: Any, tokenizer: Any, output_dir: str | os.PathLike, max_length: int,
                  meta: dict[str, Any]) -> Path:
    """``save_pretrained`` model and tokenizer into ``output_dir`` atomically; the tokenizer's
    ``model_max_length`` is set to ``max_length``, so ``load_encoder`` reads texts as in training.
    Also writes the sentence-transformers files (mean pooling, normalisation) and ``META_FILE``."""
    final, tmp = _prepare_output(output_dir)
    try:
        with _quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        config_path = tmp / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["model_max_length"] = int(max_length)
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        (tmp / "1_Pooling").mkdir()
        (tmp / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": int(model.config.hidden_size), "pooling_mode_mean_tokens": True}))
        (tmp / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ], indent=1))
        (tmp / "sentence_bert_config.json").write_text(json.dumps(
            {"max_seq_length": int(max_length), "do_lower_case": False}))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
        _replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def fine_tune_bi_encoder(encoder: Encoder, pairs: pd.DataFrame, *, config: "TrainConfig | None" = None,
                         val_queries: pd.DataFrame | None = None, qrels: pd.DataFrame | None = None,
                         products: pd.DataFrame | None = None,
                         product_vectors_fn: Callable[[Encoder], np.ndarray] | None = None,
                         output_dir: str | os.PathLike | None = None, max_length: int | None = None,
                         hard_negatives: bool = False, lora: LoraSettings | None = None,
                         temperature: float = 0.05, max_val_queries: int | None = 200,
                         freeze_embeddings: bool = True, device: Any = None) -> FineTuneResult:
    """Fine-tune a copy of ``encoder`` on positive ``pairs`` with ``info_nce_loss``.

    ``pairs``: ``training_pairs`` (``query_id, query, product_id, product_text``), plus
    ``negative_id, negative_text`` from ``mine_hard_negatives`` for ``hard_negatives=True`` (mined
    here with ``encoder`` when absent; that needs ``products`` and ``qrels``). ``config``: default
    ``default_config()``; ``batch_size`` pairs per batch, built statelessly from (seed, step) with
    no false negatives (see ``_PairBatches``). Products are read at ``max_length`` tokens, default
    32 on a CPU (the title and category: as good on the workshop validation queries as 64, and a
    step costs half) and 64 on a GPU; the saved model keeps that limit.

    Validation: with ``val_queries``, ``qrels`` and ``products``, every ``config.eval_every``
    steps the model being trained encodes at most ``max_val_queries`` validation queries and all
    products (``product_vectors_fn(encoder)`` if given, else ``encode(batch_size=128)``), and
    ``ndcg@10`` / ``recall@100`` of dense retrieval are measured; the best step's weights are kept.

    ``freeze_embeddings`` (full fine-tuning): keep the word-embedding table (11.7M of MiniLM's
    22.7M parameters) fixed; a short run updates few of its rows anyway, and it makes a CPU step
    about 20% faster. ``lora``: train LoRA adapters only (merged into the weights at the end).
    ``output_dir``: save with ``save_pretrained`` (+ tokenizer) atomically;
    ``encoding.load_encoder(output_dir)`` loads it back. ``encoder`` itself is left untouched.
    Returns a ``FineTuneResult``.
    """
    import torch

    from .training import Trainer

    _require(pairs, PAIR_COLUMNS, "pairs")
    if pairs.empty:
        raise ValueError("pairs is empty: nothing to train on")
    blank = [i for i, (q, t) in enumerate(zip(pairs[C.QUERY], pairs[PRODUCT_TEXT]))
             if _blank(q) or _blank(t)]
    if blank:
        raise ValueError(f"{len(blank)} pair(s) have an empty query or product text, e.g. row "
                         f"{blank[0]}")
    if max_length is None:
        from .config import try_gpu

        on = torch.device(device) if device is not None else try_gpu()
        max_length = 64 if on.type == "cuda" else CPU_MAX_LENGTH
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    if output_dir is not None:
        _check_output_dir(output_dir)
    config = config or default_config(device=device, lora=lora is not None)
    if hard_negatives and not {NEGATIVE_ID, NEGATIVE_TEXT} <= set(pairs.columns):
        if products is None or qrels is None:
            raise ValueError("hard_negatives=True needs pairs from mine_hard_negatives (columns "
                             f"{NEGATIVE_ID!r}, {NEGATIVE_TEXT!r}), or products and qrels to mine them")
        pairs = mine_hard_negatives(pairs, encoder, products, qrels, seed=config.seed)
    n_queries = pairs[C.QUERY_ID].nunique()
    if config.batch_size > n_queries:
        raise ValueError(f"batch_size {config.batch_size} is larger than the number of training "
                         f"queries ({n_queries}): a batch holds each query at most once (a second "
                         "pair of the same query would be a false negative). Lower batch_size.")
    if config.batch_size < 2:
        raise ValueError("batch_size must be at least 2: in-batch negatives need other pairs")

    evaluate = None
    if val_queries is not None:
        if qrels is None or products is None:
            raise ValueError("validation needs qrels and products as well as val_queries")
        val = _pick_val_queries(val_queries, qrels, max_val_queries, config.seed)
        val_qrels = qrels[qrels[C.QUERY_ID].isin(val[C.QUERY_ID])]
        _require(products, [C.PRODUCT_ID], "products")
        all_ids = products[C.PRODUCT_ID].to_numpy()
        all_texts = _texts_of(products).tolist() if product_vectors_fn is None else None

    model = copy.deepcopy(encoder.model)
    tokenizer = encoder.tokenizer
    if lora is not None:
        from peft import get_peft_model

        with torch.random.fork_rng(devices=[]), _quiet_transformers():
            torch.manual_seed(config.seed)
            model = get_peft_model(model, lora.to_peft())
    else:
        for p in model.parameters():
            p.requires_grad_(True)
        if freeze_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)
    trainable, total = count_parameters(model)

    def live_encoder(m: Any) -> Encoder:
        return Encoder(name=f"{encoder.name} (training)", tokenizer=tokenizer, model=m,
                       max_length=max_length)

    if val_queries is not None:
        def evaluate(m: Any) -> dict[str, float]:  # noqa: F811 - the Trainer's callback
            enc = live_encoder(m)
            if product_vectors_fn is not None:
                vectors = np.asarray(product_vectors_fn(enc), dtype=np.float32)
            else:
                vectors = enc.encode(all_texts, batch_size=128, show_progress=False)
            return _dense_metrics(enc, val, val_qrels, all_ids, vectors)

    with_negatives = bool(hard_negatives)
    batches = _PairBatches(pairs, config.batch_size, config.seed, with_negatives)
    queries_col, texts_col = pairs[C.QUERY].to_numpy(), pairs[PRODUCT_TEXT].to_numpy()
    negatives_col = pairs[NEGATIVE_TEXT].to_numpy() if with_negatives else None

    def make_batch(micro_step: int) -> dict[str, Any]:
        rows = batches.indices(micro_step)
        docs = list(texts_col[rows]) + (list(negatives_col[rows]) if with_negatives else [])
        return {"query": _tokenize(tokenizer, list(queries_col[rows]), QUERY_MAX_LENGTH),
                "docs": _tokenize(tokenizer, docs, max_length), "n": len(rows)}

    def loss_fn(m: Any, batch: dict[str, Any]) -> "torch.Tensor":
        n = batch["n"]
        q = _embed(m, batch["query"])
        d = _embed(m, batch["docs"])
        return info_nce_loss(q, d[:n], temperature, d[n:] if with_negatives else None)

    trainer = Trainer(model, loss_fn, make_batch, config, evaluate=evaluate, metric="ndcg@10",
                      device=device, parameters=[p for p in model.parameters() if p.requires_grad])
    result = trainer.train()
    model = trainer.model
    if lora is not None:
        with _quiet_transformers():
            model = model.merge_and_unload()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)

    saved = None
    name = f"{encoder.name}+fine-tuned" + ("-lora" if lora is not None else "")
    if output_dir is not None:
        meta = {"base_model": encoder.name, "max_length": max_length, "temperature": temperature,
                "freeze_embeddings": freeze_embeddings if lora is None else None,
                "hard_negatives": with_negatives, "lora": asdict(lora) if lora else None,
                "trainable_parameters": trainable, "total_parameters": total,
                "config": config.as_dict(), "best_step": result.best_step,
                "best_metric": result.best_metric, "steps_done": result.steps_done,
                "n_pairs": len(pairs), "n_queries": int(n_queries)}
        saved = _save_encoder(model, tokenizer, output_dir, max_length, meta)
        name = str(saved)
    tuned = Encoder(name=name, tokenizer=tokenizer, model=model, max_length=max_length)
    return FineTuneResult(tuned, result, trainable, total, saved, lora)


# =============================================================================================
# 6. cross-encoder reranker
# =============================================================================================

@dataclass
class CrossEncoder:
    """A BERT that reads a query and a product text together and returns one relevance score
    (``AutoModelForSequenceClassification`` with ``num_labels=1``; higher = more relevant).

    Slower than a bi-encoder (one forward pass per (query, product) pair, nothing to precompute)
    and, once trained enough, more accurate: use it to rerank the top results of a fast retriever
    (``rerank``). ``alpha`` is the weight ``rerank`` gives its score against the retriever's
    (1 = the cross-encoder alone); ``fine_tune_cross_encoder`` chooses it on validation queries.
    """

    name: str
    tokenizer: Any = field(repr=False)
    model: Any = field(repr=False)
    max_length: int = 96
    alpha: float = 1.0

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, device: Any = None,
                        max_length: int | None = None, seed: int = 42) -> CrossEncoder:
        """Load a cross-encoder from a folder written by ``save`` (its ``max_length`` and
        ``alpha`` come back too), a Hugging Face id, or (None) the course's offline MiniLM
        (``encoding.DEFAULT_MODEL``), whose new score head is initialised from ``seed``.
        Eval mode, on ``device`` (default ``try_gpu()``); ``max_length`` default 96."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from .config import try_gpu

        meta: dict[str, Any] = {}
        if name_or_path is None:
            if DEFAULT_MODEL is None:
                from .encoding import default_model_path
                default_model_path()  # raises with the pip command
            source, name = str(DEFAULT_MODEL), DEFAULT_MODEL_NAME
        else:
            source = name = os.fspath(name_or_path)
            if Path(source).expanduser().exists():
                folder = Path(source).expanduser()
                if not (folder / "config.json").is_file():
                    raise ValueError(f"{folder} is not a model folder (no config.json)")
                source = name = str(folder.resolve())
                if (folder / META_FILE).is_file():
                    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        # quiet: "some weights are newly initialized" (the score head) is expected here
        with torch.random.fork_rng(devices=[]), _quiet_transformers():
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_pretrained(
                source, num_labels=1, ignore_mismatched_sizes=True, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(source)
        model.eval()
        model.to(torch.device(device) if device is not None else try_gpu())
        max_length = max_length or int(meta.get("max_length", 96))
        return cls(name=name, tokenizer=tokenizer, model=model, max_length=max_length,
                   alpha=float(meta.get("alpha", 1.0)))

    def __repr__(self) -> str:
        return (f"CrossEncoder(name={self.name!r}, device={self.device}, "
                f"max_length={self.max_length}, alpha={self.alpha})")

    @property
    def device(self) -> "torch.device":
        return next(self.model.parameters()).device

    def _tokenize(self, queries: list[str], texts: list[str]) -> dict[str, "torch.Tensor"]:
        enc = self.tokenizer(queries, texts, padding=True, truncation="only_second",
                             max_length=self.max_length, return_tensors="pt")
        return dict(enc)

    def score(self, pairs: pd.DataFrame | Sequence[tuple[str, str]], batch_size: int = 64,
              show_progress: bool | None = None) -> np.ndarray:
        """Relevance scores (float32, one per pair) of ``pairs``: a DataFrame with ``query`` and
        ``product_text`` columns, or a list of ``(query, product_text)`` tuples. Pairs are scored
        in batches sorted by length (less padding), in inference mode."""
        import torch
        from tqdm.auto import tqdm

        if isinstance(pairs, pd.DataFrame):
            _require(pairs, [C.QUERY, PRODUCT_TEXT], "pairs")
            queries, texts = pairs[C.QUERY].tolist(), pairs[PRODUCT_TEXT].tolist()
        else:
            pairs = list(pairs)
            queries, texts = [p[0] for p in pairs], [p[1] for p in pairs]
        for i, (q, t) in enumerate(zip(queries, texts)):
            if _blank(q) or _blank(t):
                raise ValueError(f"pair {i} has an empty query or product text: {(q, t)!r}")
        n = len(queries)
        out = np.empty(n, dtype=np.float32)
        if n == 0:
            return out
        lengths = np.array([len(q) + len(t) for q, t in zip(queries, texts)])
        order = np.argsort(-lengths, kind="stable")
        show = n > 1000 if show_progress is None else show_progress
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), tqdm(total=n, desc="scoring", unit="pair",
                                              disable=not show) as bar:
                for start in range(0, n, batch_size):
                    rows = order[start:start + batch_size]
                    batch = self._tokenize([queries[i] for i in rows], [texts[i] for i in rows])
                    batch = {k: v.to(self.device) for k, v in batch.items()}
                    out[rows] = self.model(**batch).logits[:, 0].float().cpu().numpy()
                    bar.update(len(rows))
        finally:
            self.model.train(was_training)
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """``save_pretrained`` the model and tokenizer into ``path`` atomically (a temporary
        folder renamed into place); ``CrossEncoder.from_pretrained(path)`` loads it back."""
        final, tmp = _prepare_output(path)
        try:
            with _quiet_transformers():
                self.model.save_pretrained(tmp)
                self.tokenizer.save_pretrained(tmp)
            (tmp / META_FILE).write_text(json.dumps({"kind": "cross-encoder", "base_model": self.name,
                                                     "max_length": self.max_length,
                                                     "alpha": self.alpha}, indent=1))
            _replace_dir(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final


def _lookup_texts(run: pd.DataFrame, queries: pd.DataFrame, products: pd.DataFrame) -> pd.DataFrame:
    _require(queries, [C.QUERY_ID, C.QUERY], "queries")
    _require(products, [C.PRODUCT_ID], "products")
    qtext = queries.drop_duplicates(C.QUERY_ID).set_index(C.QUERY_ID)[C.QUERY]
    missing_q = pd.Index(run[C.QUERY_ID].unique()).difference(qtext.index)
    if len(missing_q):
        raise KeyError(f"the run has query_id(s) not in queries, e.g. {missing_q[:5].tolist()}")
    needed = products[products[C.PRODUCT_ID].isin(run[C.PRODUCT_ID])]
    ptext = pd.Series(_texts_of(needed).to_numpy(), index=needed[C.PRODUCT_ID].to_numpy())
    missing_p = pd.Index(run[C.PRODUCT_ID].unique()).difference(ptext.index)
    if len(missing_p):
        raise KeyError(f"the run has product_id(s) not in products, e.g. {missing_p[:5].tolist()}")
    return pd.DataFrame({C.QUERY: run[C.QUERY_ID].map(qtext).to_numpy(),
                         PRODUCT_TEXT: run[C.PRODUCT_ID].map(ptext).to_numpy()})


def _ordered_run(run: pd.DataFrame) -> pd.DataFrame:
    """The run sorted by query (first appearance), then rank (or descending score)."""
    _require(run, [C.QUERY_ID, C.PRODUCT_ID], "run")
    if C.RANK not in run.columns and C.SCORE not in run.columns:
        raise KeyError("run needs a 'rank' or a 'score' column")
    out = run.reset_index(drop=True).copy()
    out["_q"] = pd.factorize(out[C.QUERY_ID])[0]
    key = out[C.RANK] if C.RANK in out.columns else -out[C.SCORE]
    out["_k"] = key.to_numpy()
    out = out.sort_values(["_q", "_k"], kind="stable").drop(columns=["_q", "_k"])
    return out.reset_index(drop=True)


ALPHAS = tuple(round(a / 10, 1) for a in range(11))   # the blend weights tried on validation


def _zscore(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``values`` standardised within each group (mean 0, standard deviation 1)."""
    series = pd.Series(values, dtype="float64")
    by = series.groupby(groups, sort=False)
    std = by.transform("std").fillna(0.0).replace(0.0, 1.0)
    return ((series - by.transform("mean")) / std).to_numpy()


def _blend(cross_scores: np.ndarray, first_scores: np.ndarray, groups: np.ndarray,
           alpha: float) -> np.ndarray:
    """``alpha * z(cross) + (1 - alpha) * z(first stage)``, z-scores within each query; the raw
    cross-encoder scores when ``alpha == 1``."""
    if alpha == 1.0:
        return np.asarray(cross_scores, dtype="float64")
    return alpha * _zscore(cross_scores, groups) + (1 - alpha) * _zscore(first_scores, groups)


def _first_stage_scores(ordered: pd.DataFrame, position: np.ndarray) -> np.ndarray:
    if C.SCORE in ordered.columns:
        return ordered[C.SCORE].to_numpy(dtype="float64")
    return -position.astype("float64")


def rerank(run: pd.DataFrame, queries: pd.DataFrame, products: pd.DataFrame, cross: CrossEncoder,
           top_n: int = 50, batch_size: int = 64, alpha: float | None = None) -> pd.DataFrame:
    """Rerank the first ``top_n`` results of each query of ``run`` with ``cross``.

    The new score of a reranked result is ``alpha * z(cross-encoder score) + (1 - alpha) *
    z(run's score)``, with z-scores taken within each query's top ``top_n`` (``score``
    missing: ``-rank``); ``alpha`` defaults to ``cross.alpha``, and with ``alpha == 1`` the score
    is the cross-encoder's own. Returns a run (``query_id, product_id, score, rank``) with the
    same rows: the top ``top_n`` of each query in the new order, then the others in their old
    order below them (their ``score`` is shifted under the lowest reranked one, so that score and
    rank agree). Needs ``queries`` (query_id, query) and ``products`` (product_id and texts, or
    ``product_text``).
    """
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    alpha = cross.alpha if alpha is None else alpha
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    ordered = _ordered_run(run)
    if ordered.empty:
        return ordered.assign(**{C.SCORE: pd.Series(dtype="float64"),
                                 C.RANK: pd.Series(dtype="int64")})[
            [C.QUERY_ID, C.PRODUCT_ID, C.SCORE, C.RANK]]
    position = ordered.groupby(C.QUERY_ID, sort=False).cumcount().to_numpy()
    head = position < top_n
    first = _first_stage_scores(ordered, position)
    cross_scores = cross.score(_lookup_texts(ordered[head], queries, products),
                               batch_size=batch_size).astype("float64")
    scores = np.full(len(ordered), np.nan)
    scores[head] = _blend(cross_scores, first[head], ordered.loc[head, C.QUERY_ID].to_numpy(), alpha)
    return _sorted_run(ordered, position, scores, top_n)


def _sorted_run(ordered: pd.DataFrame, position: np.ndarray, scores: np.ndarray,
                top_n: int) -> pd.DataFrame:
    """``ordered`` (sorted by query and old rank) with the new ``scores`` of its top ``top_n``
    per query: sorted by them, the rest below in the old order, ranks renumbered."""
    head = position < top_n
    out = ordered.copy()
    out[C.SCORE] = scores
    lowest = out[head].groupby(C.QUERY_ID, sort=False)[C.SCORE].min()
    tail = ~head
    if tail.any():
        out.loc[tail, C.SCORE] = (out.loc[tail, C.QUERY_ID].map(lowest).to_numpy()
                                  - 1.0 - (position[tail] - top_n))
    out["_q"] = pd.factorize(out[C.QUERY_ID])[0]
    out["_h"] = tail
    out["_p"] = position
    out["_s"] = np.where(head, -out[C.SCORE], 0.0)
    out = out.sort_values(["_q", "_h", "_s", "_p"], kind="stable")
    out[C.RANK] = out.groupby("_q", sort=False).cumcount().astype("int64") + 1
    return out[[C.QUERY_ID, C.PRODUCT_ID, C.SCORE, C.RANK]].reset_index(drop=True)


class _CrossBatches:
    """Stateless listwise groups for the cross-encoder: each group is one query with one positive
    (E) and ``group_size - 1`` negatives of that query, drawn from (seed, micro_step)."""

    def __init__(self, groups: list[tuple[str, list[str], list[str]]], batch_size: int,
                 group_size: int, seed: int):
        self.groups, self.group_size, self.seed = groups, group_size, int(seed)
        self.per_batch = max(1, batch_size // group_size)

    def items(self, micro_step: int) -> list[tuple[str, str]]:
        n, size = len(self.groups), self.per_batch
        epoch, offset = divmod(micro_step * size, n)
        order = np.random.default_rng([self.seed, epoch]).permutation(n)
        rng = np.random.default_rng([self.seed, 104729, micro_step])
        out = []
        for j in range(min(size, n)):
            query, positives, negatives = self.groups[int(order[(offset + j) % n])]
            k = self.group_size - 1
            picks = rng.choice(len(negatives), size=k, replace=len(negatives) < k)
            out.append((query, positives[int(rng.integers(len(positives)))]))
            out += [(query, negatives[int(i)]) for i in picks]
        return out


CROSS_LOSSES = ("listwise", "pointwise")


def fine_tune_cross_encoder(cross: CrossEncoder, queries: pd.DataFrame, qrels: pd.DataFrame,
                            products: pd.DataFrame, *, config: "TrainConfig | None" = None,
                            split: str = C.TRAIN, max_length: int = 96, loss: str = "listwise",
                            group_size: int = 8, candidates: pd.DataFrame | None = None,
                            val_run: pd.DataFrame | None = None, val_top_n: int = 50,
                            max_val_queries: int = 50, blend: bool = True,
                            output_dir: str | os.PathLike | None = None,
                            device: Any = None) -> tuple[CrossEncoder, "TrainResult"]:
    """Fine-tune a copy of ``cross`` to rank the Exact products of a query above the others.

    ``loss="listwise"`` (the default): a batch holds ``config.batch_size // group_size`` queries
    of ``split``, each with one E product and ``group_size - 1`` non-E products of that query; the
    loss is the cross-entropy of a softmax over each group's scores, with the E product as the
    target. It trains the reranker on exactly its job (order the products of one query), and every
    pair gets a gradient relative to its rivals. ``loss="pointwise"``: ``batch_size`` judged pairs
    drawn at random, binary cross-entropy of the score against the ESCI gain (E 1, S 0.1,
    C 0.01, I 0); it spends many of its few CPU steps on easy Complement/Irrelevant pairs and on
    calibrating absolute scores, which reranking does not need.

    Negatives are the judged S/C/I products of the query, or, with ``candidates`` (a run over the
    ``split`` queries, e.g. the fine-tuned bi-encoder's top 50), the non-E products of that run:
    the very products the reranker will have to order (unjudged ones count as I). ``val_run`` (a run
    over validation queries, e.g. the bi-encoder's top 50): every ``eval_every`` steps score its
    top ``val_top_n`` for at most ``max_val_queries`` queries and measure ``ndcg@10`` of the
    reranked run; with ``blend`` for each weight ``alpha`` in ``ALPHAS`` (see ``rerank``), keeping
    the best (``ndcg@10``; ``ndcg@10_cross_only`` is alpha = 1), and the returned cross-encoder's
    ``alpha`` is that of the best step. A reranker trained for a few CPU steps is weaker than a
    fine-tuned bi-encoder on its own, yet adds to it when blended. Without ``val_run``,
    ``alpha`` is 1. ``output_dir``: ``save`` there.
    ``config`` defaults to ``default_config(lr=2e-4)``: the new score head needs a higher rate
    than the bi-encoder, and the listwise loss only starts to fall after ~75 steps, so a reranker
    gains a lot from more steps than the workshop's 150 when there is time.
    Returns ``(cross-encoder, TrainResult)``; ``cross`` itself is left untouched.
    """
    import torch

    from .training import Trainer

    _require(queries, [C.QUERY_ID, C.QUERY, C.SPLIT], "queries")
    _require(qrels, [C.QUERY_ID, C.PRODUCT_ID, C.ESCI_LABEL], "qrels")
    if loss not in CROSS_LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {CROSS_LOSSES}")
    if group_size < 2:
        raise ValueError(f"group_size must be at least 2 (one positive, one negative), got {group_size}")
    if output_dir is not None:
        _check_output_dir(output_dir)
    config = config or default_config(device=device, lr=CROSS_LR)
    if loss == "listwise" and config.batch_size < group_size:
        raise ValueError(f"batch_size {config.batch_size} must be at least group_size {group_size}")
    chosen = queries[queries[C.SPLIT] == split]
    qtext = chosen.drop_duplicates(C.QUERY_ID).set_index(C.QUERY_ID)[C.QUERY]
    text = pd.Series(_texts_of(products).to_numpy(), index=products[C.PRODUCT_ID].to_numpy())
    judged = qrels[qrels[C.QUERY_ID].isin(qtext.index)][[C.QUERY_ID, C.PRODUCT_ID, C.ESCI_LABEL]]
    if candidates is not None:
        _require(candidates, [C.QUERY_ID, C.PRODUCT_ID], "candidates")
        exact = judged[judged[C.ESCI_LABEL] == "E"]
        cand = candidates[candidates[C.QUERY_ID].isin(qtext.index)][[C.QUERY_ID, C.PRODUCT_ID]]
        cand = cand.merge(judged, how="left", on=[C.QUERY_ID, C.PRODUCT_ID])
        cand = cand[cand[C.ESCI_LABEL] != "E"].fillna({C.ESCI_LABEL: "I"})
        judged = pd.concat([exact, cand], ignore_index=True)
    unknown = pd.Index(judged[C.PRODUCT_ID].unique()).difference(text.index)
    if len(unknown):
        raise KeyError(f"qrels/candidates name product_id(s) not in products, e.g. {unknown[:5].tolist()}")
    is_e = judged[C.ESCI_LABEL] == "E"
    positives = judged[is_e].groupby(C.QUERY_ID, sort=False)[C.PRODUCT_ID].apply(list)
    negatives = judged[~is_e].groupby(C.QUERY_ID, sort=False)[C.PRODUCT_ID].apply(list)
    groups = [(qtext[q], [text[p] for p in positives[q]], [text[p] for p in negatives[q]])
              for q in qtext.index if q in positives.index and q in negatives.index]
    if not groups:
        raise ValueError(f"no query of split {split!r} has both an E product and a negative")

    model = copy.deepcopy(cross.model)
    for p in model.parameters():
        p.requires_grad_(True)
    work = CrossEncoder(cross.name, cross.tokenizer, model, max_length)
    if loss == "listwise":
        batches = _CrossBatches(groups, config.batch_size, group_size, config.seed)

        def make_batch(micro_step: int) -> dict[str, Any]:
            items = batches.items(micro_step)
            return work._tokenize([q for q, _ in items], [t for _, t in items])

        def loss_fn(m: Any, batch: dict[str, Any]) -> "torch.Tensor":
            logits = m(**batch).logits[:, 0].float().view(-1, group_size)
            target = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
            return torch.nn.functional.cross_entropy(logits, target)
    else:
        kept = judged[judged[C.QUERY_ID].isin(positives.index)]
        ex_q = kept[C.QUERY_ID].map(qtext).to_numpy()
        ex_t = kept[C.PRODUCT_ID].map(text).to_numpy()
        ex_y = kept[C.ESCI_LABEL].map(C.ESCI_GAINS).to_numpy(dtype=np.float32)
        size = min(config.batch_size, len(kept))

        def make_batch(micro_step: int) -> dict[str, Any]:
            rows = np.random.default_rng([config.seed, 31337, micro_step]).choice(
                len(ex_q), size=size, replace=False)
            batch = work._tokenize(list(ex_q[rows]), list(ex_t[rows]))
            batch["labels"] = torch.from_numpy(ex_y[rows])
            return batch

        def loss_fn(m: Any, batch: dict[str, Any]) -> "torch.Tensor":
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            logits = m(**inputs).logits[:, 0].float()
            return torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["labels"])

    evaluate = None
    if val_run is not None:
        from .evaluation import evaluate as evaluate_run

        vq = queries[queries[C.QUERY_ID].isin(val_run[C.QUERY_ID])]
        vq = _pick_val_queries(vq, qrels, max_val_queries, config.seed)
        vrun = _ordered_run(val_run[val_run[C.QUERY_ID].isin(vq[C.QUERY_ID])])
        position = vrun.groupby(C.QUERY_ID, sort=False).cumcount().to_numpy()
        vrun, position = vrun[position < val_top_n].reset_index(drop=True), position[position < val_top_n]
        vqrels = qrels[qrels[C.QUERY_ID].isin(vq[C.QUERY_ID])]
        vtexts = _lookup_texts(vrun, vq, products)
        first, groups = _first_stage_scores(vrun, position), vrun[C.QUERY_ID].to_numpy()

        def evaluate(m: Any) -> dict[str, float]:
            scores = CrossEncoder(cross.name, cross.tokenizer, m, max_length).score(
                vtexts, show_progress=False)
            found = {}
            for alpha in (ALPHAS if blend else (1.0,)):
                run = vrun[[C.QUERY_ID, C.PRODUCT_ID]].assign(
                    **{C.SCORE: _blend(scores, first, groups, alpha)})
                per_query = evaluate_run(run, vqrels, ("ndcg@10",), queries=vq)
                found[alpha] = float(per_query["ndcg@10"].mean())
            best = max(found, key=lambda a: (found[a], -a))   # ties: the smaller weight
            return {"ndcg@10": found[best], "ndcg@10_cross_only": found[1.0], "alpha": best}

    trainer = Trainer(model, loss_fn, make_batch, config, evaluate=evaluate, metric="ndcg@10",
                      device=device)
    result = trainer.train()
    model = trainer.model
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    alpha = 1.0
    if evaluate is not None and result.best_step is not None:
        history = result.history.set_index("step")
        alpha = float(history.loc[result.best_step, "alpha"])
    tuned = CrossEncoder(f"{cross.name}+reranker", cross.tokenizer, model, max_length, alpha)
    if output_dir is not None:
        tuned.name = str(tuned.save(output_dir))
    return tuned, result


# =============================================================================================
# 7. bring your own data
# =============================================================================================

_POSITIVE, _NEGATIVE = "E", "I"


def _label_to_esci(value: object) -> str | None:
    """ESCI letter of a label (E/S/C/I, or 1 -> E and 0 -> I), or None outside the scheme."""
    if isinstance(value, str):
        return value if value in C.ESCI_LABELS else None
    if isinstance(value, (bool, np.bool_)):
        return _POSITIVE if value else _NEGATIVE
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return _POSITIVE if value == 1 else _NEGATIVE
    return None


def fine_tune_from_dataframe(df: pd.DataFrame, text_query: str = "query",
                             text_product: str = "product_text", label: str = "label",
                             encoder: Encoder | None = None, config: "TrainConfig | None" = None,
                             output_dir: str | os.PathLike | None = None, *,
                             validation_fraction: float = 0.1, **kwargs: Any) -> FineTuneResult:
    """Fine-tune a bi-encoder on your own ``df`` of (query text, product text, label) rows.

    ``label`` is an ESCI letter (E/S/C/I) or 0/1: positives are E or 1, the rest are judged
    non-matches used for validation. ``validation_fraction`` of the queries (at least one, seeded
    by ``config.seed``) are held out to validate on, ranking all the products of ``df``.
    ``encoder`` defaults to the course's MiniLM, ``config`` to ``default_config()``; other keyword
    arguments go to ``fine_tune_bi_encoder``.

    Raises ``KeyError`` naming missing columns, ``ValueError`` for an empty text (its row
    number), labels outside the scheme (listed), fewer than two queries with a positive, or a
    batch size larger than the number of positive training pairs (both numbers).
    """
    from .encoding import load_encoder

    missing = [c for c in (text_query, text_product, label) if c not in df.columns]
    if missing:
        raise KeyError(f"df needs column(s) {missing}; it has {list(df.columns)}")
    for column in (text_query, text_product):
        blank = [i for i, t in enumerate(df[column]) if _blank(t)]
        if blank:
            raise ValueError(f"{len(blank)} row(s) have an empty {column!r}, e.g. row {blank[0]} "
                             f"(index {df.index[blank[0]]!r})")
    esci = [_label_to_esci(v) for v in df[label]]
    bad = [v for v, e in zip(df[label], esci) if e is None]
    if bad:
        shown = ", ".join(sorted({repr(v) for v in bad})[:10])
        raise ValueError(f"{len(bad)} row(s) have a {label!r} outside the scheme: {shown}; use "
                         "the ESCI letters E/S/C/I or 0/1 (positives are E or 1)")
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    config = config or default_config()

    frame = pd.DataFrame({C.QUERY: df[text_query].to_numpy(), PRODUCT_TEXT: df[text_product].to_numpy(),
                          C.ESCI_LABEL: esci})
    qcodes, qtexts = pd.factorize(frame[C.QUERY])
    pcodes, ptexts = pd.factorize(frame[PRODUCT_TEXT])
    frame[C.QUERY_ID] = [f"Q{i + 1:06d}" for i in qcodes]
    frame[C.PRODUCT_ID] = [f"P{i + 1:06d}" for i in pcodes]
    qrels = frame.drop_duplicates([C.QUERY_ID, C.PRODUCT_ID])[[C.QUERY_ID, C.PRODUCT_ID, C.ESCI_LABEL]]
    with_positive = qrels.loc[qrels[C.ESCI_LABEL] == _POSITIVE, C.QUERY_ID].unique()
    if len(with_positive) < 2:
        raise ValueError(f"df has {len(with_positive)} query(ies) with a positive (E or 1) row; "
                         "fine-tuning needs at least two (one is held out for validation)")
    rng = np.random.default_rng(config.seed)
    n_val = max(1, int(round(validation_fraction * len(with_positive))))
    val_ids = set(rng.choice(with_positive, size=n_val, replace=False).tolist())
    queries = pd.DataFrame({C.QUERY_ID: [f"Q{i + 1:06d}" for i in range(len(qtexts))],
                            C.QUERY: list(qtexts)})
    queries[C.SPLIT] = np.where(queries[C.QUERY_ID].isin(val_ids), C.VALIDATION, C.TRAIN)
    products = pd.DataFrame({C.PRODUCT_ID: [f"P{i + 1:06d}" for i in range(len(ptexts))],
                             PRODUCT_TEXT: list(ptexts)})
    pairs = training_pairs(queries, qrels, products, split=C.TRAIN)
    if config.batch_size > len(pairs):
        raise ValueError(f"batch_size {config.batch_size} is larger than the number of positive "
                         f"training pairs ({len(pairs)}); lower batch_size or add data")
    encoder = encoder or load_encoder()
    return fine_tune_bi_encoder(encoder, pairs, config=config,
                                val_queries=queries[queries[C.SPLIT] == C.VALIDATION],
                                qrels=qrels, products=products, output_dir=output_dir, **kwargs)
