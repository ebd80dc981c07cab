"""Triton Inference Server's model configuration (config.pbtxt) for one engine: pure text from
the runtime's Triton description, the model's tensors and the device class. Triton parses it as
its `ModelConfig` protobuf (tests parse it with the one `tritonclient` ships)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from optimize.fleet.bundle_format import TensorSpec
from optimize.runtimes.base import TritonModel

# NumPy dtype names -> Triton's DataType enum (model_config.proto)
DATA_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
}


def triton_dims(shape: Sequence[int], batched: bool) -> list[int]:
    """Dims as config.pbtxt states them: without the batch axis when Triton batches."""
    return list(shape[1:] if batched else shape)


def _tensor(spec: TensorSpec, batched: bool) -> str:
    if spec.dtype not in DATA_TYPES:
        raise ValueError(f"tensor '{spec.name}' has dtype {spec.dtype}, which Triton cannot serve")
    dims = ", ".join(str(d) for d in triton_dims(spec.shape, batched))
    return (
        f"  {{\n    name: {json.dumps(spec.name)}\n    data_type: {DATA_TYPES[spec.dtype]}\n"
        f"    dims: [ {dims} ]\n  }}"
    )


def render_config(
    name: str,
    triton: TritonModel,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    max_batch_size: int,
    gpu: bool,
    compute_capability: str | None = None,
) -> str:
    """config.pbtxt text. `max_batch_size` 0 means the engine has no batch axis Triton may use
    (dims then include axis 0); a TensorRT plan is named per compute capability, since a plan
    only loads on the GPU generation that built it."""
    batched = max_batch_size > 0
    lines = [f"name: {json.dumps(name)}"]
    if triton.platform:
        lines.append(f"platform: {json.dumps(triton.platform)}")
    if triton.backend:
        lines.append(f"backend: {json.dumps(triton.backend)}")
    lines.append(f"max_batch_size: {max_batch_size}")
    lines.append("input [\n" + ",\n".join(_tensor(t, batched) for t in inputs) + "\n]")
    lines.append("output [\n" + ",\n".join(_tensor(t, batched) for t in outputs) + "\n]")
    lines.append(
        f"instance_group [\n  {{\n    count: 1\n    kind: {'KIND_GPU' if gpu else 'KIND_CPU'}\n  }}\n]"
    )
    if batched:
        lines.append("dynamic_batching { }")
    lines.append("version_policy: { latest: { num_versions: 1 } }")
    if compute_capability:
        (plan,) = triton.files.values()
        lines.append(
            f"cc_model_filenames [\n  {{\n    key: {json.dumps(compute_capability)}\n"
            f"    value: {json.dumps(plan)}\n  }}\n]"
        )
    return "\n".join(lines) + "\n"
