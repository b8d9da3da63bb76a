#!/bin/bash
# Runs BenchmarkScan and scan_numpy.py on a quiet many-core machine: first pinned to 2 cores,
# then on all cores with the big sizes. Build the Go benchmark first, from the repository root:
#   go test -c -o bench/dualmem.test ./dualmem
# numpy is taken from $PYTHON (default: python3 on PATH); without it the numpy rows are skipped
# (on Debian: apt-get install python3-numpy libopenblas0-pthread).
set -u
cd "$(dirname "$0")"
if [ ! -x ./dualmem.test ]; then
  echo "bench/dualmem.test is missing; build it with: go test -c -o bench/dualmem.test ./dualmem" >&2
  exit 1
fi
PY="${PYTHON:-python3}"
nproc; grep -m1 'model name' /proc/cpuinfo
echo "== go, 2 cores"
GOMAXPROCS=2 taskset -c 0,1 ./dualmem.test -test.run XXX -test.bench Scan -test.benchtime 5x 2>&1 | grep Benchmark
numpy=no
if "$PY" -c 'import numpy' 2>/dev/null; then numpy=yes; else echo "no numpy for $PY: numpy rows skipped"; fi
if [ $numpy = yes ]; then
  "$PY" --version
  echo "== numpy, 2 cores"
  OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 taskset -c 0,1 "$PY" scan_numpy.py 100000 1000000 --reps 3
fi
echo "== go, all cores, big"
SPOTLIGHT_BENCH_BIG=1 ./dualmem.test -test.run XXX -test.bench Scan -test.benchtime 5x 2>&1 | grep Benchmark
if [ $numpy = yes ]; then
  echo "== numpy, all cores"
  "$PY" scan_numpy.py 100000 1000000 4000000 --reps 3; "$PY" scan_numpy.py 1000000 --d 512 --reps 3
fi
