"""INT8 post-training quantization with NNCF on the ONNX model (QDQ output): the default method
(precision int8, backend nncf). Accuracy control builds on it (nncf_int8_accuracy)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from optimize.quantization.int8 import Int8Options, Int8Quantizer
from optimize.registries import QUANTIZERS

if TYPE_CHECKING:
    import onnx

    from optimize.quantization.data import Feeds
    from optimize.stages.base import StageContext


class NncfInt8Config(Int8Options):
    """INT8 with NNCF's post-training quantization (`precision: int8`, `backend: nncf`; the default
    method). Weights are symmetric per channel."""

    backend: Literal["nncf"] = Field("nncf", description="NNCF post-training quantization")
    bias_correction: Literal["fast", "full"] = Field(
        "fast", description="fast bias correction, or full (slower; per-layer sub-model runs)"
    )
    model_type: Literal["transformer"] | None = Field(
        None, description="'transformer' adds NNCF's patterns for attention blocks"
    )


@QUANTIZERS.register("nncf-int8")
class NncfInt8Quantizer(Int8Quantizer):
    Config = NncfInt8Config
    libraries = ("nncf", "onnx", "onnxruntime")

    def quantize_int8(
        self,
        model: onnx.ModelProto,
        calibration: list[Feeds],
        params: NncfInt8Config,
        scheme: str,
        context: StageContext,
    ) -> tuple[onnx.ModelProto, dict[str, float]]:
        return quantize(model, calibration, params, scheme), {}


def common_options(params: NncfInt8Config, scheme: str, calibration: list[Feeds]) -> dict[str, Any]:
    """Options quantize() and quantize_with_accuracy_control() share.

    Activations get one scale per tensor. NNCF's CPU default gives a depthwise convolution's input
    a scale per channel, which no integer convolution kernel takes (ONNX Runtime's QLinearConv,
    TensorRT): on torchvision's MobileNetV2 that left 39 of 52 convolutions in float between
    quantize/dequantize pairs, and the INT8 file ran 5-10× slower than FP32.
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters

    presets = {  # performance: zero points of 0; mixed: asymmetric activations; None: NNCF decides
        "symmetric": nncf.QuantizationPreset.PERFORMANCE,
        "asymmetric": nncf.QuantizationPreset.MIXED,
        "cpu": None,  # performance for CNNs, mixed for transformers
    }
    return {
        "preset": presets[scheme],
        "subset_size": len(calibration),  # already cut to params.subset_size
        "fast_bias_correction": params.bias_correction == "fast",
        "model_type": nncf.ModelType.TRANSFORMER if params.model_type == "transformer" else None,
        "ignored_scope": nncf.IgnoredScope(
            names=list(params.ignored_nodes), types=list(params.ignored_types)
        ),
        "advanced_parameters": AdvancedQuantizationParameters(
            activations_quantization_params=QuantizationParameters(per_channel=False)
        ),
    }


@contextlib.contextmanager
def explain_full_bias_correction(params: NncfInt8Config) -> Iterator[None]:
    """Full bias correction runs sub-models that NNCF cuts out of the graph through ONNX Runtime,
    which fails to load some of them (seen on ResNet-18's downsample blocks: a cut output that
    ONNX Runtime's own graph fusions remove). Say so, and what to use instead."""
    try:
        yield
    except Exception as exc:
        if params.bias_correction != "full":
            raise
        raise RuntimeError(
            f"NNCF's full bias correction failed ({exc}); ONNX Runtime cannot load a sub-model NNCF cut "
            "from this graph. Use bias_correction: fast"
        ) from exc


def signed_activations(model: onnx.ModelProto) -> onnx.ModelProto:
    """Make every activation quantizer int8 with a zero point of 0, in place.

    NNCF's symmetric (performance) preset stores non-negative tensors (ReLU outputs) as uint8,
    which TensorRT's explicit quantization does not accept, and its hardware configs refuse
    forcing signed activations. The same range in int8 needs twice the scale (one bit less
    resolution for those tensors only).
    """
    import numpy as np
    from onnx import TensorProto, numpy_helper

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    retyped = set()
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3:
            continue
        scale, zero_point = initializers.get(node.input[1]), initializers.get(node.input[2])
        if zero_point is None or zero_point.data_type != TensorProto.UINT8:
            continue
        if numpy_helper.to_array(zero_point).any():
            raise ValueError(f"{node.name}: asymmetric uint8 activations cannot become symmetric int8")
        widened = numpy_helper.to_array(scale) * np.float32(255 / 127)
        scale.CopyFrom(numpy_helper.from_array(widened.astype(np.float32), scale.name))
        signed = np.zeros(numpy_helper.to_array(zero_point).shape, dtype=np.int8)
        zero_point.CopyFrom(numpy_helper.from_array(signed, zero_point.name))
        retyped.update((node.output[0], zero_point.name))
    for value in model.graph.value_info:  # recorded types (NNCF lists zero points too) follow the change
        if value.name in retyped:
            value.type.tensor_type.elem_type = TensorProto.INT8
    return model


def quantize(
    model: onnx.ModelProto, calibration: list[Feeds], params: NncfInt8Config, scheme: str
) -> onnx.ModelProto:
    import nncf

    with explain_full_bias_correction(params):
        quantized = nncf.quantize(
            model, nncf.Dataset(calibration), **common_options(params, scheme, calibration)
        )
    return signed_activations(quantized) if scheme == "symmetric" else quantized
