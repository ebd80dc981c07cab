"""FP16 conversion for GPU targets with ONNX Runtime's float16 converter (the maintained fork of
onnxconverter-common's): weights and activations in FP16, graph inputs and outputs kept FP32 so
callers feed and read the same arrays as before."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx


def convert(model: onnx.ModelProto, ignored_nodes: list[str], ignored_types: list[str]) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    return convert_float_to_float16(
        model,
        keep_io_types=True,
        op_block_list=sorted({*DEFAULT_OP_BLOCK_LIST, *ignored_types}),
        node_block_list=list(ignored_nodes),
    )
