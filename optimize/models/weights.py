"""Pretrained starts: a state dict loaded onto a freshly built model, with the classifier head
replaced when the file's was made for another number of classes, and (with `strict: false`) the
keys that did not fit reported instead of refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

SHOWN_KEYS = 5  # keys named in a message; the rest are counted


@dataclass
class WeightsReport:
    missing: list[str] = field(default_factory=list)  # in the model, not in the file: left as built
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model: ignored
    replaced_head: str | None = None  # the classifier layer left as built, for num_classes
    head_outputs: tuple[int, int] | None = None  # (in the file, in the model)

    def lines(self) -> list[str]:
        """What a user should know about the load, one line each."""
        lines = []
        if self.replaced_head is not None and self.head_outputs is not None:
            before, after = self.head_outputs
            lines.append(
                f"model.weights: replaced the classifier head '{self.replaced_head}' ({before} → {after} "
                "outputs): freshly initialised, the file's head is not loaded"
            )
        for what, keys in (
            ("missing from the file (left as built)", self.missing),
            ("not in the model (ignored)", self.unexpected),
        ):
            if keys:
                lines.append(f"model.weights: {len(keys)} keys {what}: {shown(keys)}")
        return lines

    def record(self) -> dict:
        return {
            "missing_keys": self.missing,
            "unexpected_keys": self.unexpected,
            "replaced_head": self.replaced_head,
        }


def shown(keys: list[str]) -> str:
    more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
    return ", ".join(keys[:SHOWN_KEYS]) + more


def classifier_head(model: nn.Module) -> str | None:
    """The name of the model's output layer: its last Linear or Conv2d (torchvision's `fc`,
    `classifier.1`, `heads.head`, ...), or None."""
    from torch import nn

    names = [name for name, module in model.named_modules() if isinstance(module, (nn.Linear, nn.Conv2d))]
    return names[-1] if names else None


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], strict: bool) -> WeightsReport:
    """Load `state` into `model`. Shape mismatches outside the classifier head, and (when strict)
    any missing or unexpected key, are errors (ValueError) naming the keys."""
    own = model.state_dict()
    mismatched = [key for key, tensor in state.items() if key in own and tensor.shape != own[key].shape]
    head = classifier_head(model)
    head_keys = {f"{head}.weight", f"{head}.bias"} if head else set()
    report = WeightsReport()
    if mismatched and set(mismatched) <= head_keys:
        report.replaced_head = head
        report.head_outputs = (state[f"{head}.weight"].shape[0], own[f"{head}.weight"].shape[0])
        state = {key: tensor for key, tensor in state.items() if key not in head_keys}
    elif mismatched:
        key = next(k for k in mismatched if k not in head_keys)
        raise ValueError(
            f"{key} has shape {list(state[key].shape)} in the file but {list(own[key].shape)} in the model "
            f"({len(mismatched)} tensors differ: {shown(mismatched)}); are they for this architecture and model.args?"
        )
    result = model.load_state_dict(state, strict=False)
    report.missing = [
        key for key in result.missing_keys if key not in head_keys or report.replaced_head is None
    ]
    report.unexpected = list(result.unexpected_keys)
    if strict and (report.missing or report.unexpected):
        problems = [
            f"{len(keys)} keys {what}: {shown(keys)}"
            for what, keys in (
                ("missing from the file", report.missing),
                ("not in the model", report.unexpected),
            )
            if keys
        ]
        raise ValueError(f"{'; '.join(problems)}; set model.weights.strict: false to load the keys that fit")
    return report
