#!/usr/bin/env bash
# DataDAM accuracy benchmarks and the MHIST baseline batch-size check on a lent GPU machine,
# all launched in parallel (one GPU, 16 CPU cores). Data must already be under /tmp/data
# (MNIST/raw, mhist/) and the fvcore wheels installed in /tmp/site (see benchmarks/RESULTS.md).
# Usage: ITER=10000 bash benchmarks/gpu_datadam.sh     (logs and JSON land in $OUT)
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 DDORCH_DATA_ROOT=/tmp/data DDORCH_CACHE_DIR=$OUT/cache
ITER=${ITER:-20000}
LIMIT=${LIMIT:-400}
bench() { name=$1; shift; timeout "$LIMIT" python3 benchmarks/datadam_accuracy.py --device cuda --out "$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1 & }
bench mnist_ipc1_real   --dataset mnist --ipc 1  --init real  --iterations "$ITER"
bench mnist_ipc10_real  --dataset mnist --ipc 10 --init real  --iterations "$ITER"
bench mnist_ipc10_noise --dataset mnist --ipc 10 --init noise --iterations "$ITER"
bench mnist_ipc50_real  --dataset mnist --ipc 50 --init real  --iterations "$ITER"
bench mnist_ipc10_course --dataset mnist --ipc 10 --init real --preset course
bench mhist_ipc50_real  --dataset mhist --ipc 50 --init real  --iterations "$((ITER / 4))"
for bs in 32 64; do
  timeout "$LIMIT" python3 -m orchestrator.cli baseline --dataset mhist --model ConvNetD7 --seeds 3 --batch-size $bs --device cuda > "$OUT/mhist_baseline_bs$bs.log" 2>&1 &
done
wait
for f in "$OUT"/*.log; do echo "== $f"; grep -v -E "^\s*(train|distil)" "$f" | tail -4; done
