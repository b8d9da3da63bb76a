#!/usr/bin/env bash
# Spotlight API from the shell: curl + jq.
#   examples/curl.sh [URL]          (default http://127.0.0.1:8080)
# Sends SPOTLIGHT_TOKEN as a bearer token when set. With SPOTLIGHT_RECORD_DIR set, every
# response is also saved there (CI validates them against api/openapi.json).
set -euo pipefail
URL=${1:-${SPOTLIGHT_URL:-http://127.0.0.1:8080}}

# api METHOD PATH [BODY] [TEMPLATE]: prints the body; fails on a status other than 2xx.
api() {
  local method=$1 path=$2 body=${3:-} template=${4:-$2} out status
  local args=(-sS -X "$method" -o /dev/stdout -w '\n%{http_code}')
  [[ -n ${SPOTLIGHT_TOKEN:-} ]] && args+=(-H "Authorization: Bearer $SPOTLIGHT_TOKEN")
  [[ -n $body ]] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
  out=$(curl "${args[@]}" "$URL$path")
  status=${out##*$'\n'}
  out=${out%$'\n'*}
  if [[ -n ${SPOTLIGHT_RECORD_DIR:-} ]]; then
    jq -n --arg m "$method" --arg p "$template" --argjson s "$status" --argjson b "$out" \
      '{method: $m, path: $p, status: $s, body: $b}' >"$(mktemp "$SPOTLIGHT_RECORD_DIR/sh-XXXXXX.json")"
  fi
  printf '%s\n' "$out"
  [[ $status == 2* ]] || { echo "$method $path: HTTP $status" >&2; return 1; }
}

api GET /healthz | jq -c .
api GET /v1/model | jq '{step, d: .config.d, vocab: (.vocabulary | length), layers: [.layers[].name], memory_bytes}'

echo '# generate: each token and the training token that pushed it most (layer out)'
api POST /v1/generate '{"prompt":"The light","tokens":6,"top_k":3,"layers":["out"]}' |
  jq -r '"step \(.step): \(.prompt | @json) → \(.text | @json)",
         (.tokens[] | "  \(.token | @json)\tp=\(.prob * 100 | floor)%\tstep \(.layers.out.top[0].step)\t\(.layers.out.top[0].context[-16:] | @json) → \(.layers.out.top[0].target | @json)")'

echo '# attribute: teacher-forced probabilities'
api POST /v1/attribute '{"text":"The light","top_k":1,"layers":["out"]}' |
  jq -r '.tokens[] | "  \(.token | @json)\tp=\(.prob)"'

echo '# what step 1 trained on'
api GET /v1/steps/1 '' '/v1/steps/{step}' | jq '{step, loss, lr, clip, first_row: .rows[0].context}'

api GET /v1/train | jq -c '{running, committed}'

echo '# a bad request is a JSON error with a 4xx status'
if api POST /v1/generate '{"prompt":"The light","tokens":"many"}' >/tmp/spotlight-err.$$ 2>/dev/null; then
  echo "expected an error" >&2; exit 1
fi
jq -c .error /tmp/spotlight-err.$$ && rm -f /tmp/spotlight-err.$$
