"""The runner's CUDA layer (cuda-python), checked against PyTorch on a GPU host."""

from __future__ import annotations

import numpy as np
import pytest

from optimize.runtimes.tensorrt.cuda import CudaRuntime
from optimize.runtimes.tensorrt.probe import detect_gpu
from optimize.runtimes.tensorrt.runner import device_memory_mb


def _why_no_cuda_torch() -> str:
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU"
    return detect_gpu()[1]


needs_cuda_torch = pytest.mark.skipif(bool(_why_no_cuda_torch()), reason=_why_no_cuda_torch() or "ready")


@pytest.mark.gpu
@needs_cuda_torch
def test_cuda_event_timing_and_memory_through_pytorch():
    """The runner's CUDA layer (cuda-python) checked against PyTorch's own CUDA events and
    memory accounting, on the same stream and device; needs a GPU but no TensorRT."""
    import torch

    cuda = CudaRuntime()
    cuda.init_context()
    stream = cuda.stream()
    start, end = cuda.event(), cuda.event()
    torch_start, torch_end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a = torch.randn(2048, 2048, device="cuda")
    torch.cuda.synchronize()
    with torch.cuda.stream(torch.cuda.ExternalStream(int(stream))):
        cuda.record(start, stream)
        torch_start.record()
        for _ in range(20):
            a = torch.tanh(a @ a)
        torch_end.record()
        cuda.record(end, stream)
    ours = cuda.elapsed_ms(start, end)
    torch_end.synchronize()
    theirs = torch_start.elapsed_time(torch_end)
    assert ours > 0 and theirs <= ours <= theirs * 1.1 + 0.2

    size = 256 * 2**20
    free_before, torch_free_before = cuda.free_bytes(), torch.cuda.mem_get_info()[0]
    pointer = cuda.malloc(size)
    ours_drop, torch_drop = free_before - cuda.free_bytes(), torch_free_before - torch.cuda.mem_get_info()[0]
    assert ours_drop >= size * 0.9 and abs(ours_drop - torch_drop) < 64 * 2**20
    assert device_memory_mb(ours_drop, 0, size) >= size / 2**20

    host_pointer, host = cuda.pinned(4096)
    values = np.arange(1024, dtype=np.float32)
    host.view(np.float32)[:] = values
    cuda.copy_to_device(pointer, host_pointer, 4096, stream)
    host[:] = 0
    cuda.copy_to_host(host_pointer, pointer, 4096, stream)
    cuda.synchronize(stream)
    np.testing.assert_array_equal(host.view(np.float32), values)
    cuda.free(pointer)
    cuda.free_pinned(host_pointer)

    before = torch.cuda.memory_allocated()
    block = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")
    assert device_memory_mb(torch.cuda.memory_allocated() - before, 0, 0) == 64
    del block
