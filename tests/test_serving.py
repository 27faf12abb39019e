"""course_lib.serving and course_lib.shop_demo: quantisation, incremental updates, the serving
object, latency, the shop widget, streaming shards and compressed indexes (smoke world, tiny data)."""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from course_lib import columns as C
from course_lib import serving as S
from course_lib.encoding import Encoder, default_model_path, load_encoder, product_texts
from course_lib.retrieval import DenseIndex
from course_lib.shop_demo import PROMPT, ShopDemo, session_contributions
from fakes import category_catalog
from test_explain import fitted  # noqa: F401  (the module-scoped smoke fixture)


class TextEncoder:
    """A deterministic stand-in: each text's unit vector is seeded by its CRC (batch-independent);
    counts the texts it encodes."""

    name = "fake-crc"

    def __init__(self, dim: int = 16):
        self.dim, self.seen = dim, []

    def encode(self, texts, batch_size: int = 64, show_progress: bool = False):
        texts = list(texts)
        self.seen.extend(texts)
        x = np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim) for t in texts])
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class CrashingEncoder(TextEncoder):
    """Crashes on its ``crash_on``-th call, like a machine going down mid-run."""

    def __init__(self, crash_on: int, dim: int = 16):
        super().__init__(dim)
        self.calls, self.crash_on = 0, crash_on

    def encode(self, texts, **kwargs):
        self.calls += 1
        if self.calls == self.crash_on:
            raise RuntimeError("simulated crash")
        return super().encode(texts, **kwargs)


@pytest.fixture(scope="module")
def minilm():
    """The course's real MiniLM on the CPU, and its int8 copy (loaded once)."""
    encoder = load_encoder(device="cpu")
    return encoder, S.quantize_encoder(encoder)


@pytest.fixture(scope="module")
def tiny():
    """A tiny random BERT with the real tokenizer: the real Encoder class, fast enough for tests."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    return Encoder("tiny-bert", tokenizer, BertModel(config).eval(), max_length=64)


@pytest.fixture(scope="module")
def shop(fitted, tiny, tmp_path_factory):  # noqa: F811
    products = fitted["products"]
    index = DenseIndex(products[C.PRODUCT_ID], tiny.encode(product_texts(products).tolist(), show_progress=False))
    folder = S.save_artifacts(tmp_path_factory.mktemp("artifacts") / "shop", encoder=tiny, index=index,
                              recommender=fitted["rec"])
    return {"folder": folder, "index": index, "rec": S.Recommender.load(folder)}


# -- quantisation ----------------------------------------------------------------------------------
def test_int8_encoder_is_close_to_float_and_smaller(minilm, fitted):  # noqa: F811
    encoder, q = minilm
    before = encoder.fingerprint()
    texts = product_texts(fitted["products"].head(24)).tolist() + ["wireless earbuds", "red dress under $50"]
    a, b = encoder.encode(texts, show_progress=False), q.encode(texts, show_progress=False)
    cosine = (a * b).sum(axis=1)
    assert cosine.mean() > 0.98 and cosine.min() > 0.95, (cosine.mean(), cosine.min())
    assert S.model_size_mb(q) < 0.35 * S.model_size_mb(encoder)  # int8 linears and word embeddings
    linear_only = S.quantize_encoder(encoder, quantize_embeddings=False)
    assert 0.5 * S.model_size_mb(encoder) < S.model_size_mb(linear_only) < 0.75 * S.model_size_mb(encoder)
    assert linear_only.fingerprint() != q.fingerprint()        # a different recipe, a different cache key
    assert np.allclose(linear_only.encode(texts[:4], show_progress=False), b[:4], atol=0.05)
    assert encoder.fingerprint() == before                     # the float model is untouched
    assert q.fingerprint() != before and len(q.fingerprint()) == 64
    assert "int8" in q.name and q.device.type == "cpu"
    with pytest.raises(ValueError, match="already quantised"):
        S.quantize_encoder(q)
    with pytest.raises(TypeError, match="course_lib Encoder"):
        S.quantize_encoder(object())


def test_compare_quantized_gives_a_side_by_side_table(tiny):
    from course_lib.cleaning import load_clean

    tables = load_clean("smoke")
    queries = tables[C.QUERIES][tables[C.QUERIES][C.SPLIT] == C.TEST].head(8)
    qrels = tables[C.QRELS][tables[C.QRELS][C.QUERY_ID].isin(queries[C.QUERY_ID])]
    products = tables[C.PRODUCTS]
    products = products[products[C.PRODUCT_ID].isin(qrels[C.PRODUCT_ID]) | (np.arange(len(products)) < 60)]
    qrels = qrels[qrels[C.PRODUCT_ID].isin(products[C.PRODUCT_ID])]
    table = S.compare_quantized(tiny, S.quantize_encoder(tiny), products, queries, qrels, n_speed=32)
    assert list(table.index) == ["float32", "int8", "int8 (queries)"]
    assert table.loc["int8", "size_mb"] == table.loc["int8 (queries)", "size_mb"] < table.loc["float32", "size_mb"]
    assert list(table.columns) == ["size_mb", "texts_per_s", "ndcg@10"]
    assert (table["texts_per_s"] > 0).all() and table["ndcg@10"].between(0, 1).all()
    ratio = S.with_ratio(table, "int8", "float32")
    assert ratio.index[-1] == "int8 / float32"
    assert ratio.loc["int8 / float32", "size_mb"] == pytest.approx(table.loc["int8", "size_mb"] / table.loc["float32", "size_mb"])
    queries_only = S.compare_quantized(tiny, S.quantize_encoder(tiny), products, queries, qrels, n_speed=16,
                                       int8_products=False)
    assert list(queries_only.index) == ["float32", "int8 (queries)"]
    # the same model on both sides: every row searches the same vectors, so every ndcg is equal
    same = S.compare_quantized(tiny, tiny, products, queries, qrels, n_speed=8)
    assert same["ndcg@10"].nunique() == 1
    # the queries-only row searches the float product vectors it is given
    given = tiny.encode(product_texts(products).tolist(), show_progress=False)
    shuffled = S.compare_quantized(tiny, tiny, products, queries, qrels, n_speed=8, int8_products=False,
                                   product_vectors=given[::-1].copy())
    assert shuffled.loc["int8 (queries)", "ndcg@10"] == shuffled.loc["float32", "ndcg@10"] != same.loc["float32", "ndcg@10"]
    with pytest.raises(KeyError, match="no row 'fp16'"):
        S.with_ratio(table, "fp16", "float32")
    with pytest.raises(ValueError, match="no queries"):
        S.compare_quantized(tiny, tiny, products, queries.head(0), qrels)


# -- incremental updates ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["exact", "faiss-flat"])
def test_adding_products_encodes_only_the_new_ones(fitted, tmp_path, backend):  # noqa: F811
    products = fitted["products"]
    old, new = products.iloc[:-25], products.iloc[-25:]
    enc = TextEncoder()
    index = DenseIndex(old[C.PRODUCT_ID], enc.encode(product_texts(old).tolist()), backend=backend)
    path = index.save(tmp_path / "index.npz")
    before = index.get_vectors(old[C.PRODUCT_ID]).tobytes()
    enc.seen.clear()
    grown, added = S.add_products_to_index(path, products, enc)
    assert added == 25 and enc.seen == product_texts(new).tolist()     # only the new texts
    again = DenseIndex.load(path)                                        # saved
    assert len(again) == len(products)
    assert again.get_vectors(old[C.PRODUCT_ID]).tobytes() == before      # old vectors byte-equal
    target = new[C.PRODUCT_ID].iloc[3]
    ids, _ = again.search(enc.encode(product_texts(new.iloc[[3]]).tolist()), k=3)
    assert ids[0][0] == target                                           # search finds a new product
    enc.seen.clear()
    assert S.add_products_to_index(path, products, enc)[1] == 0 and enc.seen == []
    with pytest.raises(FileNotFoundError, match="no saved index"):
        S.add_products_to_index(tmp_path / "nope.npz", products, enc)


# -- the serving object --------------------------------------------------------------------------
def test_recommender_round_trip_gives_the_same_answers(shop, fitted, tiny):  # noqa: F811
    rec, explained, index = shop["rec"], fitted["rec"], shop["index"]
    user = explained.users[0]
    got, want = rec.recommend(user, 5), explained.recommend(user, 5)
    assert got[C.PRODUCT_ID].tolist() == want[C.PRODUCT_ID].tolist()
    np.testing.assert_allclose(got[C.SCORE], want[C.SCORE], rtol=1e-6)
    pid = want[C.PRODUCT_ID].iloc[1]
    reasons = rec.explain(user, pid)
    ref = explained.explain_product(user, pid).set_index(C.REASON)[C.CONTRIBUTION]
    np.testing.assert_allclose(reasons.set_index(C.REASON)[C.CONTRIBUTION].reindex(ref.index), ref, atol=1e-6)
    hits = rec.search("wireless earbuds", 5)
    ids, _ = index.search(tiny.encode(["wireless earbuds"], show_progress=False), 5)
    assert hits[C.PRODUCT_ID].tolist() == ids[0].tolist()
    assert list(hits.columns[:2]) == [C.RANK, C.PRODUCT_ID] and "Recommender(" in repr(rec)


def test_saving_again_replaces_the_folder_atomically(shop, fitted, tiny, tmp_path):  # noqa: F811
    folder = tmp_path / "shop"
    for quantize in (False, True):
        S.save_artifacts(folder, encoder=tiny, index=shop["index"], recommender=fitted["rec"], quantize=quantize)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop"]          # no temp or old folders left
    loaded = S.Recommender.load(folder)
    assert isinstance(loaded.encoder, S.QuantizedEncoder)
    small = DenseIndex(fitted["products"][C.PRODUCT_ID].iloc[:5], np.eye(5, 32, dtype=np.float32))
    with pytest.raises(ValueError, match="the index lacks"):
        S.save_artifacts(tmp_path / "bad", encoder=tiny, index=small, recommender=fitted["rec"])
    assert not (tmp_path / "bad").exists()


def test_bad_inputs_are_named(shop, tmp_path):
    rec = shop["rec"]
    user = rec.users[0]
    with pytest.raises(ValueError, match="query is empty"):
        rec.search("   ")
    with pytest.raises(KeyError, match="u_nobody"):
        rec.recommend("u_nobody")
    with pytest.raises(KeyError, match="unknown product id 'P_nope'"):
        rec.explain(user, "P_nope")
    with pytest.raises(KeyError, match="u_nobody"):
        rec.explain("u_nobody", rec.products[C.PRODUCT_ID].iloc[0])
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(shop["folder"], broken)
    (broken / "ranker.npz").unlink()
    with pytest.raises(S.MissingArtifactError, match="ranker.npz"):
        S.Recommender.load(broken)
    with pytest.raises(S.MissingArtifactError, match="no artifact folder"):
        S.Recommender.load(tmp_path / "nowhere")


def test_latency_report_has_p50_and_p99_per_operation(shop):
    rec = shop["rec"]
    table = S.latency_report(rec, ["earbuds", "red dress"], rec.users[:3], n=12)
    assert list(table.index) == ["search", "recommend", "explain"]
    assert list(table.columns) == ["calls", "p50_ms", "p99_ms", "mean_ms"]
    assert (table["calls"] == 12).all() and (table["p50_ms"] > 0).all()
    assert (table["p50_ms"] <= table["p99_ms"]).all()
    with pytest.raises(ValueError, match="at least one query"):
        S.latency_report(rec, [], rec.users[:1])


# -- the shop widget -------------------------------------------------------------------------------
def test_viewing_a_result_updates_recommendations_and_map(fitted, shop):  # noqa: F811
    products = fitted["products"]
    demo = ShopDemo(category_catalog(products, noise=0.05), shop["rec"], k=5,
                    counts=products[C.PRODUCT_ID].value_counts().rename(None))
    assert demo.message.value == PROMPT and demo.map_source == ""
    before = demo.recommendations[C.PRODUCT_ID].tolist()
    demo.query.value = "wireless earbuds"
    assert len(demo.results.options) == 5 and "results for" in demo.message.value
    pid = demo.results.options[2][1]
    demo.results.value = pid                                          # the click
    after = demo.recommendations
    category = products.set_index(C.PRODUCT_ID).loc[pid, C.CATEGORY]
    assert after[C.PRODUCT_ID].tolist() != before
    assert category in set(after[C.CATEGORY]) and pid not in set(after[C.PRODUCT_ID])
    assert all(f"item/{p}" in demo.map_source for p in after[C.PRODUCT_ID].head(3))
    assert "Viewing" in demo.viewed.value and "ShopDemo(" in repr(demo)
    contrib = session_contributions(demo.session, after)                # the map's numbers add up
    sums = contrib.groupby(C.PRODUCT_ID)[C.CONTRIBUTION].sum().reindex(after[C.PRODUCT_ID])
    np.testing.assert_allclose(sums.to_numpy(), after[C.SCORE].to_numpy(), atol=1e-5)
    demo.query.value = "  "
    assert "query is empty" in demo.message.value and demo.results.options == ()
    demo.view("P_nope")
    assert "P_nope" in demo.message.value
    assert "application/vnd.jupyter.widget-view+json" in demo._repr_mimebundle_()


# -- scale: streaming shards, compressed indexes ----------------------------------------------------
def test_streaming_encoding_resumes_after_a_crash(fitted, tmp_path):  # noqa: F811
    products = fitted["products"][[C.PRODUCT_ID, C.TITLE, C.DESCRIPTION, C.CATEGORY]]
    source = tmp_path / "products.parquet"
    products.to_parquet(source, index=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        S.stream_encode(source, tmp_path / "shards", CrashingEncoder(crash_on=3), batch_rows=100)
    assert len(list((tmp_path / "shards").glob("shard-*.npz"))) == 2
    assert not list((tmp_path / "shards").glob(".*tmp"))                # no half-written shard
    enc = TextEncoder()
    done = S.stream_encode(source, tmp_path / "shards", enc, batch_rows=100)
    n_shards = -(-len(products) // 100)
    assert done == {"shards": n_shards, "encoded": n_shards - 2, "skipped": 2, "rows": len(products)}
    assert len(enc.seen) == len(products) - 200                         # the first 200 were not redone
    ids, vectors = S.load_shards(tmp_path / "shards")
    S.stream_encode(source, tmp_path / "one_pass", TextEncoder(), batch_rows=100)
    ids1, vectors1 = S.load_shards(tmp_path / "one_pass")
    assert ids.tolist() == ids1.tolist() == products[C.PRODUCT_ID].tolist()
    assert vectors.tobytes() == vectors1.tobytes()
    np.testing.assert_array_equal(vectors, TextEncoder().encode(product_texts(products).tolist()))
    with pytest.raises(ValueError, match="batch_rows: 100 -> 50"):
        S.stream_encode(source, tmp_path / "shards", enc, batch_rows=50)


def test_pq_index_needs_fewer_bytes_per_vector_than_flat():
    x = S.synthetic_vectors(3_050, dim=96, seed=1)
    table = S.compressed_index_table(x[:3000], x[3000:], m=12, nbits=8, nlist=16, nprobe=4, train_size=3000, threads=1)
    flat, pq = table.loc["flat (exact)"], table.loc["IVF16,PQ12x8"]
    assert flat["recall@10"] == 1.0 and 0 < pq["recall@10"] <= 1
    assert flat["bytes_per_vector"] == pytest.approx(96 * 4, rel=0.02)
    assert pq["bytes_per_vector"] < flat["bytes_per_vector"] / 3
    assert pq["gb_at_10_000_000"] < flat["gb_at_10_000_000"]
    with pytest.raises(ValueError, match="m=10 must divide"):
        S.compressed_index_table(x[:300], x[300:], m=10)
