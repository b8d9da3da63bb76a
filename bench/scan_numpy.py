#!/usr/bin/python3
"""The scan of dualmem.BenchmarkScan in numpy over OpenBLAS, for comparison.

For N random keys of width d (float32), 80-wide gradients and steps of 2048 tokens, times:
  read      K.sum() (a streaming read of the key slab)
  query1    one query: α = K·x, top-k by |α| and by contribution, totals, per-step sums
  req32     the same for a 32-token request, α = K·Xᵀ in blocks of 65536 keys
Prints one JSON document. Usage: /usr/bin/python3 bench/scan_numpy.py [N ...] [--d D] [--reps R]
"""
import argparse
import json
import time

import numpy as np


def aggregates(alpha, g, sw_tok, step, T, k):
    """alpha [n], g [n] (gradient at the chosen token), per-token s_t, step index [n]."""
    c = alpha * sw_tok * g
    a = np.abs(alpha)
    top_att = np.argpartition(-a, k)[:k]
    top_att = top_att[np.argsort(-a[top_att])]
    top_con = np.argpartition(-c, k)[:k]
    top_con = top_con[np.argsort(-c[top_con])]
    pos = c[c > 0].sum(dtype=np.float64)
    neg = c[c < 0].sum(dtype=np.float64)
    sa = np.bincount(step, weights=alpha, minlength=T)
    saa = np.bincount(step, weights=a, minlength=T)
    sc = np.bincount(step, weights=c, minlength=T)
    return top_att, top_con, pos, neg, sa, saa, sc


def scan(K, G, sw_tok, step, T, X, toks, k=10, block=65536):
    n = K.shape[0]
    alpha = np.empty((n, X.shape[0]), dtype=np.float32)
    for j in range(0, n, block):
        np.matmul(K[j:j + block], X.T, out=alpha[j:j + block])
    return [aggregates(alpha[:, q], G[:, t], sw_tok, step, T, k) for q, t in enumerate(toks)]


def timeit(fn, reps):
    fn()
    best = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t0)
    return min(best)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="*", type=int, default=[100_000, 1_000_000])
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    out = {"numpy": np.__version__, "results": []}
    try:
        cfg = np.show_config(mode="dicts")
        out["blas"] = cfg["Build Dependencies"]["blas"]["name"]
    except Exception:  # older numpy
        pass
    for n in args.n:
        d = args.d
        K = rng.standard_normal((n, d), dtype=np.float32)
        G = rng.standard_normal((n, 80), dtype=np.float32)
        step = (np.arange(n) // 2048).astype(np.int64)
        T = int(step[-1]) + 1
        sw_tok = rng.standard_normal(T)[step]
        X = rng.standard_normal((32, d), dtype=np.float32)
        toks = [i % 80 for i in range(32)]
        gb = K.nbytes / 1e9
        r = {"n": n, "d": d}
        t = timeit(lambda: K.sum(), args.reps)
        r["read_ms"], r["read_gbs"] = t * 1e3, gb / t
        t = timeit(lambda: scan(K, G, sw_tok, step, T, X[:1], toks[:1]), args.reps)
        r["query1_ms"], r["query1_gbs"] = t * 1e3, gb / t
        t = timeit(lambda: scan(K, G, sw_tok, step, T, X, toks), args.reps)
        r["req32_ms"] = t * 1e3
        out["results"].append(r)
        del K, G
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
