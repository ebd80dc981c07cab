"""Runtimes: one file per runtime, registered by name; device classes name one of them."""

from optimize.registry import Registry

RUNTIMES: Registry = Registry("runtime")

from optimize.runtimes import onnxruntime, openvino, tensorrt  # noqa: E402,F401  (registration)
