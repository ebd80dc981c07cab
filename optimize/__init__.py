"""optimize: one recipe from a PyTorch model to evaluated, device-specific engines."""

__version__ = "0.1.0"
