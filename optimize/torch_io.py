"""Saving and loading PyTorch modules without pickling code.

A pruned model no longer matches its class's constructor, and pickling whole modules would make
every stored model an arbitrary-code file. Instead we store tensors plus each module's primitive
attributes (channel counts, head counts) and re-shape a freshly built skeleton on load, so every
load can use `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "optimize-torch/1"
_PRIMITIVES = (int, float, bool, str, type(None))


def _is_primitive(value: Any) -> bool:
    if isinstance(value, _PRIMITIVES):
        return True
    if isinstance(value, (tuple, list)):
        return all(isinstance(v, _PRIMITIVES) for v in value)
    return False


def module_attributes(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Public primitive instance attributes per module: what pruning changes besides tensors."""
    result = {}
    for name, module in model.named_modules():
        attributes = {
            key: (list(value) if isinstance(value, tuple) else value)
            for key, value in vars(module).items()
            if not key.startswith("_") and key != "training" and _is_primitive(value)
        }
        if attributes:
            result[name] = attributes
    return result


def save_module(model: nn.Module, path: Path) -> None:
    payload = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()},
        "module_attributes": module_attributes(model),
    }
    torch.save(payload, path)


def load_into(skeleton: nn.Module, path: Path) -> nn.Module:
    """Re-shape `skeleton` (a freshly built model of the same source) to the saved one and load it."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a model saved by optimize ({FORMAT})")
    state: dict[str, torch.Tensor] = payload["state_dict"]
    modules = dict(skeleton.named_modules())
    for key, tensor in state.items():
        module_name, _, attr = key.rpartition(".")
        module = modules.get(module_name)
        if module is None:
            raise ValueError(f"saved tensor '{key}' has no module '{module_name}' in the rebuilt model")
        current = getattr(module, attr, None)
        if isinstance(current, torch.Tensor) and current.shape != tensor.shape:
            if isinstance(current, nn.Parameter):
                setattr(
                    module, attr, nn.Parameter(torch.empty_like(tensor), requires_grad=current.requires_grad)
                )
            else:
                module._buffers[attr] = torch.empty_like(tensor)
    for module_name, attributes in payload["module_attributes"].items():
        module = modules.get(module_name)
        if module is None:
            continue
        for key, value in attributes.items():
            if isinstance(getattr(module, key, None), tuple) and isinstance(value, list):
                value = tuple(value)
            setattr(module, key, value)
    skeleton.load_state_dict(state, strict=True)
    return skeleton.eval()


def count_macs_and_params(
    model: nn.Module, example_inputs: tuple[torch.Tensor, ...]
) -> tuple[int | None, int]:
    """MACs at the example batch (None when the tracer cannot follow the model) and parameters."""
    params = sum(p.numel() for p in model.parameters())
    try:
        import torch_pruning as tp

        macs, _ = tp.utils.count_ops_and_params(model, example_inputs)
        return int(macs), params
    except Exception:  # the op counter cannot follow every model (e.g. some transformer blocks)
        return None, params
