"""FP16 conversion for GPU targets with ONNX Runtime's float16 converter (the maintained fork of
onnxconverter-common's): weights and activations in FP16, graph inputs and outputs kept FP32 so
callers feed and read the same arrays as before."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from optimize.quantization.base import QuantizeOptions, Quantizer
from optimize.registries import QUANTIZERS

if TYPE_CHECKING:
    import onnx

    from optimize.stages.base import StageContext, StageOutput


class Fp16Config(QuantizeOptions):
    """FP16 weights and activations for GPU targets (`precision: fp16`), float32 inputs and outputs."""

    precision: Literal["fp16"] = Field("fp16", description="fp16: weights and activations, for GPUs")


@QUANTIZERS.register("fp16")
class Fp16Quantizer(Quantizer):
    Config = Fp16Config
    libraries = ("onnx", "onnxruntime")

    def quantize(
        self, model: onnx.ModelProto, params: Fp16Config, context: StageContext
    ) -> tuple[onnx.ModelProto, StageOutput]:
        from optimize.stages.base import StageOutput

        output = convert(model, list(params.ignored_nodes), list(params.ignored_types))
        info = {"precision": "fp16", "io": "float32 inputs and outputs, cast at the graph edges"}
        return output, StageOutput(info=info)


def convert(model: onnx.ModelProto, ignored_nodes: list[str], ignored_types: list[str]) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    return convert_float_to_float16(
        model,
        keep_io_types=True,
        op_block_list=sorted({*DEFAULT_OP_BLOCK_LIST, *ignored_types}),
        node_block_list=list(ignored_nodes),
    )
