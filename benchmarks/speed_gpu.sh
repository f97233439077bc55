#!/usr/bin/env bash
# The GPU speed measurements for docs/model.md ("GPU against the reference"), in one call of the
# device tool (carry [".whl"]; about 6 minutes with compiles). Writes under OUT_DIR (default
# $OUT): speed.txt (fp32 and bf16 training, profiled, with GPU time by kind of kernel),
# unfused.txt (the same with DVSAPP_FUSED_LIF_POOL=0: the A/B of fused_lif_pool.py), infer.txt,
# wgrad.txt (benchmarks/gpu_wgrad.py: cuDNN's weight gradients against a Triton kernel),
# tests.txt (the CUDA kernel and model tests).
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
DVSAPP_FUSED_LIF_POOL=0 timeout 150 $speed --cases train-compiled-fp32,train-compiled-bf16 > "$out/unfused.txt" 2>&1
show "$out/unfused.txt" 2
timeout 120 python3 -m pytest -q -p no:cacheprovider -p no:logging tests/test_fused_lif_pool.py \
  tests/test_fused_pool.py tests/test_fused_lif.py tests/test_model.py > "$out/tests.txt" 2>&1
tail -n 2 "$out/tests.txt"
timeout 80 $speed --cases infer-compiled-bf16-b32,infer-compiled-fp32-b32 > "$out/infer.txt" 2>&1
show "$out/infer.txt" 2
(cd benchmarks && timeout 60 python3 gpu_wgrad.py > "$out/wgrad.txt" 2>&1)
cat "$out/wgrad.txt" | tail -n 6
