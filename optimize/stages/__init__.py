"""Stages: one file per stage, registered by name with @STAGES.register (optimize.registries)."""

from optimize.stages import distill, export, prune, quantize, train  # noqa: F401  (registration)
