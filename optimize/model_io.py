"""How the pipeline calls a model and reads what it returns, whatever its number of inputs and
outputs: batches become positional tensors in the model's input order (a dict batch by name,
never by the data's own key order), and of the outputs one is scored (accuracy, agreement) while
the others are compared with FP32 alongside it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn


@dataclass(frozen=True)
class ModelIO:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    eval_output: str

    @classmethod
    def from_interface(cls, interface: Mapping[str, Any]) -> ModelIO:
        """From a model source's `interface()` record (input specs, output names, scored output)."""
        outputs = tuple(interface["outputs"])
        return cls(
            inputs=tuple(spec["name"] for spec in interface["inputs"]),
            outputs=outputs,
            eval_output=interface.get("eval_output") or outputs[0],
        )

    @property
    def eval_index(self) -> int:
        return self.outputs.index(self.eval_output)

    def positional(self, batch) -> list:
        """A batch (one tensor, a tuple of them, or a dict by input name) in forward() order."""
        if isinstance(batch, Mapping):
            return [batch[name] for name in self.inputs]
        if isinstance(batch, (tuple, list)):
            return list(batch)
        return [batch]

    def all_outputs(self, returned) -> list:
        """What a model or runtime returned, as one entry per declared output."""
        produced = list(returned) if isinstance(returned, (tuple, list)) else [returned]
        if len(produced) != len(self.outputs):
            raise ValueError(
                f"the model returns {len(produced)} outputs but {len(self.outputs)} are declared "
                f"({', '.join(self.outputs)}); list every output under model.outputs"
            )
        return produced

    def scored(self, returned):
        """The output accuracy and agreement are computed on."""
        return self.all_outputs(returned)[self.eval_index]

    def call(self, model: nn.Module, batch) -> torch.Tensor:
        """The model's scored output for a batch."""
        return self.scored(model(*self.positional(batch)))

    def feeds(self, batch) -> dict[str, np.ndarray]:
        """A torch batch as runtime feeds: {input name: NumPy array}."""
        return {
            name: tensor.numpy() for name, tensor in zip(self.inputs, self.positional(batch), strict=True)
        }

    def named(self, produced: Sequence) -> dict[str, Any]:
        return dict(zip(self.outputs, self.all_outputs(produced), strict=True))


def forward_arity_problem(model: nn.Module, declared: Sequence[str]) -> str | None:
    """Why the declared inputs cannot be forward()'s positional arguments, or None: found when the
    model is built, not as a TypeError from tracing or export minutes later."""
    import inspect

    try:
        parameters = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):  # a compiled or C++ forward: nothing to read
        return None
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return None
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p.name for p in positional if p.default is p.empty]
    if len(required) <= len(declared) <= len(positional):
        return None
    takes = ", ".join(p.name for p in positional)
    return (
        f"model.inputs: {type(model).__name__}.forward({takes}) takes {len(required)}"
        f"{f' to {len(positional)}' if len(positional) > len(required) else ''} inputs but the recipe "
        f"declares {len(declared)} ({', '.join(declared)}); declare each under model.inputs, in forward() order"
    )
