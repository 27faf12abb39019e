"""A plain-PyTorch training loop with checkpoints you can resume, written to be read.

The loop, in the order the course teaches it::

    for step in 1..max_steps:                      # one step = one optimizer step
        for each of grad_accum_steps micro-batches:
            batch = make_batch(micro_step)          # stateless: same index, same batch
            loss = loss_fn(model, batch)            # under autocast on CUDA
            (loss / grad_accum_steps).backward()    # through a GradScaler in fp16
        clip the gradient norm, optimizer.step(), scheduler.step(), zero the gradients
        every eval_every steps (and at the end): evaluate, early-stop, save a checkpoint

Use it like this::

    config = TrainConfig.from_settings(get_settings(), checkpoint_dir="checkpoints/bi_encoder")
    trainer = Trainer(model, loss_fn, make_batch, config, evaluate=evaluate, metric="ndcg@10")
    result = trainer.train()            # resumes from checkpoints/bi_encoder if it holds one
    result.plot()

**Checkpoints.** With ``checkpoint_dir`` set, a checkpoint is written at every evaluation, so a
Colab runtime that disconnects loses at most ``eval_every`` steps of work: run the same cell again
and training continues from the last checkpoint. On CPU the resumed run ends with exactly the same
weights as an uninterrupted one. The folder holds::

    checkpoint_dir/
        checkpoint-00000100/         the latest checkpoint (older ones are deleted)
            model.safetensors        the weights
            training_state.pt        optimizer, scheduler, GradScaler and random-number states
            trainer_state.json       step, best metric and step, patience, history, config
        best.safetensors             the weights of the best evaluation so far

Every checkpoint is written into a temporary folder that is renamed into place when complete
(``os.replace``), so an interrupted save never leaves a half-written checkpoint behind. On Colab,
put ``checkpoint_dir`` on Google Drive (``/content/drive/MyDrive/...``): the local disk goes with a
recycled runtime.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from course_lib.config import native_bf16, set_seed, try_gpu

PRECISIONS = ("fp32", "bf16", "fp16")
CHECKPOINT_PREFIX = "checkpoint-"
BEST_WEIGHTS = "best.safetensors"
MODEL_FILE = "model.safetensors"
TRAINING_STATE_FILE = "training_state.pt"
TRAINER_STATE_FILE = "trainer_state.json"
AUTO_PROGRESS_FROM = 20  # show_progress=None: a bar from this many steps on
_HISTORY_COLUMNS = ("step", "loss", "lr", "grad_norm", "seconds", "best")

# Changing one of these between a checkpoint and its resumption changes the training trajectory.
# (A different precision or device only warns: a Colab session without a GPU can still go on.)
_TRAJECTORY_FIELDS = ("max_steps", "batch_size", "lr", "weight_decay", "warmup_ratio",
                      "grad_accum_steps", "max_grad_norm", "seed")


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Every knob of the loop. ``batch_size`` is the number of examples in one micro-batch (what
    ``make_batch`` returns); an optimizer step sees ``batch_size * grad_accum_steps`` examples.

    ``mixed_precision``: ``"auto"`` (or True) is bf16 autocast on a CUDA GPU that supports it
    natively, else fp16 autocast with a GradScaler, and fp32 on CPU/MPS; ``"bf16"``, ``"fp16"``
    force a precision on CUDA; False (or ``"fp32"``) is fp32. ``checkpoint_dir``: write a checkpoint
    at every evaluation (so an interruption loses at most ``eval_every`` steps) and resume from it;
    on Colab put it on Google Drive to survive a recycled runtime. ``show_progress=None``: a
    progress bar from 20 steps on.
    """

    max_steps: int
    batch_size: int
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_accum_steps: int = 1
    max_grad_norm: float | None = 1.0
    eval_every: int = 50
    patience: int | None = 3
    mixed_precision: str | bool = "auto"
    checkpoint_dir: str | Path | None = None
    seed: int = 42
    show_progress: bool | None = None

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "eval_every", "grad_accum_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}")
            setattr(self, name, int(value))  # a numpy integer would not go into the JSON state
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.warmup_ratio <= 1:
            raise ValueError(f"TrainConfig.warmup_ratio must be in [0, 1], got {self.warmup_ratio!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"TrainConfig.max_grad_norm must be > 0 or None, got {self.max_grad_norm!r}")
        if self.patience is not None and self.patience < 0:
            raise ValueError(f"TrainConfig.patience must be >= 0 or None, got {self.patience!r}")
        _check_precision_name(self.mixed_precision)

    @property
    def warmup_steps(self) -> int:
        """Optimizer steps of linear warm-up: ``ceil(warmup_ratio * max_steps)``."""
        return math.ceil(round(self.warmup_ratio * self.max_steps, 6))

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> "TrainConfig":
        """A config from a profile's settings (``config.get_settings()``): ``train_steps``,
        ``train_batch_size``, ``mixed_precision`` and ``seed``; ``overrides`` replace any field."""
        config = cls(max_steps=settings.train_steps, batch_size=settings.train_batch_size,
                     mixed_precision="auto" if settings.mixed_precision else False,
                     seed=settings.seed)
        return replace(config, **overrides)

    def as_dict(self) -> dict[str, Any]:
        """The config as JSON-friendly values (paths become strings)."""
        out = asdict(self)
        if out["checkpoint_dir"] is not None:
            out["checkpoint_dir"] = str(out["checkpoint_dir"])
        return out


def linear_warmup_schedule(step: int, max_steps: int, warmup_steps: int) -> float:
    """LR multiplier: step/warmup during warm-up, then linear decay to 0 at max_steps.

    ``step`` counts optimizer steps already taken (0 for the first one), as ``LambdaLR`` does, so
    this is the schedule of transformers' ``get_linear_schedule_with_warmup``. E.g. with
    ``max_steps=100, warmup_steps=10``: 0 at step 0, 0.5 at 5, 1.0 at 10, 0.5 at 55, 0 at 100.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if not 0 <= warmup_steps <= max_steps:
        raise ValueError(f"warmup_steps must be in [0, max_steps={max_steps}], got {warmup_steps}")
    if step < warmup_steps:
        return step / warmup_steps
    return max(0.0, (max_steps - step) / max(1, max_steps - warmup_steps))


def _check_precision_name(setting: str | bool) -> None:
    if isinstance(setting, bool) or setting in ("auto", *PRECISIONS):
        return
    raise ValueError(f"TrainConfig.mixed_precision must be 'auto', 'bf16', 'fp16', 'fp32', True or "
                     f"False, got {setting!r}")


def resolve_precision(mixed_precision: str | bool, device: torch.device | str) -> str:
    """The precision a run uses: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (fp16 comes with a GradScaler).

    ``"auto"``/True: bf16 on a CUDA GPU with native bf16, fp16 on an older one (e.g. a Colab T4),
    fp32 elsewhere. Asking for bf16/fp16 off CUDA warns and gives fp32; bf16 on a GPU without
    native bf16 raises ``ValueError``.
    """
    _check_precision_name(mixed_precision)
    device = torch.device(device)
    if mixed_precision is False or mixed_precision == "fp32":
        return "fp32"
    if device.type != "cuda":
        if mixed_precision not in ("auto", True):
            warnings.warn(f"mixed_precision={mixed_precision!r} needs a CUDA GPU; training on "
                          f"{device.type} in fp32", stacklevel=2)
        return "fp32"
    if mixed_precision in ("auto", True):
        return "bf16" if native_bf16() else "fp16"
    if mixed_precision == "bf16" and not native_bf16():
        raise ValueError("this GPU has no native bf16 (it needs compute capability 8.0+); "
                         "use mixed_precision='fp16' or 'auto'")
    return str(mixed_precision)


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------

def move_to_device(batch: Any, device: torch.device | str) -> Any:
    """Move the tensors of ``batch`` (a tensor, or dicts/tuples/lists of them, nested) to
    ``device``; anything else (strings, numbers) is left as it is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        moved = {key: move_to_device(value, device) for key, value in batch.items()}
        if type(batch) is dict:
            return moved
        try:
            return type(batch)(moved)  # e.g. transformers' BatchEncoding
        except Exception:  # noqa: BLE001 - a mapping type we cannot rebuild: a plain dict will do
            return moved
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(move_to_device(value, device) for value in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(value, device) for value in batch)
    return batch


def _cpu_copy(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CPU copy of a state_dict in which no two tensors share memory (tied weights are
    duplicated), as safetensors requires."""
    return {name: tensor.detach().to("cpu", copy=True).contiguous()
            for name, tensor in state_dict.items()}


def _no_weight_decay(model: torch.nn.Module) -> set[int]:
    """ids of the parameters that get no weight decay: biases and normalisation-layer weights."""
    skip: set[int] = set()
    for module in model.modules():
        is_norm = isinstance(module, torch.nn.LayerNorm) or "Norm" in type(module).__name__
        for name, param in module.named_parameters(recurse=False):
            if is_norm or name == "bias" or name.endswith("_bias"):
                skip.add(id(param))
    return skip


def check_state_dict_matches(model: torch.nn.Module, weights: Mapping[str, torch.Tensor],
                             where: str | Path) -> None:
    """Raise ``ValueError`` naming the differences when ``weights`` (names and shapes) do not fit
    ``model``, e.g. a checkpoint of another architecture."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in weights.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [f"{name}: checkpoint {found[name]} vs model {expected[name]}"
              for name in sorted(set(expected) & set(found)) if found[name] != expected[name]]
    if not (missing or unexpected or shapes):
        return

    def first(items: list[str]) -> str:
        return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")

    problems = [f"missing from the checkpoint: {first(missing)}" if missing else "",
                f"not in the model: {first(unexpected)}" if unexpected else "",
                f"shapes differ: {first(shapes)}" if shapes else ""]
    raise ValueError(f"the checkpoint {where} was saved from a different model; "
                     + "; ".join(p for p in problems if p)
                     + ". Use another checkpoint_dir or train(resume=False).")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def _rng_state() -> dict[str, Any]:
    """The states of python's ``random``, numpy's global generator, torch CPU, CUDA and MPS."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "mps": torch.mps.get_rng_state() if _mps_available() else None,
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("mps") is not None and _mps_available():
        torch.mps.set_rng_state(state["mps"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            warnings.warn(f"the checkpoint has the random state of {len(cuda)} GPU(s), this "
                          f"machine has {torch.cuda.device_count()}: dropout will differ",
                          stacklevel=3)


def _atomic_save_weights(weights: dict[str, torch.Tensor], path: Path,
                         metadata: dict[str, str]) -> None:
    """Write a safetensors file through a temporary file renamed into place."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    try:
        save_file(weights, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _weights_step(path: Path) -> str | None:
    """The ``step`` metadata of a safetensors file, or None when there is no readable file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("step")
    except Exception:  # noqa: BLE001 - a missing or corrupt file
        return None


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder in ``checkpoint_dir``, or None."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return None
    found = []
    for path in root.iterdir():
        match = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", path.name)
        if match and path.is_dir() and all((path / f).is_file() for f in
                                           (MODEL_FILE, TRAINING_STATE_FILE, TRAINER_STATE_FILE)):
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


# --------------------------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    """What ``Trainer.train`` returns.

    ``history`` has one row per optimizer step: ``step``, ``loss`` (mean over the micro-batches),
    ``lr`` (used in that step), ``grad_norm`` (before clipping; NaN without clipping), ``seconds``
    (wall time since step 0, evaluations and resumed sessions included); evaluation rows add the
    metric columns (NaN elsewhere; a metric named like a column above gets an ``eval_`` prefix) and
    ``best`` is True on the row of the best evaluation, whose weights the model holds at the end
    (all False without ``evaluate``: the model then holds the last weights).
    ``seconds`` is the wall time of this ``train`` call; ``examples_per_second`` counts the examples
    of this call over its training steps (evaluation and checkpoints excluded).
    """

    history: pd.DataFrame
    best_step: int | None
    best_metric: float | None
    stopped_early: bool
    steps_done: int
    seconds: float
    examples_per_second: float
    resumed_from: int | None
    metric: str | None = None

    def __repr__(self) -> str:
        best = (f"best_step={self.best_step}, {self.metric}={self.best_metric:.4f}"
                if self.best_step is not None else "best_step=None")
        return (f"TrainResult(steps_done={self.steps_done}, {best}, "
                f"stopped_early={self.stopped_early}, resumed_from={self.resumed_from}, "
                f"seconds={self.seconds:.1f}, examples_per_second={self.examples_per_second:.1f})")

    def plot(self, ax: Any = None) -> Any:
        """The training curve: the loss (raw, faint, and smoothed) and the evaluation metric on a
        twin axis, with the best step marked. Returns the loss axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.5))
        h = self.history
        if h.empty:
            ax.set_title("no training steps")
            return ax
        window = max(1, len(h) // 20)
        ax.plot(h["step"], h["loss"], color="tab:blue", alpha=0.25, linewidth=1)
        ax.plot(h["step"], h["loss"].rolling(window, min_periods=1).mean(), color="tab:blue",
                label=f"loss (mean of {window} steps)")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss", color="tab:blue")
        if self.metric and self.metric in h.columns:
            evals = h.dropna(subset=[self.metric])
            twin = ax.twinx()
            twin.plot(evals["step"], evals[self.metric], "o-", color="tab:orange",
                      label=self.metric)
            twin.set_ylabel(self.metric, color="tab:orange")
        if self.best_step is not None:
            ax.axvline(self.best_step, color="gray", linestyle="--", linewidth=1,
                       label=f"best step {self.best_step}")
        ax.legend(loc="upper center", fontsize="small", frameon=False)
        ax.set_title("training" + (" (stopped early)" if self.stopped_early else ""))
        return ax


@dataclass
class _Progress:
    """Where training stands; everything here goes into a checkpoint."""

    step: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------------

class Trainer:
    """Train ``model`` by minimising ``loss_fn(model, make_batch(micro_step))`` with AdamW.

    - ``make_batch(micro_step)`` must be stateless: the same index gives the same batch (derive
      any sampling from the seed and the index). That is what lets a run resume exactly with no
      data-loader state. Its tensors (nested in dicts/tuples/lists) are moved to the device.
    - ``loss_fn(model, batch)`` returns a scalar tensor.
    - ``evaluate(model)`` returns a dict of metrics that contains ``metric`` (higher is better);
      it runs in eval mode under ``torch.inference_mode`` and the model goes back to train mode.
    - ``device``: default ``try_gpu()``; the model is moved there.
    - ``parameters``: what to optimise (default: every parameter with ``requires_grad``), e.g.
      only the LoRA adapters. They must belong to ``model`` (checkpoints save ``model``).

    The optimizer, scheduler and GradScaler are ``self.optimizer``, ``self.scheduler`` and
    ``self.scaler``. ``train()`` calls ``set_seed(config.seed)`` when it starts from scratch.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
                 make_batch: Callable[[int], Any], config: TrainConfig,
                 evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
                 metric: str = "ndcg@10", device: torch.device | str | None = None,
                 parameters: Iterable[torch.nn.Parameter] | None = None) -> None:
        self.config = config
        self.loss_fn, self.make_batch, self.evaluate, self.metric = loss_fn, make_batch, evaluate, metric
        self.device = torch.device(device) if device is not None else try_gpu()
        self.model = model.to(self.device)
        self.precision = resolve_precision(config.mixed_precision, self.device)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

        names = {id(p): name for name, p in model.named_parameters()}
        if parameters is None:
            params = [p for p in model.parameters() if p.requires_grad]
        else:
            params = list(parameters)
            outside = [i for i, p in enumerate(params) if id(p) not in names]
            if outside:
                raise ValueError(f"parameters[{outside[0]}] does not belong to the model; only "
                                 "the model's parameters can be optimised (and checkpointed)")
        if not params:
            raise ValueError("no parameters to optimise: every parameter has requires_grad=False")
        self.params = params
        self.param_names = [names[id(p)] for p in params]
        self._build_optimizer()

    def _build_optimizer(self) -> None:
        """AdamW (no weight decay on biases and norm weights), the warm-up schedule, a GradScaler."""
        cfg = self.config
        skip = _no_weight_decay(self.model)
        groups = [{"params": [p for p in self.params if id(p) not in skip], "weight_decay": cfg.weight_decay},
                  {"params": [p for p in self.params if id(p) in skip], "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)
        warmup, total = cfg.warmup_steps, cfg.max_steps

        def lr_lambda(step: int) -> float:
            return linear_warmup_schedule(step, total, warmup)

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda)
        self.scaler = _grad_scaler(enabled=self.precision == "fp16")

    # ---- one optimizer step ------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _train_step(self, step: int) -> dict[str, Any]:
        """Run optimizer step ``step`` (1-based) and return its history row (without seconds)."""
        cfg = self.config
        total_loss = torch.zeros((), device=self.device)
        for k in range(cfg.grad_accum_steps):
            micro_step = (step - 1) * cfg.grad_accum_steps + k
            batch = move_to_device(self.make_batch(micro_step), self.device)
            with self._autocast():
                loss = self.loss_fn(self.model, batch)
            if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                raise TypeError(f"loss_fn must return a scalar tensor, got "
                                f"{type(loss).__name__} {getattr(loss, 'shape', '')}")
            # dividing by grad_accum_steps makes the summed gradients those of the mean loss
            self.scaler.scale(loss / cfg.grad_accum_steps).backward()
            total_loss += loss.detach().float()
        loss_value = total_loss.item() / cfg.grad_accum_steps
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            raise RuntimeError(f"the loss is {loss_value} at step {step} (micro-steps "
                               f"{(step - 1) * cfg.grad_accum_steps}-{step * cfg.grad_accum_steps - 1}); "
                               "training stopped before the weights were updated. Lower the "
                               "learning rate, check the batch for empty or invalid inputs, or "
                               "use bf16 instead of fp16.")
        row: dict[str, Any] = {"step": step, "loss": loss_value,
                               "lr": self.optimizer.param_groups[0]["lr"]}
        if cfg.max_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
            row["grad_norm"] = float(norm)
        self.scaler.step(self.optimizer)  # in fp16 it skips the step if a gradient overflowed
        self.scaler.update()
        with warnings.catch_warnings():
            # a skipped fp16 step makes torch warn that the scheduler stepped first: expected
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return row

    # ---- evaluation ----------------------------------------------------------------------------
    def _evaluate(self, step: int) -> dict[str, float]:
        self.model.eval()
        try:
            with torch.inference_mode():
                metrics = self.evaluate(self.model)
        finally:
            self.model.train()
        if not isinstance(metrics, Mapping):
            raise TypeError(f"evaluate() must return a dict of metrics, got {type(metrics).__name__}")
        if self.metric not in metrics:
            raise KeyError(f"evaluate() returned no {self.metric!r} (the metric to early-stop on) "
                           f"at step {step}; it returned {sorted(metrics)}. Pass metric= one of them.")
        return {name: float(value) for name, value in metrics.items()}

    # ---- the loop ------------------------------------------------------------------------------
    def train(self, resume: bool = True) -> TrainResult:
        """Train to ``max_steps`` (or an early stop) and leave the best weights in the model.

        With ``resume`` and a checkpoint in ``config.checkpoint_dir``, everything is restored from
        it (weights, optimizer, scheduler, GradScaler, random states, history) and training goes on
        from the next step; a finished run returns at once. ``resume=False`` starts over (the old
        checkpoints are replaced at the first evaluation).
        """
        cfg = self.config
        started = time.perf_counter()
        best_state: dict[str, torch.Tensor] | None = None
        resumed_from = None
        checkpoint = latest_checkpoint(cfg.checkpoint_dir) if resume and cfg.checkpoint_dir else None
        if checkpoint is not None:
            progress, best_state = self._load_checkpoint(checkpoint)
            resumed_from = progress.step
        else:
            progress = _Progress()
            if self.scheduler.last_epoch > 0:  # this trainer trained before: a fresh optimizer
                self._build_optimizer()
            set_seed(cfg.seed)

        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        show = cfg.max_steps >= AUTO_PROGRESS_FROM if cfg.show_progress is None else cfg.show_progress
        from tqdm.auto import tqdm

        train_seconds, steps_this_call = 0.0, 0
        last_metric: float | None = progress.best_metric
        with tqdm(total=cfg.max_steps, initial=progress.step, desc="training", unit="step",
                  disable=not show) as bar:
            while progress.step < cfg.max_steps and not progress.stopped_early:
                step = progress.step + 1
                tic = time.perf_counter()
                row = self._train_step(step)
                elapsed = time.perf_counter() - tic
                train_seconds += elapsed
                steps_this_call += 1
                progress.seconds += elapsed
                row["seconds"] = progress.seconds
                progress.history.append(row)
                progress.step = step

                if step % cfg.eval_every == 0 or step == cfg.max_steps:
                    tic = time.perf_counter()
                    if self.evaluate is not None:
                        metrics = self._evaluate(step)
                        # a metric named like a history column (e.g. "loss") becomes "eval_loss"
                        row.update({f"eval_{k}" if k in _HISTORY_COLUMNS else k: v
                                    for k, v in metrics.items()})
                        last_metric = metrics[self.metric]
                        if progress.best_metric is None or last_metric > progress.best_metric:
                            progress.best_metric, progress.best_step = last_metric, step
                            progress.bad_evals = 0
                            best_state = _cpu_copy(self.model.state_dict())
                        else:
                            progress.bad_evals += 1
                            if (cfg.patience is not None and progress.bad_evals >= cfg.patience
                                    and step < cfg.max_steps):
                                progress.stopped_early = True
                    progress.seconds += time.perf_counter() - tic
                    if cfg.checkpoint_dir is not None:
                        self._save_checkpoint(progress, best_state)

                postfix = {"loss": f"{row['loss']:.4f}"}
                if last_metric is not None:
                    postfix[self.metric] = f"{last_metric:.4f}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)

        if best_state is not None and progress.best_step != progress.step:
            self.model.load_state_dict(best_state)  # early stopping: back to the best weights
        history = pd.DataFrame(progress.history)
        if history.empty:
            history = pd.DataFrame(columns=["step", "loss", "lr", "seconds"])
        history["best"] = history["step"] == progress.best_step  # all False without evaluate
        examples = steps_this_call * cfg.batch_size * cfg.grad_accum_steps
        return TrainResult(
            history=history, best_step=progress.best_step, best_metric=progress.best_metric,
            stopped_early=progress.stopped_early, steps_done=progress.step,
            seconds=time.perf_counter() - started,
            examples_per_second=examples / train_seconds if train_seconds > 0 else 0.0,
            resumed_from=resumed_from, metric=self.metric if self.evaluate is not None else None)

    # ---- checkpoints ---------------------------------------------------------------------------
    def _save_checkpoint(self, progress: _Progress, best_state: dict[str, torch.Tensor] | None) -> None:
        """Write ``checkpoint-<step>`` atomically, then ``best.safetensors`` if this step is the
        best, then delete the older checkpoints. At any moment the newest complete checkpoint and
        the best weights agree, whatever interrupts the save."""
        root = Path(self.config.checkpoint_dir)
        root.mkdir(parents=True, exist_ok=True)
        step = progress.step
        final = root / f"{CHECKPOINT_PREFIX}{step:08d}"
        is_best = progress.best_step == step and best_state is not None
        weights = best_state if is_best else _cpu_copy(self.model.state_dict())
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
        try:
            save_file(weights, str(tmp / MODEL_FILE), metadata={"step": str(step)})
            torch.save({"optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(),
                        "scaler": self.scaler.state_dict(),
                        "rng": _rng_state()}, tmp / TRAINING_STATE_FILE)
            state = {"step": step, "best_metric": progress.best_metric,
                     "best_step": progress.best_step, "bad_evals": progress.bad_evals,
                     "stopped_early": progress.stopped_early, "seconds": progress.seconds,
                     "metric": self.metric, "precision": self.precision,
                     "device": self.device.type, "parameters": self.param_names,
                     "config": self.config.as_dict(), "history": progress.history}
            (tmp / TRAINER_STATE_FILE).write_text(json.dumps(state, indent=1))
            if final.exists():  # left by an earlier run that this one replaces
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if is_best:
            _atomic_save_weights(best_state, root / BEST_WEIGHTS,
                                 {"step": str(step), self.metric: repr(progress.best_metric)})
        for path in root.iterdir():
            if path != final and path.is_dir() and path.name.startswith(CHECKPOINT_PREFIX):
                shutil.rmtree(path, ignore_errors=True)

    def _load_checkpoint(self, path: Path) -> tuple[_Progress, dict[str, torch.Tensor] | None]:
        """Restore everything from checkpoint folder ``path``; return the progress and best weights."""
        weights = load_file(str(path / MODEL_FILE))
        check_state_dict_matches(self.model, weights, path)
        state = json.loads((path / TRAINER_STATE_FILE).read_text())
        self._check_resumable(state, path)
        self.model.load_state_dict(weights)
        extra = torch.load(path / TRAINING_STATE_FILE, map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(extra["optimizer"])
        self.scheduler.load_state_dict(extra["scheduler"])
        if self.scaler.is_enabled() and extra["scaler"]:
            self.scaler.load_state_dict(extra["scaler"])
        _set_rng_state(extra["rng"])

        best_state, best_step = None, state["best_step"]
        best_path = path.parent / BEST_WEIGHTS
        best_file_step = _weights_step(best_path)
        if best_step is not None and best_step == state["step"]:
            best_state = weights
            if best_file_step != str(best_step):  # the save stopped before best.safetensors
                _atomic_save_weights(weights, best_path,
                                     {"step": str(best_step), self.metric: repr(state["best_metric"])})
        elif best_step is not None:
            if best_file_step != str(best_step):
                raise ValueError(f"{best_path} holds the weights of step {best_file_step}, but the "
                                 f"checkpoint {path.name} says the best step is {best_step}; "
                                 "use another checkpoint_dir or resume=False")
            best_state = load_file(str(best_path))
        progress = _Progress(step=state["step"], best_metric=state["best_metric"],
                             best_step=state["best_step"], bad_evals=state["bad_evals"],
                             stopped_early=state["stopped_early"], seconds=state["seconds"],
                             history=state["history"])
        return progress, best_state

    def _check_resumable(self, state: Mapping[str, Any], path: Path) -> None:
        """Refuse a checkpoint whose optimised parameters, metric or trajectory settings differ."""
        if state["parameters"] != self.param_names:
            raise ValueError(f"the checkpoint {path} optimised other parameters "
                             f"({len(state['parameters'])} tensors) than this trainer "
                             f"({len(self.param_names)}); use another checkpoint_dir or resume=False")
        if state["best_step"] is not None and state["metric"] != self.metric:
            raise ValueError(f"the checkpoint {path} early-stops on {state['metric']!r}, this "
                             f"trainer on {self.metric!r}; use another checkpoint_dir or resume=False")
        saved, now = state["config"], self.config.as_dict()
        changed = [f"{name}: checkpoint {saved.get(name)!r} vs now {now[name]!r}"
                   for name in _TRAJECTORY_FIELDS if saved.get(name) != now[name]]
        if changed:
            raise ValueError(f"the checkpoint {path} was trained with other settings ("
                             + "; ".join(changed) + "). Resuming would not repeat the run: "
                             "restore the settings, or use another checkpoint_dir or resume=False.")
        others = [f"{f.name}: {saved.get(f.name)!r} -> {now[f.name]!r}" for f in fields(TrainConfig)
                  if f.name in ("eval_every", "patience") and saved.get(f.name) != now[f.name]]
        if others:
            warnings.warn(f"resuming {path} with changed settings: {'; '.join(others)}", stacklevel=4)
        if state["precision"] != self.precision or state["device"] != self.device.type:
            warnings.warn(f"the checkpoint {path} was trained in {state['precision']} on "
                          f"{state['device']}; resuming in {self.precision} on {self.device.type} "
                          "will not repeat the run exactly", stacklevel=4)


def _grad_scaler(enabled: bool) -> Any:
    """A CUDA GradScaler (a no-op when not ``enabled``)."""
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3
