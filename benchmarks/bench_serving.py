"""Deployment figures of ``course_lib.serving``, each measured side by side in one run.

1. **Dynamic int8 quantisation** of the course encoder (all-MiniLM-L6-v2, CPU): model size (MB of
   the serialised state dict), encoding speed (texts/s on the first ``--n-speed`` product texts,
   float and int8 timed alternately, best of ``--repeats``) and ndcg@10 of dense search over the
   whole catalogue for the test queries (``--split all``: all queries), with the int8 / float ratio;
   the ``int8 (queries)`` row searches the float product vectors with int8 query vectors.
2. **Compressed faiss indexes** on synthetic clustered 384-d vectors (``--n``, default 200k):
   exact flat, IVF-Flat, IVF-PQ (m=48, 8 bits) and optionally OPQ + IVF-PQ: bytes/vector from
   ``faiss.serialize_index``, recall@10 against exact search, single-query p50, and the memory
   *extrapolated* to 10 million products (fixed part + measured bytes per vector × 10M)::

    python benchmarks/bench_serving.py                       # both tables (workshop profile, 200k vectors)
    python benchmarks/bench_serving.py --skip-quantization --n 1000000 --opq
    python benchmarks/bench_serving.py --skip-index --repeats 3

The synthetic vectors are clustered with a low intrinsic dimension like sentence embeddings, which
flatters IVF and PQ; real BERT vectors need a larger ``nprobe`` for the same recall.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402  (numpy's OpenBLAS loads first, as in bench_retrieval.py)
import pandas as pd  # noqa: E402


def quantization_table(args: argparse.Namespace) -> pd.DataFrame:
    from course_lib import columns as C
    from course_lib import serving as S
    from course_lib.cleaning import load_clean
    from course_lib.encoding import EmbeddingStore, load_encoder

    tables = load_clean(args.profile)
    products = tables[C.PRODUCTS]
    queries = tables[C.QUERIES]
    if args.split != "all":     # the pretrained encoder never trained on any split, so "all" is fair too
        queries = queries[queries[C.SPLIT] == args.split]
    encoder = load_encoder(device="cpu")
    t = time.perf_counter()
    quantized = S.quantize_encoder(encoder)
    print(f"# quantize_dynamic took {time.perf_counter() - t:.1f}s; {len(products):,} products, "
          f"{len(queries)} test queries, torch threads {__import__('torch').get_num_threads()}", flush=True)
    store = EmbeddingStore(verbose=True)
    table = S.compare_quantized(encoder, quantized, products, queries, tables[C.QRELS], n_speed=args.n_speed,
                                repeats=args.repeats, store=store, store_name=f"products-{args.profile}")
    return S.with_ratio(table, "int8", "float32")


def index_table(args: argparse.Namespace) -> pd.DataFrame:
    from course_lib import serving as S

    t = time.perf_counter()
    x = S.synthetic_vectors(args.n + args.queries, dim=384, seed=args.seed)
    print(f"# generated {args.n:,} + {args.queries} vectors in {time.perf_counter() - t:.1f}s", flush=True)
    return S.compressed_index_table(x[:args.n], x[args.n:], m=args.m, nbits=8, nprobe=args.nprobe, opq=args.opq,
                                    train_size=args.train_size, extrapolate_to=10_000_000,
                                    threads=args.threads or None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="workshop")
    parser.add_argument("--n-speed", type=int, default=1000, help="product texts timed per model")
    parser.add_argument("--split", default="test", choices=["train", "validation", "test", "all"],
                        help="queries scored for ndcg@10 (all: four times the test split, less noisy)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=200_000, help="synthetic vectors indexed")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--m", type=int, default=48, help="PQ sub-vectors (bytes per code at 8 bits)")
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--train-size", type=int, default=50_000)
    parser.add_argument("--opq", action="store_true", help="add OPQ + IVF-PQ (slower to train)")
    parser.add_argument("--threads", type=int, default=1,
                        help="faiss build threads (default 1: faster than 2 on a busy 2-core laptop; 0 = faiss's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-quantization", action="store_true")
    parser.add_argument("--skip-index", action="store_true")
    parser.add_argument("--no-blas-fix", action="store_true", help="leave faiss's OpenBLAS kernel choice")
    args = parser.parse_args(argv)
    if not args.no_blas_fix and "OPENBLAS_CORETYPE" not in os.environ and " avx2" in Path("/proc/cpuinfo").read_text():
        os.environ["OPENBLAS_CORETYPE"] = "Haswell"  # faiss's OpenBLAS otherwise picks its slowest kernel
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    pd.set_option("display.width", 160)
    t0 = time.perf_counter()
    if not args.skip_quantization:
        table = quantization_table(args)
        print("\n## Dynamic int8 quantisation (CPU)\n")
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
        speedup = table.loc["int8 / float32", "texts_per_s"]
        print(f"\nint8 is {speedup:.2f}x as fast (goal >= 1.5x: {'met' if speedup >= 1.5 else 'NOT met'}), "
              f"{table.loc['int8 / float32', 'size_mb']:.2f}x the size", flush=True)
        for row, what in (("int8", "queries and catalogue int8"), ("int8 (queries)", "queries int8, catalogue float")):
            change = table.loc[row, "ndcg@10"] - table.loc["float32", "ndcg@10"]
            print(f"  {what}: ndcg@10 {change:+.4f} (goal: within 0.01: {'met' if abs(change) <= 0.01 else 'NOT met'})")
    if not args.skip_index:
        table = index_table(args)
        flat = table.iloc[0]
        table["memory vs flat"] = table["bytes_per_vector"] / flat["bytes_per_vector"]
        print(f"\n## Compressed indexes: {table.attrs['n']:,} synthetic 384-d vectors, nlist {table.attrs['nlist']}, "
              f"nprobe {table.attrs['nprobe']}; the last column is EXTRAPOLATED to 10M vectors\n")
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\n# total {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
