#!/usr/bin/env python3
"""Reference point for training speed: the same pre-LayerNorm char transformer in PyTorch (CPU).

`spotlight bench train` runs this script (its built-in copy, or --torch FILE) in the same run as
its own training benchmark, passing the benchmarked model's shape, vocabulary, batch and thread
count, and compares tokens/s as a ratio. It prints one JSON line.

Needs PyTorch; on Debian: apt-get install python3-torch libopenblas0-pthread (without OpenBLAS,
Debian's torch falls back to the reference BLAS and runs ~2.5x slower). By hand:

    python3 bench/torch_charlm.py --d 128 --blocks 2 --heads 4 --ctx 64 --batch 32 --vocab 91
"""
import argparse, json, time

import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--d", type=int, default=128)
p.add_argument("--blocks", type=int, default=2)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--ctx", type=int, default=64)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--vocab", type=int, required=True, help="vocabulary size of the benchmarked model")
p.add_argument("--steps", type=int, default=30, help="timed steps")
p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--momentum", type=float, default=0.9)
p.add_argument("--weight-decay", type=float, default=1e-4)
p.add_argument("--clip", type=float, default=1.0)
a = p.parse_args()
torch.manual_seed(0)
torch.set_num_threads(a.threads)
D, T, V = a.d, a.ctx, a.vocab


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.att = nn.MultiheadAttention(D, a.heads, batch_first=True)
        self.ff1, self.ff2 = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

    def forward(self, x, mask):
        h = self.ln1(x)
        x = x + self.att(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.ff2(torch.relu(self.ff1(self.ln2(x))))


class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.pos = nn.Embedding(V, D), nn.Parameter(torch.zeros(T, D))
        self.blocks = nn.ModuleList(Block() for _ in range(a.blocks))
        self.lnf, self.out = nn.LayerNorm(D), nn.Linear(D, V)
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), 1))

    def forward(self, x):
        h = self.emb(x) + self.pos
        for b in self.blocks:
            h = b(h, self.mask)
        return self.out(self.lnf(h))


m = LM()
opt = torch.optim.SGD(m.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
data = torch.randint(0, V, (400_000,))  # speed does not depend on the text


def step():
    ix = torch.randint(0, len(data) - T - 1, (a.batch,))
    x = torch.stack([data[i:i + T] for i in ix])
    y = torch.stack([data[i + 1:i + T + 1] for i in ix])
    loss = nn.functional.cross_entropy(m(x).view(-1, V), y.view(-1))
    opt.zero_grad()
    loss.backward()
    if a.clip > 0:
        nn.utils.clip_grad_norm_(m.parameters(), a.clip)
    opt.step()


for _ in range(a.warmup):
    step()
t = time.perf_counter()
for _ in range(a.steps):
    step()
dt = (time.perf_counter() - t) / a.steps
print(json.dumps({"engine": "pytorch-" + torch.__version__, "params": sum(p.numel() for p in m.parameters()),
                  "threads": a.threads, "ms_per_step": round(dt * 1000, 1), "tokens_per_s": round(a.batch * T / dt)}))
