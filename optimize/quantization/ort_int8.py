"""INT8 post-training quantization with ONNX Runtime's tools (precision int8, backend
onnxruntime): quant_pre_process (shape inference and graph clean-up), then quantize_static to QDQ."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from optimize.errors import StageError
from optimize.quantization.data import FeedReader
from optimize.quantization.graph import nodes_of_types, scope_problems
from optimize.quantization.int8 import Int8Options, Int8Quantizer
from optimize.registries import QUANTIZERS

if TYPE_CHECKING:
    import onnx

    from optimize.quantization.data import Feeds
    from optimize.stages.base import StageContext


class OnnxRuntimeInt8Config(Int8Options):
    """INT8 with ONNX Runtime's quantize_static (`precision: int8`, `backend: onnxruntime`).
    Weights are symmetric, per channel unless per_channel is false."""

    backend: Literal["onnxruntime"] = Field(
        "onnxruntime", description="ONNX Runtime's quant_pre_process and quantize_static"
    )
    calibration_method: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax", description="how activation ranges are found"
    )
    per_channel: bool = Field(True, description="one weight scale per output channel")


@QUANTIZERS.register("onnxruntime-int8")
class OnnxRuntimeInt8Quantizer(Int8Quantizer):
    Config = OnnxRuntimeInt8Config
    libraries = ("onnx", "onnxruntime")

    def scope_problems(self, model: onnx.ModelProto, params: OnnxRuntimeInt8Config) -> list[str]:
        return []  # checked after ONNX Runtime's pre-processing, which may fuse nodes away

    def weights(self, params: OnnxRuntimeInt8Config) -> str:
        return "per-channel" if params.per_channel else "per-tensor"

    def quantize_int8(
        self,
        model: onnx.ModelProto,
        calibration: list[Feeds],
        params: OnnxRuntimeInt8Config,
        scheme: str,
        context: StageContext,
    ) -> tuple[onnx.ModelProto, dict[str, float]]:
        return quantize(context.input.file, calibration, params, scheme, context.step_id), {}


def quantize(
    model_path: Path, calibration: list[Feeds], params: OnnxRuntimeInt8Config, scheme: str, step_id: str
) -> onnx.ModelProto:
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    symmetric = scheme == "symmetric"  # ONNX Runtime's CPU default is asymmetric uint8
    with tempfile.TemporaryDirectory(prefix="ort-quant-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(model_path), str(prepared))
        graph = onnx.load(str(prepared), load_external_data=False)
        problems = scope_problems(graph, list(params.ignored_nodes), list(params.ignored_types))
        if problems:  # names are checked after pre-processing, which may fuse nodes away
            raise StageError(step_id, "; ".join(problems))
        output = Path(scratch) / "quantized.onnx"
        quantize_static(
            str(prepared),
            str(output),
            FeedReader(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=params.per_channel,
            # Symmetric activations are signed with a zero point of 0 (what TensorRT wants);
            # asymmetric ones are unsigned (ONNX Runtime's fast U8S8 path on x86).
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=[*params.ignored_nodes, *nodes_of_types(graph, list(params.ignored_types))],
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[params.calibration_method],
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        )
        return onnx.load(str(output))
