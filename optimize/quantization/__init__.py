"""Quantization of ONNX models for the `quantize` stage, one module per backend or precision.

Every function here takes an FP32 `onnx.ModelProto` and returns a new one; the stage saves it.
INT8 results are standard QuantizeLinear/DequantizeLinear (QDQ) graphs, which ONNX Runtime,
OpenVINO and TensorRT (explicit quantization) all build.
"""
