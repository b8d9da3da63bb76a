#!/usr/bin/python3
"""The full scan of one layer of a Spotlight memory in numpy, over its own segment files.

`spotlight bench memory` runs it beside its Go requests on the same files: the keys and
gradients are read through np.memmap in chunks (never loaded whole), and for the request's
queries (a JSON file the Go side writes: query vectors, target tokens, per-step scales s_t)
it computes what a full scan answers for an `out` query: α = K·xᵀ, contribution
α·s_t·g[target], the top-k by |α| and by contribution, the positive and negative totals and
the per-step sums of α, |α| and contribution. One warm-up pass, then --reps timed passes
(with --cold, the page cache is dropped before each: needs root). Prints one JSON document.

Usage: /usr/bin/python3 bench/scan_memmap.py SEGMENTS_DIR QUERIES_JSON [--reps R] [--cold] [--cold-reps C]
"""
import argparse
import json
import os
import resource
import time

import numpy as np


def rss():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    return out


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def topk(score, k, base, cur_s, cur_i):
    """Merges each row's k best of score [Q, n] (columns base..) into the running lists
    cur_s, cur_i [Q, k] (sorted, best first). Only the entries above each row's current
    k-th best are looked at, so after the first chunk little is sorted."""
    Q = score.shape[0]
    if cur_s.shape[1] < k:  # the first chunk
        p = np.argpartition(-score, k, axis=1)[:, :k] if score.shape[1] > k else \
            np.broadcast_to(np.arange(score.shape[1]), score.shape)
        rows, cols = np.repeat(np.arange(Q), p.shape[1]), p.ravel()
    else:
        rows, cols = np.nonzero(score > cur_s[:, -1:])
    s = np.concatenate([cur_s.ravel(), score[rows, cols]])
    i = np.concatenate([cur_i.ravel(), cols + base])
    r = np.concatenate([np.repeat(np.arange(Q), cur_s.shape[1]), rows])
    o = np.lexsort((-s, r))  # by row, best first
    first = np.searchsorted(r[o], np.arange(Q))
    take = (first[:, None] + np.arange(k)).clip(max=len(o) - 1)
    return s[o][take], i[o][take]


def scan(keys, grads, step, q, chunk, k):
    """One pass over the memory for every query at once, query-major ([Q, tokens]), in
    float32 as the Go scan's α; the totals are summed in float64, the per-step sums (over
    a step's tokens) in float32."""
    X, toks, sw, first, T = q["X"], q["toks"], q["sw"], q["first"], q["T"]
    Q, n = X.shape[0], keys.shape[0]
    uniq, inv = np.unique(toks, return_inverse=True)
    pos = np.zeros(Q)
    sa, saa, sc = np.zeros((Q, T)), np.zeros((Q, T)), np.zeros((Q, T))
    att = (np.empty((Q, 0), np.float32), np.empty((Q, 0), np.int64))
    con = (np.empty((Q, 0), np.float32), np.empty((Q, 0), np.int64))
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        alpha = X @ np.asarray(keys[a:b]).T  # [Q, b-a]
        st = np.asarray(step[a:b]) - first
        g = np.ascontiguousarray(np.asarray(grads[a:b])[:, uniq].T)[inv]  # g[target] per query
        c = alpha * sw[st].astype(np.float32) * g
        aa = np.abs(alpha)
        pos += np.maximum(c, 0).sum(axis=1, dtype=np.float64)
        # Tokens are in step order: the per-step sums are sums over runs.
        starts = np.concatenate([[0], np.flatnonzero(np.diff(st)) + 1])
        us = st[starts]
        sa[:, us] += np.add.reduceat(alpha, starts, axis=1)
        saa[:, us] += np.add.reduceat(aa, starts, axis=1)
        sc[:, us] += np.add.reduceat(c, starts, axis=1)
        att = topk(aa, k, a, *att)
        con = topk(c, k, a, *con)
    return pos, sc.sum(axis=1) - pos, att, con


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("segments")
    ap.add_argument("queries")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--cold-reps", type=int, default=0, help="timed cold passes (0: as --reps)")
    ap.add_argument("--chunk", type=int, default=1 << 19, help="tokens per chunk")
    ap.add_argument("--topk", type=int, default=10)
    args = ap.parse_args()
    with open(args.queries) as f:
        qj = json.load(f)
    layer, din, dout = qj["layer"], qj["d_in"], qj["d_out"]
    n = os.path.getsize(os.path.join(args.segments, layer + ".keys")) // (4 * din)
    n = min(n, qj["tokens"])
    keys = np.memmap(os.path.join(args.segments, layer + ".keys"), np.float32, "r", shape=(n, din))
    grads = np.memmap(os.path.join(args.segments, layer + ".grads"), np.float32, "r", shape=(n, dout))
    step = np.memmap(os.path.join(args.segments, "step.i32"), np.int32, "r", shape=(n,))
    q = {"X": np.array(qj["x"], np.float32).reshape(-1, din), "toks": np.array(qj["tokens_id"], np.int64),
         "sw": np.array(qj["sw"], np.float64), "first": qj["first_step"], "T": len(qj["sw"])}
    out = {"numpy": np.__version__, "tokens": n, "queries": int(q["X"].shape[0]),
           "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "chunk": args.chunk}
    try:
        out["blas"] = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # older numpy
        pass

    def timed(cold):
        if cold:
            drop_caches()
        l0, c0, t0 = load1(), time.process_time(), time.perf_counter()
        r = scan(keys, grads, step, q, args.chunk, args.topk)
        return r, time.perf_counter() - t0, time.process_time() - c0, l0

    res, _, _, _ = timed(False)  # warm-up
    runs = {}
    for mode in ["warm"] + (["cold"] if args.cold else []):
        w, c, l = [], [], []
        for _ in range((args.cold_reps or args.reps) if mode == "cold" else args.reps):
            res, dt, ct, l0 = timed(mode == "cold")
            w.append(dt * 1e3), c.append(ct * 1e3), l.append(l0)
        runs[mode] = {"p50_ms": float(np.median(w)), "p50_cpu_ms": float(np.median(c)),
                      "wall_ms": w, "cpu_ms": c, "load1": l}
    out["runs"] = runs
    pos, neg, att, con = res
    if "go_contribution_total" in qj:  # the same sums as the Go full scan's answer?
        g = np.array(qj["go_contribution_total"])
        out["max_rel_diff_vs_go"] = float(np.max(np.abs(pos + neg - g) / np.maximum(np.abs(g), 1e-9)))
    out["top_contribution_first"] = con[1][:, 0].tolist()
    out["top_attention_first"] = att[1][:, 0].tolist()
    out["rss"] = rss()
    out["max_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
