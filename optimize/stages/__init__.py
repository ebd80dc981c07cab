"""Stages: one file per stage, registered by name with @STAGES.register."""

from optimize.registry import Registry

STAGES: Registry = Registry("stage")

from optimize.stages import distill, export, prune, quantize, train  # noqa: E402,F401  (registration)
