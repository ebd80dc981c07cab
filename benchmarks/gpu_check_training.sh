#!/usr/bin/env bash
# Issue 17's GPU checks, for a session lent a device machine (an NVIDIA H200 image with Python
# 3.12, torch, torchvision, numpy, click, rich, pyyaml, pillow, scikit-learn, onnx, onnxruntime;
# no registry access). Two steps:
#
#   here (pip reaches PyPI):  bash benchmarks/gpu_check_training.sh prepare
#       downloads the wheels the image lacks into artifacts/gpu-wheels (about 3 MB);
#   there (device run tool, carry: ["artifacts/gpu-wheels"], timeout_s 600):
#       bash benchmarks/gpu_check_training.sh run
#       installs them under /tmp/site, runs the gpu-marked tests (train + prune + distill on CUDA
#       in bf16; stored models load with weights_only=True on a CPU skeleton) and the training
#       benchmark on the GPU, and writes both logs to $OUT.
set -euo pipefail
WHEELS=artifacts/gpu-wheels
case "${1:-}" in
prepare)
    mkdir -p "$WHEELS"
    /work/main/.venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$WHEELS" \
        pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
        torch-pruning==1.6.1 prometheus-client
    ls -la "$WHEELS"
    ;;
run)
    export PYTHONUNBUFFERED=1 OUT="${OUT:-/tmp/out}"
    mkdir -p "$OUT"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
    export PYTHONPATH="/tmp/site:$PWD"
    nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
    python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_torch_device.py 2>&1 | tee "$OUT/gpu-tests.log"
    timeout 400 python3 -m benchmarks training 2>&1 | tee "$OUT/bench-training-gpu.log"
    ;;
*)
    echo "usage: $0 prepare|run" >&2
    exit 2
    ;;
esac
