#!/usr/bin/env bash
# Bounded load run, loopback only: 50 concurrent clients for 30 s on POST /v1/generate while
# POST /v1/train trains in the background. Starts its own `spotlight serve` on a free
# loopback port over a copy of DATA_DIR (the original is not changed), then prints p50/p99
# latency, the status codes (only 200 and 429 are allowed) and the server's peak RSS.
#   examples/load.sh DATA_DIR [CLIENTS] [SECONDS] [TRAIN_STEPS]
# Needs curl, jq, python3 and go (to install hey from the module proxy; or set HEY_BIN).
set -euo pipefail
data=${1:?usage: examples/load.sh DATA_DIR [CLIENTS] [SECONDS] [TRAIN_STEPS]}
clients=${2:-50} seconds=${3:-30} steps=${4:-1000}
HEY=github.com/rakyll/hey@v0.1.4
bin=${SPOTLIGHT_BIN:-spotlight}

work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cp -r "$data" "$work/data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
"$bin" serve --data "$work/data" --addr "127.0.0.1:$port" 2>"$work/serve.log" &
server=$!
for _ in $(seq 1 240); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.5; done

hey=${HEY_BIN:-$work/hey}
[ -x "$hey" ] || GOBIN="$work" GOFLAGS= go install "$HEY"

curl -sf -X POST -H 'Content-Type: application/json' -d "{\"steps\":$steps}" "$url/v1/train" |
  jq -c '{training: .running, from: .committed, until}'
"$hey" -c "$clients" -z "${seconds}s" -t 120 -m POST -T application/json \
  -d '{"prompt":"The light","tokens":4,"top_k":3}' -o csv "$url/v1/generate" >"$work/hey.csv"
curl -sf "$url/v1/train" | jq -c '{training: .running, step, committed, tokens_per_sec}'
rss=$(awk '/VmHWM/ {print $2 / 1024 " MiB"}' "/proc/$server/status")

python3 - "$work/hey.csv" "$rss" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")
codes = {}
for r in rows:
    codes[r["status-code"]] = codes.get(r["status-code"], 0) + 1
ok = [float(r["response-time"]) for r in rows if r["status-code"] == "200"]
allt = [float(r["response-time"]) for r in rows]
print(f"requests {len(rows)}, status codes {dict(sorted(codes.items()))}")
print(f"200s:  p50 {pct(ok, .5):.0f} ms, p99 {pct(ok, .99):.0f} ms")
print(f"all:   p50 {pct(allt, .5):.1f} ms, p99 {pct(allt, .99):.0f} ms")
print(f"server peak RSS {sys.argv[2]}")
bad = {c: n for c, n in codes.items() if c not in ("200", "429")}
sys.exit(f"errors other than 429: {bad}" if bad else 0)
PY
