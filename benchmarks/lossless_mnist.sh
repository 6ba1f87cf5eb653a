#!/usr/bin/env bash
# Issue 6 acceptance: the smallest lossless IPC on real MNIST with ConvNetD3, for DataDAM and for
# random real subsets, on the 2-core CPU, against the seed's 20-epoch full-data protocol.
#
# Target: 99.49 %, ConvNetD3's full-data accuracy (3 seeds, `ddorch baseline`) measured on the
# H100 (benchmarks/RESULTS.md, issue 2), passed with --target-accuracy because training it here
# takes 30+ min per seed. To train it here instead, drop --target-accuracy (then --baseline-seeds).
#
# Settings cut for the CPU: 1000 DataDAM iterations (the paper's preset says 20,000: ~7 h per IPC
# here), max IPC 50; the synthetic-set evaluation keeps the DC/DM protocol (1000 epochs, DSA),
# 3 seeds. Budget: no new IPC launched after 5 h (running trials finish: at most ~2 h more); 2 trials
# at a time with 1 core each. Estimate ~3.5 h: DataDAM IPC 1, 2 stopped halfway (~11 min each), IPC 5,
# 10, 20, 50 ~30, 36, 51, 105 min (distil + 4 evaluation networks); random 1..50 ~100 min in all.
#
# Usage (from the repository root):
#   bash benchmarks/lossless_mnist.sh                 # the acceptance run
#   SMOKE=1 bash benchmarks/lossless_mnist.sh         # a few-minute check that it starts and records
#   TOLERANCE=1.0 bash benchmarks/lossless_mnist.sh   # lossless = within 1 point of the target
#   ITER=200 EVAL_EPOCHS=300 BUDGET_HOURS=1 bash benchmarks/lossless_mnist.sh   # the cut recorded in RESULTS.md
set -euo pipefail
export DDORCH_DATA_ROOT=${DDORCH_DATA_ROOT:-/work/shared/data} COLUMNS=${COLUMNS:-160}  # a wide table in the log
OUT=${OUT:-$PWD/bench_out/lossless_mnist}
mkdir -p "$OUT"
if [ "${SMOKE:-0}" = 1 ]; then
  TUNING=(--max-ipc 2 --iterations 2 --eval-epochs 1 --eval-seeds 2 --budget-hours 0.5)
else
  TUNING=(--max-ipc "${MAX_IPC:-50}" --iterations "${ITER:-1000}" --eval-seeds 3 --eval-epochs "${EVAL_EPOCHS:-1000}"
          --budget-hours "${BUDGET_HOURS:-5}")
fi
"${PYTHON:-python}" -m orchestrator.cli lossless --dataset mnist --method datadam,random --model ConvNetD3 \
  --target-accuracy 99.49 --tolerance "${TOLERANCE:-0.0}" "${TUNING[@]}" --max-concurrent 2 --cpus-per-trial 1 \
  --device cpu --tracking-uri "sqlite:///$OUT/mlflow.db" --output-dir "$OUT/runs" 2>&1 | tee "$OUT/lossless_mnist.log"
