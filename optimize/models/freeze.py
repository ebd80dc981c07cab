"""Choosing modules by name glob, and freezing them for linear probing: the parameters of a
frozen module take no gradient, and its normalisation layers keep their running statistics."""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def unmatched_patterns(model: nn.Module, patterns: list[str]) -> list[str]:
    """Module names or globs that name no module of `model`."""
    names = [name for name, _ in model.named_modules() if name]
    return [p for p in patterns if not any(fnmatch.fnmatchcase(name, p) for name in names)]


def matching_modules(model: nn.Module, patterns: list[str]) -> dict[str, nn.Module]:
    """The modules a glob names, outermost first (a match's children are covered by it)."""
    chosen: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        covered = any(name.startswith(f"{outer}.") for outer in chosen)
        if name and not covered and any(fnmatch.fnmatchcase(name, p) for p in patterns):
            chosen[name] = module
    return chosen


def freeze(model: nn.Module, patterns: list[str]) -> dict[str, nn.Module]:
    """Stop gradients into the matched modules; returns them, for `hold_frozen` after each
    `model.train()`."""
    frozen = matching_modules(model, patterns)
    for module in frozen.values():
        module.requires_grad_(False)
    return frozen


def hold_frozen(frozen: dict[str, nn.Module]) -> None:
    """Frozen modules stay in eval mode while the rest trains (batch norm keeps its statistics)."""
    for module in frozen.values():
        module.eval()
