"""course_lib.training: the plain-torch loop, early stopping, checkpoints and exact resumption.

Everything runs on tiny models (a small MLP; a 2-layer BERT of hidden size 32 for the kill test),
so the whole file takes seconds. The kill test runs training in subprocesses that SIGKILL
themselves, as a Colab runtime that disconnects would.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from course_lib import training as T
from course_lib.config import REPO_ROOT, get_settings
from course_lib.training import TrainConfig, Trainer, TrainResult, linear_warmup_schedule

W_TRUE = torch.tensor([[1.5], [-2.0], [0.5], [1.0]])


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: steadier on a shared machine, and bit-for-bit repeatable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mlp(dropout: float = 0.0, hidden: int = 16) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                               torch.nn.LayerNorm(hidden), torch.nn.Linear(hidden, 1))


def regression_batch(index: int, size: int = 8) -> dict[str, torch.Tensor]:
    """A deterministic batch of a linear problem, derived from its index only."""
    g = torch.Generator().manual_seed(1000 + index)
    x = torch.randn(size, 4, generator=g)
    return {"x": x, "y": x @ W_TRUE + 0.01 * torch.randn(size, 1, generator=g)}


def mse(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])


VALIDATION = regression_batch(-1, size=64)


def neg_val_mse(model: torch.nn.Module) -> dict[str, float]:
    return {"neg_mse": -mse(model, VALIDATION).item(), "other": 1.0}


def config(**overrides) -> TrainConfig:
    base = dict(max_steps=12, batch_size=8, lr=1e-2, eval_every=4, show_progress=False,
                warmup_ratio=0.25)
    return TrainConfig(**{**base, **overrides})


def params_equal(a: torch.nn.Module | dict, b: torch.nn.Module | dict) -> bool:
    sa = a if isinstance(a, dict) else a.state_dict()
    sb = b if isinstance(b, dict) else b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- the schedule and the config -----------------------------------------------------------

def test_linear_warmup_schedule_hand_computed():
    f = linear_warmup_schedule
    assert [f(s, 100, 10) for s in (0, 1, 5, 10)] == [0.0, 0.1, 0.5, 1.0]
    assert f(55, 100, 10) == pytest.approx(0.5)       # (100 - 55) / 90
    assert f(91, 100, 10) == pytest.approx(0.1)
    assert f(100, 100, 10) == 0.0 and f(150, 100, 10) == 0.0
    assert f(0, 4, 0) == 1.0 and f(2, 4, 0) == 0.5   # no warm-up: decay from the first step
    with pytest.raises(ValueError, match="warmup_steps"):
        f(0, 10, 11)
    with pytest.raises(ValueError, match="max_steps"):
        f(0, 0, 0)


@pytest.mark.parametrize("field, value", [("max_steps", 0), ("batch_size", 0), ("eval_every", 0),
                                          ("grad_accum_steps", 0), ("max_steps", -3), ("lr", 0.0),
                                          ("warmup_ratio", 1.5), ("max_grad_norm", 0.0),
                                          ("patience", -1), ("mixed_precision", "fp8")])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        config(**{field: value})


def test_config_from_settings_and_warmup_steps():
    cfg = TrainConfig.from_settings(get_settings("workshop"), lr=1e-4)
    assert (cfg.max_steps, cfg.batch_size, cfg.mixed_precision, cfg.lr) == (150, 32, False, 1e-4)
    assert cfg.warmup_steps == 15                       # not 16: 0.1 * 150 is 15.000000000000002
    assert TrainConfig.from_settings(get_settings("full")).mixed_precision == "auto"


# --- the loop --------------------------------------------------------------------------------

def test_loss_decreases_and_lr_follows_the_schedule(capsys):
    cfg = config(max_steps=40, eval_every=10, warmup_ratio=0.1, patience=None, lr=3e-2)
    result = Trainer(mlp(), mse, regression_batch, cfg, neg_val_mse, metric="neg_mse",
                     device="cpu").train()
    h = result.history
    assert list(h["step"]) == list(range(1, 41)) and result.steps_done == 40
    assert h["loss"].iloc[-5:].mean() < 0.25 * h["loss"].iloc[:5].mean()
    assert h["neg_mse"].dropna().is_monotonic_increasing  # the validation error falls too
    expected = [cfg.lr * linear_warmup_schedule(s - 1, 40, 4) for s in h["step"]]
    assert h["lr"].tolist() == pytest.approx(expected)
    assert h["lr"].iloc[0] == 0.0 and h["lr"].max() == pytest.approx(cfg.lr)
    evals = h.dropna(subset=["neg_mse"])
    assert evals["step"].tolist() == [10, 20, 30, 40] and evals["other"].eq(1.0).all()
    assert h["seconds"].is_monotonic_increasing and result.examples_per_second > 0
    assert h["best"].sum() == 1 and h.loc[h["best"], "step"].item() == result.best_step
    assert result.resumed_from is None and "neg_mse=" in repr(result)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""             # no progress bar, no per-step lines


def test_grad_accumulation_equals_one_big_batch():
    def half_batch(micro_step: int) -> dict[str, torch.Tensor]:
        full = regression_batch(micro_step // 2)
        part = slice(0, 4) if micro_step % 2 == 0 else slice(4, 8)
        return {key: value[part] for key, value in full.items()}

    grads = {}
    for name, make_batch, accum, bs in (("big", regression_batch, 1, 8), ("accum", half_batch, 2, 4)):
        model = mlp()
        trainer = Trainer(model, mse, make_batch, config(max_steps=3, grad_accum_steps=accum,
                                                         batch_size=bs, max_grad_norm=None),
                          device="cpu")
        seen = []
        trainer.optimizer.register_step_pre_hook(
            lambda opt, args, kwargs: seen.append([p.grad.clone() for p in trainer.params]))
        trainer.train()
        grads[name] = (seen, model.state_dict())
    (g_big, w_big), (g_acc, w_acc) = grads["big"], grads["accum"]
    assert len(g_big) == len(g_acc) == 3
    for step_big, step_acc in zip(g_big, g_acc):
        for a, b in zip(step_big, step_acc):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for key in w_big:
        torch.testing.assert_close(w_big[key], w_acc[key], rtol=1e-5, atol=1e-6)


def test_clipping_bounds_the_gradient_norm():
    trainer = Trainer(mlp(), mse, lambda i: {k: 50 * v for k, v in regression_batch(i).items()},
                      config(max_steps=5, max_grad_norm=0.5), device="cpu")
    norms = []
    trainer.optimizer.register_step_pre_hook(lambda opt, args, kwargs: norms.append(
        torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.params])).item()))
    result = trainer.train()
    assert len(norms) == 5 and max(norms) <= 0.5 * (1 + 1e-4)
    assert (result.history["grad_norm"] > 0.5).all()   # the history keeps the norm before clipping


def test_weight_decay_spares_biases_and_layernorm():
    model = mlp()
    trainer = Trainer(model, mse, regression_batch, config(weight_decay=0.1), device="cpu")
    decay = {id(p) for g in trainer.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {name for name, p in model.named_parameters() if id(p) in decay}
    assert names == {"0.weight", "4.weight"}           # the two Linear weights; not 3 (LayerNorm)


def test_only_the_given_parameters_are_trained():
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Trainer(model, mse, regression_batch, config(max_steps=3), device="cpu",
            parameters=model[4].parameters()).train()
    after = model.state_dict()
    assert [k for k in after if not torch.equal(after[k], before[k])] == ["4.weight", "4.bias"]
    with pytest.raises(ValueError, match="does not belong to the model"):
        Trainer(model, mse, regression_batch, config(), device="cpu",
                parameters=[torch.nn.Parameter(torch.zeros(2))])


def test_batches_are_moved_with_their_structure():
    Pair = namedtuple("Pair", "a b")
    batch = {"x": [torch.ones(2), (torch.zeros(1), "text")], "pair": Pair(torch.ones(1), 3)}
    moved = T.move_to_device(batch, "cpu")
    assert isinstance(moved["pair"], Pair) and moved["pair"].b == 3
    assert isinstance(moved["x"], list) and isinstance(moved["x"][1], tuple)
    assert moved["x"][1][1] == "text" and torch.equal(moved["x"][0], torch.ones(2))


# --- early stopping and bad input -------------------------------------------------------------

def scripted(values: list[float], snapshots: list[dict]):
    """An evaluate() that returns the next scripted value and remembers the weights it saw."""
    def evaluate(model):
        assert not model.training and torch.is_inference_mode_enabled()
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"ndcg@10": values[len(snapshots) - 1]}
    return evaluate


def test_early_stopping_restores_the_best_weights():
    model, seen = mlp(dropout=0.2), []
    result = Trainer(model, mse, regression_batch, config(max_steps=40, eval_every=2, patience=2),
                     scripted([0.1, 0.3, 0.2, 0.25, 0.9], seen), device="cpu").train()
    assert result.stopped_early and result.steps_done == 8 and len(seen) == 4
    assert (result.best_step, result.best_metric) == (4, 0.3)
    assert params_equal(model, seen[1]) and not params_equal(model, seen[3])
    assert result.history.loc[result.history["best"], "step"].tolist() == [4]
    assert model.training                               # back in train mode after evaluate


def test_patience_none_never_stops_but_keeps_the_best():
    model, seen = mlp(), []
    result = Trainer(model, mse, regression_batch, config(max_steps=8, eval_every=2, patience=None),
                     scripted([0.5, 0.4, 0.3, 0.2], seen), device="cpu").train()
    assert not result.stopped_early and result.steps_done == 8 and result.best_step == 2
    assert params_equal(model, seen[0])


def test_missing_metric_lists_what_evaluate_returned():
    with pytest.raises(KeyError, match=r"ndcg@10.*\['neg_mse', 'other'\]"):
        Trainer(mlp(), mse, regression_batch, config(), neg_val_mse, device="cpu").train()


def test_nan_loss_stops_with_the_step_number():
    def loss_fn(model, batch):
        loss = mse(model, batch)
        return loss * float("nan") if batch["x"][0, 0] == regression_batch(5)["x"][0, 0] else loss

    model = mlp()
    with pytest.raises(RuntimeError, match="at step 3"):   # micro-step 5 is step 3 with 2 per step
        Trainer(model, loss_fn, regression_batch, config(grad_accum_steps=2), device="cpu").train()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_loss_must_be_a_scalar():
    with pytest.raises(TypeError, match="scalar"):
        Trainer(mlp(), lambda m, b: m(b["x"]), regression_batch, config(), device="cpu").train()


# --- mixed precision -----------------------------------------------------------------------------

def test_mixed_precision_is_off_on_cpu():
    assert T.resolve_precision("auto", "cpu") == "fp32"
    assert T.resolve_precision(True, "cpu") == "fp32"
    assert T.resolve_precision(False, "cpu") == "fp32"
    with pytest.warns(UserWarning, match="needs a CUDA GPU"):
        assert T.resolve_precision("fp16", "cpu") == "fp32"
    with pytest.raises(ValueError, match="mixed_precision"):
        T.resolve_precision("fp8", "cpu")
    trainer = Trainer(mlp(), mse, regression_batch, config(mixed_precision="auto"), device="cpu")
    assert trainer.precision == "fp32" and trainer.autocast_dtype is None
    assert not trainer.scaler.is_enabled()


def test_grad_scaler_branch_with_a_cpu_stand_in(tmp_path):
    """The fp16 branch (scale, unscale, clip, skip an overflowing step, checkpoint the scaler) with
    CPU autocast and a CPU GradScaler standing in for CUDA, so it runs on every machine."""
    def stand_in(model):
        trainer = Trainer(model, mse, regression_batch, cfg, device="cpu")
        trainer.precision, trainer.autocast_dtype = "fp16", torch.bfloat16
        # a scale so large that the first step overflows; then it drops 10,000-fold
        trainer.scaler = torch.amp.GradScaler("cpu", init_scale=3e38, backoff_factor=1e-4)
        return trainer

    cfg = config(max_steps=24, eval_every=8, checkpoint_dir=tmp_path, lr=3e-2)
    model = mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # e.g. torch's "lr_scheduler.step() before optimizer.step()"
        trainer = stand_in(model)
        result = trainer.train()
    h = result.history
    skipped = ~h["grad_norm"].map(math.isfinite)
    assert skipped.tolist() == [True] + [False] * 23    # step 1 skipped, then it trains
    assert h["lr"].tolist() == pytest.approx([cfg.lr * linear_warmup_schedule(s - 1, 24, 6)
                                              for s in h["step"]])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert h["loss"].iloc[-4:].mean() < h["loss"].iloc[:4].mean()
    saved = torch.load(T.latest_checkpoint(tmp_path) / T.TRAINING_STATE_FILE, weights_only=True)
    assert saved["scaler"]["scale"] == trainer.scaler.get_scale() < 3e38
    resumed = stand_in(mlp())
    assert resumed.train().resumed_from == 24 and resumed.scaler.get_scale() == saved["scaler"]["scale"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["auto", "bf16", "fp16"])
def test_mixed_precision_trains_on_cuda(precision, tmp_path):
    if precision == "bf16" and not T.native_bf16():
        pytest.skip("this GPU has no native bf16")
    resolved = T.resolve_precision(precision, "cuda")
    assert resolved == (("bf16" if T.native_bf16() else "fp16") if precision == "auto" else precision)
    model = mlp()
    cfg = config(max_steps=30, eval_every=10, mixed_precision=precision, checkpoint_dir=tmp_path)
    seen_dtypes = []

    def loss_fn(model, batch):
        out = model[0](batch["x"])
        seen_dtypes.append(out.dtype)                  # the autocast dtype of a Linear
        return mse(model, batch)

    trainer = Trainer(model, loss_fn, regression_batch, cfg, device="cuda")
    assert trainer.scaler.is_enabled() == (resolved == "fp16")
    result = trainer.train()
    assert next(model.parameters()).is_cuda and next(model.parameters()).dtype == torch.float32
    assert set(seen_dtypes) == {torch.bfloat16 if resolved == "bf16" else torch.float16}
    h = result.history
    assert h["loss"].notna().all() and h["loss"].iloc[-5:].mean() < h["loss"].iloc[:5].mean()
    state = torch.load(T.latest_checkpoint(tmp_path) / T.TRAINING_STATE_FILE, weights_only=True)
    assert bool(state["scaler"]) == (resolved == "fp16") and state["rng"]["cuda"]
    again_model = mlp()
    again = Trainer(again_model, loss_fn, regression_batch, cfg, device="cuda").train()
    assert again.resumed_from == 30 and params_equal(again_model, model)


# --- checkpoints: kill and resume -------------------------------------------------------------

KILL_SCRIPT = textwrap.dedent('''
    """Train a tiny BERT bi-encoder with dropout; SIGKILL at micro-step $KILL_AT (if set)."""
    import json, os, random, signal, sys
    import numpy as np, torch
    from safetensors.torch import save_file
    torch.set_num_threads(1)
    from transformers import BertConfig, BertModel
    from course_lib.training import Trainer, TrainConfig

    KILL_AT = int(os.environ.get("KILL_AT", "-1"))
    KILL_AT_EVAL = int(os.environ.get("KILL_AT_EVAL", "-1"))

    def build():
        torch.manual_seed(0)
        return BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, vocab_size=100, max_position_embeddings=32,
                                    hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1))

    def batch_at(index):
        g = torch.Generator().manual_seed(1000 + index)
        q = torch.randint(1, 100, (8, 12), generator=g)
        p = torch.randint(1, 100, (8, 12), generator=g)
        p[:, :4] = q[:, :4]                              # something to learn: a shared prefix
        return {"q": {"input_ids": q, "attention_mask": torch.ones_like(q)},
                "p": (p, torch.ones_like(p))}

    def make_batch(micro_step):
        if micro_step == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)
        return batch_at(micro_step)

    def embed(model, input_ids, attention_mask):
        hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return torch.nn.functional.normalize(hidden.mean(dim=1), dim=-1)

    def contrastive(model, batch):
        q, p = embed(model, **batch["q"]), embed(model, *batch["p"])
        return torch.nn.functional.cross_entropy(q @ p.T / 0.05, torch.arange(len(q)))

    def loss_fn(model, batch):   # python and numpy random numbers too: their states must resume
        return contrastive(model, batch) * (1 + 0.01 * random.random() + 0.01 * np.random.rand())

    VALIDATION = batch_at(10**6)
    calls = []

    def evaluate(model):
        calls.append(1)
        if len(calls) == KILL_AT_EVAL:
            os.kill(os.getpid(), signal.SIGKILL)
        return {"score": -contrastive(model, VALIDATION).item() + 0.001 * torch.rand(()).item()}

    def run(checkpoint_dir, out):
        model = build()
        cfg = TrainConfig(max_steps=8, batch_size=8, lr=2e-3, warmup_ratio=0.25, grad_accum_steps=2,
                          eval_every=3, patience=None, checkpoint_dir=checkpoint_dir,
                          show_progress=False)
        result = Trainer(model, loss_fn, make_batch, cfg, evaluate, metric="score",
                         device="cpu").train()
        save_file({k: v.clone().contiguous() for k, v in model.state_dict().items()}, out + ".safetensors")
        h = result.history
        with open(out + ".json", "w") as f:
            json.dump({"resumed_from": result.resumed_from, "best_step": result.best_step,
                       "loss": h["loss"].tolist(), "lr": h["lr"].tolist(),
                       "score": h["score"].dropna().tolist()}, f)

    for checkpoint_dir, out in zip(sys.argv[1::2], sys.argv[2::2]):
        run(checkpoint_dir, out)
''')


def run_script(script: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_VERBOSITY": "error", **env}
    return subprocess.run([sys.executable, str(script), *map(str, args)], env=environ,
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_sigkilled_run_resumes_bit_identical(tmp_path):
    script = tmp_path / "train_tiny_bert.py"
    script.write_text(KILL_SCRIPT)
    # killed in step 5 (micro-steps 8 and 9), after the checkpoint of step 3 and before step 6's;
    # then killed again in the resumed run, in its second evaluation (step 8, after checkpoint 6)
    killed = run_script(script, tmp_path / "ckpt", tmp_path / "unused", KILL_AT="9")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [p.name for p in (tmp_path / "ckpt").iterdir() if p.name.startswith("checkpoint-")] \
        == ["checkpoint-00000003"]
    killed = run_script(script, tmp_path / "ckpt", tmp_path / "unused", KILL_AT_EVAL="2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # resume, then an uninterrupted reference run in a fresh folder (same process, same threads)
    done = run_script(script, tmp_path / "ckpt", tmp_path / "resumed", tmp_path / "ref_ckpt",
                      tmp_path / "reference")
    assert done.returncode == 0, done.stderr

    resumed = json.loads((tmp_path / "resumed.json").read_text())
    reference = json.loads((tmp_path / "reference.json").read_text())
    assert resumed["resumed_from"] == 6 and reference["resumed_from"] is None
    assert len(reference["loss"]) == 8 and len(reference["score"]) == 3
    for key in ("loss", "lr", "score", "best_step"):
        assert resumed[key] == reference[key], key
    # the model (which holds the best weights) and the last step's weights are bit-identical
    final_a, final_b = (load_file(tmp_path / f"{n}.safetensors") for n in ("resumed", "reference"))
    assert params_equal(final_a, final_b)
    last_a, last_b = (load_file(tmp_path / d / "checkpoint-00000008" / T.MODEL_FILE)
                      for d in ("ckpt", "ref_ckpt"))
    assert params_equal(last_a, last_b)


class Crash(Exception):
    """Stands for a runtime that disconnects in the middle of training."""


def crash_at(micro_step: int):
    def make_batch(i):
        if i == micro_step:
            raise Crash
        return regression_batch(i)
    return make_batch


def wiggly(model: torch.nn.Module) -> dict[str, float]:
    """A metric that goes up and down with the weights (deterministically), so that early stopping
    fires; it draws a torch random number too, as an evaluation with sampling would."""
    total = float(sum(p.double().sum() for p in model.parameters()))
    return {"neg_mse": math.sin(1e4 * total) + 1e-3 * torch.rand(()).item()}


def test_in_process_interrupt_and_resume_with_early_stopping_state(tmp_path):
    """Dropout, the patience counter and the best weights all come back exactly from a checkpoint
    taken after a non-improving evaluation."""
    cfg = config(max_steps=90, eval_every=3, patience=2, lr=3e-2, grad_accum_steps=2)
    ref_model = mlp(dropout=0.3)
    ref = Trainer(ref_model, mse, regression_batch, cfg, wiggly, metric="neg_mse",
                  device="cpu").train()
    assert ref.stopped_early and ref.steps_done < 90
    # crash just after the next-to-last evaluation: it did not improve (patience 1 of 2 used, the
    # best weights are older), and only a restored patience counter stops at the same step
    evals = ref.history.dropna(subset=["neg_mse"])
    improved = evals["neg_mse"] > evals["neg_mse"].cummax().shift(fill_value=-math.inf)
    assert improved.tolist()[-3:] == [True, False, False]
    crash_step = int(evals["step"].iloc[-2])
    cfg_ckpt = config(**{**cfg.as_dict(), "checkpoint_dir": tmp_path})
    with pytest.raises(Crash):
        Trainer(mlp(dropout=0.3), mse, crash_at(2 * crash_step + 1), cfg_ckpt, wiggly,
                metric="neg_mse", device="cpu").train()
    assert T.latest_checkpoint(tmp_path).name == f"checkpoint-{crash_step:08d}"
    assert T._weights_step(tmp_path / T.BEST_WEIGHTS) != str(crash_step)  # best is older
    model = mlp(dropout=0.3)
    result = Trainer(model, mse, regression_batch, cfg_ckpt, wiggly, metric="neg_mse",
                     device="cpu").train()
    assert result.resumed_from == crash_step
    assert (result.steps_done, result.best_step, result.best_metric, result.stopped_early) == \
        (ref.steps_done, ref.best_step, ref.best_metric, ref.stopped_early)
    assert params_equal(model, ref_model)
    cols = ["step", "loss", "lr", "grad_norm", "neg_mse", "best"]
    assert result.history[cols].equals(ref.history[cols])
    # only the latest checkpoint and the best weights are kept
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        [T.BEST_WEIGHTS, f"checkpoint-{result.steps_done:08d}"]
    assert params_equal(load_file(tmp_path / T.BEST_WEIGHTS), model)
    # a finished run resumes to its end at once, with the best weights
    again_model = mlp(dropout=0.3)
    again = Trainer(again_model, mse, regression_batch, cfg_ckpt, wiggly, metric="neg_mse",
                    device="cpu").train()
    assert again.resumed_from == result.steps_done and params_equal(again_model, model)
    assert again.history[cols].equals(result.history[cols]) and again.stopped_early


@pytest.mark.parametrize("broken", ["weights", "training_state", "best_weights"])
def test_interrupted_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch, broken):
    cfg = config(max_steps=8, eval_every=2, checkpoint_dir=tmp_path, patience=None)
    ref_model = mlp(dropout=0.2)
    Trainer(ref_model, mse, regression_batch, config(max_steps=8, eval_every=2, patience=None),
            neg_val_mse, metric="neg_mse", device="cpu").train()
    real_save_file, real_torch_save = T.save_file, torch.save

    def half_written(path):
        Path(path).write_bytes(b"\x00" * 10)            # a truncated file, then the crash
        raise OSError("disk full")

    target = {"weights": T.MODEL_FILE, "best_weights": T.BEST_WEIGHTS}.get(broken)

    def save_file(weights, path, metadata=None):
        if metadata.get("step") == "4" and target and target in Path(path).name:
            half_written(path)
        return real_save_file(weights, path, metadata=metadata)

    def torch_save(obj, path, *args, **kwargs):
        if broken == "training_state" and "00000004" in str(path):
            half_written(path)
        return real_torch_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(T, "save_file", save_file)
    monkeypatch.setattr(T.torch, "save", torch_save)
    with pytest.raises(OSError, match="disk full"):
        Trainer(mlp(dropout=0.2), mse, regression_batch, cfg, neg_val_mse, metric="neg_mse",
                device="cpu").train()
    monkeypatch.undo()
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".tmp"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")], "temporary files left"
    if broken == "best_weights":   # the new checkpoint is complete; best.safetensors is still step 2
        assert left == [T.BEST_WEIGHTS, "checkpoint-00000002", "checkpoint-00000004"]
    else:
        assert left == [T.BEST_WEIGHTS, "checkpoint-00000002"]
    model = mlp(dropout=0.2)
    result = Trainer(model, mse, regression_batch, cfg, neg_val_mse, metric="neg_mse",
                     device="cpu").train()
    assert result.resumed_from == (4 if broken == "best_weights" else 2)
    assert params_equal(model, ref_model)
    assert T._weights_step(tmp_path / T.BEST_WEIGHTS) == str(result.best_step)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    cfg = config(max_steps=4, eval_every=2, checkpoint_dir=tmp_path)
    Trainer(mlp(hidden=16), mse, regression_batch, cfg, device="cpu").train()
    with pytest.raises(ValueError, match=r"different model.*shapes differ: 0\.bias"):
        Trainer(mlp(hidden=8), mse, regression_batch, cfg, device="cpu").train()
    other = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    with pytest.raises(ValueError, match=r"missing from the checkpoint: 2\.bias, 2\.weight; "
                                         r"not in the model: 3\.bias"):
        Trainer(other, mse, regression_batch, cfg, device="cpu").train()
    # resume=False starts over and replaces the old checkpoint
    result = Trainer(mlp(hidden=8), mse, regression_batch, cfg, device="cpu").train(resume=False)
    assert result.resumed_from is None and T.latest_checkpoint(tmp_path).name == "checkpoint-00000004"


def test_checkpoint_with_other_settings_is_refused(tmp_path):
    cfg = config(max_steps=4, eval_every=2, checkpoint_dir=tmp_path)
    Trainer(mlp(), mse, regression_batch, cfg, device="cpu").train()
    for change in ({"lr": 1e-3}, {"batch_size": 16}, {"max_steps": 6}):
        with pytest.raises(ValueError, match=f"other settings.*{next(iter(change))}"):
            Trainer(mlp(), mse, regression_batch, config(**{**cfg.as_dict(), **change}),
                    device="cpu").train()
    with pytest.warns(UserWarning, match="eval_every"):
        Trainer(mlp(), mse, regression_batch, config(**{**cfg.as_dict(), "eval_every": 1}),
                device="cpu").train()


# --- the result -------------------------------------------------------------------------------

def test_plot_draws_loss_and_metric():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = Trainer(mlp(), mse, regression_batch, config(), neg_val_mse, metric="neg_mse",
                     device="cpu").train()
    ax = result.plot()
    assert ax.get_xlabel() == "optimizer step" and len(ax.figure.axes) == 2
    plt.close(ax.figure)
    empty = TrainResult(T.pd.DataFrame(), None, None, False, 0, 0.0, 0.0, None)
    plt.close(empty.plot().figure)
    assert math.isfinite(result.seconds)


def test_metric_named_like_a_column_and_a_second_fresh_run():
    def evaluate(model):
        return {"loss": 123.0, "neg_mse": neg_val_mse(model)["neg_mse"]}

    model = mlp()
    trainer = Trainer(model, mse, regression_batch, config(max_steps=4, eval_every=2), evaluate,
                      metric="neg_mse", device="cpu")
    first = trainer.train()
    assert first.history["loss"].lt(100).all() and first.history["eval_loss"].dropna().eq(123.0).all()
    # a second train() without a checkpoint starts from a fresh optimizer and schedule
    second = trainer.train()
    assert second.history["lr"].tolist() == first.history["lr"].tolist()
