#!/usr/bin/env bash
# Run validation jobs on one lent GPU, N at a time (a 60M model leaves most of an H100/H200 idle, so
# concurrent runs finish sooner; their tokens/s are then NOT comparable with single runs: read quality,
# not speed, from them). A pool: a new job starts as soon as one ends. After each job the run dirs
# (config.json, meta.json, log.jsonl, events.jsonl; no checkpoints) are tarred into $OUT/runs-$TAG.tgz,
# so a call cut off by its limit keeps every finished run; a background loop also saves every minute.
#
# usage: N=4 COMMON="--model 60m ..." scripts/validation/parallel_runs.sh TAG "NAME OPTIMIZER [flags]" ...
# On a machine of G GPUs (GPUS=G, default: as many as nvidia-smi lists) each job starts on the GPU with the
# fewest running jobs (all jobs at once: job i on GPU i mod G), and N counts the jobs of all GPUs together.
# The corpus is carried in data/corpus and the pre-trained 32k tokenizer (and valid tokens) in data/cache;
# the first wave builds the train-token cache once (a lock-free race is avoided by a warm-up run).
set -uo pipefail
TAG=$1; shift
N=${N:-4}
export PYTHONUNBUFFERED=1 PYTHONPATH=. OSD_GIT_HASH=${OSD_GIT_HASH:-unknown}
RUNS=/tmp/runs-$TAG
OUTDIR=${OUT:-/tmp/out}
mkdir -p "$RUNS" "$OUTDIR"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
# a caller that pinned the script to some cards (CUDA_VISIBLE_DEVICES) shares them as one unless GPUS says
[ -n "${CUDA_VISIBLE_DEVICES:-}" ] && GPUS=${GPUS:-1}
GPUS=${GPUS:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)}
[ "${GPUS:-0}" -ge 1 ] 2>/dev/null || GPUS=1
run() {
  local gpu=$1 name=$2 opt=$3; shift 3
  if [ "$GPUS" -gt 1 ]; then export CUDA_VISIBLE_DEVICES=$gpu; fi
  python3 -m discrete.validation.cli --optimizer "$opt" $COMMON "$@" \
    --data data/corpus --cache-dir data/cache --ckpt-every -1 --no-progress --out "$RUNS/$name" \
    > "$RUNS/$name.log" 2>&1
  echo "=== $name (GPU $gpu): $(grep -E '^done|Error' "$RUNS/$name.log" | tail -n 2)"
}
# build the token caches once, before any concurrent run reads them
python3 -m discrete.validation.cli --optimizer adamw $COMMON --steps 1 --val-tokens 256 --data data/corpus \
  --cache-dir data/cache --ckpt-every -1 --no-progress --out /tmp/warmup-$TAG > /tmp/warmup-$TAG.log 2>&1 \
  || tail -n 5 /tmp/warmup-$TAG.log
# a temporary name per saving process (the minute loop and the pool may save at once), then an atomic mv
save() { local tmp="$OUTDIR/.runs-$TAG.$BASHPID.tgz"
         tar czf "$tmp" -C "$RUNS" --exclude checkpoint.pt --exclude '*.lock' . 2>/dev/null \
           && mv "$tmp" "$OUTDIR/runs-$TAG.tgz" || rm -f "$tmp"; }
# a call cut off by its limit still returns the logs of unfinished runs (as of the last minute)
# (sleep in the background and wait for it, so that the kill at the end stops the sleep too: an orphaned
# sleep would hold the script's stdout open, and `parallel_runs.sh ... | tee log` would wait up to a minute)
( trap 'kill $nap 2>/dev/null; exit 0' TERM; while :; do sleep 60 & nap=$!; wait $nap; save; done ) & SAVER=$!
running() { jobs -rp | grep -cvx "$SAVER"; }
declare -A GPU_OF   # pid of a running job -> its GPU
# the GPU with the fewest running jobs, the lowest index on a tie (all jobs at once: round robin, i mod G)
least_loaded() {
  local g best=0 n min=-1
  for ((g = 0; g < GPUS; g++)); do
    n=0
    for pid in "${!GPU_OF[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then [ "${GPU_OF[$pid]}" = "$g" ] && n=$((n + 1)); else unset "GPU_OF[$pid]"; fi
    done
    if [ "$min" -lt 0 ] || [ "$n" -lt "$min" ]; then min=$n; best=$g; fi
  done
  echo $best
}
for job in "$@"; do
  while [ "$(running)" -ge "$N" ]; do wait -n; save; done
  gpu=$(least_loaded)
  run $gpu $job &
  GPU_OF[$!]=$gpu
done
while [ "$(running)" -gt 0 ]; do wait -n; save; done
kill $SAVER 2>/dev/null
save
python3 -m osd_theory.cli report $(ls -d "$RUNS"/*/) 2>&1 | tail -n 30 || true
