#!/usr/bin/env bash
# Bounded load run, loopback only: a real `spotlight serve` on a tiny freshly trained model,
# CLIENTS (20) concurrent clients for SECONDS (20) over every query endpoint while two slow
# readers hang on large answers (the Go load generator is TestLoad in api/load_test.go). It
# fails on any status but the expected one or 429, and when the server's RSS goes over
# MAX_RSS_MIB (600: the server idles near 200 MiB here and peaked near 300 under this load).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/spotlight" ./cmd/spotlight
head -c 30000 corpora/opticks.txt >"$work/corpus.txt"
"$work/spotlight" train --data "$work/data" --steps 30 --preset tiny --corpus "$work/corpus.txt" 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$work/spotlight" serve --data "$work/data" --addr "127.0.0.1:$port" 2>"$work/serve.log" &
server=$!
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
  sleep 0.5
done
echo "== idle server RSS: $(awk '/VmRSS/ {print int($2 / 1024) " MiB"}' "/proc/$server/status")"

SPOTLIGHT_LOAD_URL=http://127.0.0.1:$port SPOTLIGHT_LOAD_PID=$server \
SPOTLIGHT_LOAD_CLIENTS=${CLIENTS:-20} SPOTLIGHT_LOAD_SECONDS=${SECONDS_:-20} SPOTLIGHT_LOAD_MAX_RSS_MIB=${MAX_RSS_MIB:-600} \
  go test ./api -run '^TestLoad$' -count=1 -v -timeout 5m | grep -E '^(---|ok|FAIL)|load_test'

echo "== SIGTERM: a clean drain exits 0"
kill -TERM "$server"
rc=0
wait "$server" || rc=$?
server=""
tail -n 3 "$work/serve.log"
[ "$rc" = 0 ] || { echo "serve exited $rc after SIGTERM" >&2; exit 1; }
