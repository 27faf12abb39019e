"""course_lib.retrieval: BM25, dense indexes over backends, fusion, query parsing, filters."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from course_lib import columns as C
from course_lib import data
from course_lib import retrieval as R
from course_lib.config import get_settings
from course_lib.retrieval import (BM25Index, DenseIndex, ParsedQuery, apply_filters, filter_run,
                                  l2_normalize, parse_query, reciprocal_rank_fusion)
from course_lib.taxonomy import LEAVES

COLORS = sorted({c for leaf in LEAVES for c in leaf.colors})


# =========================================================================================
# fixtures
# =========================================================================================
@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread():
    """faiss's OpenMP threads spin on a shared 2-core machine; one thread is faster here."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def products() -> pd.DataFrame:
    rows = [
        ("P01", "Sonora SO-4120 Wireless In-Ear Headphones - Black", "Sonora", "In-Ear Headphones", "Black", "", 59.0),
        ("P02", "Sonora SO-4120 Wireless In-Ear Headphones - White", "Sonora", "In-Ear Headphones", "White", "", 61.0),
        ("P03", "Aurex AU-4120X Noise Cancelling Over-Ear Headphones - Black", "Aurex", "Over-Ear Headphones", "Black", "", 129.0),
        ("P04", "Veltro Women's Wrap Cotton Dress - Red", "Veltro", "Dresses", "Red", "M", 42.0),
        ("P05", "Veltro Women's Maxi Silk Dress - Red", "Veltro", "Dresses", "Red", "S", 89.0),
        ("P06", "Mila Rose Women's Floral Linen Dress - Navy", "Mila Rose", "Dresses", "Navy", "M", 38.5),
        ("P07", "Stridex ST-220 Cushioned Running Shoes - Red", "Stridex", "Running Shoes", "Red", "US 10", 95.0),
        ("P08", "Pacewell PA-881 Trail Running Shoes - Blue", "Pacewell", "Running Shoes", "Blue", "US 9", 79.0),
        ("P09", "Zentro ZE-1500 Lightweight Laptop, 15.6 in - Silver", "Zentro", "Laptops", "Silver", "15.6 in", 899.0),
        ("P10", "Lumina LU-300 Gaming Laptop, 17.3 in - Black", "Lumina", "Laptops", "Black", "17.3 in", 1299.0),
        ("P11", "Ferro & Co Cast Iron Frying Pan - Black", "Ferro & Co", "Frying Pans", "Black", "", 35.0),
        ("P12", "Brewster BR-77 Cordless Electric Kettle, 1700 ml - Red", "Brewster", "Electric Kettles", "Red", "1700 ml", 40.0),
    ]
    df = pd.DataFrame(rows, columns=[C.PRODUCT_ID, C.TITLE, C.BRAND, C.CATEGORY, C.COLOR, C.SIZE, C.PRICE])
    df[C.DESCRIPTION] = "A " + df[C.CATEGORY].str.lower() + " made with care."
    return df


@pytest.fixture(scope="module")
def bm25(products) -> BM25Index:
    return BM25Index.from_products(products)


@pytest.fixture(scope="module")
def smoke_world() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    s = get_settings("smoke")
    prods = data.generate_products(s, np.random.default_rng(s.seed))
    queries, qrels = data.generate_queries(prods, s, np.random.default_rng(s.seed + 1))
    return prods, queries, qrels


def clustered(n: int, dim: int, n_clusters: int, seed: int, spread: float = 1.0) -> np.ndarray:
    """Unit vectors around random centres: like embeddings, neighbours are meaningful."""
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((n_clusters, dim)))
    noise = rng.standard_normal((n, dim)).astype(np.float32) * (spread / np.sqrt(dim))
    return l2_normalize(centres[rng.integers(n_clusters, size=n)] + noise)


def random_unit(n: int, dim: int, seed: int) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).standard_normal((n, dim)))


def ids_of(n: int, start: int = 0) -> list[str]:
    return [f"P{i:05d}" for i in range(start, start + n)]


# =========================================================================================
# BM25
# =========================================================================================
def test_bm25_ranks_the_product_with_the_words_first(bm25):
    res = bm25.search("wrap dress", k=5)
    assert list(res.columns) == [C.PRODUCT_ID, "score", "rank"]
    assert res[C.PRODUCT_ID].iloc[0] == "P04"
    assert res["rank"].tolist() == list(range(1, len(res) + 1))
    assert res["score"].is_monotonic_decreasing
    assert bm25.search("cast iron frying pan", k=3)[C.PRODUCT_ID].iloc[0] == "P11"


def test_bm25_only_returns_matching_products_and_k_beyond_the_corpus(bm25, products):
    res = bm25.search("laptop", k=1000)
    assert set(res[C.PRODUCT_ID]) == {"P09", "P10"}
    assert len(bm25.search("made care", k=1000)) == len(products)  # every description matches
    assert bm25.search("zzzz unknown", k=5).empty


@pytest.mark.parametrize("query", ["so-4120", "SO-4120", "sonora so-4120", "So-4120 headphones"])
def test_bm25_model_number_with_hyphen(bm25, query):
    top2 = set(bm25.search(query, k=2)[C.PRODUCT_ID])
    assert top2 == {"P01", "P02"}  # both colour variants of the model
    assert bm25.tokens(query)[:2] in (["so", "4120"], ["sonora", "so"])


def test_bm25_model_number_without_hyphen_is_a_plain_bm25_limitation(bm25, products):
    # bm25s splits "SO-4120" into "so" + "4120", so the single token "so4120" matches nothing
    assert bm25.tokens("SO4120") == ["so4120"]
    assert bm25.search("so4120").empty
    joined = BM25Index.from_products(products, join_hyphenated=True)
    assert set(joined.search("SO4120", k=2)[C.PRODUCT_ID]) == {"P01", "P02"}
    assert joined.search("au4120x", k=1)[C.PRODUCT_ID].iloc[0] == "P03"


def test_bm25_model_number_queries_of_the_generated_world(smoke_world):
    prods, queries, qrels = smoke_world
    plain, joined = BM25Index.from_products(prods), BM25Index.from_products(prods, join_hyphenated=True)
    models = queries[queries[C.QUERY_TYPE] == C.MODEL_NUMBER_QUERY]
    exact = qrels[qrels[C.ESCI_LABEL] == "E"].groupby(C.QUERY_ID)[C.PRODUCT_ID].apply(set)
    for qid, text in zip(models[C.QUERY_ID], models[C.QUERY]):
        top = joined.search(text, k=1)[C.PRODUCT_ID].iloc[0]
        assert top in exact[qid], text
        if "-" in text:
            assert plain.search(text, k=1)[C.PRODUCT_ID].iloc[0] in exact[qid], text


def test_bm25_search_many_is_a_run(bm25):
    queries = pd.DataFrame({C.QUERY_ID: ["q1", "q2"], C.QUERY: ["red dress", "laptop"]})
    run = bm25.search_many(queries, k=2)
    assert list(run.columns) == list(R.RUN_COLUMNS)
    assert run.groupby(C.QUERY_ID)["rank"].apply(list).to_dict() == {"q1": [1, 2], "q2": [1, 2]}


def test_bm25_text_fn_and_explicit_ids():
    idx = BM25Index(["a", "b"], ["blue kettle", "red kettle"])
    assert idx.search("red", k=5)[C.PRODUCT_ID].tolist() == ["b"]
    custom = BM25Index.from_products(
        pd.DataFrame({C.PRODUCT_ID: ["x", "y"], C.TITLE: ["t", "t"], C.MODEL_NUMBER: ["AB-1", "CD-2"]}),
        text_fn=lambda p: p[C.MODEL_NUMBER])
    assert custom.search("cd-2")[C.PRODUCT_ID].tolist() == ["y"]


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("query", ["", "   ", "\t\n"])
def test_empty_query_raises(bm25, query):
    with pytest.raises(ValueError, match="empty query"):
        bm25.search(query)
    with pytest.raises(ValueError, match="empty query"):
        bm25.search_many(pd.DataFrame({C.QUERY_ID: ["q1"], C.QUERY: [query]}))
    with pytest.raises(ValueError, match="empty query"):
        parse_query(query)


def test_stop_words_only_query_is_empty_with_a_warning(bm25):
    with pytest.warns(UserWarning, match="stop words"):
        res = bm25.search("the and of")
    assert res.empty and list(res.columns) == [C.PRODUCT_ID, "score", "rank"]
    queries = pd.DataFrame({C.QUERY_ID: ["q1", "q2"], C.QUERY: ["the of", "red dress"]})
    with pytest.warns(UserWarning, match="q1"):
        run = bm25.search_many(queries)
    assert set(run[C.QUERY_ID]) == {"q2"}
    with pytest.warns(UserWarning):
        assert bm25.search_many(queries.iloc[:1]).empty


def test_bm25_rejects_bad_corpora(products):
    with pytest.raises(ValueError, match="duplicate"):
        BM25Index(["a", "a"], ["x y", "z w"])
    with pytest.raises(ValueError, match="empty"):
        BM25Index([], [])
    with pytest.raises(ValueError, match="empty"):
        BM25Index(["a"], ["the of"])
    with pytest.raises(data.SchemaError, match=C.TITLE):
        BM25Index.from_products(products.drop(columns=[C.TITLE]))
    with pytest.raises(ValueError, match="positive"):
        BM25Index(["a"], ["kettle"]).search("kettle", k=0)


# =========================================================================================
# dense
# =========================================================================================
def test_exact_and_faiss_flat_give_identical_results():
    x, q = random_unit(300, 32, seed=1), random_unit(20, 32, seed=2)
    exact = DenseIndex(ids_of(300), x, backend="exact")
    flat = DenseIndex(ids_of(300), x, backend="faiss-flat")
    (ie, se), (ifl, sfl) = exact.search(q, k=10), flat.search(q, k=10)
    np.testing.assert_array_equal(ie, ifl)
    np.testing.assert_allclose(se, sfl, atol=1e-5)
    np.testing.assert_allclose(se[:, 0], (q @ x.T).max(axis=1), atol=1e-5)
    pd.testing.assert_frame_equal(exact.search_many(list("abcdefghijklmnopqrst"), q, 10)
                                  .drop(columns="score"),
                                  flat.search_many(list("abcdefghijklmnopqrst"), q, 10)
                                  .drop(columns="score"))


def test_top_k_ties_go_to_the_earlier_product():
    x = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [1, 0]], dtype=np.float32)
    index = DenseIndex(["a", "b", "c", "d", "e"], x)
    assert index.search(np.array([1, 0]), k=3)[0].tolist() == [["a", "c", "d"]]
    assert index.search(np.array([1, 0]), k=2)[0].tolist() == [["a", "c"]]
    same = BM25Index(["e", "d", "c", "b", "a", "z"], ["red kettle"] * 5 + ["blue pan"])
    assert same.search("kettle", k=2)[C.PRODUCT_ID].tolist() == ["e", "d"]  # corpus order


@pytest.mark.parametrize("backend,params", [("faiss-ivf", {"nprobe": 8}), ("faiss-hnsw", {})])
def test_approximate_recall_at_10_is_high(backend, params):
    both = clustered(2050, 384, n_clusters=40, seed=3)
    x, q = both[:2000], both[2000:]  # queries from the same distribution, not in the index
    truth, _ = DenseIndex(ids_of(2000), x).search(q, 10)
    approx = DenseIndex(ids_of(2000), x, backend=backend, **params)
    found, _ = approx.search(q, 10)
    recall = np.mean([len(set(a) & set(t)) / 10 for a, t in zip(found, truth)])
    assert recall >= 0.9, recall


@pytest.mark.parametrize("backend", R.BACKENDS)
def test_add_then_search_finds_the_new_products(backend):
    x = clustered(400, 16, n_clusters=8, seed=6)
    index = DenseIndex(ids_of(400), x, backend=backend)
    new = random_unit(5, 16, seed=7)
    index.add(ids_of(5, start=1000), new)
    assert len(index) == 405
    ids, scores = index.search(new, k=1)
    assert ids[:, 0].tolist() == ids_of(5, start=1000)
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(index.get_vectors(["P01002"])[0], new[2], atol=1e-6)
    with pytest.raises(ValueError, match="duplicate"):
        index.add(["P00003"], new[:1])


@pytest.mark.parametrize("backend", R.BACKENDS)
def test_k_larger_than_the_index_returns_everything(backend):
    x = random_unit(50, 8, seed=8)
    index = DenseIndex(ids_of(50), x, backend=backend, **({"nlist": 1} if backend == "faiss-ivf" else {}))
    ids, scores = index.search(x[:2], k=500)
    assert ids.shape == scores.shape == (2, 50)
    assert sorted(ids[0]) == ids_of(50)
    assert len(index.search_many(["q1", "q2"], x[:2], k=500)) == 100


@pytest.mark.parametrize("backend", R.BACKENDS)
def test_save_load_round_trip(tmp_path, backend):
    x, q = clustered(600, 24, n_clusters=10, seed=9), random_unit(7, 24, seed=10)
    index = DenseIndex(ids_of(600), x, backend=backend)
    if backend == "faiss-ivf":
        index.nprobe = 3
    if backend == "faiss-hnsw":
        index.efSearch = 20
    path = index.save(tmp_path / "sub" / "products.npz")
    loaded = DenseIndex.load(path)
    assert (loaded.backend, loaded.dim, loaded.params, len(loaded)) == (
        index.backend, index.dim, index.params, len(index))
    for a, b in zip(index.search(q, 10), loaded.search(q, 10)):
        np.testing.assert_array_equal(a, b)
    loaded.add(["new"], q[:1])  # a loaded index keeps working
    assert loaded.search(q[:1], 1)[0][0, 0] == "new"


def test_interrupted_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    x, q = random_unit(100, 8, seed=11), random_unit(3, 8, seed=12)
    path = tmp_path / "index.npz"
    old = DenseIndex(ids_of(100), x, backend="faiss-flat")
    old.save(path)
    before = path.read_bytes()

    def crash(fh, **arrays):
        fh.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(R.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        DenseIndex(ids_of(100, start=500), x, backend="faiss-flat").save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["index.npz"]  # no temporary file left behind
    np.testing.assert_array_equal(DenseIndex.load(path).search(q, 5)[0], old.search(q, 5)[0])


def test_search_params_can_be_tuned():
    x = clustered(1000, 16, n_clusters=10, seed=13)
    ivf = DenseIndex(ids_of(1000), x, backend="faiss-ivf", nlist=16)
    ivf.nprobe = 16
    assert ivf.nprobe == 16 and ivf.params["nlist"] == 16
    hnsw = DenseIndex(ids_of(1000), x, backend="faiss-hnsw", M=8, efSearch=16)
    hnsw.efSearch = 128
    assert hnsw.efSearch == 128 and hnsw.params["M"] == 8
    with pytest.raises(AttributeError, match="faiss-ivf"):
        hnsw.nprobe = 4
    with pytest.raises(ValueError, match="efsearch"):
        DenseIndex(ids_of(1000), x, backend="faiss-hnsw", efsearch=10)
    with pytest.raises(ValueError, match="backend"):
        DenseIndex(ids_of(1000), x, backend="annoy")


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", R.BACKENDS)
def test_dense_rejects_bad_input(backend):
    x = random_unit(100, 384, seed=14)
    index = DenseIndex(ids_of(100), x, backend=backend)
    with pytest.raises(ValueError, match=r"dim 383.*expects dim 384"):
        index.search(np.ones((2, 383), np.float32))
    with pytest.raises(ValueError, match="dim 128"):
        index.add(["new"], np.ones((1, 128), np.float32))
    bad = x[:2].copy()
    bad[1, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        index.search(bad)
    with pytest.raises(ValueError, match="NaN"):
        index.add(["n1", "n2"], bad)
    with pytest.raises(KeyError, match="P99999"):
        index.get_vectors(["P00001", "P99999"])
    with pytest.raises(ValueError, match="positive"):
        index.search(x[:1], k=0)
    with pytest.raises(ValueError, match="query ids"):
        index.search_many(["q1"], x[:2])


def test_dense_rejects_bad_construction():
    x = random_unit(10, 8, seed=15)
    with pytest.raises(ValueError, match="duplicate.*P00001"):
        DenseIndex(ids_of(9) + ["P00001"], x)
    with pytest.raises(ValueError, match="empty index"):
        DenseIndex([], np.zeros((0, 8), np.float32))
    with pytest.raises(ValueError, match="10 ids but 9 vectors"):
        DenseIndex(ids_of(10), x[:9])
    bad = x.copy()
    bad[3, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        DenseIndex(ids_of(10), bad, backend="faiss-flat")


# =========================================================================================
# hybrid
# =========================================================================================
def _run(qid: str, pids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({C.QUERY_ID: qid, C.PRODUCT_ID: pids, "score": np.linspace(1, 0, len(pids)),
                         "rank": range(1, len(pids) + 1)})


def test_rrf_hand_computed():
    a, b = _run("q1", ["x", "y"]), _run("q1", ["y", "z"])
    fused = reciprocal_rank_fusion([a, b], k=60)
    assert fused[C.PRODUCT_ID].tolist() == ["y", "x", "z"]
    np.testing.assert_allclose(fused["score"], [1 / 62 + 1 / 61, 1 / 61, 1 / 62])
    assert fused["rank"].tolist() == [1, 2, 3]
    weighted = reciprocal_rank_fusion([a, b], k=1, weights=[3.0, 1.0])
    # x: 3/2 = 1.5; y: 3/3 + 1/2 = 1.5; z: 1/3. x and y tie and both have a best single rank
    # of 1, so product_id decides: "x" < "y"
    assert weighted[C.PRODUCT_ID].tolist() == ["x", "y", "z"]
    np.testing.assert_allclose(weighted["score"], [1.5, 1.5, 1 / 3])


def test_rrf_ties_are_deterministic_and_queries_separate():
    a = pd.concat([_run("q1", ["x"]), _run("q2", ["p", "q"])])
    b = pd.concat([_run("q1", ["w"]), _run("q2", ["q", "p"])])
    one = reciprocal_rank_fusion([a, b])
    two = reciprocal_rank_fusion([b.iloc[::-1], a.iloc[::-1]])
    pd.testing.assert_frame_equal(one, two)
    assert one[one[C.QUERY_ID] == "q1"][C.PRODUCT_ID].tolist() == ["w", "x"]
    assert one.groupby(C.QUERY_ID)["rank"].apply(list).to_dict() == {"q1": [1, 2], "q2": [1, 2]}
    assert len(reciprocal_rank_fusion([a, b], top_k=1)) == 2


def test_rrf_rejects_bad_runs():
    with pytest.raises(ValueError, match="at least one"):
        reciprocal_rank_fusion([])
    with pytest.raises(ValueError, match="2 runs"):
        reciprocal_rank_fusion([_run("q", ["x"]), _run("q", ["y"])], weights=[1.0])
    with pytest.raises(ValueError, match="more than once"):
        reciprocal_rank_fusion([_run("q", ["x", "x"])])
    with pytest.raises(data.SchemaError, match="rank"):
        reciprocal_rank_fusion([_run("q", ["x"]).drop(columns="rank")])


def test_bm25_and_dense_runs_fuse(bm25, products):
    queries = pd.DataFrame({C.QUERY_ID: ["q1"], C.QUERY: ["red dress"]})
    vectors = random_unit(len(products), 8, seed=16)
    dense = DenseIndex(products[C.PRODUCT_ID], vectors)
    fused = reciprocal_rank_fusion([bm25.search_many(queries, 5),
                                    dense.search_many(["q1"], vectors[3], 5)])
    assert fused[C.PRODUCT_ID].iloc[0] == "P04"  # first in dense and high in BM25


# =========================================================================================
# query understanding
# =========================================================================================
PARSE_CASES = [
    # the generator's attribute templates
    ("red dress under $50", "red dress", None, 50.0, "Red", None, False),
    ("dress red under 50 dollars", "dress red", None, 50.0, "Red", None, False),
    ("red dress less than $50", "red dress", None, 50.0, "Red", None, False),
    ("cheap red dress below $50", "red dress", None, 50.0, "Red", None, True),
    ("navy women's dress under $60", "navy women's dress", None, 60.0, "Navy", None, False),
    ("bed sheet set pink under 80 dollars", "bed sheet set pink", None, 80.0, "Pink", None, False),
    # keyword, synonym and model-number queries have no constraints
    ("men's running shoes", "men's running shoes", None, None, None, None, False),
    ("wireless in-ear headphones", "wireless in-ear headphones", None, None, None, None, False),
    ("sonora so-4120", "sonora so-4120", None, None, None, None, False),
    ("SO4120", "SO4120", None, None, None, None, False),
    ("2-in-1 laptop", "2-in-1 laptop", None, None, None, None, False),
    # ranges and lower bounds
    ("laptop $500-$800", "laptop", 500.0, 800.0, None, None, False),
    ("jeans $20 - $40", "jeans", 20.0, 40.0, None, None, False),
    ("jeans between $20 and $40", "jeans", 20.0, 40.0, None, None, False),
    ("boots from $120 to $80", "boots", 80.0, 120.0, None, None, False),
    ("grey jacket 20-40 dollars", "grey jacket", 20.0, 40.0, "Gray", None, False),
    ("office chair over $100", "office chair", 100.0, None, None, None, False),
    ("monitor $300+", "monitor", 300.0, None, None, None, False),
    ("frying pan for under $1,250.50", "frying pan", None, 1250.5, None, None, False),
    ("affordable kettle", "kettle", None, None, None, None, True),
    # sizes
    ("running shoes size 10", "running shoes", None, None, None, "US 10", False),
    ("black boots us 9.5 under $100", "black boots", None, 100.0, "Black", "US 9.5", False),
    ("dress size m", "dress", None, None, None, "M", False),
    ("medium t-shirt", "t-shirt", None, None, None, "M", False),
    ("extra large jacket", "jacket", None, None, None, "XL", False),
    ('15.6" laptop', "laptop", None, None, None, "15.6 in", False),
    ("laptop 15.6 inch silver", "laptop silver", None, None, "Silver", "15.6 in", False),
    ("27-inch monitor", "monitor", None, None, None, "27 in", False),
    ("water bottle 1.5l", "water bottle", None, None, None, "1500 ml", False),
    ("power bank 20000 mah", "power bank", None, None, None, "20000 mAh", False),
    ("queen sheet set", "sheet set", None, None, None, "Queen", False),
    # colours are whole words only
    ("redwood bed frame", "redwood bed frame", None, None, None, None, False),
    ("the and of", "the and of", None, None, None, None, False),
]


@pytest.mark.parametrize("query,text,lo,hi,color,size,cheap", PARSE_CASES,
                         ids=[c[0] for c in PARSE_CASES])
def test_parse_query(query, text, lo, hi, color, size, cheap):
    p = parse_query(query)
    assert (p.text, p.min_price, p.max_price, p.color, p.size, p.cheap) == (text, lo, hi, color, size, cheap)


@hsettings(max_examples=60, deadline=None)
@given(color=st.sampled_from(COLORS), bound=st.integers(5, 5000),
       template=st.sampled_from(["{c} {n} under ${b}", "{n} {c} under {b} dollars",
                                 "{c} {n} less than ${b}", "cheap {c} {n} below ${b}"]),
       noun=st.sampled_from(sorted({leaf.noun.lower() for leaf in LEAVES})))
def test_parse_query_reads_every_generator_template(color, bound, template, noun):
    p = parse_query(template.format(c=color.lower(), n=noun, b=bound))
    assert (p.color, p.max_price, p.min_price) == (color, float(bound), None)
    assert noun in p.text and "$" not in p.text and str(bound) not in p.text


def test_generated_attribute_queries_filter_to_their_exact_products(smoke_world):
    prods, queries, qrels = smoke_world
    attr = queries[queries[C.QUERY_TYPE] == C.ATTRIBUTE]
    labelled = qrels[qrels[C.QUERY_ID].isin(attr[C.QUERY_ID])].copy()
    labelled["rank"] = labelled.groupby(C.QUERY_ID).cumcount() + 1
    kept = filter_run(labelled, prods, attr)
    exact = labelled[(labelled[C.ESCI_LABEL] == "E")]
    # every Exact product satisfies its query's colour and price; no kept product breaks them
    assert set(zip(exact[C.QUERY_ID], exact[C.PRODUCT_ID])) <= set(zip(kept[C.QUERY_ID], kept[C.PRODUCT_ID]))
    assert len(kept) < len(labelled)


# -- filters ----------------------------------------------------------------------------------
def test_apply_filters_keeps_matching_products_and_reranks(bm25, products):
    parsed = parse_query("red dress under $50")
    res = bm25.search(parsed.text, k=20)
    kept = apply_filters(res, products, parsed)
    assert kept[C.PRODUCT_ID].tolist()[:1] == ["P04"]
    merged = kept.merge(products, on=C.PRODUCT_ID)
    assert (merged[C.PRICE] <= 50).all() and (merged[C.COLOR] == "Red").all()
    assert kept["rank"].tolist() == list(range(1, len(kept) + 1))
    assert "P05" not in set(kept[C.PRODUCT_ID])  # red dress but $89


def test_apply_filters_size_colour_case_and_strictness(products):
    res = pd.DataFrame({C.PRODUCT_ID: ["P07", "P08", "P04", "P09"], "score": [4.0, 3, 2, 1],
                        "rank": [1, 2, 3, 4]})
    assert apply_filters(res, products, parse_query("shoes size 10"))[C.PRODUCT_ID].tolist() == ["P07"]
    assert apply_filters(res, products, parse_query('15.6" laptop'))[C.PRODUCT_ID].tolist() == ["P09"]
    shouting = products.assign(**{C.COLOR: products[C.COLOR].str.upper()})
    assert apply_filters(res, shouting, ParsedQuery("x", color="Red"))[C.PRODUCT_ID].tolist() == ["P07", "P04"]
    unknown_price = products.assign(**{C.PRICE: products[C.PRICE].where(products[C.PRODUCT_ID] != "P08")})
    under = parse_query("shoes under $90")
    assert apply_filters(res, unknown_price, under)[C.PRODUCT_ID].tolist() == ["P04"]
    assert apply_filters(res, unknown_price, under, strict=False)[C.PRODUCT_ID].tolist() == ["P08", "P04"]
    # no constraints: unchanged
    assert apply_filters(res, products, parse_query("shoes")).equals(res)


def test_apply_filters_bad_input(products):
    res = pd.DataFrame({C.PRODUCT_ID: ["P01", "NOPE"], "rank": [1, 2]})
    with pytest.raises(KeyError, match="NOPE"):
        apply_filters(res, products, parse_query("headphones under $100"))
    raw_prices = products.assign(**{C.PRICE: products[C.PRICE].map(lambda v: f"${v}")})
    with pytest.raises(TypeError, match="price"):
        apply_filters(res.iloc[:1], raw_prices, parse_query("headphones under $100"))
    with pytest.raises(data.SchemaError, match=C.COLOR):
        apply_filters(res.iloc[:1], products.drop(columns=[C.COLOR]), parse_query("black headphones"))


def test_filter_run_applies_each_querys_constraints(bm25, products):
    queries = pd.DataFrame({C.QUERY_ID: ["q1", "q2", "q3"],
                            C.QUERY: ["red dress under $50", "running shoes size 9", "headphones"]})
    search = queries.assign(**{C.QUERY: queries[C.QUERY].map(lambda t: parse_query(t).text)})
    run = bm25.search_many(search, k=20)
    out = filter_run(run, products, queries)
    got = out.groupby(C.QUERY_ID, sort=False)[C.PRODUCT_ID].apply(list).to_dict()
    assert got["q1"] == ["P04", "P12"] and got["q2"] == ["P08"]  # the red kettle is red and $40
    assert len(got["q3"]) == (run[C.QUERY_ID] == "q3").sum()
    assert out.groupby(C.QUERY_ID)["rank"].apply(lambda r: r.tolist() == list(range(1, len(r) + 1))).all()
    with pytest.raises(KeyError, match="q9"):
        filter_run(run.assign(**{C.QUERY_ID: "q9"}), products, queries)
