#!/usr/bin/env bash
# Issue 34 (README sweep time) and issue 36 (digits sweep + lossless with validation selection), alone.
set -u
DD=${DDORCH:-ddorch}
while awk '{exit !($1 >= 0.5)}' /proc/loadavg; do sleep 10; done
for n in 1 2; do
  d=/tmp/sweep$n; rm -rf $d; mkdir -p $d; cd $d
  echo "== sweep $n start $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  s=$(date +%s.%N)
  DDORCH_CACHE_DIR=$d/cache $DD sweep digits_datadam --seed 0 > out.txt 2>&1; rc=$?
  e=$(date +%s.%N)
  echo "== sweep $n rc $rc wall $(echo "$e - $s" | bc) s end load $(cut -d' ' -f1-3 /proc/loadavg)"
  DDORCH_CACHE_DIR=$d/cache $DD results digits_datadam > results.txt 2>&1
  tail -25 out.txt; cat results.txt
done
d=/tmp/m36; rm -rf $d; mkdir -p $d; cd $d
for mode in seq fixed; do
  if [ $mode = seq ]; then extra=""; else extra="--eval-seeds 5 --max-eval-seeds 5 --experiment lossless-fixed"; fi
  echo "== lossless $mode start $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  s=$(date +%s.%N)
  DDORCH_CACHE_DIR=$d/cache $DD lossless --dataset digits --method datadam,random --max-ipc 50 --iterations 200 --eval-epochs 300 $extra > lossless_$mode.txt 2>&1; rc=$?
  e=$(date +%s.%N)
  echo "== lossless $mode rc $rc wall $(echo "$e - $s" | bc) s end load $(cut -d' ' -f1-3 /proc/loadavg)"
  tail -40 lossless_$mode.txt
done
echo "== all done $(date +%T)"
