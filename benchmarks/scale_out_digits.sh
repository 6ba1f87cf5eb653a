#!/usr/bin/env bash
# Issue 35's timed part: the 8-trial digits sweep on 1 node x 1 CPU vs 2 nodes x 1 CPU (the second node in
# its own mount namespace: it sees none of the driver's files), token auth on, `ddorch server` on 127.0.0.1;
# then PAD's experts trained once (as Ray tasks) and a PAD digits sweep on both nodes; the measured line is
# appended to benchmarks/results.jsonl (benchmarks/scale_out_record.py). Run alone, from the checkout:
#   DDORCH=$PWD/.venv/bin/ddorch RAY_BIN=$PWD/.venv/bin/ray bash benchmarks/scale_out_digits.sh
set -u
DD=${DDORCH:-ddorch}; RAY=${RAY_BIN:-ray}; PY=${PYTHON:-$(dirname "$(command -v "$DD")")/python}
CHECKOUT=$PWD
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(openssl rand -hex 32) RAY_TMPDIR=/tmp/dds
rm -rf /tmp/dds; mkdir -p /tmp/dds/shared /tmp/dds/ray /tmp/dds/driver /tmp/dds/home/.cache
export DDORCH_CACHE_DIR=/tmp/dds/driver/cache
cleanup() {
  for pid in $(pgrep -f "/tmp/dds/ray"); do kill -9 $pid 2>/dev/null; done
  pkill -9 -f "ray::" 2>/dev/null
  [ -n "${SERVER:-}" ] && kill $SERVER 2>/dev/null; pkill -f "mlflow-server" 2>/dev/null; pkill -f "mlflow.server" 2>/dev/null
}
trap cleanup EXIT
while awk '{exit !($1 >= 0.5)}' /proc/loadavg; do sleep 10; done
cd /tmp/dds/shared && ($DD server --port 5000 > server.log 2>&1 &) ; sleep 8; SERVER=$(pgrep -f "ddorch server" | head -1)
$RAY start --head --port 6380 --node-ip-address 127.0.0.1 --num-cpus 1 --include-dashboard false --temp-dir /tmp/dds/ray > /tmp/dds/head.log 2>&1 || { echo head failed; cat /tmp/dds/head.log; exit 1; }
cd /tmp/dds/driver
A="--address 127.0.0.1:6380 --tracking-uri http://127.0.0.1:5000 --storage-path /tmp/dds/shared/ray_results --seed 0 --max-concurrent 2"
$DD sweep digits_datadam $A --num-samples 1 --name warmup > warmup.txt 2>&1; echo "warmup rc $?"
LOAD0=$(cut -d' ' -f1 /proc/loadavg)
echo "== one node start $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
s=$(date +%s.%N); $DD sweep digits_datadam $A --name one-node > one.txt 2>&1; rc=$?; e=$(date +%s.%N)
ONE=$(echo "$e - $s" | bc)
echo "== one node rc $rc wall $ONE s load $(cut -d' ' -f1-3 /proc/loadavg)"; tail -14 one.txt
unshare -m --propagation private sh -c "mount -t tmpfs tmpfs /tmp/dds/driver && mount -t tmpfs tmpfs $HOME/.cache && $RAY start --address 127.0.0.1:6380 --num-cpus 1" > /tmp/dds/node2.log 2>&1; echo "node2 rc $?"
sleep 5
echo "== two nodes start $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
s=$(date +%s.%N); $DD sweep digits_datadam $A --name two-nodes > two.txt 2>&1; rc=$?; e=$(date +%s.%N)
TWO=$(echo "$e - $s" | bc); LOAD1=$(cut -d' ' -f1 /proc/loadavg)
echo "== two nodes rc $rc wall $TWO s load $(cut -d' ' -f1-3 /proc/loadavg)"; tail -14 two.txt
# PAD: the preset's digits experts (3 x 10 epochs) trained once as Ray tasks into the shared cache, then a
# 4-trial sweep whose trials on the second node must fetch them (experts_trained_now 0)
mkdir -p /tmp/dds/presets/experiments /tmp/dds/presets/tune_spaces
printf '[lr_images]\ntype = "loguniform"\nlow = 10.0\nhigh = 1000.0\n' > /tmp/dds/presets/tune_spaces/pad_scale.toml
printf '%s\n' 'dataset = "digits"' 'method = "pad"' 'space = "pad_scale.toml"' 'num_samples = 4' 'max_concurrent = 2' \
  'cpus_per_trial = 1' 'eval_seeds = 1' 'eval_epochs = 100' 'report_every = 20' '[fixed]' 'iterations = 60' \
  '[asha]' 'grace_period = 20' 'reduction_factor = 2' > /tmp/dds/presets/experiments/digits_pad_scale.toml
E="--address 127.0.0.1:6380 --tracking-uri http://127.0.0.1:5000 --device cpu"
s=$(date +%s.%N); $DD experts --dataset digits --selection val $E > experts.txt 2>&1; echo "== experts rc $? $(echo "$(date +%s.%N) - $s" | bc) s"; tail -3 experts.txt
DDORCH_PRESETS=/tmp/dds/presets $DD sweep digits_pad_scale $A --name pad-two-nodes > pad.txt 2>&1; echo "== pad sweep rc $?"; tail -8 pad.txt
(cd "$CHECKOUT" && "$PY" benchmarks/scale_out_record.py --tracking-uri http://127.0.0.1:5000 \
  --one-node-seconds "$ONE" --two-nodes-seconds "$TWO" --load-start "$LOAD0" --load-end "$LOAD1")
echo "== done $(date +%T)"
