"""Model sources: one file per kind (the part of `model.source` before ':'), registered by name."""

from optimize.models import huggingface, onnx, pickle, python, torchvision  # noqa: F401  (registration)
