"""Real public e-commerce search datasets, mapped onto the course's tables.

Two datasets with human relevance labels, each a drop-in for the embedded world's
``products`` / ``queries`` / ``qrels`` tables (lessons 02 and 03)::

    from course_lib import realdata
    esci = realdata.load_esci(max_queries=2000)     # Amazon Shopping Queries (ESCI), US
    wands = realdata.load_wands(max_queries=200)    # Wayfair WANDS
    pairs = realdata.to_pairs(**esci, split="train")  # for finetune.fine_tune_from_dataframe

* **ESCI** (github.com/amazon-science/esci-data, Apache-2.0): two parquet files. Labels are
  E/S/C/I as they are. Splits: ESCI's own ``train`` / ``test``; ``validation`` is carved out of
  ``train`` by query id with a seed. ``small_version=True`` keeps the "Task 1" subset.
* **WANDS** (github.com/wayfair/WANDS, MIT): three tab-separated ``.csv`` files. Its three grades
  map to ESCI letters: Exact -> ``E``, Partial -> ``S``, Irrelevant -> ``I``. A partial match is
  a product that fits the query only in part (another size, colour or style), which is what ESCI
  calls a substitute, and the kit's ndcg gains (E 1, S 0.1) then treat it as much less useful
  than an exact match. WANDS has no split: queries are split at random by query id, seeded.

Ids become strings in both (``"B07..."``, ``"12"``) so that they join safely. Every query has
``query_type = "keyword"`` (neither dataset classifies queries the way the embedded world does);
WANDS's ``query_class`` (a product class) goes into ``category``.

Files are downloaded once into ``config.cache_dir()/real/<dataset>/`` (see ``Download`` and
``fetch``): atomically, with a SHA-256 check, and with a clear message when the machine is
offline. ``COURSE_CACHE`` moves the cache, e.g. to Google Drive in Colab.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import columns as C
from .cleaning import strip_html_text
from .config import DEFAULT_SEED, cache_dir
from .data import SchemaError, validate_columns

ESCI, WANDS = "esci", "wands"
CHUNK = 1 << 20  # bytes read per step while downloading and hashing
TIMEOUT = 60     # seconds without data before a download gives up

# the product columns the kit needs from a real catalogue (the embedded world has more)
PRODUCT_COLUMNS = (C.PRODUCT_ID, C.TITLE, C.DESCRIPTION, C.BRAND, C.CATEGORY, C.CATEGORY_PATH,
                   C.COLOR)
PRODUCT_TEXT = "product_text"  # the text column of to_pairs (finetune's default name)

# WANDS grades -> ESCI letters (see the module docstring for why Partial is "S")
WANDS_LABELS = {"Exact": "E", "Partial": "S", "Irrelevant": "I"}


class DownloadError(OSError):
    """A file could not be downloaded (offline, moved, or a wrong SHA-256); says what to do."""


@dataclass(frozen=True)
class Download:
    """One file of a dataset: where it comes from, its file name, and its SHA-256.

    ``sha256=None`` means *trust on first use*: the hash of the first copy (downloaded or placed
    by hand) is recorded next to it in ``<filename>.sha256`` and every later use is checked
    against that record. Give the hash when you know it; a mismatch is then an error.
    """

    url: str
    filename: str
    sha256: str | None = None
    size: int | None = None  # bytes, when known; only shown in messages


_ESCI_BASE = ("https://media.githubusercontent.com/media/amazon-science/esci-data/main/"
              "shopping_queries_dataset")
_WANDS_BASE = "https://raw.githubusercontent.com/wayfair/WANDS/main/dataset"

# the hashes are the Git LFS object ids of the files (LFS ids are the SHA-256 of the content)
ESCI_EXAMPLES = Download(f"{_ESCI_BASE}/shopping_queries_dataset_examples.parquet",
                         "shopping_queries_dataset_examples.parquet",
                         "4a735b693b4a424a6fc67f5be6e4c811495c488bbf66d02a602d308b2744263a",
                         51_286_808)
ESCI_PRODUCTS = Download(f"{_ESCI_BASE}/shopping_queries_dataset_products.parquet",
                         "shopping_queries_dataset_products.parquet",
                         "25124442d064d64b26f74082d6fa09438d679efc0c183cf28d19064a2b65a265",
                         1_108_857_465)
WANDS_PRODUCTS = Download(f"{_WANDS_BASE}/product.csv", "product.csv")
WANDS_QUERIES = Download(f"{_WANDS_BASE}/query.csv", "query.csv")
WANDS_JUDGEMENTS = Download(f"{_WANDS_BASE}/label.csv", "label.csv")
DOWNLOADS: dict[str, tuple[Download, ...]] = {
    ESCI: (ESCI_EXAMPLES, ESCI_PRODUCTS),
    WANDS: (WANDS_PRODUCTS, WANDS_QUERIES, WANDS_JUDGEMENTS),
}


# =====================================================================================
# downloads: cache, SHA-256, atomic writes
# =====================================================================================
def real_data_dir(dataset: str) -> Path:
    """Where the files of ``dataset`` ("esci" or "wands") are cached: ``cache_dir()/real/<dataset>``."""
    if dataset not in DOWNLOADS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DOWNLOADS)}")
    return cache_dir() / "real" / dataset


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, read in chunks (works for files larger than memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _expected_hash(spec: Download, path: Path) -> str | None:
    """The hash ``path`` must have: the spec's, else the one recorded on first use, else None."""
    if spec.sha256:
        return spec.sha256.lower()
    record = _record_path(path)
    return record.read_text().split()[0].lower() if record.is_file() else None


def _record_hash(path: Path, digest: str) -> None:
    record = _record_path(path)
    tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(f"{digest}  {path.name}\n")
        os.replace(tmp, record)
    finally:
        tmp.unlink(missing_ok=True)


def _manual_hint(spec: Download, path: Path) -> str:
    size = f" ({spec.size / 1e6:,.0f} MB)" if spec.size else ""
    check = (f"it must have SHA-256 {spec.sha256}" if spec.sha256
             else "its SHA-256 is recorded on first use")
    return (f"To use it offline, download {spec.url}{size} on a machine with internet and place "
            f"it at {path}; {check}.")


def _download(spec: Download, path: Path) -> str:
    """Stream ``spec.url`` into a temp file beside ``path``, hash it, then ``os.replace`` it.

    Returns the SHA-256. Nothing is left at ``path`` (nor any temp file) if anything fails.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    try:
        try:
            with urllib.request.urlopen(spec.url, timeout=TIMEOUT) as response, \
                    open(tmp, "wb") as out:
                for block in iter(lambda: response.read(CHUNK), b""):
                    digest.update(block)
                    out.write(block)
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", None) or err
            raise DownloadError(f"could not download {spec.url}: {reason}. "
                                f"{_manual_hint(spec, path)}") from err
        got = digest.hexdigest()
        if spec.sha256 and got != spec.sha256.lower():
            raise DownloadError(f"{spec.url} downloaded with SHA-256 {got}, expected {spec.sha256}; "
                                "the file was not kept. The upstream file may have changed: check "
                                "it, then pass a Download with the new sha256 (or sha256=None).")
        os.replace(tmp, path)
        return got
    finally:
        tmp.unlink(missing_ok=True)


def fetch(spec: Download, directory: str | os.PathLike | None = None, *,
          download: bool = True, verify: bool = True) -> Path:
    """The local path of ``spec``'s file in ``directory``, downloaded first if it is missing.

    The file is checked against ``spec.sha256`` or, when that is ``None``, against the hash
    recorded on first use (a first copy placed by hand is recorded too). ``verify=False`` uses an
    existing file as it is (no hashing, nothing recorded), e.g. a sample you made yourself. ``download=False`` never touches the network. Raises
    ``DownloadError`` naming the URL and where to place the file by hand, or a hash mismatch.
    """
    directory = Path(directory) if directory is not None else cache_dir() / "real"
    path = directory / spec.filename
    if not path.is_file():
        if not download:
            raise DownloadError(f"{path} is missing and download=False. {_manual_hint(spec, path)}")
        got = _download(spec, path)
        if not spec.sha256:
            _record_hash(path, got)
        return path
    if not verify:
        return path
    expected = _expected_hash(spec, path)
    got = sha256_file(path)
    if expected is None:
        _record_hash(path, got)  # trust on first use
    elif got != expected:
        raise DownloadError(f"{path} has SHA-256 {got}, expected {expected}: the file is damaged "
                            "or a different version. Delete it (and its .sha256 record) to "
                            f"download it again from {spec.url}.")
    return path


def fetch_dataset(dataset: str, directory: str | os.PathLike | None = None, **kwargs) -> dict[str, Path]:
    """Fetch every file of ``dataset`` ("esci" or "wands"): ``{file name: path}``."""
    directory = Path(directory) if directory is not None else real_data_dir(dataset)
    return {spec.filename: fetch(spec, directory, **kwargs) for spec in DOWNLOADS[dataset]}


# =====================================================================================
# mapping helpers
# =====================================================================================
def _require(df: pd.DataFrame, columns: Iterable[str], source: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(f"{source} is missing column(s) {missing}; it has {list(df.columns)}")


def _text(values: pd.Series) -> pd.Series:
    """Strings with missing values as "" and surrounding whitespace removed."""
    return values.astype("string").fillna("").str.strip().astype(object)


def _sample_queries(query_ids: pd.Series, max_queries: int | None, seed: int) -> pd.Series:
    """At most ``max_queries`` of the unique ids, chosen at random with ``seed`` (kept in order)."""
    ids = pd.Series(pd.unique(query_ids))
    if max_queries is None or max_queries >= len(ids):
        return ids
    if max_queries < 1:
        raise ValueError(f"max_queries must be at least 1 (or None), got {max_queries}")
    keep = np.random.default_rng(seed).choice(len(ids), size=max_queries, replace=False)
    return ids.iloc[np.sort(keep)].reset_index(drop=True)


def _carve(ids: pd.Series, fraction: float, seed: int, what: str) -> set:
    """A seeded random ``fraction`` of ``ids`` (at least one when the fraction is positive)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"{what} must be in [0, 1), got {fraction}")
    n = int(round(fraction * len(ids)))
    if fraction > 0 and len(ids) > 1:
        n = max(n, 1)
    n = min(n, len(ids) - 1) if len(ids) > 1 else 0
    chosen = np.random.default_rng(seed).choice(len(ids), size=n, replace=False)
    return set(ids.iloc[chosen])


def _check_tables(tables: dict[str, pd.DataFrame], source: str) -> dict[str, pd.DataFrame]:
    validate_columns(tables[C.QUERIES], C.QUERIES, source)
    validate_columns(tables[C.QRELS], C.QRELS, source)
    _require(tables[C.PRODUCTS], PRODUCT_COLUMNS, f"products of {source}")
    if tables[C.PRODUCTS].empty:
        raise SchemaError(f"products of {source} is empty")
    return tables


def _keep_judged(tables: dict[str, pd.DataFrame], source: str) -> dict[str, pd.DataFrame]:
    """Drop judgements whose product is not in the catalogue (with a warning that counts them)."""
    qrels, products = tables[C.QRELS], tables[C.PRODUCTS]
    known = qrels[C.PRODUCT_ID].isin(products[C.PRODUCT_ID])
    if not known.all():
        warnings.warn(f"{source}: {int((~known).sum())} judgement(s) name a product missing from "
                      "the catalogue; they were dropped", UserWarning, stacklevel=3)
        tables[C.QRELS] = qrels[known].reset_index(drop=True)
    return tables


# =====================================================================================
# Amazon ESCI
# =====================================================================================
ESCI_EXAMPLE_COLUMNS = ("example_id", "query", "query_id", "product_id", "product_locale",
                        "esci_label", "small_version", "large_version", "split")
ESCI_PRODUCT_COLUMNS = ("product_id", "product_title", "product_description",
                        "product_bullet_point", "product_brand", "product_color", "product_locale")


def esci_tables(examples: pd.DataFrame, products: pd.DataFrame, *, locale: str | None = "us",
                small_version: bool = True, max_queries: int | None = None,
                validation_fraction: float = 0.1, seed: int = DEFAULT_SEED) -> dict[str, pd.DataFrame]:
    """Map ESCI's ``examples`` and ``products`` frames onto the kit's tables.

    ``locale`` keeps one market ("us", "es" or "jp"; None keeps all), ``small_version`` the Task 1
    subset, ``max_queries`` a seeded sample of queries (taken in proportion from train and test).
    ``validation_fraction`` of the train queries become ``validation``. Returns
    ``{"products", "queries", "qrels"}``; products are those judged for the kept queries.
    """
    _require(examples, ESCI_EXAMPLE_COLUMNS, "ESCI examples")
    _require(products, ESCI_PRODUCT_COLUMNS, "ESCI products")
    ex = examples
    if locale is not None:
        ex = ex[ex["product_locale"] == locale]
    if small_version:
        ex = ex[ex["small_version"].astype(int) == 1]
    if ex.empty:
        raise ValueError(f"no ESCI examples left for locale={locale!r}, small_version={small_version}")
    bad = sorted(set(ex["esci_label"]) - set(C.ESCI_LABELS))
    if bad:
        raise ValueError(f"ESCI examples have labels outside E/S/C/I: {bad}")
    ex = ex.assign(query_id=ex["query_id"].astype(str), product_id=ex["product_id"].astype(str))

    queries = ex.drop_duplicates("query_id")[["query_id", "query", "split"]]
    if max_queries is not None:
        total = len(queries)
        parts = []
        for offset, (split, group) in enumerate(queries.groupby("split", sort=True)):
            n = max(1, int(round(max_queries * len(group) / total)))
            parts.append(group[group["query_id"].isin(
                _sample_queries(group["query_id"], n, seed + offset))])
        queries = pd.concat(parts).sort_index()
    val = _carve(queries.loc[queries["split"] == C.TRAIN, "query_id"], validation_fraction, seed,
                 "validation_fraction")
    split = np.where(queries["query_id"].isin(val), C.VALIDATION, queries["split"])
    queries = pd.DataFrame({C.QUERY_ID: queries["query_id"].to_numpy(),
                            C.QUERY: _text(queries["query"]).to_numpy(),
                            C.QUERY_TYPE: C.KEYWORD, C.SPLIT: split, C.CATEGORY: ""})

    ex = ex[ex["query_id"].isin(queries[C.QUERY_ID])]
    qrels = (ex[["query_id", "product_id", "esci_label"]]
             .drop_duplicates(["query_id", "product_id"])
             .rename(columns={"esci_label": C.ESCI_LABEL}).reset_index(drop=True))

    prods = products.assign(product_id=products["product_id"].astype(str))
    if locale is not None:
        prods = prods[prods["product_locale"] == locale]
    prods = prods[prods["product_id"].isin(qrels[C.PRODUCT_ID])].drop_duplicates("product_id")
    description = _text(prods["product_description"]).map(strip_html_text)
    bullets = _text(prods["product_bullet_point"]).map(strip_html_text)
    catalogue = pd.DataFrame({
        C.PRODUCT_ID: prods["product_id"].to_numpy(),
        C.TITLE: _text(prods["product_title"]).map(strip_html_text).to_numpy(),
        C.DESCRIPTION: np.where(description != "", description, bullets),
        C.BRAND: _text(prods["product_brand"]).to_numpy(),
        C.CATEGORY: "", C.CATEGORY_PATH: "",
        C.COLOR: _text(prods["product_color"]).to_numpy(),
    })
    tables = {C.PRODUCTS: catalogue.reset_index(drop=True), C.QUERIES: queries.reset_index(drop=True),
              C.QRELS: qrels}
    return _check_tables(_keep_judged(tables, "ESCI"), "ESCI")


def _read_parquet(path: Path, columns: Iterable[str], filters: list | None = None) -> pd.DataFrame:
    try:
        return pd.read_parquet(path, columns=list(columns), filters=filters)
    except ImportError as err:
        raise ImportError("reading ESCI's parquet files needs pyarrow: pip install pyarrow") from err


def load_esci(directory: str | os.PathLike | None = None, *, locale: str | None = "us",
              small_version: bool = True, max_queries: int | None = None,
              validation_fraction: float = 0.1, seed: int = DEFAULT_SEED,
              download: bool = True, verify: bool = True) -> dict[str, pd.DataFrame]:
    """Amazon's Shopping Queries dataset as ``{"products", "queries", "qrels"}`` (see ``esci_tables``).

    Files come from ``directory`` (default ``real_data_dir("esci")``), downloaded there first
    when missing (51 MB of examples, 1.1 GB of products) unless ``download=False``; ``verify=False``
    skips the SHA-256 check of files already there. Only the rows of ``locale`` and the products
    judged for them are read into memory.
    """
    directory = Path(directory) if directory is not None else real_data_dir(ESCI)
    examples_path = fetch(ESCI_EXAMPLES, directory, download=download, verify=verify)
    filters = [("product_locale", "==", locale)] if locale is not None else None
    examples = _read_parquet(examples_path, ESCI_EXAMPLE_COLUMNS, filters)
    products_path = fetch(ESCI_PRODUCTS, directory, download=download, verify=verify)
    wanted = pd.unique(examples["product_id"].astype(str)).tolist()
    pfilters = (filters or []) + [("product_id", "in", wanted)]
    products = _read_parquet(products_path, ESCI_PRODUCT_COLUMNS, pfilters)
    return esci_tables(examples, products, locale=locale, small_version=small_version,
                       max_queries=max_queries, validation_fraction=validation_fraction, seed=seed)


# =====================================================================================
# Wayfair WANDS
# =====================================================================================
WANDS_PRODUCT_COLUMNS = ("product_id", "product_name", "product_class", "category hierarchy",
                         "product_description", "product_features", "rating_count",
                         "average_rating", "review_count")
WANDS_QUERY_COLUMNS = ("query_id", "query", "query_class")
WANDS_LABEL_COLUMNS = ("id", "query_id", "product_id", "label")


def _features(text: str) -> dict[str, str]:
    """WANDS's ``product_features``: "key:value|key : value|..." -> {key: value}."""
    pairs = (item.split(":", 1) for item in text.split("|") if ":" in item)
    return {key.strip().lower(): value.strip() for key, value in pairs if key.strip()}


def _wands_color(features: pd.Series) -> pd.Series:
    """A product's colour from its features ("color" or "primary color" ... keys), else ""."""
    def one(text: str) -> str:
        feats = _features(text)
        for key in ("color", "primarycolor", "colorfinish", "finish"):
            if feats.get(key):
                return feats[key]
        return ""
    return _text(features).map(one)


def wands_tables(products: pd.DataFrame, queries: pd.DataFrame, labels: pd.DataFrame, *,
                 max_queries: int | None = None, test_fraction: float = 0.3,
                 validation_fraction: float = 0.1, judged_products_only: bool = False,
                 seed: int = DEFAULT_SEED) -> dict[str, pd.DataFrame]:
    """Map WANDS's ``products``, ``queries`` and ``labels`` frames onto the kit's tables.

    Labels become ESCI letters (Exact E, Partial S, Irrelevant I). Queries are split at random by
    query id with ``seed``: ``test_fraction`` test, ``validation_fraction`` validation, the rest
    train. ``max_queries`` keeps a seeded sample; ``judged_products_only`` shrinks the catalogue to
    the products judged for the kept queries (a small index for a quick run).
    """
    products = products.rename(columns={"category_hierarchy": "category hierarchy"})
    _require(products, ("product_id", "product_name", "product_class", "category hierarchy",
                        "product_description", "product_features"), "WANDS product.csv")
    _require(queries, WANDS_QUERY_COLUMNS, "WANDS query.csv")
    _require(labels, WANDS_LABEL_COLUMNS, "WANDS label.csv")
    bad = sorted(set(labels["label"].dropna()) - set(WANDS_LABELS)) + (
        ["<missing>"] if labels["label"].isna().any() else [])
    if bad:
        raise ValueError(f"WANDS label.csv has labels outside {list(WANDS_LABELS)}: {bad}")
    if test_fraction + validation_fraction >= 1:
        raise ValueError(f"test_fraction + validation_fraction must be below 1, got "
                         f"{test_fraction} + {validation_fraction}")

    qids = _sample_queries(queries["query_id"].astype(str), max_queries, seed)
    q = queries.assign(query_id=queries["query_id"].astype(str))
    q = q[q["query_id"].isin(qids)].drop_duplicates("query_id").reset_index(drop=True)
    test = _carve(q["query_id"], test_fraction, seed, "test_fraction")
    rest = q.loc[~q["query_id"].isin(test), "query_id"].reset_index(drop=True)
    share = validation_fraction / (1 - test_fraction) if test_fraction < 1 else 0.0
    val = _carve(rest, share, seed + 1, "validation_fraction")
    split = np.select([q["query_id"].isin(test), q["query_id"].isin(val)], [C.TEST, C.VALIDATION],
                      C.TRAIN)
    query_table = pd.DataFrame({C.QUERY_ID: q["query_id"].to_numpy(),
                                C.QUERY: _text(q["query"]).to_numpy(), C.QUERY_TYPE: C.KEYWORD,
                                C.SPLIT: split, C.CATEGORY: _text(q["query_class"]).to_numpy()})

    lab = labels.assign(query_id=labels["query_id"].astype(str),
                        product_id=labels["product_id"].astype(str))
    lab = lab[lab["query_id"].isin(query_table[C.QUERY_ID])]
    qrels = pd.DataFrame({C.QUERY_ID: lab["query_id"].to_numpy(),
                          C.PRODUCT_ID: lab["product_id"].to_numpy(),
                          C.ESCI_LABEL: lab["label"].map(WANDS_LABELS).to_numpy()})
    qrels = qrels.drop_duplicates([C.QUERY_ID, C.PRODUCT_ID]).reset_index(drop=True)

    p = products.assign(product_id=products["product_id"].astype(str)).drop_duplicates("product_id")
    if judged_products_only:
        p = p[p["product_id"].isin(qrels[C.PRODUCT_ID])]
    path = _text(p["category hierarchy"]).map(
        lambda s: " > ".join(part.strip() for part in s.split("/") if part.strip()))
    category = _text(p["product_class"]).map(lambda s: s.split("|")[-1].strip())
    catalogue = pd.DataFrame({
        C.PRODUCT_ID: p["product_id"].to_numpy(), C.TITLE: _text(p["product_name"]).to_numpy(),
        C.DESCRIPTION: _text(p["product_description"]).to_numpy(), C.BRAND: "",
        C.CATEGORY: category.to_numpy(), C.CATEGORY_PATH: path.to_numpy(),
        C.COLOR: _wands_color(p["product_features"]).to_numpy(),
    })
    tables = {C.PRODUCTS: catalogue.reset_index(drop=True), C.QUERIES: query_table, C.QRELS: qrels}
    return _check_tables(_keep_judged(tables, "WANDS"), "WANDS")


def _read_tsv(path: Path) -> pd.DataFrame:
    """WANDS's files: tab-separated despite the ``.csv`` name, with a header row."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""])


def load_wands(directory: str | os.PathLike | None = None, *, max_queries: int | None = None,
               test_fraction: float = 0.3, validation_fraction: float = 0.1,
               judged_products_only: bool = False, seed: int = DEFAULT_SEED,
               download: bool = True, verify: bool = True) -> dict[str, pd.DataFrame]:
    """Wayfair's WANDS as ``{"products", "queries", "qrels"}`` (see ``wands_tables``).

    Files come from ``directory`` (default ``real_data_dir("wands")``), downloaded there first when
    missing unless ``download=False``. WANDS publishes no hashes, so they are recorded on first
    use and checked afterwards (``verify=False`` skips the check).
    """
    paths = fetch_dataset(WANDS, directory, download=download, verify=verify)
    return wands_tables(_read_tsv(paths[WANDS_PRODUCTS.filename]),
                        _read_tsv(paths[WANDS_QUERIES.filename]),
                        _read_tsv(paths[WANDS_JUDGEMENTS.filename]),
                        max_queries=max_queries, test_fraction=test_fraction,
                        validation_fraction=validation_fraction,
                        judged_products_only=judged_products_only, seed=seed)


# =====================================================================================
# pairs for fine-tuning
# =====================================================================================
def to_pairs(products: pd.DataFrame, queries: pd.DataFrame, qrels: pd.DataFrame, *,
             split: str | Iterable[str] | None = C.TRAIN,
             text_fn: Callable[[pd.DataFrame], pd.Series] | None = None) -> pd.DataFrame:
    """One row per judgement: ``query``, ``product_text``, ``label`` (the ESCI letter), plus ids.

    This is the table ``finetune.fine_tune_from_dataframe`` takes. ``split`` keeps the queries
    of one split (or several; None keeps all). ``text_fn(products)`` gives one text per product
    (default ``encoding.product_texts``: title, category and description).
    """
    _require(queries, (C.QUERY_ID, C.QUERY, C.SPLIT), "queries")
    _require(qrels, (C.QUERY_ID, C.PRODUCT_ID, C.ESCI_LABEL), "qrels")
    _require(products, (C.PRODUCT_ID,), "products")
    if split is not None:
        wanted = [split] if isinstance(split, str) else list(split)
        unknown = sorted(set(wanted) - set(C.SPLITS))
        if unknown:
            raise ValueError(f"unknown split(s) {unknown}; valid: {list(C.SPLITS)}")
        queries = queries[queries[C.SPLIT].isin(wanted)]
    if text_fn is None:
        from .encoding import product_texts as text_fn
    texts = pd.Series(list(text_fn(products)), index=products[C.PRODUCT_ID].to_numpy())
    texts = texts[~texts.index.duplicated()]
    rows = qrels.merge(queries[[C.QUERY_ID, C.QUERY]], on=C.QUERY_ID)
    rows = rows[rows[C.PRODUCT_ID].isin(texts.index)]
    if rows.empty:
        raise ValueError(f"no judged pairs for split {split!r}: check the split name and the tables")
    return pd.DataFrame({C.QUERY_ID: rows[C.QUERY_ID].to_numpy(),
                         C.PRODUCT_ID: rows[C.PRODUCT_ID].to_numpy(),
                         C.QUERY: rows[C.QUERY].to_numpy(),
                         PRODUCT_TEXT: texts.loc[rows[C.PRODUCT_ID]].to_numpy(),
                         C.LABEL: rows[C.ESCI_LABEL].to_numpy()})
