#!/usr/bin/python3
"""The full scan of one layer of a Spotlight memory in numpy, over its own segment files.

`spotlight bench memory` runs it beside its Go requests on the same files: the keys and
gradients are read through np.memmap in chunks (never loaded whole), and for the request's
queries (a JSON file the Go side writes: query vectors, target tokens, per-step scales s_t)
it computes what a full scan answers for an `out` query: α = K·xᵀ, contribution
α·s_t·g[target], the top-k by |α| and by contribution, the positive and negative totals and
the per-step sums of α, |α| and contribution. One warm-up pass, then --reps timed passes
(with --cold, the page cache is dropped before each: needs root). Prints one JSON document.

Usage: /usr/bin/python3 bench/scan_memmap.py SEGMENTS_DIR QUERIES_JSON [--reps R] [--cold]
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
    """Merges the chunk's k best per column of score [n, Q] (rows base..) into the running
    lists cur_s, cur_i [k', Q]."""
    if score.shape[0] > k:
        p = np.argpartition(-score, k, axis=0)[:k]
        score = np.take_along_axis(score, p, axis=0)
    else:
        p = np.broadcast_to(np.arange(score.shape[0])[:, None], score.shape)
    s, i = np.concatenate([cur_s, score]), np.concatenate([cur_i, p + base])
    o = np.argsort(-s, axis=0, kind="stable")[:k]
    return np.take_along_axis(s, o, axis=0), np.take_along_axis(i, o, axis=0)


def scan(keys, grads, step, q, chunk, k):
    X, toks, sw, first, T = q["X"], q["toks"], q["sw"], q["first"], q["T"]
    Q, n = X.shape[0], keys.shape[0]
    pos, neg = np.zeros(Q), np.zeros(Q)
    sa, saa, sc = np.zeros((T, Q)), np.zeros((T, Q)), np.zeros((T, Q))
    att = (np.empty((0, Q)), np.empty((0, Q), np.int64))
    con = (np.empty((0, Q)), np.empty((0, Q), np.int64))
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        alpha = (np.asarray(keys[a:b]) @ X.T).astype(np.float64)  # [b-a, Q], α in float32
        st = np.asarray(step[a:b]) - first
        c = alpha * sw[st][:, None] * np.asarray(grads[a:b])[:, toks]  # contribution per query
        aa = np.abs(alpha)
        pos += np.where(c > 0, c, 0).sum(axis=0)
        neg += np.where(c < 0, c, 0).sum(axis=0)
        # Tokens are in step order: the per-step sums are sums over runs.
        cut = np.flatnonzero(np.diff(st)) + 1
        starts = np.concatenate([[0], cut])
        us = st[starts]
        sa[us] += np.add.reduceat(alpha, starts, axis=0)
        saa[us] += np.add.reduceat(aa, starts, axis=0)
        sc[us] += np.add.reduceat(c, starts, axis=0)
        att = topk(aa, k, a, *att)
        con = topk(c, k, a, *con)
    return pos, neg, att, con


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("segments")
    ap.add_argument("queries")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--chunk", type=int, default=1 << 18, help="tokens per chunk")
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
        for _ in range(args.reps):
            res, dt, ct, l0 = timed(mode == "cold")
            w.append(dt * 1e3), c.append(ct * 1e3), l.append(l0)
        runs[mode] = {"p50_ms": float(np.median(w)), "p50_cpu_ms": float(np.median(c)),
                      "wall_ms": w, "cpu_ms": c, "load1": l}
    out["runs"] = runs
    pos, neg, att, con = res
    if "go_contribution_total" in qj:  # the same sums as the Go full scan's answer?
        g = np.array(qj["go_contribution_total"])
        out["max_rel_diff_vs_go"] = float(np.max(np.abs(pos + neg - g) / np.maximum(np.abs(g), 1e-9)))
    out["top_contribution_first"] = con[1][0].tolist()
    out["top_attention_first"] = att[1][0].tolist()
    out["rss"] = rss()
    out["max_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
