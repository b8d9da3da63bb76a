#!/usr/bin/env bash
# CI for the HTTP API: lint api/openapi.json with Redocly (pinned, zero errors), run the
# API tests recording every response, run both examples against a real `spotlight serve`
# on a loopback port over a tiny freshly trained data directory, and validate every
# recorded response (tests and examples) against the OpenAPI schemas.
set -euo pipefail
cd "$(dirname "$0")/.."
REDOCLY=@redocly/cli@2.77.0

need=()
command -v jq >/dev/null || need+=(jq)
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
command -v npx >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
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
export SPOTLIGHT_RECORD_DIR=$work/responses
mkdir -p "$SPOTLIGHT_RECORD_DIR"

echo "== lint api/openapi.json ($REDOCLY)"
npx --yes "$REDOCLY" lint --format stylish api/openapi.json

echo "== API tests, recording responses"
go test ./api -count=1 -timeout 10m -skip '^TestRecordedResponses$'

echo "== spotlight serve on a tiny model (30 steps)"
go build -o "$work/spotlight" ./cmd/spotlight
head -c 30000 corpora/opticks.txt >"$work/corpus.txt"
"$work/spotlight" train --data "$work/data" --steps 30 --preset tiny --corpus "$work/corpus.txt" 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export SPOTLIGHT_URL=http://127.0.0.1:$port
"$work/spotlight" serve --data "$work/data" --addr "127.0.0.1:$port" 2>"$work/serve.log" &
server=$!
for _ in $(seq 1 120); do
  curl -sf "$SPOTLIGHT_URL/healthz" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
  sleep 0.5
done

echo "== examples/curl.sh"
bash examples/curl.sh
echo "== examples/client.py"
python3 examples/client.py

echo "== a public address without a token is refused"
if "$work/spotlight" serve --data "$work/data" --addr 0.0.0.0:0 2>"$work/refused.log"; then
  echo "serve bound 0.0.0.0 without a token" >&2; exit 1
fi
grep -q "without a token" "$work/refused.log"

echo "== graceful shutdown"
kill -INT "$server"
wait "$server"
server=""

echo "== every recorded response against openapi.json"
go test ./api -count=1 -run '^TestRecordedResponses$' -v | grep -E 'recorded responses|^(ok|FAIL|---)'
