#!/bin/bash
# Serves a data directory (default /tmp/big) and measures RssAnon, cold and warm 16-token
# all-layer requests in full and pruned mode, what they read and their worst dual checks.
# Needs root (it drops the page cache). SPOTLIGHT names the binary (default: spotlight).
set -u
DATA=${1:-/tmp/big}
BIN=${SPOTLIGHT:-spotlight}
PORT=8941
sync; echo 3 > /proc/sys/vm/drop_caches && echo "dropped caches"
T0=$(date +%s.%N)
"$BIN" serve --data "$DATA" --addr 127.0.0.1:$PORT > /tmp/big-serve.log 2>&1 &
PID=$!
until grep -q '"serving"\|msg=serving' /tmp/big-serve.log; do sleep 0.5; if ! kill -0 $PID 2>/dev/null; then echo "serve died"; cat /tmp/big-serve.log; exit 1; fi; done
echo "start-up: $(echo "$(date +%s.%N) - $T0" | bc) s"
grep -E "RssAnon|VmRSS" /proc/$PID/status
uptime
sync; echo 3 > /proc/sys/vm/drop_caches
for run in cold warm warm2; do
  for scan in full pruned; do
    t=$(curl -s -o /tmp/big-$run-$scan.json -w "%{time_total}" localhost:$PORT/v1/generate -H 'Content-Type: application/json' -d "{\"prompt\":\"The rays of light\",\"tokens\":16,\"scan\":\"$scan\"}")
    echo "$run $scan: $t s; $(grep RssAnon /proc/$PID/status)"
    if [ $run = cold ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi
  done
done
uptime
kill $PID; wait $PID 2>/dev/null
python3 - <<'PY'
import json
for f in ['/tmp/big-warm-full.json','/tmp/big-warm-pruned.json']:
    d=json.load(open(f))
    worst=0; worst_h=0
    for t in d['tokens']:
        for n,l in t['layers'].items():
            dc=l['dual_check']; rel=dc['abs_err']/max(abs(dc['primal']),1.0)
            worst=max(worst,rel)
            if 'max_abs_err' in dc: worst_h=max(worst_h,dc['max_abs_err'])
    sc={n:l['scan'] for n,l in d['tokens'][0]['layers'].items()}
    print(f, 'step', d['step'], 'tokens', len(d['tokens']), 'worst dual rel err', '%.2e'%worst, 'worst hidden max_abs_err', '%.2e'%worst_h)
    for n,s in sc.items(): print('   ', n, s['mode'], 'read %.1f%%'%(100*s['bytes_read']/s['bytes_total']), 'of %.2f GB'%(s['bytes_total']/1e9))
PY
