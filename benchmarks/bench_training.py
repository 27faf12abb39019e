"""Training throughput of a bi-encoder step with ``course_lib.training.Trainer``, per precision.

The real offline MiniLM (``course_lib.encoding.load_encoder()``) is trained on batches of
(query, exact-match product) text pairs from the workshop data: both sides are encoded and mean
pooled, the loss is the in-batch-negatives cross-entropy at temperature 0.05, the optimizer AdamW
(with the Trainer's clipping and schedule). On CPU it runs in fp32; on a CUDA GPU it runs fp32,
bf16 autocast (when the GPU has native bf16) and fp16 autocast + GradScaler side by side::

    python benchmarks/bench_training.py --steps 10
    python benchmarks/bench_training.py --steps 50 --batch-size 64 --max-length 64   # on a GPU

Batches are tokenized before timing, so the figures are those of the model step (forward,
backward, clipping, optimizer) plus the copy to the device. The first ``--warmup`` steps of each
precision are not counted; each precision starts from the same pretrained weights.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

TEMPERATURE = 0.05


def text_pairs(profile: str) -> tuple[list[str], list[str]]:
    """(query, product text) for every exact ("E") match of the profile's clean data."""
    from course_lib import columns as C
    from course_lib.cleaning import load_clean
    from course_lib.encoding import product_texts

    tables = load_clean(profile)
    products, queries, qrels = tables[C.PRODUCTS], tables[C.QUERIES], tables[C.QRELS]
    text_of = dict(zip(products[C.PRODUCT_ID], product_texts(products)))
    query_of = dict(zip(queries[C.QUERY_ID], queries[C.QUERY]))
    exact = qrels[qrels[C.ESCI_LABEL] == "E"]
    exact = exact[exact[C.PRODUCT_ID].isin(text_of) & exact[C.QUERY_ID].isin(query_of)]
    return ([query_of[q] for q in exact[C.QUERY_ID]], [text_of[p] for p in exact[C.PRODUCT_ID]])


def tokenized_batches(tokenizer, queries: list[str], texts: list[str], n_batches: int,
                      batch_size: int, max_length: int, seed: int = 42) -> list[dict]:
    """``n_batches`` random batches of pairs, tokenized (padded to their longest text)."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n_batches):
        rows = rng.choice(len(queries), size=batch_size, replace=False)
        batches.append({
            side: tokenizer([source[i] for i in rows], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            for side, source in (("query", queries), ("product", texts))})
    return batches


def bi_encoder_loss(model, batch) -> "torch.Tensor":  # noqa: F821
    """In-batch negatives: query i should score product i above the batch's other products."""
    import torch
    from course_lib.encoding import mean_pool

    def embed(encoded):
        hidden = model(**encoded).last_hidden_state
        return torch.nn.functional.normalize(mean_pool(hidden.float(), encoded["attention_mask"]), dim=-1)

    q, p = embed(batch["query"]), embed(batch["product"])
    labels = torch.arange(len(q), device=q.device)
    return torch.nn.functional.cross_entropy(q @ p.T / TEMPERATURE, labels)


def peak_memory(device) -> str:
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB (GPU)"
    try:
        import resource
    except ImportError:  # Windows
        return "n/a"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB (process RSS)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per precision (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="pairs per step (default 32)")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per text (default 128)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: try_gpu())")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--profile", default="workshop")
    args = parser.parse_args(argv)
    if min(args.steps, args.batch_size, args.max_length) < 1 or args.warmup < 0:
        parser.error("--steps, --batch-size and --max-length must be >= 1, --warmup >= 0")

    import torch

    from course_lib.config import device_summary, try_gpu
    from course_lib.encoding import load_encoder
    from course_lib.training import TrainConfig, Trainer, native_bf16

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else try_gpu()
    encoder = load_encoder(device=device, max_length=args.max_length)
    queries, texts = text_pairs(args.profile)
    total = args.warmup + args.steps
    batches = tokenized_batches(encoder.tokenizer, queries, texts, min(total, 64),
                                args.batch_size, encoder.max_length)
    initial = {k: v.detach().clone() for k, v in encoder.model.state_dict().items()}

    precisions = ["fp32"]
    if device.type == "cuda":
        precisions += ["bf16", "fp16"]
    print(f"{encoder.name} | {len(queries):,} exact pairs ({args.profile}) | batch {args.batch_size} | "
          f"max_length {encoder.max_length} | {args.steps} timed steps after {args.warmup} | "
          f"torch {torch.__version__} | python {platform.python_version()}")
    print(device_summary(device))
    rows = []
    for precision in precisions:
        if precision == "bf16" and not native_bf16():
            rows.append((device.type, precision, "n/a (no native bf16)", "", ""))
            continue
        encoder.model.load_state_dict(initial)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        config = TrainConfig(max_steps=total, batch_size=args.batch_size, lr=2e-5,
                             eval_every=total, mixed_precision=precision, show_progress=False)
        trainer = Trainer(encoder.model, bi_encoder_loss, lambda i: batches[i % len(batches)],
                          config, device=device)
        result = trainer.train(resume=False)
        step_seconds = np.diff(np.concatenate([[0.0], result.history["seconds"].to_numpy()]))
        timed = step_seconds[args.warmup:]
        rows.append((device.type, trainer.precision,
                     f"{args.batch_size * len(timed) / timed.sum():,.1f}",
                     f"{1000 * statistics.median(timed):,.0f}", peak_memory(device)))
        assert np.isfinite(result.history["loss"]).all()
        del trainer, result  # free the optimizer state before the next precision's peak memory

    header = ("device", "precision", "examples/s", "step ms p50", "peak memory")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).rjust(w) if i >= 2 else str(cell).ljust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
