"""course_lib.finetune: pairs, the InfoNCE loss, hard negatives, bi-encoder (full and LoRA) and
cross-encoder fine-tuning, reranking and bring-your-own-data.

The real MiniLM is loaded once for the module; the fine-tuning runs are a few steps on a small
slice of the smoke world with short texts, so the whole module takes well under a minute.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib import columns as C
from course_lib import encoding as E
from course_lib import finetune as F
from course_lib.cleaning import load_clean
from course_lib.training import TrainConfig, TrainResult


# =========================================================================================
# fixtures
# =========================================================================================
@pytest.fixture(scope="module")
def world() -> dict[str, pd.DataFrame]:
    return load_clean("smoke")


@pytest.fixture(scope="module")
def encoder() -> E.Encoder:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steadier on a shared 2-core machine for these tiny batches
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield E.load_encoder(device="cpu", max_length=32)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small(world) -> dict[str, pd.DataFrame]:
    """12 train and 4 validation queries of the smoke world, with only their judged products."""
    q = world[C.QUERIES]
    queries = pd.concat([q[q[C.SPLIT] == C.TRAIN].head(12), q[q[C.SPLIT] == C.VALIDATION].head(4)])
    qrels = world[C.QRELS][world[C.QRELS][C.QUERY_ID].isin(queries[C.QUERY_ID])]
    products = world[C.PRODUCTS][world[C.PRODUCTS][C.PRODUCT_ID].isin(qrels[C.PRODUCT_ID])]
    return {C.QUERIES: queries, C.QRELS: qrels, C.PRODUCTS: products.reset_index(drop=True)}


@pytest.fixture(scope="module")
def pairs(small) -> pd.DataFrame:
    return F.training_pairs(small[C.QUERIES], small[C.QRELS], small[C.PRODUCTS])


@pytest.fixture(scope="module")
def product_vectors(small, encoder) -> np.ndarray:
    return encoder.encode(E.product_texts(small[C.PRODUCTS]).tolist())


def tiny_config(**overrides) -> TrainConfig:
    base = dict(max_steps=4, batch_size=4, lr=1e-4, eval_every=2, show_progress=False,
                mixed_precision=False)
    return TrainConfig(**{**base, **overrides})


def exact_pairs(qrels: pd.DataFrame, labels=("E",)) -> set[tuple[str, str]]:
    rel = qrels[qrels[C.ESCI_LABEL].isin(labels)]
    return set(zip(rel[C.QUERY_ID], rel[C.PRODUCT_ID]))


# =========================================================================================
# info_nce_loss
# =========================================================================================
def test_info_nce_2x2_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # identical unit pairs, temperature 1: each row is softmax([1, 0]) -> log(1 + e^-1)
    assert F.info_nce_loss(q, q.clone(), temperature=1.0).item() == pytest.approx(
        math.log(1 + math.exp(-1)), abs=1e-6)
    # not normalised and not symmetric: normalised products are (1, 1)/sqrt(2) and e2, so with
    # temperature 0.5 the logits are [[sqrt 2, 0], [sqrt 2, 2]]
    q2, p2 = torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    r = math.sqrt(2)
    expected = (math.log(1 + math.exp(-r)) + math.log(1 + math.exp(r - 2))) / 2
    assert F.info_nce_loss(q2, p2, temperature=0.5).item() == pytest.approx(expected, abs=1e-6)


def test_info_nce_3x3_with_a_hard_negative_by_hand():
    eye = torch.eye(3)
    hard = torch.tensor([[1.0, 0.0, 0.0]])  # as close to query 0 as its own product
    # row 0: logits [1, 0, 0, 1] -> -log(e / (2e + 2)); rows 1, 2: [0, 1, 0, 0] -> -log(e / (e + 3))
    row0 = -math.log(math.e / (2 * math.e + 2))
    row12 = -math.log(math.e / (math.e + 3))
    got = F.info_nce_loss(eye, eye.clone(), temperature=1.0, hard_negative_emb=hard).item()
    assert got == pytest.approx((row0 + 2 * row12) / 3, abs=1e-6)
    no_hard = F.info_nce_loss(eye, eye.clone(), temperature=1.0).item()
    assert no_hard == pytest.approx(-math.log(math.e / (math.e + 2)), abs=1e-6)
    assert got > no_hard  # a hard negative makes the task harder


def _loop_info_nce(q, p, temperature, hard=None):
    """A straightforward reimplementation: python loops over rows and columns."""
    def unit(v):
        return [x / math.sqrt(sum(y * y for y in v)) for x in v]

    qs, docs = [unit(v) for v in q.tolist()], [unit(v) for v in p.tolist()]
    if hard is not None:
        docs += [unit(v) for v in hard.tolist()]
    total = 0.0
    for i, qi in enumerate(qs):
        logits = [sum(a * b for a, b in zip(qi, d)) / temperature for d in docs]
        top = max(logits)
        log_z = top + math.log(sum(math.exp(x - top) for x in logits))
        total += log_z - logits[i]
    return total / len(qs)


@pytest.mark.parametrize("with_hard", [False, True])
def test_info_nce_matches_a_loop_reimplementation(with_hard):
    g = torch.Generator().manual_seed(0)
    q, p = torch.randn(5, 7, generator=g) * 3, torch.randn(5, 7, generator=g)
    hard = torch.randn(3, 7, generator=g) if with_hard else None
    got = F.info_nce_loss(q, p, temperature=0.07, hard_negative_emb=hard).item()
    assert got == pytest.approx(_loop_info_nce(q, p, 0.07, hard), rel=1e-5)
    # scaling the embeddings changes nothing: they are normalised inside
    scaled = F.info_nce_loss(q * 10, p * 0.1, temperature=0.07, hard_negative_emb=hard).item()
    assert scaled == pytest.approx(got, rel=1e-5)


def test_info_nce_gradients_and_errors():
    q = torch.randn(4, 8, requires_grad=True)
    F.info_nce_loss(q, torch.randn(4, 8)).backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
    with pytest.raises(ValueError, match="same shape"):
        F.info_nce_loss(torch.randn(4, 8), torch.randn(3, 8))
    with pytest.raises(ValueError, match="temperature"):
        F.info_nce_loss(torch.randn(2, 8), torch.randn(2, 8), temperature=0)
    with pytest.raises(ValueError, match="hard_negative_emb"):
        F.info_nce_loss(torch.randn(2, 8), torch.randn(2, 8), hard_negative_emb=torch.randn(2, 5))


# =========================================================================================
# data
# =========================================================================================
def test_training_pairs_are_the_exact_pairs_of_the_train_split(world):
    q, qrels, products = world[C.QUERIES], world[C.QRELS], world[C.PRODUCTS]
    pairs = F.training_pairs(q, qrels, products)
    assert list(pairs.columns) == list(F.PAIR_COLUMNS)
    train = set(q.loc[q[C.SPLIT] == C.TRAIN, C.QUERY_ID])
    assert set(pairs[C.QUERY_ID]) <= train
    wanted = {(a, b) for a, b in exact_pairs(qrels) if a in train}
    assert set(zip(pairs[C.QUERY_ID], pairs[C.PRODUCT_ID])) == wanted
    texts = E.product_texts(products.set_index(C.PRODUCT_ID, drop=False))
    assert (pairs[F.PRODUCT_TEXT].to_numpy() == texts.loc[pairs[C.PRODUCT_ID]].to_numpy()).all()
    with_s = F.training_pairs(q, qrels, products, labels=("E", "S"))
    assert len(with_s) > len(pairs)


def test_training_pairs_errors(small):
    q, qrels, products = small[C.QUERIES], small[C.QRELS], small[C.PRODUCTS]
    with pytest.raises(ValueError, match=r"\['X', 'exact'\] are not ESCI labels"):
        F.training_pairs(q, qrels, products, labels=("E", "X", "exact"))
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        F.training_pairs(q, qrels, products, split="dev")
    blank = q.copy()
    blank.iloc[0, blank.columns.get_loc(C.QUERY)] = "  "
    with pytest.raises(ValueError, match=f"empty text.*{q[C.QUERY_ID].iloc[0]}"):
        F.training_pairs(blank, qrels, products)
    pid = qrels.loc[qrels[C.ESCI_LABEL] == "E", C.PRODUCT_ID].iloc[0]
    empty = products.copy()
    empty.loc[empty[C.PRODUCT_ID] == pid, [C.TITLE, C.DESCRIPTION, C.CATEGORY]] = ""
    with pytest.raises(ValueError, match=pid):
        F.training_pairs(q, qrels, empty)
    with pytest.raises(KeyError, match=pid):
        F.training_pairs(q, qrels, products[products[C.PRODUCT_ID] != pid])
    ghost = pd.concat([qrels, pd.DataFrame({C.QUERY_ID: ["Q99999"], C.PRODUCT_ID: [pid],
                                            C.ESCI_LABEL: ["E"]})])
    with pytest.raises(KeyError, match="Q99999"):
        F.training_pairs(q, ghost, products)
    odd = qrels.assign(**{C.ESCI_LABEL: qrels[C.ESCI_LABEL].replace({"I": "irrelevant"})})
    with pytest.raises(ValueError, match="irrelevant"):
        F.training_pairs(q, odd, products)
    with pytest.raises(KeyError, match="split"):
        F.training_pairs(q.drop(columns=[C.SPLIT]), qrels, products)


def test_splits_are_disjoint_on_the_smoke_world(world):
    q = world[C.QUERIES]
    F.check_disjoint_splits(q)  # no error
    assert set(q[C.SPLIT]) == set(C.SPLITS)
    test_ids = set(q.loc[q[C.SPLIT] == C.TEST, C.QUERY_ID])
    pairs = F.training_pairs(q, world[C.QRELS], world[C.PRODUCTS])
    assert not set(pairs[C.QUERY_ID]) & test_ids


def test_check_disjoint_splits_catches_shared_ids_and_texts():
    q = pd.DataFrame({C.QUERY_ID: ["Q1", "Q2", "Q3"], C.QUERY: ["red dress", "earbuds", "mouse"],
                      C.SPLIT: [C.TRAIN, C.TEST, C.VALIDATION]})
    F.check_disjoint_splits(q)
    same_text = q.assign(**{C.QUERY: ["red dress", "Red  Dress", "mouse"]})
    with pytest.raises(ValueError, match=r"query text.*'red dress' in \['test', 'train'\]"):
        F.check_disjoint_splits(same_text)
    same_id = pd.concat([q, q.iloc[[0]].assign(**{C.SPLIT: C.TEST, C.QUERY: "other"})])
    with pytest.raises(ValueError, match="query_id.*'Q1'"):
        F.check_disjoint_splits(same_id)


# =========================================================================================
# hard negatives and batches
# =========================================================================================
def test_hard_negatives_are_high_ranked_non_exact_products(small, pairs, encoder, product_vectors):
    products, qrels = small[C.PRODUCTS], small[C.QRELS]
    mined = F.mine_hard_negatives(pairs, (encoder, product_vectors), products, qrels, k=5)
    assert list(mined.columns) == [*F.PAIR_COLUMNS, F.NEGATIVE_ID, F.NEGATIVE_TEXT]
    assert not set(zip(mined[C.QUERY_ID], mined[F.NEGATIVE_ID])) & exact_pairs(qrels)
    # each negative is among the 5 best-scored non-E products of its query
    ids = products[C.PRODUCT_ID].to_numpy()
    exact = exact_pairs(qrels)
    for qid, text in mined.drop_duplicates(C.QUERY_ID)[[C.QUERY_ID, C.QUERY]].itertuples(index=False):
        scores = product_vectors @ encoder.encode([text])[0]
        ranked = [pid for pid in ids[np.argsort(-scores, kind="stable")] if (qid, pid) not in exact]
        assert set(mined.loc[mined[C.QUERY_ID] == qid, F.NEGATIVE_ID]) <= set(ranked[:5])
    text_of = dict(zip(ids, E.product_texts(products)))
    assert (mined[F.NEGATIVE_TEXT] == mined[F.NEGATIVE_ID].map(text_of)).all()
    # without substitutes, and skipping the very top
    no_s = F.mine_hard_negatives(pairs, (encoder, product_vectors), products, qrels, k=3,
                                 skip_top=2, exclude_substitutes=True)
    assert not set(zip(no_s[C.QUERY_ID], no_s[F.NEGATIVE_ID])) & exact_pairs(qrels, ("E", "S"))
    with pytest.raises(ValueError, match="shape"):
        F.mine_hard_negatives(pairs, (encoder, product_vectors[:5]), products, qrels)


def test_batches_have_no_false_negatives_and_are_stateless(small, pairs, encoder, product_vectors):
    mined = F.mine_hard_negatives(pairs, (encoder, product_vectors), small[C.PRODUCTS],
                                  small[C.QRELS], k=5)
    positives = mined.groupby(C.QUERY_ID)[C.PRODUCT_ID].apply(set)
    batches = F._PairBatches(mined, batch_size=6, seed=3, with_negatives=True)
    seen = set()
    for step in range(12):
        rows = batches.indices(step)
        assert rows == batches.indices(step)  # same step, same batch
        seen.update(rows)
        batch = mined.iloc[rows]
        assert 2 <= len(batch) <= 6 and batch[C.QUERY_ID].is_unique
        docs = list(batch[C.PRODUCT_ID]) + list(batch[F.NEGATIVE_ID])
        assert len(set(docs)) == len(docs)
        for qid, pid in zip(batch[C.QUERY_ID], batch[C.PRODUCT_ID]):
            others = set(docs) - {pid}
            assert not others & positives[qid], "another product of the batch is a positive"
    assert batches.indices(0) != batches.indices(1)
    assert len(seen) > 30


# =========================================================================================
# bi-encoder fine-tuning
# =========================================================================================
@pytest.fixture(scope="module")
def tuned(small, pairs, encoder, tmp_path_factory):
    before = encoder.fingerprint()
    out = tmp_path_factory.mktemp("models") / "bi"
    val = small[C.QUERIES][small[C.QUERIES][C.SPLIT] == C.VALIDATION]
    result = F.fine_tune_bi_encoder(encoder, pairs, config=tiny_config(), val_queries=val,
                                    qrels=small[C.QRELS], products=small[C.PRODUCTS],
                                    output_dir=out, max_length=24, hard_negatives=True)
    return result, before


def test_fine_tune_trains_evaluates_and_keeps_the_pretrained_encoder(tuned, encoder):
    result, before = tuned
    assert isinstance(result.result, TrainResult) and result.result.steps_done == 4
    history = result.result.history
    assert len(history) == 4 and history["loss"].notna().all()
    assert history["ndcg@10"].notna().sum() == 2 and 0 <= result.result.best_metric <= 1
    word_embeddings = 30522 * 384  # frozen by default
    assert result.trainable_parameters == result.total_parameters - word_embeddings > 10_000_000
    assert encoder.fingerprint() == before, "the pretrained encoder was changed"
    assert result.encoder.fingerprint() != before
    assert result.encoder.max_length == 24 and not result.encoder.model.training


def test_saved_model_loads_back_with_the_same_embeddings(tuned, small):
    result, _ = tuned
    assert result.output_dir is not None and (result.output_dir / "config.json").is_file()
    assert not [p for p in result.output_dir.parent.iterdir() if p.name.startswith(".")]
    loaded = E.load_encoder(result.output_dir, device="cpu")
    assert loaded.max_length == 24  # recorded in the saved tokenizer
    texts = E.product_texts(small[C.PRODUCTS]).tolist()[:16] + ["wireless earbuds"]
    np.testing.assert_allclose(loaded.encode(texts), result.encoder.encode(texts), atol=1e-5)


def test_output_dir_is_replaced_atomically_and_refuses_a_foreign_folder(tmp_path, encoder, pairs):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a model folder"):
        F.fine_tune_bi_encoder(encoder, pairs, config=tiny_config(max_steps=1), output_dir=foreign)
    assert (foreign / "todo.txt").read_text() == "keep me"


def test_lora_trains_few_parameters_and_merges_before_saving(small, pairs, encoder, tmp_path):
    out = tmp_path / "lora"
    result = F.fine_tune_bi_encoder(encoder, pairs, config=tiny_config(lr=1e-3, eval_every=10),
                                    output_dir=out, max_length=24, lora=F.LoraSettings())
    assert result.trainable_parameters < 0.01 * result.total_parameters
    assert result.trainable_parameters == 4 * 6 * 8 * 384  # r=8, query+value, 6 layers, A and B
    assert "lora" not in " ".join(n for n, _ in result.encoder.model.named_parameters())
    assert not list(out.glob("adapter_*"))
    loaded = E.load_encoder(out, device="cpu")
    texts = E.product_texts(small[C.PRODUCTS]).tolist()[:8]
    np.testing.assert_allclose(loaded.encode(texts), result.encoder.encode(texts), atol=1e-5)
    assert not np.allclose(loaded.encode(texts), encoder.encode(texts), atol=1e-6)


def test_fine_tune_errors(pairs, encoder):
    with pytest.raises(ValueError, match=r"batch_size 64 is larger than the number of training queries \(12\)"):
        F.fine_tune_bi_encoder(encoder, pairs, config=tiny_config(batch_size=64))
    with pytest.raises(ValueError, match="mine_hard_negatives"):
        F.fine_tune_bi_encoder(encoder, pairs, config=tiny_config(), hard_negatives=True)
    with pytest.raises(KeyError, match="product_text"):
        F.fine_tune_bi_encoder(encoder, pairs.drop(columns=[F.PRODUCT_TEXT]), config=tiny_config())


# =========================================================================================
# cross-encoder
# =========================================================================================
@pytest.fixture(scope="module")
def cross() -> F.CrossEncoder:
    return F.CrossEncoder.from_pretrained(device="cpu", max_length=48)


def test_rerank_reorders_only_the_top_n(cross, small):
    queries, products = small[C.QUERIES].head(2), small[C.PRODUCTS]
    ids = products[C.PRODUCT_ID].tolist()
    run = pd.DataFrame({C.QUERY_ID: np.repeat(queries[C.QUERY_ID].to_numpy(), 8),
                        C.PRODUCT_ID: ids[:8] + ids[8:16],
                        C.SCORE: np.tile(np.linspace(1.0, 0.3, 8), 2)})
    run[C.RANK] = np.tile(np.arange(1, 9), 2)
    out = F.rerank(run.sample(frac=1, random_state=0), queries, products, cross, top_n=5)
    assert list(out.columns) == [C.QUERY_ID, C.PRODUCT_ID, C.SCORE, C.RANK]
    for qid, old in run.groupby(C.QUERY_ID):
        new = out[out[C.QUERY_ID] == qid]
        assert new[C.RANK].tolist() == list(range(1, 9))
        assert set(new[C.PRODUCT_ID].head(5)) == set(old[C.PRODUCT_ID].head(5))
        assert new[C.PRODUCT_ID].tail(3).tolist() == old[C.PRODUCT_ID].tail(3).tolist()
        assert new[C.SCORE].is_monotonic_decreasing
        texts = pd.DataFrame({C.QUERY: queries.set_index(C.QUERY_ID).loc[qid, C.QUERY],
                              F.PRODUCT_TEXT: E.product_texts(products.set_index(C.PRODUCT_ID)
                                                              .loc[new[C.PRODUCT_ID].head(5)]).to_numpy()})
        np.testing.assert_allclose(new[C.SCORE].head(5), cross.score(texts), atol=1e-5)
    # alpha = 0 trusts the first stage only: nothing moves; 0.5 blends the two
    kept = F.rerank(run, queries, products, cross, top_n=5, alpha=0.0)
    assert kept[C.PRODUCT_ID].tolist() == run[C.PRODUCT_ID].tolist()
    half = F.rerank(run, queries, products, cross, top_n=5, alpha=0.5)
    assert sorted(half[C.PRODUCT_ID]) == sorted(run[C.PRODUCT_ID])
    with pytest.raises(ValueError, match="alpha"):
        F.rerank(run, queries, products, cross, alpha=1.5)


def test_cross_encoder_fine_tune_save_and_load(cross, small, tmp_path):
    queries = small[C.QUERIES]
    config = tiny_config(max_steps=2, batch_size=8, eval_every=2)
    val_run = small[C.QRELS][small[C.QRELS][C.QUERY_ID].isin(
        queries.loc[queries[C.SPLIT] == C.VALIDATION, C.QUERY_ID])][[C.QUERY_ID, C.PRODUCT_ID]]
    val_run = val_run.assign(**{C.SCORE: -np.arange(len(val_run), dtype=float)})
    before = [p.detach().clone() for p in cross.model.parameters()][-1]
    tuned, result = F.fine_tune_cross_encoder(cross, queries, small[C.QRELS], small[C.PRODUCTS],
                                              config=config, max_length=48, group_size=4,
                                              val_run=val_run, val_top_n=6, max_val_queries=2,
                                              output_dir=tmp_path / "cross")
    assert result.steps_done == 2 and result.history["ndcg@10"].notna().any()
    assert tuned.alpha in F.ALPHAS and "ndcg@10_cross_only" in result.history
    assert torch.equal(list(cross.model.parameters())[-1], before), "the input model was changed"
    loaded = F.CrossEncoder.from_pretrained(tmp_path / "cross", device="cpu")
    assert (loaded.max_length, loaded.alpha) == (48, tuned.alpha)
    pairs = [("wireless earbuds", "Sonora in-ear headphones. In-Ear Headphones."),
             ("yoga mat", "Flexa non-slip yoga mat. Yoga Mats.")]
    np.testing.assert_allclose(loaded.score(pairs), tuned.score(pairs), atol=1e-5)
    assert tuned.score(pairs).shape == (2,) and tuned.score([]).shape == (0,)


# =========================================================================================
# bring your own data
# =========================================================================================
def _byod(n_queries: int = 12) -> pd.DataFrame:
    rows = []
    for i in range(n_queries):
        rows += [(f"query {i}", f"matching product {i}", "E"),
                 (f"query {i}", f"other product {i}", "I" if i % 2 else 0)]
    return pd.DataFrame(rows, columns=["query", "product_text", "label"])


def test_byod_errors(encoder):
    df = _byod()
    with pytest.raises(KeyError, match=r"\['product_text', 'label'\]"):
        F.fine_tune_from_dataframe(df[["query"]], encoder=encoder)
    with pytest.raises(KeyError, match=r"\['title'\]"):
        F.fine_tune_from_dataframe(df, text_product="title", encoder=encoder)
    empty = df.copy()
    empty.loc[3, "product_text"] = " "
    with pytest.raises(ValueError, match="empty 'product_text', e.g. row 3"):
        F.fine_tune_from_dataframe(empty, encoder=encoder)
    odd = df.copy()
    odd.loc[[1, 2], "label"] = ["relevant", 2]
    with pytest.raises(ValueError, match="2 row.s. have a 'label' outside the scheme: 'relevant', 2;"):
        F.fine_tune_from_dataframe(odd, encoder=encoder)
    with pytest.raises(ValueError, match=r"batch_size 32 is larger than the number of positive "
                                         r"training pairs \(11\)"):
        F.fine_tune_from_dataframe(df, encoder=encoder, config=tiny_config(batch_size=32))


def test_byod_trains_with_a_validation_split(encoder):
    df = _byod(10)
    df["label"] = df["label"].replace({"E": 1, "I": 0})
    result = F.fine_tune_from_dataframe(df, encoder=encoder, config=tiny_config(max_steps=2, batch_size=3),
                                        max_length=16)
    assert result.result.steps_done == 2
    assert result.result.history["ndcg@10"].notna().sum() == 1
