"""Throughput of ``course_lib.encoding.Encoder.encode`` against sentence-transformers.

Both encode the same texts with the same model folder, batch size, thread count, device and
``max_length``; each side is warmed up, then timed ``--repeats`` times (alternating) and the
median reported, with the largest absolute difference between the two sets of embeddings::

    python benchmarks/bench_encoding.py                 # 2,000 product texts (title. category. description)
    python benchmarks/bench_encoding.py --titles-only --n 5000 --batch-size 128

Needs ``pip install sentence-transformers`` (the ``bench`` extra).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


def texts_for(n: int, titles_only: bool, profile: str) -> list[str]:
    """The first ``n`` product texts of the profile's raw products (repeated if fewer)."""
    from course_lib import columns as C
    from course_lib.data import load_raw
    from course_lib.encoding import product_texts

    products = load_raw(profile)[C.PRODUCTS]
    texts = (products[C.TITLE].dropna().astype(str).tolist() if titles_only
             else product_texts(products).tolist())
    return (texts * (n // len(texts) + 1))[:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of texts (default 2000)")
    parser.add_argument("--titles-only", action="store_true", help="encode titles only")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for both (default: torch's default)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=None, help="model folder (default: the offline MiniLM)")
    parser.add_argument("--profile", default="workshop")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print("sentence-transformers is missing: pip install sentence-transformers", file=sys.stderr)
        return 2
    import sentence_transformers
    import transformers

    from course_lib.encoding import DEFAULT_MODEL, load_encoder

    model = args.model or DEFAULT_MODEL
    texts = texts_for(args.n, args.titles_only, args.profile)
    ours = load_encoder(model, device=args.device, max_length=args.max_length)
    theirs = SentenceTransformer(str(model), device=args.device)
    theirs.max_seq_length = ours.max_length

    def run_ours() -> np.ndarray:
        return ours.encode(texts, batch_size=args.batch_size, show_progress=False)

    def run_theirs() -> np.ndarray:
        return theirs.encode(texts, batch_size=args.batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)

    lengths = [len(ids) for ids in ours._tokenize(texts)]
    print(f"python {platform.python_version()}, torch {torch.__version__}, transformers "
          f"{transformers.__version__}, sentence-transformers {sentence_transformers.__version__}")
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch size "
          f"{args.batch_size}, max_length {ours.max_length}, model {ours.name}")
    print(f"{len(texts):,} {'titles' if args.titles_only else 'product texts'}: tokens per text "
          f"mean {np.mean(lengths):.1f}, min {min(lengths)}, max {max(lengths)}")

    warm = texts[: 2 * args.batch_size]
    ours.encode(warm, batch_size=args.batch_size, show_progress=False)
    theirs.encode(warm, batch_size=args.batch_size, show_progress_bar=False)

    times: dict[str, list[float]] = {"ours": [], "sentence-transformers": []}
    results: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for label, fn in (("ours", run_ours), ("sentence-transformers", run_theirs)):
            start = time.perf_counter()
            results[label] = fn()
            times[label].append(time.perf_counter() - start)

    rate = {label: len(texts) / statistics.median(t) for label, t in times.items()}
    for label, t in times.items():
        print(f"{label:>22}: {rate[label]:8.1f} texts/s  (median of {args.repeats}: "
              + ", ".join(f"{x:.2f}s" for x in t) + ")")
    ratio = rate["ours"] / rate["sentence-transformers"]
    diff = float(np.abs(results["ours"] - results["sentence-transformers"]).max())
    print(f"{'ratio ours/theirs':>22}: {ratio:8.3f}  (goal >= 1.0)")
    print(f"{'max |difference|':>22}: {diff:8.2e}  (goal < 1e-5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
