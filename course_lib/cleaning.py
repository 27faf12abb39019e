"""Raw tables -> clean tables, with a report of every row dropped and why (lesson 01).

Every cleaning *step* is a pure function ``step(df, ...) -> StepResult``: it never changes its
input, it returns the kept rows (with their original index, so you can trace them back) and the
dropped rows, each with its reason in the column :data:`DROP_REASON`. A result unpacks into the
clean frame and the drop counts::

    kept, dropped = parse_price(raw[C.PRODUCTS])       # dropped == {"missing_price": 111, ...}

A :class:`CleaningReport` runs steps and writes down, per table and step, the rows in, the rows
out and the rows dropped per reason, and keeps every dropped row: nothing is lost without a
reason. ``clean_world(raw)`` runs the whole pipeline; ``load_clean(profile)`` caches it::

    tables, report = clean_world(data.load_raw("workshop"), settings="workshop")
    report.summary()                 # one row per table, one column per reason
    report.samples()                 # the first rows dropped for each reason

Empty tables: the ``clean_*`` functions refuse an empty raw table (``data.SchemaError`` naming
the table); the single steps accept empty frames and return empty frames.
"""
from __future__ import annotations

import hashlib
import html
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from . import columns as C
from .config import Settings, get_settings
from .data import SCHEMAS, SchemaError, end_date, load_raw, validate_columns
from .taxonomy import (BED, CAPACITY, CATEGORY_PATHS, CLOTHING, LEAF_BY_NAME, LEAVES, SCREEN, SHOE,
                       VOLUME)

# --- names -------------------------------------------------------------------------------
DROP_REASON = "drop_reason"  # column of the dropped rows that says why
TABLE, STEP, REASON, ROWS = "table", "step", "reason", "rows"  # report columns
ROWS_IN, ROWS_OUT, DROPPED = "rows_in", "rows_out", "dropped"

# drop reasons
MISSING_PRICE = "missing_price"
INVALID_PRICE = "invalid_price"
NEGATIVE_PRICE = "negative_price"
MISSING_CATEGORY = "missing_category"
UNKNOWN_CATEGORY = "unknown_category"
DUPLICATE = "duplicate"
MISSING_ID = "missing_id"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
INVALID_TIMESTAMP = "invalid_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
MISSING_USER = "missing_user"
UNKNOWN_PRODUCT = "unknown_product"
DROPPED_PRODUCT = "dropped_product"  # the product exists in the raw catalogue but was dropped
INVALID_POSITION = "invalid_position"
BOT_SESSION = "bot_session"
BOT_USER = "bot_user"
INVALID_RATING = "invalid_rating"
PRICE_REASONS = (MISSING_PRICE, INVALID_PRICE, NEGATIVE_PRICE)

# what ``fill_missing`` writes into empty cells (every other text column gets "")
PRODUCT_FILL = {C.BRAND: "Unknown", C.COLOR: "Unspecified"}
USER_FILL = {C.COUNTRY: "Unknown"}

# PII pseudonymisation: the salt must be secret in a real shop (an environment variable or a
# secrets manager, never the code or the repository), or anyone can hash candidate ids and
# re-identify people. This course default is public on purpose, so results repeat.
PII_SALT_ENV = "COURSE_PII_SALT"
DEFAULT_PII_SALT = "bert-ecommerce-course-public-salt"
USER_PREFIX = "u_"

# the columns and their order in the clean tables
CLEAN_COLUMNS: dict[str, tuple[str, ...]] = {
    C.PRODUCTS: (C.PRODUCT_ID, C.TITLE, C.DESCRIPTION, C.BRAND, C.MODEL_NUMBER, C.CATEGORY,
                 C.CATEGORY_PATH, C.COLOR, C.MATERIAL, C.SIZE, C.PRICE, C.CREATED_AT),
    C.USERS: (C.USER_ID, C.COUNTRY, C.AGE_BAND, C.SIGNUP_DATE),
    C.EVENTS: SCHEMAS[C.EVENTS],
    C.REVIEWS: SCHEMAS[C.REVIEWS],
}
_FLOAT, _INT, _TIME = (C.PRICE,), (C.POSITION, C.RATING), (C.TIMESTAMP,)


# =========================================================================================
# step results and the report
# =========================================================================================
@dataclass
class StepResult:
    """What a step returns: the kept rows ``df`` and the ``dropped_rows`` with their reason."""

    df: pd.DataFrame
    dropped_rows: pd.DataFrame

    @property
    def dropped(self) -> dict[str, int]:
        """``{reason: number of rows}`` in order of first appearance."""
        if self.dropped_rows.empty:
            return {}
        return {str(k): int(v) for k, v in self.dropped_rows[DROP_REASON].value_counts(sort=False).items()}

    def __iter__(self) -> Iterator:
        """``kept, dropped = step(df)``."""
        return iter((self.df, self.dropped))


def _split(df: pd.DataFrame, reasons: Sequence | np.ndarray) -> StepResult:
    """Keep rows whose reason is None; the others go to ``dropped_rows`` with their reason."""
    reasons = np.asarray(reasons, dtype=object)
    drop = np.array([r is not None for r in reasons], dtype=bool)
    dropped = df[drop].copy()
    dropped[DROP_REASON] = pd.Series(reasons[drop], index=dropped.index, dtype=object)
    return StepResult(df[~drop].copy(), dropped)


def _keep_all(df: pd.DataFrame) -> StepResult:
    return _split(df, [None] * len(df))


@dataclass
class StepRecord:
    """One step run on one table: rows in and out, and the dropped rows with their reason."""

    table: str
    step: str
    rows_in: int
    rows_out: int
    dropped: dict[str, int]
    dropped_rows: pd.DataFrame = field(repr=False)


class CleaningReportError(AssertionError):
    """The report's row counts do not add up: some row was lost without a reason."""


@dataclass
class CleaningReport:
    """Rows in, rows out and rows dropped per reason, for every table and step.

    ``run(table, step, df, ...)`` runs a step and records it; ``summary()`` shows one row per
    table, ``steps()`` one row per step, ``details()`` a long table (table, step, reason, rows),
    ``dropped(table, reason)`` every dropped row and ``samples()`` the first few per reason.
    """

    records: list[StepRecord] = field(default_factory=list)

    def run(self, table: str, step: Callable[..., StepResult], df: pd.DataFrame,
            *args, **kwargs) -> pd.DataFrame:
        """Run ``step(df, *args, **kwargs)``, record it under ``table`` and return the kept rows."""
        result = step(df, *args, **kwargs)
        self.add(table, step.__name__, len(df), result)
        return result.df

    def add(self, table: str, step: str, rows_in: int, result: StepResult) -> None:
        """Record a step that was run elsewhere."""
        self.records.append(StepRecord(table, step, int(rows_in), len(result.df), result.dropped,
                                       result.dropped_rows))

    @property
    def tables(self) -> list[str]:
        return list(dict.fromkeys(r.table for r in self.records))

    def reasons(self) -> list[str]:
        """Every reason that dropped at least one row, in order of first appearance."""
        return list(dict.fromkeys(reason for r in self.records for reason, n in r.dropped.items() if n))

    def steps(self) -> pd.DataFrame:
        """One row per step: table, step, rows_in, rows_out, dropped."""
        return pd.DataFrame([(r.table, r.step, r.rows_in, r.rows_out, sum(r.dropped.values()))
                             for r in self.records],
                            columns=[TABLE, STEP, ROWS_IN, ROWS_OUT, DROPPED])

    def details(self) -> pd.DataFrame:
        """Long format: one row per (table, step, reason) that dropped rows."""
        return pd.DataFrame([(r.table, r.step, reason, n) for r in self.records
                             for reason, n in r.dropped.items() if n],
                            columns=[TABLE, STEP, REASON, ROWS])

    def summary(self) -> pd.DataFrame:
        """One row per table: rows_in, rows_out, dropped, then one column per reason."""
        reasons = self.reasons()
        rows = []
        for table in self.tables:
            recs = [r for r in self.records if r.table == table]
            counts = Counter()
            for r in recs:
                counts.update(r.dropped)
            rows.append([table, recs[0].rows_in, recs[-1].rows_out, sum(counts.values())]
                        + [int(counts.get(reason, 0)) for reason in reasons])
        return pd.DataFrame(rows, columns=[TABLE, ROWS_IN, ROWS_OUT, DROPPED, *reasons])

    def dropped(self, table: str | None = None, reason: str | None = None) -> pd.DataFrame:
        """Every dropped row (of ``table``, for ``reason``), with its table, step and reason."""
        frames = [r.dropped_rows.assign(**{TABLE: r.table, STEP: r.step}) for r in self.records
                  if (table is None or r.table == table) and len(r.dropped_rows)]
        frames = [f[f[DROP_REASON] == reason] if reason else f for f in frames]
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=[TABLE, STEP, DROP_REASON])
        out = pd.concat(frames)
        return out[[TABLE, STEP, DROP_REASON, *[c for c in out.columns if c not in (TABLE, STEP, DROP_REASON)]]]

    def samples(self, n: int = 5, table: str | None = None) -> pd.DataFrame:
        """The first ``n`` dropped rows of every (table, reason): what was dropped, and why.

        With ``table`` the rows keep that table's columns; without, each row is shown as one
        ``row`` text ("product_id='P000001', price='N/A', ...", blank cells left out). The
        index is the row's position in the raw table."""
        if table is not None:
            return self.dropped(table).groupby(DROP_REASON, sort=False).head(n)
        parts = []
        for name in self.tables:
            frame = self.dropped(name).groupby(DROP_REASON, sort=False).head(n)
            values = frame.drop(columns=[TABLE, STEP, DROP_REASON])
            rows = [", ".join(f"{c}={v!r}" for c, v in zip(values.columns, rec) if not _is_missing(v))
                    for rec in values.itertuples(index=False, name=None)]
            parts.append(frame[[TABLE, STEP, DROP_REASON]].assign(row=rows))
        parts = [p for p in parts if len(p)]
        return pd.concat(parts) if parts else pd.DataFrame(columns=[TABLE, STEP, DROP_REASON, "row"])

    def check(self) -> None:
        """Raise :class:`CleaningReportError` unless rows_in == rows_out + dropped for every
        step and every table, and each step starts with the rows the previous one kept."""
        for r in self.records:
            if r.rows_in != r.rows_out + sum(r.dropped.values()) or len(r.dropped_rows) != sum(r.dropped.values()):
                raise CleaningReportError(f"{r.table}.{r.step}: {r.rows_in} rows in, {r.rows_out} out, "
                                          f"dropped {r.dropped}: rows lost without a reason")
        for table in self.tables:
            recs = [r for r in self.records if r.table == table]
            for before, after in zip(recs, recs[1:]):
                if before.rows_out != after.rows_in:
                    raise CleaningReportError(f"{table}: {before.step} kept {before.rows_out} rows but "
                                              f"{after.step} received {after.rows_in}")
            total = sum(sum(r.dropped.values()) for r in recs)
            if recs[0].rows_in != recs[-1].rows_out + total:
                raise CleaningReportError(f"{table}: {recs[0].rows_in} in != {recs[-1].rows_out} out "
                                          f"+ {total} dropped")

    def __repr__(self) -> str:
        return f"CleaningReport\n{self.summary().to_string(index=False)}"

    def _repr_html_(self) -> str:
        return self.summary().to_html(index=False)


# =========================================================================================
# helpers
# =========================================================================================
def _require(df: pd.DataFrame, columns: Iterable[str], step: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(f"{step} needs column(s) {missing}; the table has {list(df.columns)}")


def _is_missing(value: object) -> bool:
    """NaN, None, NaT or a blank string."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _as_text(value: object) -> str | None:
    """A cell as text, or None when it is missing."""
    return None if _is_missing(value) else str(value)


def _text_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if df[c].dtype == object or isinstance(df[c].dtype, pd.StringDtype)]


def _texts(s: pd.Series) -> pd.Series:
    """``s`` as pandas text (``str`` dtype); NaN, None and blank cells become NaN."""
    if not isinstance(s.dtype, pd.StringDtype):
        s = pd.Series([_as_text(v) for v in s], index=s.index, dtype="str")
    return s.where(s.str.strip().str.len() > 0)


def _present(s: pd.Series) -> np.ndarray:
    """True where a cell holds a value (blank text counts as missing)."""
    if s.dtype == object or isinstance(s.dtype, pd.StringDtype):
        return _texts(s).notna().to_numpy()
    return s.notna().to_numpy()


def _map_text(s: pd.Series, fn: Callable[[str], object]) -> pd.Series:
    """Apply ``fn`` to the present cells of ``s`` (as text); missing cells become NaN."""
    texts = _texts(s)
    out = [None if t is None else fn(t) for t in texts.astype(object).where(texts.notna(), None)]
    return pd.Series(out, index=s.index, dtype="str")


def squeeze(text: str) -> str:
    """Collapse runs of whitespace (tabs, newlines, non-breaking spaces) and strip the ends."""
    return " ".join(text.split())


# =========================================================================================
# text: HTML, whitespace, title case
# =========================================================================================
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_BLOCK_TAG = re.compile(r"</?(?:p|div|br|li|ul|ol|tr|td|th|table|h[1-6]|section|article|hr)\b[^<>]*>", re.I)
_ANY_TAG = re.compile(r"</?[A-Za-z][^<>]*>")


def strip_html_text(text: str) -> str:
    """Remove HTML tags (block tags become a space) and unescape entities: '&amp;' -> '&'."""
    text = _ANY_TAG.sub("", _BLOCK_TAG.sub(" ", _COMMENT.sub(" ", text)))
    return squeeze(html.unescape(text))


def strip_html(df: pd.DataFrame, columns: Sequence[str] | None = None) -> StepResult:
    """Strip HTML from ``columns`` (default: description and review_text, those present)."""
    columns = [c for c in (C.DESCRIPTION, C.REVIEW_TEXT) if c in df.columns] if columns is None else columns
    _require(df, columns, "strip_html")
    out = df.copy()
    for col in columns:
        out[col] = _map_text(df[col], strip_html_text)
    return _keep_all(out)


def normalize_whitespace(df: pd.DataFrame, columns: Sequence[str] | None = None) -> StepResult:
    """Strip and collapse whitespace in the text ``columns`` (default: all text columns);
    blank cells become missing (NaN)."""
    columns = _text_columns(df) if columns is None else columns
    _require(df, columns, "normalize_whitespace")
    out = df.copy()
    for col in columns:
        values = df[col].to_numpy(dtype=object)
        out[col] = pd.Series([squeeze(v) or None if isinstance(v, str) else _as_text(v) for v in values],
                             index=df.index, dtype="str")
    return _keep_all(out)


_TOKEN = re.compile(r"[^\s,]+")
_UNIFORM_LETTERS = re.compile(r"[^\W\d_]")


def _uniform_case(title: str) -> bool:
    """ALL CAPS or all lower (and has letters)."""
    return bool(_UNIFORM_LETTERS.search(title)) and (title == title.upper() or title == title.lower())


def title_vocabulary(titles: Iterable[object], models: Iterable[object] | None = None) -> dict[str, str]:
    """``{lower-case token: its most common spelling}`` learned from the mixed-case titles
    (model numbers excluded: they come from the model_number column)."""
    counts: dict[str, Counter] = {}
    titles = list(titles)
    models = list(models) if models is not None else [None] * len(titles)
    for title, model in zip(titles, models):
        if not isinstance(title, str) or _uniform_case(title):
            continue
        model = model.lower() if isinstance(model, str) else ""
        for token in _TOKEN.findall(title):
            if token.lower() != model:
                counts.setdefault(token.lower(), Counter())[token] += 1
    return {low: c.most_common(1)[0][0] for low, c in counts.items()}


def _fallback_case(token: str) -> str:
    if any(ch.isdigit() for ch in token):
        return token.upper()
    return "-".join(part[:1].upper() + part[1:].lower() for part in token.split("-"))


def truecase_title(title: str, vocabulary: Mapping[str, str], model: str | None = None) -> str:
    """Rewrite every token of ``title`` in its usual spelling: the ``model`` number as written
    in its column, known words from ``vocabulary``, others Capitalized (digits: UPPER)."""
    def fix(match: re.Match) -> str:
        token = match.group(0)
        low = token.lower()
        if model and low == model.lower():
            return model
        return vocabulary.get(low) or _fallback_case(token)

    return _TOKEN.sub(fix, title)


def _casing_errors(title: object, vocabulary: Mapping[str, str], model: object) -> int:
    if not isinstance(title, str):
        return 0
    model = model if isinstance(model, str) else None
    fixed = truecase_title(title, vocabulary, model)
    return sum(a != b for a, b in zip(_TOKEN.findall(title), _TOKEN.findall(fixed)))


def normalize_title_case(df: pd.DataFrame, vocabulary: Mapping[str, str] | None = None) -> StepResult:
    """Titles in ALL CAPS or all lower get their usual casing back (needs title; uses
    model_number when present). ``vocabulary`` defaults to the one learned from the table's
    mixed-case titles (:func:`title_vocabulary`)."""
    _require(df, [C.TITLE], "normalize_title_case")
    models = df[C.MODEL_NUMBER] if C.MODEL_NUMBER in df.columns else pd.Series(None, index=df.index, dtype=object)
    vocab = title_vocabulary(df[C.TITLE], models) if vocabulary is None else vocabulary
    out = df.copy()
    out[C.TITLE] = pd.Series(
        [truecase_title(t, vocab, m if isinstance(m, str) else None) if isinstance(t, str) and _uniform_case(t)
         else _as_text(t) for t, m in zip(df[C.TITLE], models)],
        index=df.index, dtype="str")
    return _keep_all(out)


# =========================================================================================
# prices
# =========================================================================================
_PRICE = re.compile(
    r"^(?P<sign>[-\u2212]?)\s*(?:(?:USD|US\$|\$)\s*)?(?P<sign2>[-\u2212]?)\s*"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)\s*(?:USD|\$)?$", re.I)


def price_and_reason(value: object) -> tuple[float | None, str | None]:
    """``(price, None)`` for a valid raw price, else ``(None, reason)``:
    ``missing_price``, ``invalid_price`` or ``negative_price``."""
    if _is_missing(value):
        return None, MISSING_PRICE
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        number, negative = float(value), float(value) < 0
    else:
        match = _PRICE.match(squeeze(str(value)))
        if not match:
            return None, INVALID_PRICE
        number = float(match["num"].replace(",", ""))
        negative = bool(match["sign"] or match["sign2"]) and number > 0
    if not math.isfinite(number):
        return None, INVALID_PRICE
    if negative:
        return None, NEGATIVE_PRICE
    return abs(number), None


def parse_price_text(text: str) -> float | None:
    """One raw price string -> float USD, or None: '$1,299.00' -> 1299.0, 'USD 49.99' -> 49.99,
    'N/A', '' and '-5' -> None."""
    return price_and_reason(text)[0]


def parse_price(df: pd.DataFrame) -> StepResult:
    """Parse the price column to float; drop missing_price, invalid_price, negative_price."""
    _require(df, [C.PRICE], "parse_price")
    parsed = [price_and_reason(v) for v in df[C.PRICE]]
    result = _split(df, [reason for _, reason in parsed])
    result.df[C.PRICE] = np.array([p for p, reason in parsed if reason is None], dtype=float)
    return result


# =========================================================================================
# sizes
# =========================================================================================
_NUMBER = r"(\d+(?:[.,]\d+)?)"
_VOLUME = re.compile(_NUMBER + r"\s*(ml|millilit(?:er|re)s?|cl|l|lit(?:er|re)s?)\.?", re.I)
_SCREEN = re.compile(_NUMBER + "\\s*(?:\"|''|\u201d|-?\\s*inch(?:es)?|in\\.?)", re.I)
_SHOE = re.compile(r"(?:us|size|us\s*size)?\s*(\d{1,2}(?:\.5)?)", re.I)
_CAPACITY = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)\s*mah", re.I)
_CLOTHING = {"xs": "XS", "x-small": "XS", "extra small": "XS", "extra-small": "XS",
             "s": "S", "small": "S", "m": "M", "medium": "M", "med": "M",
             "l": "L", "large": "L", "xl": "XL", "x-large": "XL", "extra large": "XL",
             "extra-large": "XL", "xxl": "XXL", "2xl": "XXL", "xx-large": "XXL",
             "extra extra large": "XXL"}
_BED = {s.lower(): s for leaf in LEAVES if leaf.size_kind == BED for s in leaf.sizes}
_VOLUME_FACTOR = {"ml": 1.0, "cl": 10.0, "l": 1000.0}


def _number(text: str) -> float:
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # thousands comma
    return float(text.replace(",", "."))


def _fmt(value: float) -> str | None:
    if not math.isfinite(value):
        return None
    value = round(value, 3)
    return str(int(value)) if value.is_integer() else f"{value:.3f}".rstrip("0")


def normalize_size_text(size: str, kind: str | None) -> str | None:
    """One raw size -> its clean form for a size ``kind`` (see ``taxonomy``), or None if it
    cannot be read: '1.5L' -> '1500 ml', '15.6-inch' -> '15.6 in', 'medium' -> 'M',
    'us9' -> 'US 9', '10,000 mAh' -> '10000 mAh', 'queen size' -> 'Queen'."""
    text = squeeze(size).lower()
    if kind == VOLUME and (m := _VOLUME.fullmatch(text)):
        unit = m[2].lower()
        factor = _VOLUME_FACTOR.get(unit, 1000.0 if unit.startswith("l") else 1.0)
        ml = _fmt(_number(m[1]) * factor)
        return f"{ml} ml" if ml else None
    if kind == SCREEN and (m := _SCREEN.fullmatch(text)):
        inch = _fmt(_number(m[1]))
        return f"{inch} in" if inch else None
    if kind == CLOTHING:
        return _CLOTHING.get(text)
    if kind == SHOE and (m := _SHOE.fullmatch(text)):
        return f"US {_fmt(float(m[1]))}"
    if kind == CAPACITY and (m := _CAPACITY.fullmatch(text)):
        mah = _fmt(float(m[1].replace(",", "")))
        return f"{mah} mAh" if mah else None
    if kind == BED:
        return _BED.get(re.sub(r"\s*size$", "", text))
    return None


def normalize_size(df: pd.DataFrame) -> StepResult:
    """Sizes back to their clean form; the size kind comes from the category (needs size and
    category). Sizes that cannot be read are kept as written (no row is dropped)."""
    _require(df, [C.SIZE, C.CATEGORY], "normalize_size")
    out = df.copy()
    kinds = [LEAF_BY_NAME[c].size_kind if isinstance(c, str) and c in LEAF_BY_NAME else None
             for c in df[C.CATEGORY]]
    out[C.SIZE] = pd.Series(
        [None if (t := _as_text(s)) is None else (normalize_size_text(t, k) or squeeze(t))
         for s, k in zip(df[C.SIZE], kinds)], index=df.index, dtype="str")
    return _keep_all(out)


# =========================================================================================
# categories, missing values, duplicates
# =========================================================================================
_SEPARATOR = re.compile(r"\s*(?:>|/|\||\u203a|\u00bb)\s*")


def _path_key(path: str) -> str:
    parts = [squeeze(p).lower() for p in _SEPARATOR.split(path)]
    return " > ".join(re.sub(r"\band\b", "&", p) for p in parts if p)


_CANONICAL_PATH = {_path_key(p): p for p in CATEGORY_PATHS}
_LEAF_BY_PATH = {leaf.path_str: leaf.name for leaf in LEAVES}


def canonical_category_path(path: str) -> str | None:
    """'electronics/audio/in-ear headphones' -> 'Electronics > Audio > In-Ear Headphones';
    None if the path is not in ``taxonomy.CATEGORY_PATHS``."""
    return _CANONICAL_PATH.get(_path_key(path))


def normalize_category_path(df: pd.DataFrame) -> StepResult:
    """Category paths in their canonical form, plus the leaf ``category`` column (needs
    category_path); drops missing_category and unknown_category."""
    _require(df, [C.CATEGORY_PATH], "normalize_category_path")
    texts = [_as_text(v) for v in df[C.CATEGORY_PATH]]
    paths = [None if t is None else canonical_category_path(t) for t in texts]
    reasons = [MISSING_CATEGORY if t is None else UNKNOWN_CATEGORY if p is None else None
               for t, p in zip(texts, paths)]
    result = _split(df, reasons)
    kept = [p for p in paths if p is not None]
    out = result.df
    out[C.CATEGORY_PATH] = pd.Series(kept, index=out.index, dtype="str")
    leaf = pd.Series([_LEAF_BY_PATH[p] for p in kept], index=out.index, dtype="str")
    if C.CATEGORY in out.columns:
        out[C.CATEGORY] = leaf
    else:
        out.insert(list(out.columns).index(C.CATEGORY_PATH), C.CATEGORY, leaf)
    return result


def fill_missing(df: pd.DataFrame, values: Mapping[str, str] | None = None,
                 rest: str | None = "") -> StepResult:
    """Fill empty cells: ``values`` maps column -> filler (default :data:`PRODUCT_FILL`:
    brand 'Unknown', color 'Unspecified'); every other text column gets ``rest`` ('' by
    default; None leaves it untouched). Columns of ``values`` absent from ``df`` are skipped."""
    values = PRODUCT_FILL if values is None else values
    out = df.copy()
    for col in _text_columns(df):
        filler = values.get(col, rest)
        if filler is not None:
            out[col] = _texts(df[col]).fillna(filler)
    return _keep_all(out)


def _completeness(df: pd.DataFrame) -> np.ndarray:
    """Number of present (non-blank) cells per row."""
    return sum((_present(df[c]).astype(int) for c in df.columns), np.zeros(len(df), dtype=int))


def drop_duplicates_by_id(df: pd.DataFrame, column: str, prefer: Sequence[float] | None = None) -> StepResult:
    """Keep one row per ``column`` value: the most complete one, ties broken by the higher
    ``prefer`` score, then the first. Drops ``duplicate``, and rows without an id (``missing_id``)."""
    _require(df, [column], "drop_duplicates_by_id")
    ids = _texts(df[column])
    shared = (ids.duplicated(keep=False) & ids.notna()).to_numpy()  # only these need a choice
    keep = np.ones(len(df), dtype=bool)
    if shared.any():
        pos = np.flatnonzero(shared)
        order = pd.DataFrame({"id": ids.to_numpy(dtype=object)[pos],
                              "complete": -_completeness(df[shared]),
                              "prefer": -np.asarray(prefer, dtype=float)[pos] if prefer is not None else 0.0,
                              "pos": pos})
        order = order.sort_values(["id", "complete", "prefer", "pos"], kind="stable")
        keep[order.loc[order["id"].duplicated(), "pos"].to_numpy()] = False
    reasons = np.where(ids.isna().to_numpy(), MISSING_ID, np.where(keep, None, DUPLICATE))
    return _split(df, reasons)


def drop_duplicate_products(df: pd.DataFrame) -> StepResult:
    """One row per product_id: the most complete; ties go to the title with the usual casing
    (a re-typed 'Sn-4120' loses to 'SN-4120'). Reason ``duplicate``."""
    _require(df, [C.PRODUCT_ID, C.TITLE], "drop_duplicate_products")
    models = df[C.MODEL_NUMBER] if C.MODEL_NUMBER in df.columns else pd.Series(None, index=df.index, dtype=object)
    vocab = title_vocabulary(df[C.TITLE], models)
    shared = _texts(df[C.PRODUCT_ID]).duplicated(keep=False).to_numpy()
    prefer = [-_casing_errors(t, vocab, m) if dup else 0 for t, m, dup in zip(df[C.TITLE], models, shared)]
    return drop_duplicates_by_id(df, C.PRODUCT_ID, prefer)


def drop_duplicate_users(df: pd.DataFrame) -> StepResult:
    """One row per user_id, the most complete. Reasons ``duplicate``, ``missing_id``."""
    return drop_duplicates_by_id(df, C.USER_ID)


def drop_exact_duplicates(df: pd.DataFrame, subset: Sequence[str] | None = None) -> StepResult:
    """Drop rows equal to an earlier row in every column (or in ``subset``): ``duplicate``."""
    if subset is not None:
        _require(df, subset, "drop_exact_duplicates")
    cols = list(subset) if subset is not None else list(df.columns)
    if not cols or df.empty:
        return _keep_all(df)
    keys = pd.DataFrame({str(i): _texts(df[c]) if c in _text_columns(df) else df[c] for i, c in enumerate(cols)})
    dup = keys.duplicated(keep="first").to_numpy()
    return _split(df, np.where(dup, DUPLICATE, None))


# =========================================================================================
# users and PII
# =========================================================================================
def pii_salt(salt: str | None = None) -> str:
    """The salt for pseudonyms: ``salt``, else ``$COURSE_PII_SALT``, else the public course
    default. In production the salt is a secret: whoever has it can re-identify users."""
    return salt if salt is not None else os.environ.get(PII_SALT_ENV) or DEFAULT_PII_SALT


def pseudonym(value: str, salt: str | None = None, prefix: str = USER_PREFIX) -> str:
    """``prefix`` + the first 16 hex characters of SHA-256(salt + value)."""
    return prefix + hashlib.sha256((pii_salt(salt) + value).encode("utf-8")).hexdigest()[:16]


def pseudonymize_ids(df: pd.DataFrame, column: str = C.USER_ID, salt: str | None = None,
                     prefix: str = USER_PREFIX) -> StepResult:
    """Replace the ids in ``column`` by salted SHA-256 pseudonyms ("u_" + 16 hex characters);
    the same id gets the same pseudonym in every table. Missing ids stay missing."""
    _require(df, [column], "pseudonymize_ids")
    salt = pii_salt(salt)
    texts = _texts(df[column]).str.strip()
    mapping = {t: pseudonym(t, salt, prefix) for t in texts.dropna().unique()}
    out = df.copy()
    out[column] = texts.map(mapping).astype("str")
    return _keep_all(out)


def drop_pii_columns(df: pd.DataFrame, columns: Sequence[str] = (C.EMAIL,)) -> StepResult:
    """Drop the columns that identify a person (default: email); absent ones are ignored."""
    return _keep_all(df.drop(columns=[c for c in columns if c in df.columns]))


def drop_bot_users(df: pd.DataFrame, bot_user_ids: Iterable[str]) -> StepResult:
    """Drop the users whose ids are in ``bot_user_ids`` (needs user_id): ``bot_user``."""
    _require(df, [C.USER_ID], "drop_bot_users")
    bots = _texts(df[C.USER_ID]).isin(set(bot_user_ids)).to_numpy()
    return _split(df, np.where(bots, BOT_USER, None))


_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(r"""
    (?<![\w$\u00a3\u20ac.,/+-])                                    # not inside a word, number or price
    (?: \+\d{1,3}[\s.-]?(?:\(\d{1,4}\)|\d{1,4})(?:[\s.-]?\d{2,4}){2,3}   # +1 (555) 123-4567, +44 20 1234 5678
      | (?:\(\d{3}\)|\d{3})[\s.-]?\d{3}[\s.-]?\d{4}                 # 555-123-4567, (555) 123 4567
    )
    (?![\w-]|[.,]\d)
    """, re.X)
EMAIL_TOKEN, PHONE_TOKEN = "[EMAIL]", "[PHONE]"


def scrub_pii_text(text: str) -> str:
    """Replace e-mail addresses by '[EMAIL]' and phone numbers by '[PHONE]'; prices ('$49.99'),
    model numbers ('SN-4120'), ratings and dates ('2026-01-15') stay."""
    return _PHONE.sub(PHONE_TOKEN, _EMAIL.sub(EMAIL_TOKEN, text))


def scrub_pii(df: pd.DataFrame, columns: Sequence[str] = (C.REVIEW_TEXT,)) -> StepResult:
    """Scrub e-mail addresses and phone numbers from the free-text ``columns``."""
    _require(df, columns, "scrub_pii")
    out = df.copy()
    for col in columns:
        out[col] = _map_text(df[col], scrub_pii_text)
    return _keep_all(out)


# =========================================================================================
# events
# =========================================================================================
def normalize_event_type(df: pd.DataFrame, valid: Sequence[str] = C.EVENT_TYPES) -> StepResult:
    """' Add_To_Cart ' -> 'add_to_cart' (needs event_type); others drop: ``unknown_event_type``."""
    _require(df, [C.EVENT_TYPE], "normalize_event_type")
    types = _texts(df[C.EVENT_TYPE]).str.strip().str.lower().str.replace(r"[\s-]+", "_", regex=True)
    ok = types.isin(list(valid)).to_numpy()
    result = _split(df, np.where(ok, None, UNKNOWN_EVENT_TYPE))
    result.df[C.EVENT_TYPE] = types[ok].astype("str")
    return result


_EPOCH = r"\d{9,11}(?:\.\d+)?"


def parse_timestamp_series(values: pd.Series) -> pd.Series:
    """Text -> naive UTC ``datetime64[us]`` (NaT if unreadable): ISO 8601 ('2026-01-17T23:36:31',
    offsets converted to UTC), 'YYYY/MM/DD HH:MM:SS' and epoch seconds ('1768692991')."""
    texts = _texts(values).str.strip()
    epoch = texts.str.fullmatch(_EPOCH).fillna(False).astype(bool)
    digits = texts.str.fullmatch(r"[0-9.]+").fillna(False).astype(bool)
    other = texts.where(~digits).str.replace(r"^(\d{4})/(\d{1,2})/(\d{1,2})", r"\1-\2-\3", regex=True)
    parsed = pd.to_datetime(other, format="ISO8601", errors="coerce", utc=True).dt.tz_localize(None)
    seconds = pd.to_numeric(texts.where(epoch), errors="coerce")
    from_epoch = pd.to_datetime(seconds, unit="s", errors="coerce")
    out = parsed.astype("datetime64[us]")
    out[epoch.to_numpy()] = from_epoch[epoch.to_numpy()].astype("datetime64[us]")
    return out


def _datetimes(values: pd.Series) -> pd.Series:
    """Naive UTC datetimes: parsed if text, converted to UTC if time-zone aware."""
    if not pd.api.types.is_datetime64_any_dtype(values):
        return parse_timestamp_series(values)
    if getattr(values.dt, "tz", None) is not None:
        return values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values


def parse_timestamps(df: pd.DataFrame, column: str = C.TIMESTAMP) -> StepResult:
    """Parse ``column`` to datetime64 (see :func:`parse_timestamp_series`); unreadable ones
    drop: ``invalid_timestamp``."""
    _require(df, [column], "parse_timestamps")
    parsed = _datetimes(df[column])
    result = _split(df, np.where(parsed.isna().to_numpy(), INVALID_TIMESTAMP, None))
    result.df[column] = parsed[parsed.notna().to_numpy()].to_numpy()
    return result


def drop_future_events(df: pd.DataFrame, end: pd.Timestamp, column: str = C.TIMESTAMP) -> StepResult:
    """Drop rows later than ``end`` (``data.end_date(settings)``): ``future_timestamp``.
    Needs a parsed datetime ``column``."""
    _require(df, [column], "drop_future_events")
    late = (_datetimes(df[column]) > _naive(end)).to_numpy()
    return _split(df, np.where(late, FUTURE_TIMESTAMP, None))


def drop_missing_users(df: pd.DataFrame) -> StepResult:
    """Drop rows without a user_id: ``missing_user``."""
    _require(df, [C.USER_ID], "drop_missing_users")
    return _split(df, np.where(_texts(df[C.USER_ID]).isna().to_numpy(), MISSING_USER, None))


def drop_unknown_products(df: pd.DataFrame, product_ids: Iterable[str],
                          dropped_product_ids: Iterable[str] = (), allow_missing: bool = True) -> StepResult:
    """Keep rows whose product_id is in ``product_ids`` (the clean catalogue). Others drop:
    ``dropped_product`` if the id is in ``dropped_product_ids`` (removed while cleaning the
    catalogue), else ``unknown_product``. Rows without a product (searches) stay when
    ``allow_missing``."""
    _require(df, [C.PRODUCT_ID], "drop_unknown_products")
    ids = _texts(df[C.PRODUCT_ID])
    missing = ids.isna().to_numpy()
    known = ids.isin(set(product_ids)).to_numpy()
    removed = ids.isin(set(dropped_product_ids)).to_numpy()
    reasons = np.where(known, None, np.where(removed, DROPPED_PRODUCT, UNKNOWN_PRODUCT))
    reasons[missing] = None if allow_missing else UNKNOWN_PRODUCT
    return _split(df, reasons)


MAX_POSITION = 10_000


def parse_positions(df: pd.DataFrame) -> StepResult:
    """Positions to int (empty -> 0, as for searches); anything but a whole number from 0 to
    ``MAX_POSITION`` drops: ``invalid_position``."""
    _require(df, [C.POSITION], "parse_positions")
    texts = _texts(df[C.POSITION]).str.strip()
    numbers = pd.to_numeric(texts.where(texts.str.fullmatch(r"\d+(?:\.0*)?").fillna(False).astype(bool)),
                            errors="coerce").to_numpy(dtype=float, copy=True)
    numbers[texts.isna().to_numpy()] = 0.0
    ok = np.isfinite(numbers) & (numbers <= MAX_POSITION)
    result = _split(df, np.where(ok, None, INVALID_POSITION))
    result.df[C.POSITION] = numbers[ok].astype(np.int64)
    return result


def _peak_per_minute(codes: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """For each row, the number of rows of its session in the 60 s that start at that row."""
    order = np.lexsort((seconds, codes))
    span = int(seconds.max()) + 61 if len(seconds) else 61
    keys = codes[order].astype(np.int64) * span + seconds[order]
    counts = np.empty(len(keys), dtype=np.int64)
    counts[order] = np.searchsorted(keys, keys + 60, side="left") - np.arange(len(keys))
    return counts


def session_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per session (index session_id): user_id, events, clicks, minutes (first to last event)
    and events_per_minute, the most events in any 60 seconds of the session.
    Needs session_id, user_id, timestamp (parsed), event_type."""
    _require(df, [C.SESSION_ID, C.USER_ID, C.TIMESTAMP, C.EVENT_TYPE], "session_stats")
    ts = _datetimes(df[C.TIMESTAMP])
    frame = pd.DataFrame({C.SESSION_ID: _texts(df[C.SESSION_ID]).to_numpy(dtype=object),
                          C.USER_ID: _texts(df[C.USER_ID]).to_numpy(dtype=object),
                          C.TIMESTAMP: ts.to_numpy(),
                          "click": (_texts(df[C.EVENT_TYPE]).to_numpy(dtype=object) == C.CLICK)})
    frame = frame[frame[C.SESSION_ID].notna().to_numpy()]
    timed = frame[frame[C.TIMESTAMP].notna().to_numpy()]
    seconds = ((timed[C.TIMESTAMP] - timed[C.TIMESTAMP].min()).dt.total_seconds().to_numpy()
               if len(timed) else np.zeros(0))
    seconds = np.clip(np.nan_to_num(seconds), 0, 2.0**40).astype(np.int64)
    codes, uniques = pd.factorize(timed[C.SESSION_ID])
    peak = pd.Series(_peak_per_minute(codes, seconds), dtype=np.int64).groupby(codes).max()
    g = frame.groupby(C.SESSION_ID, sort=False)
    stats = g.agg(user_id=(C.USER_ID, "first"), events=("click", "size"), clicks=("click", "sum"),
                  first=(C.TIMESTAMP, "min"), last=(C.TIMESTAMP, "max"))
    stats["minutes"] = ((stats["last"] - stats["first"]).dt.total_seconds() / 60.0).fillna(0.0)
    stats["events_per_minute"] = pd.Series(peak.to_numpy(), index=uniques[peak.index]) \
        .reindex(stats.index).fillna(0).astype(np.int64)
    stats["clicks"] = stats["clicks"].astype(np.int64)
    return stats.drop(columns=["first", "last"]).rename(columns={"user_id": C.USER_ID})


def drop_bot_sessions(df: pd.DataFrame, max_clicks: int = 60,
                      max_events_per_minute: int = 30) -> StepResult:
    """Drop whole sessions that look automated: more than ``max_clicks`` clicks, or more than
    ``max_events_per_minute`` events within some 60 seconds (see :func:`session_stats`).
    In the workshop data a shopper's session has at most 24 events, at most 14 in a minute;
    the crawlers click 150-400 times, about twice a second. Reason ``bot_session``.
    Needs session_id, user_id, timestamp (parsed), event_type; rows without a session stay."""
    stats = session_stats(df)
    bot = (stats["clicks"] > max_clicks) | (stats["events_per_minute"] > max_events_per_minute)
    flagged = _texts(df[C.SESSION_ID]).isin(set(stats.index[bot.to_numpy()])).to_numpy()
    return _split(df, np.where(flagged, BOT_SESSION, None))


# =========================================================================================
# reviews
# =========================================================================================
_RATING = re.compile(r"([1-5])(?:\.0*)?")


def rating_or_none(value: object) -> int | None:
    """'4' or '4.0' -> 4; anything not a whole number from 1 to 5 -> None."""
    if _is_missing(value):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return int(value) if math.isfinite(value) and float(value).is_integer() and 1 <= value <= 5 else None
    match = _RATING.fullmatch(str(value).strip())
    return int(match[1]) if match else None


def parse_rating(df: pd.DataFrame) -> StepResult:
    """Ratings to int 1..5; '0', '6', '-1', '', 'five' drop: ``invalid_rating``."""
    _require(df, [C.RATING], "parse_rating")
    ratings = [rating_or_none(v) for v in df[C.RATING]]
    result = _split(df, [INVALID_RATING if r is None else None for r in ratings])
    result.df[C.RATING] = np.array([r for r in ratings if r is not None], dtype=np.int64)
    return result


# =========================================================================================
# whole tables
# =========================================================================================
def _finish(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Column order of :data:`CLEAN_COLUMNS` (extra columns after), dtypes, a fresh index."""
    order = [c for c in CLEAN_COLUMNS[table] if c in df.columns]
    df = df[order + [c for c in df.columns if c not in order]].reset_index(drop=True)
    for col in df.columns:
        if col not in order:  # extra columns of the raw table pass through as text
            df[col] = _texts(df[col]).fillna("")
        elif col in _FLOAT:
            df[col] = df[col].astype(float)
        elif col in _INT:
            df[col] = df[col].astype(np.int64)
        elif col in _TIME:
            df[col] = pd.to_datetime(df[col]).astype("datetime64[us]")
        else:
            df[col] = df[col].astype(str)
    return df


def _naive(ts: pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _end(settings: Settings | str | None, end: pd.Timestamp | None) -> pd.Timestamp:
    if end is not None:
        return _naive(end)
    return end_date(settings if isinstance(settings, Settings) else get_settings(settings))


def clean_products(raw: pd.DataFrame, report: CleaningReport | None = None) -> pd.DataFrame:
    """Clean the raw products table (all columns of ``data.SCHEMAS['products']``)."""
    report = report if report is not None else CleaningReport()
    df = validate_columns(raw, C.PRODUCTS)
    for step in (strip_html, normalize_whitespace, normalize_title_case, normalize_category_path,
                 parse_price, normalize_size, fill_missing, drop_duplicate_products):
        df = report.run(C.PRODUCTS, step, df)
    return _finish(df, C.PRODUCTS)


def clean_users(raw: pd.DataFrame, report: CleaningReport | None = None, salt: str | None = None) -> pd.DataFrame:
    """Clean the raw users: pseudonymous ids, no e-mail, one row per user, country filled."""
    report = report if report is not None else CleaningReport()
    df = validate_columns(raw, C.USERS)
    df = report.run(C.USERS, normalize_whitespace, df)
    df = report.run(C.USERS, pseudonymize_ids, df, C.USER_ID, salt)
    df = report.run(C.USERS, drop_pii_columns, df)
    df = report.run(C.USERS, drop_duplicate_users, df)
    df = report.run(C.USERS, fill_missing, df, USER_FILL)
    return _finish(df, C.USERS)


BOT_DEFAULTS = {"max_clicks": 60, "max_events_per_minute": 30}


def clean_events(raw_events: pd.DataFrame, product_ids: Iterable[str], report: CleaningReport | None = None,
                 settings: Settings | str | None = None, *, end: pd.Timestamp | None = None,
                 salt: str | None = None, dropped_product_ids: Iterable[str] = (),
                 bot_params: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Clean the raw event log. ``product_ids``: the clean catalogue; ``end``: the last moment
    of the log (default ``data.end_date(settings)``); ``bot_params``: see :func:`drop_bot_sessions`."""
    report = report if report is not None else CleaningReport()
    df = validate_columns(raw_events, C.EVENTS)
    product_ids = set(product_ids)
    for step, args in ((normalize_whitespace, ()), (pseudonymize_ids, (C.USER_ID, salt)),
                       (normalize_event_type, ()), (parse_timestamps, ()), (drop_future_events, (_end(settings, end),)),
                       (drop_exact_duplicates, ()), (drop_duplicates_by_id, (C.EVENT_ID,)),
                       (drop_missing_users, ()), (drop_unknown_products, (product_ids, set(dropped_product_ids))),
                       (parse_positions, ())):
        df = report.run(C.EVENTS, step, df, *args)
    df = report.run(C.EVENTS, drop_bot_sessions, df, **{**BOT_DEFAULTS, **(bot_params or {})})
    df = report.run(C.EVENTS, fill_missing, df, {})
    return _finish(df, C.EVENTS)


def clean_reviews(raw_reviews: pd.DataFrame, product_ids: Iterable[str], report: CleaningReport | None = None,
                  settings: Settings | str | None = None, *, end: pd.Timestamp | None = None,
                  salt: str | None = None, dropped_product_ids: Iterable[str] = ()) -> pd.DataFrame:
    """Clean the raw reviews: HTML and PII out of the text, ratings 1..5, known products only."""
    report = report if report is not None else CleaningReport()
    df = validate_columns(raw_reviews, C.REVIEWS)
    for step, args in ((strip_html, ()), (normalize_whitespace, ()), (scrub_pii, ()),
                       (pseudonymize_ids, (C.USER_ID, salt)), (parse_rating, ()), (parse_timestamps, ()),
                       (drop_future_events, (_end(settings, end),)), (drop_duplicates_by_id, (C.REVIEW_ID,)),
                       (drop_missing_users, ()),
                       (drop_unknown_products, (set(product_ids), set(dropped_product_ids), False)),
                       (fill_missing, ({},))):
        df = report.run(C.REVIEWS, step, df, *args)
    return _finish(df, C.REVIEWS)


def _bot_users(report: CleaningReport, events: pd.DataFrame) -> set[str]:
    """Users with bot sessions and no event left: accounts that only ever crawled."""
    flagged = report.dropped(C.EVENTS, BOT_SESSION)
    users = set(flagged[C.USER_ID].dropna()) if C.USER_ID in flagged.columns else set()
    return users - set(events[C.USER_ID])


def clean_world(raw: Mapping[str, pd.DataFrame], settings: Settings | str | None = None, *,
                salt: str | None = None,
                bot_params: Mapping[str, float] | None = None) -> tuple[dict[str, pd.DataFrame], CleaningReport]:
    """Clean every raw table (``data.load_raw``) in order: products, users, events, reviews,
    then drop the users that only ever ran bot sessions. Queries pass through; qrels lose the
    labels of products dropped from the catalogue (reason ``dropped_product``); user_preferences
    get the same pseudonymous user ids (and float scores).

    ``settings`` (or a profile name) sets the end of the event log: later events are 'future'.
    Returns ``(tables, report)``; ``report.check()`` has passed.
    """
    missing = [t for t in (*C.RAW_TABLES, C.QUERIES, C.QRELS, C.USER_PREFERENCES) if t not in raw]
    if missing:
        raise SchemaError(f"the raw world lacks table(s) {missing}; it has {sorted(raw)}")
    for table in (C.QUERIES, C.QRELS, C.USER_PREFERENCES):
        validate_columns(raw[table], table)
    report = CleaningReport()
    products = clean_products(raw[C.PRODUCTS], report)
    ids = set(products[C.PRODUCT_ID])
    dropped = report.dropped(C.PRODUCTS)
    removed = set(_texts(dropped[C.PRODUCT_ID]).dropna()) - ids if C.PRODUCT_ID in dropped.columns else set()
    users = clean_users(raw[C.USERS], report, salt)
    events = clean_events(raw[C.EVENTS], ids, report, settings, salt=salt, dropped_product_ids=removed,
                          bot_params=bot_params)
    users = report.run(C.USERS, drop_bot_users, users, _bot_users(report, events)).reset_index(drop=True)
    reviews = clean_reviews(raw[C.REVIEWS], ids, report, settings, salt=salt, dropped_product_ids=removed)
    qrels = report.run(C.QRELS, drop_unknown_products, raw[C.QRELS], ids, removed, False)
    prefs = report.run(C.USER_PREFERENCES, pseudonymize_ids, raw[C.USER_PREFERENCES], C.USER_ID, salt)
    for col in (C.PRICE_SENSITIVITY, C.BRAND_LOYALTY):
        prefs[col] = pd.to_numeric(prefs[col], errors="coerce").astype(float)
    prefs[C.USER_ID] = prefs[C.USER_ID].astype(str)
    report.check()
    tables = {C.PRODUCTS: products, C.USERS: users, C.EVENTS: events, C.REVIEWS: reviews,
              C.QUERIES: raw[C.QUERIES].copy(), C.QRELS: qrels.reset_index(drop=True),
              C.USER_PREFERENCES: prefs.reset_index(drop=True)}
    return tables, report


_CACHE: dict[tuple[str, int, str], tuple[dict[str, pd.DataFrame], CleaningReport]] = {}


def load_clean(profile: str | None = None, with_report: bool = False
               ) -> dict[str, pd.DataFrame] | tuple[dict[str, pd.DataFrame], CleaningReport]:
    """The clean world of ``profile`` (default ``$COURSE_PROFILE`` or workshop), cleaned once
    per process and cached in memory. Returns the tables dict, or ``(tables, report)`` when
    ``with_report``. Each call gets its own (copy-on-write) frames."""
    settings = get_settings(profile)
    key = (settings.profile, settings.seed, pii_salt())
    if key not in _CACHE:
        _CACHE[key] = clean_world(load_raw(settings.profile), settings)
    tables, report = _CACHE[key]
    tables = {name: df.copy(deep=False) for name, df in tables.items()}
    return (tables, report) if with_report else tables


# =========================================================================================
# finding dirt before cleaning it
# =========================================================================================
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE_HINT = re.compile(r"\(\d{3}\)|\b\d{3}-\d{3}-\d{4}\b|\+\d{1,3}\s\d")


def find_dirt(raw: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Count each kind of dirt in the raw tables (``data.load_raw``), with one example each.

    Returns a DataFrame (table, issue, rows, example): the to-do list of cleaning. The checks are
    independent of the cleaning steps, so they also show what cleaning must catch.
    """
    p, u, e, r = (raw[t] for t in (C.PRODUCTS, C.USERS, C.EVENTS, C.REVIEWS))
    price = p[C.PRICE].fillna("")
    title = p[C.TITLE].fillna("")
    kinds = e[C.EVENT_TYPE].fillna("")
    ts = e[C.TIMESTAMP].fillna("")
    checks = [
        (C.PRODUCTS, "duplicate product_id", p[C.PRODUCT_ID].duplicated(keep="first"), C.PRODUCT_ID),
        (C.PRODUCTS, "title in ALL CAPS or all lower case", title.map(lambda t: t.isupper() or t.islower()), C.TITLE),
        (C.PRODUCTS, "title with stray spaces", title.ne(title.map(squeeze)), C.TITLE),
        (C.PRODUCTS, "HTML in description", p[C.DESCRIPTION].fillna("").str.contains(r"<[a-z/]|&\w+;", regex=True), C.DESCRIPTION),
        (C.PRODUCTS, "price missing", price.str.strip().eq(""), C.PRICE),
        (C.PRODUCTS, "price not a plain number", price.str.strip().ne("") & ~price.str.fullmatch(r"\d+\.\d{2}"), C.PRICE),
        (C.PRODUCTS, "negative price", price.str.strip().str.startswith("-"), C.PRICE),
        (C.PRODUCTS, "brand missing", p[C.BRAND].isna(), C.BRAND),
        (C.PRODUCTS, "colour missing", p[C.COLOR].isna(), C.COLOR),
        (C.PRODUCTS, "category path not 'A > B > C'", ~p[C.CATEGORY_PATH].fillna("").isin(CATEGORY_PATHS), C.CATEGORY_PATH),
        (C.PRODUCTS, "size in a non-canonical unit or spelling",
         p[C.SIZE].notna() & ~p[C.SIZE].fillna("").isin({s for leaf in LEAVES for s in leaf.sizes}), C.SIZE),
        (C.USERS, "duplicate user row", u.duplicated(keep="first"), C.USER_ID),
        (C.USERS, "e-mail address stored (PII)", u[C.EMAIL].notna(), C.EMAIL),
        (C.EVENTS, "exact duplicate event", e.duplicated(keep="first"), C.EVENT_ID),
        (C.EVENTS, "event type not lower case", kinds.ne(kinds.str.strip().str.lower()), C.EVENT_TYPE),
        (C.EVENTS, "timestamp not ISO 8601", ~ts.str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"), C.TIMESTAMP),
        (C.EVENTS, "timestamp in the future (year > 2030)", ts.str.match(r"20[3-9]\d"), C.TIMESTAMP),
        (C.EVENTS, "missing user_id", e[C.USER_ID].isna(), C.EVENT_ID),
        (C.REVIEWS, "e-mail address in review text", r[C.REVIEW_TEXT].fillna("").str.contains(_EMAIL_RE), C.REVIEW_TEXT),
        (C.REVIEWS, "phone number in review text", r[C.REVIEW_TEXT].fillna("").str.contains(_PHONE_HINT), C.REVIEW_TEXT),
        (C.REVIEWS, "rating not an integer 1-5", ~r[C.RATING].fillna("").isin(list("12345")), C.RATING),
    ]
    rows = []
    for table, issue, mask, column in checks:
        mask = pd.Series(mask, index=raw[table].index).fillna(False).astype(bool)
        example = raw[table].loc[mask, column].head(1)
        rows.append((table, issue, int(mask.sum()), "" if example.empty else str(example.iloc[0])[:70]))
    return pd.DataFrame(rows, columns=[TABLE, "issue", ROWS, "example"])
