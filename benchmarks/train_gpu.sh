#!/usr/bin/env bash
# Train / evaluate on a GPU machine of the device tool (see docs/train.md).
#
#   bash benchmarks/train_gpu.sh train --out $OUT/run ...        one GPU
#   NPROC=2 bash benchmarks/train_gpu.sh train --out $OUT/ddp ... torchrun, 2 GPUs (DDP, NCCL)
#
# The wheels in .whl/ (norse, nir, nirtorch, built/downloaded beforehand) are installed
# into /tmp/site; NVLink multicast stays off.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ] && [ ! -d /tmp/site/norse ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [ "${NPROC:-1}" -gt 1 ]; then
  exec python3 -m torch.distributed.run --standalone --nproc_per_node="$NPROC" benchmarks/train_entry.py "$@"
fi
exec python3 benchmarks/train_entry.py "$@"
