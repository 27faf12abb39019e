"""Real datasets (ESCI, WANDS): downloads, hashes, the mapping onto the kit's tables, and pairs.

Everything runs on tiny files in the real formats (tests/fixtures/esci, tests/fixtures/wands);
the network is replaced, and any real connection attempt fails the test.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import inspect
import io
import shutil
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from course_lib import columns as C
from course_lib import realdata
from course_lib.data import SchemaError, validate_columns
from course_lib.realdata import Download, DownloadError, fetch

FIXTURES = Path(__file__).resolve().parent / "fixtures"
HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None
needs_pyarrow = pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow reads ESCI's parquet files")


def _esci_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    spec = importlib.util.spec_from_file_location("esci_fixture", FIXTURES / "esci" / "make_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.frames()


def _read_wands() -> tuple[pd.DataFrame, ...]:
    return tuple(realdata._read_tsv(FIXTURES / "wands" / name)
                 for name in ("product.csv", "query.csv", "label.csv"))


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """No socket may connect, and the cache lives in a temp folder."""
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))


class FakeWeb:
    """Stands in for ``urllib.request.urlopen``: serves ``files`` by URL and counts the calls."""

    def __init__(self, files: dict[str, bytes] | None = None, error: Exception | None = None):
        self.files, self.error, self.calls = files or {}, error, []

    def __call__(self, url, timeout=None):
        self.calls.append(url)
        if self.error is not None:
            raise self.error
        if url not in self.files:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        return io.BytesIO(self.files[url])


def serve(monkeypatch, **kwargs) -> FakeWeb:
    web = FakeWeb(**kwargs)
    monkeypatch.setattr(urllib.request, "urlopen", web)
    return web


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# -- downloads -------------------------------------------------------------------------------

PAYLOAD = b"query_id\tquery\n1\tsofa\n"
URL = "https://example.org/data/query.csv"


def test_download_checks_sha256_writes_atomically_and_uses_the_cache(monkeypatch, tmp_path):
    web = serve(monkeypatch, files={URL: PAYLOAD})
    spec = Download(URL, "query.csv", hashlib.sha256(PAYLOAD).hexdigest())
    path = fetch(spec, tmp_path / "d")
    assert path == tmp_path / "d" / "query.csv" and path.read_bytes() == PAYLOAD
    assert leftovers(tmp_path / "d") == ["query.csv"]  # no temp file, no record for a known hash
    assert fetch(spec, tmp_path / "d") == path
    assert web.calls == [URL]  # the second call used the cache


def test_wrong_sha256_raises_and_leaves_no_file(monkeypatch, tmp_path):
    serve(monkeypatch, files={URL: PAYLOAD})
    spec = Download(URL, "query.csv", "0" * 64)
    with pytest.raises(DownloadError, match=r"expected 0{64}.*not kept") as info:
        fetch(spec, tmp_path / "d")
    assert hashlib.sha256(PAYLOAD).hexdigest() in str(info.value)
    assert leftovers(tmp_path / "d") == []


def test_offline_error_names_the_url_and_where_to_put_the_file(monkeypatch, tmp_path):
    serve(monkeypatch, error=urllib.error.URLError("[Errno -3] Temporary failure in name resolution"))
    spec = Download(URL, "query.csv", "ab" * 32, size=2_000_000)
    with pytest.raises(DownloadError) as info:
        fetch(spec, tmp_path / "d")
    message = str(info.value)
    assert URL in message and "name resolution" in message
    assert f"place it at {tmp_path / 'd' / 'query.csv'}" in message and "2 MB" in message
    assert "ab" * 32 in message
    assert leftovers(tmp_path / "d") == []


def test_download_false_never_touches_the_network(monkeypatch, tmp_path):
    web = serve(monkeypatch, files={URL: PAYLOAD})
    with pytest.raises(DownloadError, match=r"missing and download=False.*place it at"):
        fetch(Download(URL, "query.csv"), tmp_path, download=False)
    assert web.calls == []


def test_trust_on_first_use_records_the_hash_and_checks_it_later(monkeypatch, tmp_path):
    web = serve(monkeypatch, files={URL: PAYLOAD})
    spec = Download(URL, "query.csv")  # no published hash
    path = fetch(spec, tmp_path)
    record = tmp_path / "query.csv.sha256"
    assert record.read_text().split() == [hashlib.sha256(PAYLOAD).hexdigest(), "query.csv"]
    assert fetch(spec, tmp_path) == path and web.calls == [URL]

    path.write_bytes(PAYLOAD + b"2\tbed\n")  # changed after the first use
    with pytest.raises(DownloadError, match=r"expected .*Delete it .*download it again from"):
        fetch(spec, tmp_path)
    assert fetch(spec, tmp_path, verify=False) == path  # an explicit opt-out


def test_a_file_placed_by_hand_is_recorded_on_first_use(monkeypatch, tmp_path):
    web = serve(monkeypatch)
    (tmp_path / "query.csv").write_bytes(PAYLOAD)
    fetch(Download(URL, "query.csv"), tmp_path)
    assert (tmp_path / "query.csv.sha256").read_text().startswith(hashlib.sha256(PAYLOAD).hexdigest())
    assert web.calls == []
    with pytest.raises(DownloadError, match="expected " + "1" * 64):
        fetch(Download(URL, "query.csv", "1" * 64), tmp_path)  # a known hash always wins


def test_cache_folders_and_download_specs(tmp_path):
    assert realdata.real_data_dir("esci") == tmp_path / "cache" / "real" / "esci"
    with pytest.raises(ValueError, match="unknown dataset 'amazon'; known: esci, wands"):
        realdata.real_data_dir("amazon")
    for spec in realdata.DOWNLOADS["esci"]:
        assert spec.url.endswith("/shopping_queries_dataset/" + spec.filename)
        assert len(spec.sha256) == 64
    assert [s.filename for s in realdata.DOWNLOADS["wands"]] == ["product.csv", "query.csv", "label.csv"]


# -- ESCI ------------------------------------------------------------------------------------


def test_esci_tables_have_the_kit_columns_and_keep_one_locale():
    examples, products = _esci_frames()
    t = realdata.esci_tables(examples, products)
    validate_columns(t[C.QUERIES], C.QUERIES)
    validate_columns(t[C.QRELS], C.QRELS)
    assert list(t[C.PRODUCTS].columns) == list(realdata.PRODUCT_COLUMNS)
    assert sorted(t[C.QUERIES][C.QUERY_ID]) == sorted(str(i) for i in range(1, 9))  # not 9 (large) or 10 (es)
    assert set(t[C.QUERIES][C.QUERY_TYPE]) == {C.KEYWORD}
    assert "E001" not in set(t[C.PRODUCTS][C.PRODUCT_ID]) | set(t[C.QRELS][C.PRODUCT_ID])
    b001 = t[C.PRODUCTS].set_index(C.PRODUCT_ID).loc["B001"]
    assert b001[C.TITLE] == "SoundPods Wireless Earbuds"  # the us row, not the es one
    assert b001[C.DESCRIPTION] == "True wireless earbuds & case."  # HTML stripped
    b003 = t[C.PRODUCTS].set_index(C.PRODUCT_ID).loc["B003"]
    assert b003[C.DESCRIPTION] == "65W GaN charger Foldable plug"  # bullet points stand in
    assert set(t[C.QRELS][C.PRODUCT_ID]) == set(t[C.PRODUCTS][C.PRODUCT_ID])
    assert t[C.QRELS][C.ESCI_LABEL].isin(C.ESCI_LABELS).all()
    q1 = t[C.QRELS][t[C.QRELS][C.QUERY_ID] == "1"].set_index(C.PRODUCT_ID)[C.ESCI_LABEL]
    assert q1.to_dict() == {"B001": "E", "B002": "S", "B003": "C", "B004": "I"}  # as they are

    large = realdata.esci_tables(examples, products, small_version=False)
    assert "9" in set(large[C.QUERIES][C.QUERY_ID])
    every = realdata.esci_tables(examples, products, locale=None)
    assert "10" in set(every[C.QUERIES][C.QUERY_ID])


def test_esci_splits_keep_test_and_carve_validation_from_train():
    examples, products = _esci_frames()
    t = realdata.esci_tables(examples, products, validation_fraction=0.34, seed=3)
    split = t[C.QUERIES].set_index(C.QUERY_ID)[C.SPLIT]
    assert set(split[split == C.TEST].index) == {"7", "8"}  # ESCI's own test split
    val = set(split[split == C.VALIDATION].index)
    assert len(val) == 2 and val <= {"1", "2", "3", "4", "5", "6"}
    again = realdata.esci_tables(examples, products, validation_fraction=0.34, seed=3)
    pd.testing.assert_frame_equal(t[C.QUERIES], again[C.QUERIES])
    assert split.index.is_unique  # one split per query: splits are disjoint by query


def test_esci_max_queries_samples_from_both_splits():
    examples, products = _esci_frames()
    t = realdata.esci_tables(examples, products, max_queries=4, seed=1)
    queries = t[C.QUERIES]
    assert len(queries) == 4 and (queries[C.SPLIT] == C.TEST).sum() == 1
    assert set(t[C.QRELS][C.QUERY_ID]) == set(queries[C.QUERY_ID])
    assert set(t[C.PRODUCTS][C.PRODUCT_ID]) == set(t[C.QRELS][C.PRODUCT_ID])


def test_esci_errors_name_the_problem():
    examples, products = _esci_frames()
    with pytest.raises(SchemaError, match=r"ESCI examples is missing column\(s\) \['esci_label'\]"):
        realdata.esci_tables(examples.drop(columns="esci_label"), products)
    with pytest.raises(ValueError, match=r"no ESCI examples left for locale='fr'"):
        realdata.esci_tables(examples, products, locale="fr")
    with pytest.raises(ValueError, match=r"outside E/S/C/I: \['X'\]"):
        realdata.esci_tables(examples.assign(esci_label="X"), products)
    with pytest.warns(UserWarning, match="1 judgement"):
        t = realdata.esci_tables(examples, products[products["product_id"] != "B005"])
    assert "B005" not in set(t[C.QRELS][C.PRODUCT_ID])


@needs_pyarrow
def test_load_esci_downloads_verifies_and_reads_parquet(monkeypatch, tmp_path):
    files = {spec.url: (FIXTURES / "esci" / spec.filename).read_bytes()
             for spec in realdata.DOWNLOADS["esci"]}
    for name in ("ESCI_EXAMPLES", "ESCI_PRODUCTS"):  # the fixture's hashes, not the real ones
        spec = getattr(realdata, name)
        monkeypatch.setattr(realdata, name, dataclasses.replace(
            spec, sha256=hashlib.sha256(files[spec.url]).hexdigest()))
    web = serve(monkeypatch, files=files)
    t = realdata.load_esci(max_queries=100)
    assert len(web.calls) == 2
    assert leftovers(realdata.real_data_dir("esci")) == sorted(
        s.filename for s in realdata.DOWNLOADS["esci"])
    examples, products = _esci_frames()
    expected = realdata.esci_tables(examples, products)
    for table in (C.PRODUCTS, C.QUERIES, C.QRELS):
        pd.testing.assert_frame_equal(t[table], expected[table])


@needs_pyarrow
def test_load_esci_rejects_the_fixture_under_the_real_hashes(tmp_path):
    shutil.copytree(FIXTURES / "esci", tmp_path / "esci")
    with pytest.raises(DownloadError, match="expected 4a735b69"):
        realdata.load_esci(tmp_path / "esci", download=False)
    t = realdata.load_esci(tmp_path / "esci", download=False, verify=False)
    assert len(t[C.QUERIES]) == 8


# -- WANDS -----------------------------------------------------------------------------------


def test_wands_tables_map_labels_categories_and_colours():
    t = realdata.wands_tables(*_read_wands())
    validate_columns(t[C.QUERIES], C.QUERIES)
    validate_columns(t[C.QRELS], C.QRELS)
    labels = _read_wands()[2]
    assert len(t[C.QRELS]) == len(labels)
    mapped = t[C.QRELS][C.ESCI_LABEL].to_numpy()
    assert list(mapped) == [realdata.WANDS_LABELS[x] for x in labels["label"]]
    assert realdata.WANDS_LABELS == {"Exact": "E", "Partial": "S", "Irrelevant": "I"}
    products = t[C.PRODUCTS].set_index(C.PRODUCT_ID)
    assert len(products) == 8 and list(t[C.PRODUCTS].columns) == list(realdata.PRODUCT_COLUMNS)
    assert products.loc["0", C.CATEGORY_PATH] == "Furniture > Bedroom Furniture > Beds & Headboards > Beds"
    assert products.loc["2", C.CATEGORY] == "Accent Chairs"  # the last of "a|b"
    assert products.loc["0", C.COLOR] == "walnut" and products.loc["2", C.COLOR] == "gray"
    assert products.loc["3", C.DESCRIPTION] == "" and products.loc["1", C.COLOR] == ""
    queries = t[C.QUERIES].set_index(C.QUERY_ID)
    assert queries.loc["9", C.QUERY] == 'fawkes 36" blue vanity'  # CSV quoting inside a TSV
    assert queries.loc["8", C.CATEGORY] == "" and queries.loc["1", C.CATEGORY] == "Coffee & Cocktail Tables"


def test_wands_split_is_seeded_and_disjoint_by_query():
    t = realdata.wands_tables(*_read_wands(), test_fraction=0.3, validation_fraction=0.2, seed=5)
    queries = t[C.QUERIES]
    assert queries[C.QUERY_ID].is_unique
    counts = queries[C.SPLIT].value_counts().to_dict()
    assert counts == {C.TRAIN: 5, C.TEST: 3, C.VALIDATION: 2}
    same = realdata.wands_tables(*_read_wands(), test_fraction=0.3, validation_fraction=0.2, seed=5)
    pd.testing.assert_frame_equal(queries, same[C.QUERIES])
    others = [realdata.wands_tables(*_read_wands(), seed=s)[C.QUERIES][C.SPLIT].tolist()
              for s in range(6)]
    assert len({tuple(o) for o in others}) > 1  # the seed matters
    with pytest.raises(ValueError, match="must be below 1"):
        realdata.wands_tables(*_read_wands(), test_fraction=0.6, validation_fraction=0.4)


def test_wands_max_queries_and_judged_products_only():
    t = realdata.wands_tables(*_read_wands(), max_queries=3, judged_products_only=True, seed=2)
    assert len(t[C.QUERIES]) == 3
    assert set(t[C.QRELS][C.QUERY_ID]) <= set(t[C.QUERIES][C.QUERY_ID])
    assert set(t[C.PRODUCTS][C.PRODUCT_ID]) == set(t[C.QRELS][C.PRODUCT_ID])
    with pytest.raises(ValueError, match="max_queries must be at least 1"):
        realdata.wands_tables(*_read_wands(), max_queries=0)


def test_wands_errors_name_the_bad_input():
    products, queries, labels = _read_wands()
    with pytest.raises(ValueError, match=r"outside \['Exact', 'Partial', 'Irrelevant'\]: \['Relevant'\]"):
        realdata.wands_tables(products, queries, labels.assign(label="Relevant"))
    with pytest.raises(SchemaError, match=r"WANDS query.csv is missing column\(s\) \['query_class'\]"):
        realdata.wands_tables(products, queries.drop(columns="query_class"), labels)
    renamed = products.rename(columns={"category hierarchy": "category_hierarchy"})
    assert len(realdata.wands_tables(renamed, queries, labels)[C.PRODUCTS]) == 8  # README spelling


def test_load_wands_downloads_and_records_hashes(monkeypatch):
    files = {spec.url: (FIXTURES / "wands" / spec.filename).read_bytes()
             for spec in realdata.DOWNLOADS["wands"]}
    web = serve(monkeypatch, files=files)
    t = realdata.load_wands(max_queries=6)
    assert len(web.calls) == 3 and len(t[C.QUERIES]) == 6
    cached = realdata.real_data_dir("wands")
    assert leftovers(cached) == ["label.csv", "label.csv.sha256", "product.csv",
                                 "product.csv.sha256", "query.csv", "query.csv.sha256"]
    realdata.load_wands()  # from the cache, hashes checked
    assert len(web.calls) == 3


# -- pairs and the rest of the kit -------------------------------------------------------------


def test_to_pairs_gives_what_fine_tune_from_dataframe_takes():
    from course_lib.finetune import fine_tune_from_dataframe

    t = realdata.wands_tables(*_read_wands(), seed=5)
    pairs = realdata.to_pairs(**t)
    defaults = inspect.signature(fine_tune_from_dataframe).parameters
    needed = [defaults[name].default for name in ("text_query", "text_product", "label")]
    assert needed == [C.QUERY, realdata.PRODUCT_TEXT, C.LABEL]
    assert set(needed) <= set(pairs.columns)
    train = set(t[C.QUERIES].loc[t[C.QUERIES][C.SPLIT] == C.TRAIN, C.QUERY_ID])
    assert set(pairs[C.QUERY_ID]) == train & set(t[C.QRELS][C.QUERY_ID])
    assert pairs[C.LABEL].isin(C.ESCI_LABELS).all() and (pairs[realdata.PRODUCT_TEXT] != "").all()
    every = realdata.to_pairs(**t, split=None)
    assert len(every) == len(t[C.QRELS])
    row = every[(every[C.QUERY_ID] == "1") & (every[C.PRODUCT_ID] == "6")].iloc[0]
    assert row[realdata.PRODUCT_TEXT].startswith("round coffee table. Coffee & Cocktail Tables.")
    assert (row[C.QUERY], row[C.LABEL]) == ("smart coffee table", "E")
    custom = realdata.to_pairs(**t, split=[C.TEST, C.VALIDATION], text_fn=lambda p: p[C.TITLE])
    assert set(custom[realdata.PRODUCT_TEXT]) <= set(t[C.PRODUCTS][C.TITLE])
    with pytest.raises(ValueError, match=r"unknown split\(s\) \['dev'\]"):
        realdata.to_pairs(**t, split="dev")


def test_bm25_indexes_the_mapped_products():
    from course_lib.retrieval import BM25Index

    t = realdata.wands_tables(*_read_wands())
    index = BM25Index.from_products(t[C.PRODUCTS])
    top = index.search("slow cooker", k=1)
    assert top[C.PRODUCT_ID].iloc[0] == "1"
