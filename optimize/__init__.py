"""optimize: one recipe from a PyTorch model to evaluated, device-specific engines.

The Python API (optimize.api) is the product; the `optimize` command is a thin layer over it.
"""

from optimize.api import (
    bundle,
    device_classes,
    history,
    load_recipe,
    monitor,
    rebuild,
    report,
    run,
    sync,
    validate,
    verify,
)

__version__ = "0.1.0"
__all__ = [
    "bundle",
    "device_classes",
    "history",
    "load_recipe",
    "monitor",
    "rebuild",
    "report",
    "run",
    "sync",
    "validate",
    "verify",
]
