#!/usr/bin/env bash
# The temporal-model ablation (docs/model.md), four runs side by side on one GPU.
#
#   bash benchmarks/ablation_gpu.sh OUT_DIR [EPOCHS] [TIME_LIMIT_S]
#
# Each run adds to the one before it:
#   A  20 ms steps, one-frame stem, head decay 0.5, state detached after every window, clips from rest
#   B  A + backpropagation through 4 consecutive windows + half the batches start mid-stream (2 burn-in windows)
#   C  B + the motion stem (3 frames stacked as channels)
#   D  C + a slower readout (head decay 0.2) + clips played backwards half the time
# Same data (synthetic seeds 0-399 train, 100000+ validation, 200000+ held-out test), same
# seed, same schedule (the time limit is only a guard); each ends with the held-out test and its time-reversed twin.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_env.sh
out=${1:?OUT_DIR}; epochs=${2:-40}; limit=${3:-420}
mkdir -p "$out" /tmp/cache
common=(--dataset synthetic --preset tiny --epochs "$epochs" --batch 64 --clips-per-epoch 4096 --lr 2e-3
        --windows 4 --stretch 0.7,1.3 --flip 0.5 --drop 0.1 --noise 0.0002 --seed 0 --cache /tmp/cache
        --workers 4 --time-limit "$limit")
# build the binned frames once (all four runs share the cache)
python3 benchmarks/warm_cache.py --cache /tmp/cache --workers 16 --stretch 0.7,1.3 --seed 0
run() {
  local name=$1; shift
  mkdir -p "$out/$name"
  python3 benchmarks/train_entry.py train "${common[@]}" --out "$out/$name" "$@" >"$out/$name/train.log" 2>&1 &
}
run A --set temporal_kernel=1 --set head_decay=0.5 --bptt 1 --burn-in 0
run B --set temporal_kernel=1 --set head_decay=0.5 --bptt 4 --burn-in 2
run C --set temporal_kernel=3 --set head_decay=0.5 --bptt 4 --burn-in 2
run D --set temporal_kernel=3 --set head_decay=0.2 --bptt 4 --burn-in 2 --reverse 0.5
wait
for n in A B C D; do echo "== $n"; tail -n 25 "$out/$n/train.log"; done
