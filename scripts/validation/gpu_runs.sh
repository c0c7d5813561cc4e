#!/usr/bin/env bash
# Run validation jobs on the lent GPU (a copy of the tree, not pip-installed) and tar the run dirs
# (config.json, meta.json, log.jsonl; no checkpoints) into $OUT/runs-$TAG.tgz after every job, so
# a call cut off by its time limit still returns the finished runs.
#
# usage: COMMON="--model 60m ..." scripts/validation/gpu_runs.sh TAG "NAME OPTIMIZER [flags]" ...
# The corpus is carried in data/corpus and the pre-trained 32k tokenizer in data/cache.
set -uo pipefail
TAG=$1; shift
export PYTHONUNBUFFERED=1 PYTHONPATH=. OSD_GIT_HASH=${OSD_GIT_HASH:-unknown}
RUNS=/tmp/runs-$TAG
OUTDIR=${OUT:-/tmp/out}
mkdir -p "$RUNS" "$OUTDIR"
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv,noheader || true
for job in "$@"; do
  set -- $job
  name=$1; opt=$2; shift 2
  echo "=== $name: --optimizer $opt $COMMON $*"
  python3 -m discrete.validation.cli --optimizer "$opt" $COMMON "$@" \
    --data data/corpus --cache-dir data/cache --ckpt-every -1 --no-progress --out "$RUNS/$name" 2>&1 \
    | grep -E "^(tokeniz|[0-9]+m:|step [0-9]*[05]00:|step 1:|done|Traceback|.*Error)" | tail -n 12
  tar czf "$OUTDIR/runs-$TAG.tgz" -C "$RUNS" --exclude checkpoint.pt .
done
python3 -m osd_theory.cli report "$RUNS"/* || true
