"""Quantization of ONNX models for the `quantize` stage: one module per method, each a config (the
method's recipe options) and a handler registered for it (optimize.quantization.base).

Every handler takes an FP32 `onnx.ModelProto` and returns a new one; the stage saves it.
INT8 results are standard QuantizeLinear/DequantizeLinear (QDQ) graphs, which ONNX Runtime,
OpenVINO and TensorRT (explicit quantization) all build.

A new method is one new module plus its line here. The methods are imported by name, not as
`from optimize.quantization import nncf_int8`: the quantize stage imports this package, and a
package's imports of names from its members are in the stage's code fingerprint (so an edit to a
method re-runs the quantize steps), while plain registration imports are not followed.
"""

# Registration order is the order the reference documents the methods and messages list them.
# isort: off
from optimize.quantization.nncf_int8 import NncfInt8Config, NncfInt8Quantizer
from optimize.quantization.nncf_int8_accuracy import (
    NncfInt8AccuracyControlConfig,
    NncfInt8AccuracyControlQuantizer,
)
from optimize.quantization.ort_int8 import OnnxRuntimeInt8Config, OnnxRuntimeInt8Quantizer
from optimize.quantization.int4 import Int4WeightOnlyConfig, Int4WeightOnlyQuantizer
from optimize.quantization.fp16 import Fp16Config, Fp16Quantizer
from optimize.quantization.auto import AutoPrecisionConfig, AutoPrecisionQuantizer
from optimize.quantization.dynamic_int8 import DynamicInt8Config, DynamicInt8Quantizer
# isort: on

__all__ = [
    "AutoPrecisionConfig",
    "AutoPrecisionQuantizer",
    "DynamicInt8Config",
    "DynamicInt8Quantizer",
    "Fp16Config",
    "Fp16Quantizer",
    "Int4WeightOnlyConfig",
    "Int4WeightOnlyQuantizer",
    "NncfInt8AccuracyControlConfig",
    "NncfInt8AccuracyControlQuantizer",
    "NncfInt8Config",
    "NncfInt8Quantizer",
    "OnnxRuntimeInt8Config",
    "OnnxRuntimeInt8Quantizer",
]
