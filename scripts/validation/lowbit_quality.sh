#!/usr/bin/env bash
# Issue 22's quality check: 8-bit against float32 optimizer states for GaLore and OSD, paired by seed (the
# same data order and initialisation; only the projected group's state_dtype differs), two runs at a time.
#
# usage: scripts/validation/lowbit_quality.sh OUT_DIR "SEEDS" [validate flags ...]
#   CPU, tiny (recorded in docs/results/validation/lowbit_tiny/):
#     scripts/validation/lowbit_quality.sh docs/results/validation/lowbit_tiny "0 1 2" \
#         --model tiny --steps 200 --device cpu --threads 1 --log-every 50 --eval-every 0
#   then: python3 scripts/validation/paired.py docs/results/validation/lowbit_tiny
# The 60M GPU version of the same grid runs through parallel_runs.sh (docs/scaling.md, "Lean state").
set -euo pipefail
OUT=$1; SEEDS=$2; shift 2
mkdir -p "$OUT"
jobs=()
for seed in $SEEDS; do
  for opt in galore osd; do
    for dtype in float32 int8; do
      jobs+=("$opt $dtype $seed")
    done
  done
done
printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c '
  name="$0_$1_s$2"
  osd-theory validate --optimizer "$0" --seed "$2" --group-option state_dtype="$1" --no-progress \
      --out "'"$OUT"'/$name" '"$(printf '%q ' "$@")"' > "'"$OUT"'/$name.log" 2>&1 \
    && echo "$name: $(tail -n 1 "'"$OUT"'/$name.log")" || { echo "$name failed:"; tail -n 3 "'"$OUT"'/$name.log"; }'
