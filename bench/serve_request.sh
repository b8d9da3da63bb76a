#!/bin/bash
# Serves a copy of a data directory (default /tmp/mem-default) and times the 16-token
# all-layer request three times, full and pruned, grouped by pattern (the default) and by
# token, after one warm-up: wall time, the server's CPU time (utime+stime from /proc) and the
# load average; RssAnon after start-up and after the requests. SPOTLIGHT names the binary.
set -u
SRC=${1:-/tmp/mem-default}
BIN=${SPOTLIGHT:-spotlight}
DATA=$(mktemp -d)/mem
PORT=${PORT:-8955}
cp -r "$SRC" "$DATA"
"$BIN" serve --data "$DATA" --addr 127.0.0.1:$PORT > "$DATA.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$(dirname "$DATA")"' EXIT
until grep -q '"serving"\|msg=serving' "$DATA.log"; do
  sleep 0.5
  kill -0 $PID 2>/dev/null || { cat "$DATA.log"; exit 1; }
done
sleep 20 # the background segment check reads every step once after start-up
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' /proc/$PID/stat; }
req() {
  curl -s -o /dev/null -w "%{time_total}" localhost:$PORT/v1/generate -H 'Content-Type: application/json' \
    -d "{\"prompt\":\"The rays of light\",\"tokens\":16,\"scan\":\"$1\"$2}"
}
echo "after start-up: $(grep RssAnon /proc/$PID/status)"
req full "" > /dev/null
for rep in 1 2 3; do
  for spec in "full|" "pruned|" "full|,\"group_by\":\"token\"" "pruned|,\"group_by\":\"token\""; do
    scan=${spec%%|*} extra=${spec#*|}
    c0=$(cpu); t=$(req "$scan" "$extra"); c1=$(cpu)
    echo "rep $rep scan=$scan${extra:+ group_by=token} wall=${t}s cpu=$(echo "scale=2; ($c1-$c0)/$tck" | bc)s load=$(cut -d' ' -f1 /proc/loadavg)"
  done
done
echo "after the requests: $(grep RssAnon /proc/$PID/status)"
