"""Where and how torch stages compute: device, mixed precision and memory format. One place
decides, and every torch stage (train, distill, their teachers and projections) asks it, so the
parts of one step never sit on different devices.

Cache keys: the device and the memory format are not part of a step's key: they change float
rounding, not what the step computes, and the stored model has one format whichever device
trained it (moved to the CPU, contiguous, before it is saved). Mixed precision is part of the
key: bf16 or fp16 arithmetic changes the trained weights beyond rounding noise.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch
    from torch import nn

DEVICE_PATTERN = r"auto|cpu|cuda|cuda:\d+"
Amp = Literal["bf16", "fp16", "off"]
Switch = Literal["auto", "on", "off"]


def device_problem(name: str) -> str | None:
    """Why `name` cannot be used on this host, or None. Imports torch only for CUDA names."""
    if not re.fullmatch(DEVICE_PATTERN, name):
        return "no such device; valid: auto, cpu, cuda, cuda:N (N: a device index)"
    if not name.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return "this host has no CUDA device (torch sees none); use auto (CUDA when present) or cpu"
    index = int(name.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        return f"this host has {torch.cuda.device_count()} CUDA device(s), numbered from 0"
    return None


def amp_problem(amp: str, device: str) -> str | None:
    """fp16 needs CUDA (the CPU has no fast fp16 path); bf16 runs on both."""
    if amp == "fp16" and resolve_device(device) == "cpu":
        return "amp fp16 needs a CUDA device; use bf16 or off"
    return None


def resolve_device(name: str) -> str:
    """'auto' is CUDA when torch sees a device, else the CPU."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def has_convolutions(model: nn.Module) -> bool:
    from torch import nn

    return any(isinstance(module, nn.Conv2d) for module in model.modules())


@dataclass(frozen=True)
class TorchSetup:
    """A resolved choice: `device` is a torch device string, never 'auto'."""

    device: str
    amp: Amp = "off"
    channels_last: bool = False

    @classmethod
    def choose(cls, device: str, amp: Amp, channels_last: Switch, model: nn.Module) -> TorchSetup:
        """`channels_last: auto` is on for models with 2-D convolutions: oneDNN and cuDNN both run
        NHWC convolutions faster (3.5× for MobileNetV2 training on a 2-core Xeon, see benchmarks)."""
        resolved = resolve_device(device)
        if resolved.startswith("cuda"):
            import torch

            torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels once
        layout = channels_last == "on" or (channels_last == "auto" and has_convolutions(model))
        return cls(resolved, amp, layout)

    @property
    def device_type(self) -> str:
        return self.device.partition(":")[0]

    @property
    def pin_memory(self) -> bool:
        """Page-locked host batches copy to a GPU asynchronously; on the CPU they only cost."""
        return self.device_type == "cuda"

    def place(self, module: nn.Module) -> nn.Module:
        import torch

        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        return module.to(self.device, memory_format=layout)

    def inputs(self, value: Any) -> Any:
        """A batch (a tensor or a dict of them) on the device, images in the module's layout."""
        import torch

        if isinstance(value, dict):
            return {name: self.inputs(tensor) for name, tensor in value.items()}
        if isinstance(value, torch.Tensor):
            value = value.to(self.device, non_blocking=self.pin_memory)
            if self.channels_last and value.dim() == 4 and value.is_floating_point():
                value = value.contiguous(memory_format=torch.channels_last)
        return value

    def autocast(self) -> AbstractContextManager:
        import torch

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)
        return torch.autocast(self.device_type, dtype=dtype, enabled=dtype is not None)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Scales fp16 losses so small gradients do not underflow; a pass-through otherwise."""
        import torch

        return torch.amp.GradScaler(self.device_type, enabled=self.amp == "fp16")

    def record(self) -> dict[str, Any]:
        """What the manifest says about how the step computed."""
        return {"device": self.device, "amp": self.amp, "channels_last": self.channels_last}


def to_cpu(module: nn.Module) -> nn.Module:
    """The storage form: on the CPU, contiguous, whatever device and layout trained it."""
    import torch

    return module.to("cpu", memory_format=torch.contiguous_format)
