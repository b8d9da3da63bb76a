#!/usr/bin/env bash
# End-to-end browser test of the web page: a real `spotlight serve` on a loopback port over a
# tiny freshly trained data directory, driven in Debian's headless chromium by playwright-core
# (api/web/e2e). Screenshots at 1280 and 390 px wide land in $ARTIFACTS (printed below).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export ARTIFACTS=${ARTIFACTS:-$root/.ci/artifacts}
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
mkdir -p "$ARTIFACTS"

if ! command -v chromium >/dev/null; then
  echo "== installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
chromium --version 2>/dev/null | head -1 || true
command -v node >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }

work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== building spotlight and training a tiny model (30 steps of a 60-step schedule)"
go build -o "$work/spotlight" ./cmd/spotlight
# Stopped after a step, then resumed to 30: the page must say the model is short of its schedule.
"$work/spotlight" train --data "$work/data" --preset tiny --steps 60 --for 1ms --corpus opticks 2>"$work/train.log" \
  && "$work/spotlight" train --data "$work/data" --resume --steps 30 2>>"$work/train.log" \
  || { tail -5 "$work/train.log"; exit 1; }
tail -c 300 "$work/train.log" | tr '\r' '\n' | tail -1

echo "== spotlight generate --plot"
"$work/spotlight" generate --data "$work/data" --prompt "The light" --tokens 3 --top-k 2 \
  --plot "$ARTIFACTS/generate-timeline.png" --plot-token 1 >/dev/null
test -s "$ARTIFACTS/generate-timeline.png"
echo "plot: $ARTIFACTS/generate-timeline.png"

echo "== serving on a loopback port"
"$work/spotlight" serve --data "$work/data" --addr 127.0.0.1:0 2>"$work/serve.log" &
server=$!
url=""
for _ in $(seq 1 120); do
  url=$(grep -o '"addr":"http://[^"]*"' "$work/serve.log" 2>/dev/null | head -1 | sed 's/^"addr":"//; s/"$//') || true
  if [ -n "$url" ] && curl -fsS "$url/healthz" >/dev/null 2>&1; then break; fi
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log"; echo "serve exited"; exit 1; }
  url=""
  sleep 0.5
done
[ -n "$url" ] || { cat "$work/serve.log"; echo "serve did not come up"; exit 1; }
echo "server: $url"

echo "== browser test (playwright-core, /usr/bin/chromium)"
cd api/web/e2e
npm ci --no-audit --no-fund --loglevel=error
SPOTLIGHT_URL=$url CHROMIUM=$(command -v chromium) node --test --test-reporter=spec page.test.mjs
cd "$root"
echo "screenshots and plots in $ARTIFACTS:"
ls -1 "$ARTIFACTS"
