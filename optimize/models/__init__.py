"""Model sources: one file per kind (the part of `model.source` before ':'), registered by name."""

from optimize.registry import Registry

MODEL_SOURCES: Registry = Registry("model source")

from optimize.models import huggingface, onnx, pickle, python, torchvision  # noqa: E402,F401  (registration)


def open_source(spec, base_dir):
    """The ModelSource object for a recipe's `model:` section."""
    return MODEL_SOURCES.get(spec.kind)(spec, base_dir)
