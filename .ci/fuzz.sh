#!/usr/bin/env bash
# Coverage-guided fuzzing of the API's decoders, a fixed short time per target (FUZZTIME,
# default 15s): JSON bodies of generate/attribute and train, the plots' query parameters and
# the steps path. Seed corpora live in api/testdata/fuzz/<Target>/; a failure leaves its
# input there, to commit with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-15s}
for target in FuzzDecodeGenerate FuzzDecodeTrain FuzzPlotParams FuzzStepsPath; do
  echo "== $target ($fuzztime)"
  go test ./api -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" 2>&1 | grep -vE '^fuzz: elapsed: [0-9]+s, (gathering|execs)' || {
    echo "$target failed" >&2
    exit 1
  }
done
