"""Latency, build time, memory and recall of the dense backends of ``course_lib.retrieval``.

For each size, random clustered 384-d unit vectors (like sentence embeddings: sub-clusters of
30 "categories", noise in a low-dimensional subspace, a little isotropic noise) are indexed with every
backend of ``DenseIndex``, side by side in one process:

- ``exact`` (numpy) and ``faiss-flat`` (exact; their recall is 1 by construction),
- ``faiss-ivf`` with ``nlist = 4·sqrt(n)`` and the smallest ``nprobe`` reaching the target
  recall on a separate set of tuning queries,
- ``faiss-hnsw`` with the smallest ``efSearch`` reaching it.

Latency is per single query (top-``k``, through ``DenseIndex.search``, one thread by default:
a server answers concurrent queries on the other cores; with OpenMP threads on a busy 2-core
machine, faiss's single queries get 3x slower), p50 and p99 over ``--queries`` queries;
build time uses all cores; recall@k is against exact search on the same queries::

    python benchmarks/bench_retrieval.py                                   # 10k, 100k, 1M
    python benchmarks/bench_retrieval.py --sizes 10000,100000 --queries 100

faiss bundles its own OpenBLAS, which on CPUs it does not know (here: a recent Xeon) falls back
to its slowest kernel ("Prescott"), making IVF training and assignment about 3x slower; unless
``OPENBLAS_CORETYPE`` is set, the benchmark sets it to ``Haswell`` (AVX2) for faiss, on CPUs
with AVX2, after numpy has loaded (numpy keeps its own choice). ``--no-blas-fix`` turns this off.
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402  (numpy's OpenBLAS loads here, before the faiss fix below)


def _cpu_has_avx2() -> bool:
    try:
        return " avx2" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def _blas_report() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return ", ".join(f"{d['prefix']}={d.get('architecture', '?')}/{d['num_threads']}t"
                     for d in threadpool_info() if d["user_api"] == "blas")


def make_vectors(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray,
                 basis: np.ndarray, chunk: int = 100_000) -> np.ndarray:
    """``n`` unit vectors: a random centre + noise in a shared ``basis`` subspace (embeddings
    have a low intrinsic dimension) + isotropic noise."""
    out = np.empty((n, dim), dtype=np.float32)
    latent = basis.shape[0]
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = centres[rng.integers(len(centres), size=m)]
        x += 0.9 * (rng.standard_normal((m, latent), dtype=np.float32) @ basis) / np.float32(math.sqrt(latent))
        x += 0.4 * rng.standard_normal((m, dim), dtype=np.float32) / np.float32(math.sqrt(dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start:start + m] = x
    return out


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found.tolist(), truth.tolist())]))


def latencies_ms(index, queries: np.ndarray, k: int, threads: int, warmup: int = 5) -> np.ndarray:
    """Milliseconds per single-query search, with ``threads`` BLAS and OpenMP threads."""
    import faiss
    from threadpoolctl import threadpool_limits

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            for q in queries[:warmup]:
                index.search(q, k)
            out = np.empty(len(queries))
            for i, q in enumerate(queries):
                t = time.perf_counter()
                index.search(q, k)
                out[i] = (time.perf_counter() - t) * 1000
    finally:
        faiss.omp_set_num_threads(before)
    return out


def tune(index, attr: str, candidates: list[int], queries: np.ndarray, truth: np.ndarray, k: int,
         target: float) -> tuple[int, float]:
    """Smallest candidate value of ``attr`` whose recall@k reaches ``target`` (else the largest)."""
    best = (candidates[-1], -1.0)
    for value in candidates:
        setattr(index, attr, value)
        rec = recall_at_k(index.search(queries, k)[0], truth)
        best = (value, rec)
        if rec >= target:
            break
    setattr(index, attr, best[0])
    return best


def bench_size(n: int, args: argparse.Namespace) -> list[dict]:
    from course_lib.retrieval import DenseIndex

    rng = np.random.default_rng(args.seed + n)
    n_centres = max(10, int(math.sqrt(n)))  # sub-clusters of 30 "categories"
    tops = rng.standard_normal((30, args.dim), dtype=np.float32)
    tops /= np.linalg.norm(tops, axis=1, keepdims=True)
    centres = tops[rng.integers(30, size=n_centres)] + 0.8 * rng.standard_normal(
        (n_centres, args.dim), dtype=np.float32) / np.float32(math.sqrt(args.dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    basis = rng.standard_normal((args.latent_dim, args.dim), dtype=np.float32) / np.float32(math.sqrt(args.dim))
    t = time.perf_counter()
    x = make_vectors(n, args.dim, rng, centres, basis)
    queries = make_vectors(args.queries, args.dim, rng, centres, basis)
    tuning = make_vectors(args.tune_queries, args.dim, rng, centres, basis)
    ids = np.arange(n, dtype=np.int64)
    print(f"# n={n:,}: generated {n_centres} clusters in {time.perf_counter() - t:.1f}s", flush=True)

    rows = []
    truth = tune_truth = None
    for backend in ("exact", "faiss-flat", "faiss-ivf", "faiss-hnsw"):
        params: dict = {}
        if backend == "faiss-ivf":
            nlist = max(1, min(int(round(args.nlist_factor * math.sqrt(n))), n // 39))
            params = {"nlist": nlist, "niter": args.niter,
                      "train_size": min(n, args.train_per_list * nlist)}
        elif backend == "faiss-hnsw":
            params = {"M": args.hnsw_m, "efConstruction": args.ef_construction}
        t = time.perf_counter()
        index = DenseIndex(ids, x, backend=backend, **params)
        build = time.perf_counter() - t
        shown = ""
        if backend == "exact":
            truth = index.search(queries, args.k)[0]
            tune_truth = index.search(tuning, args.k)[0]
        elif backend == "faiss-ivf":
            nprobe, _ = tune(index, "nprobe", [p for p in (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128,
                                                           192, 256, 384, 512) if p <= nlist],
                             tuning, tune_truth, args.k, args.target_recall)
            shown = f"nlist={nlist} nprobe={nprobe}"
        elif backend == "faiss-hnsw":
            ef, _ = tune(index, "efSearch", [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512],
                         tuning, tune_truth, args.k, args.target_recall)
            shown = f"M={args.hnsw_m} efC={args.ef_construction} efS={ef}"
        lat = latencies_ms(index, queries, args.k, threads=args.search_threads)
        recall = recall_at_k(index.search(queries, args.k)[0], truth)
        rows.append({"n": n, "backend": backend, "params": shown, "build_s": build,
                     "bytes_per_vector": index.nbytes() / n, "p50_ms": float(np.percentile(lat, 50)),
                     "p99_ms": float(np.percentile(lat, 99)), "recall": recall})
        print(f"#   {backend:<10} build {build:6.1f}s  p50 {rows[-1]['p50_ms']:7.3f} ms  "
              f"recall {recall:.3f}  {shown}", flush=True)
        if backend != "exact":  # the exact index shares ``x``; faiss indexes hold a copy
            del index
            gc.collect()
    return rows


def print_table(rows: list[dict], k: int) -> None:
    head = (f"| {'n':>9} | {'backend':<10} | {'params':<26} | {'build s':>7} | {'bytes/vec':>9} | "
            f"{'p50 ms':>7} | {'p99 ms':>7} | {'recall@' + str(k):>9} |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        print(f"| {r['n']:>9,} | {r['backend']:<10} | {r['params']:<26} | {r['build_s']:>7.2f} | "
              f"{r['bytes_per_vector']:>9.0f} | {r['p50_ms']:>7.3f} | {r['p99_ms']:>7.3f} | "
              f"{r['recall']:>9.3f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated index sizes")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per size (default 200)")
    parser.add_argument("--tune-queries", type=int, default=100, help="queries to tune nprobe/efSearch")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--latent-dim", type=int, default=32, help="intrinsic dimension of the noise")
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--nlist-factor", type=float, default=4.0, help="nlist = factor * sqrt(n)")
    parser.add_argument("--train-per-list", type=int, default=16, help="IVF training vectors per list")
    parser.add_argument("--niter", type=int, default=10, help="IVF k-means iterations")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None,
                        help="faiss OpenMP threads for building and tuning (default: all cores)")
    parser.add_argument("--search-threads", type=int, default=1,
                        help="threads (BLAS and OpenMP) for the timed single queries (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-blas-fix", action="store_true", help="leave faiss's OpenBLAS kernel choice")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    if not args.no_blas_fix and "OPENBLAS_CORETYPE" not in os.environ and _cpu_has_avx2():
        os.environ["OPENBLAS_CORETYPE"] = "Haswell"  # read by faiss's OpenBLAS when it loads
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}; faiss {faiss.__version__} with "
          f"{faiss.omp_get_max_threads()} threads; BLAS: {_blas_report()}")
    print(f"# dim {args.dim}, top-{args.k}, {args.queries} timed single queries on "
          f"{args.search_threads} thread(s), target recall {args.target_recall}", flush=True)
    t0 = time.perf_counter()
    rows = []
    for n in sizes:
        rows += bench_size(n, args)
        gc.collect()
    print()
    print_table(rows, args.k)
    print(f"\n# total {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
