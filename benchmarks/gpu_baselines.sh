#!/usr/bin/env bash
# Full-data baselines on a lent GPU machine (see benchmarks/RESULTS.md for the recorded numbers).
# The device copy carries the IDX files in .benchdata/ (MNIST/raw, FashionMNIST/raw) and the
# fvcore wheels in .whl/ (the GPU image lacks fvcore); run from the repository root.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export DDORCH_DATA_ROOT=$PWD/.benchdata DDORCH_CACHE_DIR=${OUT:-/tmp}/cache
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
for dataset in mnist fashion_mnist; do
  start=$SECONDS; python3 -m orchestrator.cli baseline --dataset "$dataset" --model ConvNetD3 --seeds 3 --device cuda; echo "$dataset wall $((SECONDS - start)) s"
done
