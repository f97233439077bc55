#!/usr/bin/env bash
# The GPU speed measurements for docs/model.md ("GPU against the reference") in one call of the
# device tool (carry [".whl"]). About 8 minutes with the compiles; the steps run in order of
# need, each bounded. Writes under OUT_DIR (default $OUT):
#   speed.txt        fp32 and bf16 training, profiled (GPU time by kind of kernel)
#   fused.txt        the same with DVSAPP_FUSED_LIF_POOL=1 (the A/B of fused_lif_pool.py), profiled
#   wgrad.txt        benchmarks/gpu_wgrad.py: cuDNN's weight gradients against conv_wgrad.py's kernel
#   wgrad_train.txt  fp32 training with DVSAPP_TRITON_WGRAD=1 (the kernel in the step)
#   tests.txt        the CUDA kernel and model tests
#   infer.txt        inference at batch 32, bf16 and fp32
#
#   bash benchmarks/speed_gpu.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/speed}}
mkdir -p "$out"
source benchmarks/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader
speed="python3 benchmarks/gpu_speed.py --iters 20 --warmup 3"
show() { grep "^|" "$1" | tail -n "$2"; }
timeout 200 $speed --profile 3 --cases train-compiled-fp32,train-compiled-bf16 > "$out/speed.txt" 2>&1
show "$out/speed.txt" 2
grep -A10 "by kind" "$out/speed.txt"
DVSAPP_FUSED_LIF_POOL=1 timeout 200 $speed --profile 3 --cases train-compiled-fp32,train-compiled-bf16 > "$out/fused.txt" 2>&1
show "$out/fused.txt" 2
grep -A10 "by kind" "$out/fused.txt"
(cd benchmarks && timeout 60 python3 gpu_wgrad.py > "$out/wgrad.txt" 2>&1)
tail -n 6 "$out/wgrad.txt"
DVSAPP_TRITON_WGRAD=1 timeout 100 $speed --cases train-compiled-fp32 > "$out/wgrad_train.txt" 2>&1
show "$out/wgrad_train.txt" 1
timeout 150 python3 -m pytest -q -p no:cacheprovider -p no:logging tests/test_fused_lif_pool.py \
  tests/test_conv_wgrad.py tests/test_fused_pool.py tests/test_fused_lif.py tests/test_model.py > "$out/tests.txt" 2>&1
tail -n 2 "$out/tests.txt"
timeout 80 $speed --cases infer-compiled-bf16-b32,infer-compiled-fp32-b32 > "$out/infer.txt" 2>&1
show "$out/infer.txt" 2
