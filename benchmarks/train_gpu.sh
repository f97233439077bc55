#!/usr/bin/env bash
# Train / evaluate on a GPU machine of the device tool (see docs/train.md).
#
#   bash benchmarks/train_gpu.sh train --out $OUT/run ...        one GPU
#   NPROC=2 bash benchmarks/train_gpu.sh train --out $OUT/ddp ... torchrun, 2 GPUs (DDP, NCCL)
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_env.sh
if [ "${NPROC:-1}" -gt 1 ]; then
  exec python3 -m torch.distributed.run --standalone --nproc_per_node="$NPROC" benchmarks/train_entry.py "$@"
fi
exec python3 benchmarks/train_entry.py "$@"
