#!/bin/bash
# Runs BenchmarkScan and the numpy script on the device machine (a quiet 16-core box):
# first pinned to 2 cores (the SPEC's machine class), then on all cores with the big sizes.
cd "$(dirname "$0")"
nproc; grep -m1 'model name' /proc/cpuinfo
echo "== go, 2 cores"
GOMAXPROCS=2 taskset -c 0,1 ./dualmem.test -test.run XXX -test.bench Scan -test.benchtime 5x 2>&1 | grep Benchmark
PY="/usr/bin/python3"
if ! $PY -c 'import numpy' 2>/dev/null && [ -f pydeps.tgz ]; then
  # numpy + OpenBLAS copied from a Debian 12 machine (python3-numpy, libopenblas0-pthread)
  tar xzf pydeps.tgz -C /tmp && export PYTHONPATH=/tmp/pydeps LD_LIBRARY_PATH=/tmp/pydeps/lib
fi
$PY --version
if $PY -c 'import numpy' ; then
  echo "== numpy, 2 cores"
  OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 taskset -c 0,1 $PY scan_numpy.py 100000 1000000 --reps 3
else echo "no numpy on the device"; fi
echo "== go, all cores, big"
SPOTLIGHT_BENCH_BIG=1 ./dualmem.test -test.run XXX -test.bench Scan -test.benchtime 5x 2>&1 | grep Benchmark
if $PY -c 'import numpy' 2>/dev/null; then
  echo "== numpy, all cores"
  $PY scan_numpy.py 100000 1000000 4000000 --reps 3; $PY scan_numpy.py 1000000 --d 512 --reps 3
fi
