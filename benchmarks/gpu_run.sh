#!/usr/bin/env bash
# Everything edgec measures on a GPU, in one run, each step under its own timeout and writing as it goes, so one
# failure does not cost the rest. From the checkout's root, with edgec installed:
#
#     OUT=results bash benchmarks/gpu_run.sh
#
# 1. the device-only tests (CUDA-graph replay against the eager step, the GEMVs' inline PTX, the toolchain's CUDA
#    compute paths); the kernels' own tests run in the interpreter on CPU tensors, so the benchmark below validates
#    them on the GPU;
# 2. benchmarks/triton_kernels.py: copy bandwidth, every format's GEMV and GEMM against cuBLAS fp16 and tinygemm, the
#    small ops and attention against torch (decode at 2,048 and 8,192 keys);
# 3. benchmarks/gpu_decode.py: the whole decode loop, captured and eager, against transformers fp16.
set -u
out=${OUT:-gpu-results}
mkdir -p "$out"
export TRITON_INTERPRET=0 TRITON_DEFAULT_FP_FUSION=1

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s)"
    timeout "$limit" "$@" > "$out/$name.txt" 2>&1
    echo "exit status $?" >> "$out/$name.txt"
    tail -n 25 "$out/$name.txt"
}

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv > "$out/gpu.txt" 2>&1
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" >> "$out/gpu.txt"
step device-tests 240 python3 -m pytest -q tests/runtime/test_triton_graph_cuda.py tests/kernels/test_triton_cuda.py \
    tests/toolchain/test_cuda_compute.py
step kernels 300 python3 benchmarks/triton_kernels.py --json "$out/triton.json"
step decode 240 python3 benchmarks/gpu_decode.py --json "$out/decode.json"
