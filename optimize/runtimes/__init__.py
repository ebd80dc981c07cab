"""Runtimes: one file per runtime, registered by name; device classes name one of them."""

from optimize.runtimes import onnxruntime, openvino, tensorrt  # noqa: F401  (registration)
