#!/usr/bin/env bash
# Run validation jobs on the lent GPU (a copy of the tree, not pip-installed) and tar the run dirs
# (config.json, meta.json, log.jsonl; no checkpoints) into $OUT/runs-$TAG.tgz.
#
# usage: scripts/validation/gpu_runs.sh TAG "optimizer extra-flags" ["optimizer extra-flags" ...]
#   common flags come from $COMMON (e.g. "--model 60m --steps 600 --batch-size 256").
# The corpus is carried in data/corpus and the pre-trained 32k tokenizer in data/cache.
set -uo pipefail
TAG=$1; shift
export PYTHONUNBUFFERED=1 PYTHONPATH=. OSD_GIT_HASH=${OSD_GIT_HASH:-unknown}
RUNS=/tmp/runs-$TAG
mkdir -p "$RUNS" "${OUT:-/tmp/out}"
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv,noheader || true
for job in "$@"; do
  set -- $job
  opt=$1; shift
  name="$opt${NAME_SUFFIX:-}"
  echo "=== $name: $COMMON $*"
  python3 -m discrete.validation.cli --optimizer "$opt" $COMMON "$@" \
    --data data/corpus --cache-dir data/cache --ckpt-every -1 --no-progress --out "$RUNS/$name" 2>&1 \
    | tail -n 14
  python3 -m osd_theory.cli report "$RUNS/$name" || true
done
python3 -m osd_theory.cli report "$RUNS"/* || true
tar czf "${OUT:-/tmp/out}/runs-$TAG.tgz" -C "$RUNS" --exclude checkpoint.pt .
