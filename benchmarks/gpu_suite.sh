#!/usr/bin/env bash
# The GPU suite in one call on a lent GPU machine (benchmarks/gpu_suite.py says what it runs).
# Here, once:    python benchmarks/gpu_bundle.py      (builds .gpubundle/, prints its size, refuses > 64 MiB)
# The call:      command "bash benchmarks/gpu_suite.sh", carry [".gpubundle"], timeout_s 600
# Then here:     python benchmarks/gpu_suite.py --import FOLDER_THE_FILES_CAME_BACK_TO
# On any GPU machine with the project installed: OUT=DIR python benchmarks/gpu_suite.py (no bundle needed).
# --smoke: the same path end to end on this CPU at tiny sizes (digits; a small bundle; 45 s budget),
# with $PYTHON (default: python, the active environment's).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--smoke" ]; then
  shift
  work=$(mktemp -d)
  export OUT=${OUT:-$work/out} DDORCH_CACHE_DIR=$work/cache
  py=${PYTHON:-python}
  "$py" benchmarks/gpu_bundle.py --smoke --out "$work/bundle" || exit 1
  "$py" -m pip install -q --no-index --no-deps --no-compile --target "$work/site" "$work"/bundle/wheels/*.whl || exit 1
  "$py" benchmarks/gpu_suite.py --profile smoke --out "$OUT" "$@"
  code=$?
  rm -rf "$work/bundle" "$work/site" "$work/cache"
  exit $code
fi
bundle=.gpubundle
[ -d "$bundle/wheels" ] || { echo "error: no $bundle here: build it with python benchmarks/gpu_bundle.py and carry it"; exit 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$bundle"/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 DDORCH_DATA_ROOT=$PWD/$bundle/data DDORCH_CACHE_DIR=/tmp/ddorch-cache
export DDORCH_GIT_COMMIT=$(cat "$bundle/commit") OUT=${OUT:-$PWD/bench_out}
mkdir -p "$OUT"
python3 benchmarks/gpu_suite.py --profile gpu --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
