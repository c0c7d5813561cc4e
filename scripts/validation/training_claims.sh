#!/usr/bin/env bash
# The GPU parts of the pre-registered training claims C8 and C9 (docs/training-claims.md): four 60M runs
# with the settings fixed there, through gpu_runs.sh (run dirs tarred into $OUT/runs-claims-<job>.tgz).
#
# usage: scripts/validation/training_claims.sh [JOB ...]     JOB in c8_adamw c8_galore c8_osd c9_rso (default: all)
# Each C8 job is ~2,000 steps + 27 sharpness measurements (a few minutes on one H100); run one job per call
# where a call is limited to 10 minutes. Then unpack each run dir into docs/results/validation/claims/<job>/
# (config.json, meta.json, log.jsonl) and `osd-theory verify --claims C8,C9` reads them (the GPU part).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# C8: constant lr (no warm-up, no decay), no clipping, no weight decay; the sharpness batch is the first
# micro-batch (64 sequences): the float32 double backward of a 256-sequence batch would not fit beside the run
C8="--model 60m --batch-size 256 --micro-batch-size 64 --seq-len 256 --steps 2000 --warmup-frac 0 --min-lr-frac 1
    --grad-clip 0 --weight-decay 0 --sharpness 8 --log-every 50 --eval-every 500 --compile"
# C9: the recorded RSO run's settings (default schedule, peak lr 0.01), with every resample logged
C9="--model 60m --batch-size 256 --seq-len 256 --steps 1000 --lr 0.01 --rank 128 --update-proj-gap 200
    --log-refresh --log-every 10 --eval-every 100 --compile"
declare -A JOB=(
  [c8_adamw]="C8|adamw --lr 1e-3"
  [c8_galore]="C8|galore --lr 1e-2 --rank 128 --scale 0.25"
  [c8_osd]="C8|osd --lr 1e-2 --rank 128 --scale 0.25 --alpha 0.5"
  [c9_rso]="C9|rso"
)
jobs=("$@"); [ ${#jobs[@]} -eq 0 ] && jobs=(c8_adamw c8_galore c8_osd c9_rso)
for name in "${jobs[@]}"; do
  spec=${JOB[$name]:-}
  if [ -z "$spec" ]; then echo "unknown job $name; expected one of ${!JOB[*]}" >&2; exit 2; fi
  common=${spec%%|*}; flags=${spec#*|}
  COMMON=${!common} "$HERE/gpu_runs.sh" "claims-$name" "$name $flags"
done
