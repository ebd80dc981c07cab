"""`torch-pickle:<path>`: a whole pickled module. Unpickling runs code from the file, so the
recipe must say `trust_pickle: true`; prefer a state_dict with `model.weights`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optimize.hashing import hash_file
from optimize.models.base import ModelSource
from optimize.recipe.base import resolve_user_path
from optimize.recipe.model_spec import ModelSpec
from optimize.registries import MODEL_SOURCES


@MODEL_SOURCES.register("torch-pickle")
class TorchPickleSource(ModelSource):
    """A whole pickled torch module (torch.save(model)); needs `trust_pickle: true`."""

    reads_unknown_files = True  # unpickling imports the modules that define the classes
    syntax = "<path>"

    @classmethod
    def check(cls, spec: ModelSpec, base_dir: Path | None) -> str | None:
        if not spec.trust_pickle:
            return (
                "model.source 'torch-pickle:' unpickles code from the file; set model.trust_pickle: true "
                "if you trust it, or save a state_dict and use model.weights"
            )
        if not resolve_user_path(spec.reference, base_dir).is_file():
            return f"no such file: {resolve_user_path(spec.reference, base_dir)}"
        return super().check(spec, base_dir)

    @property
    def path(self) -> Path:
        return resolve_user_path(self.spec.reference, self.base_dir)

    def build(self, pretrained: bool = True):
        import torch
        from torch import nn

        model = torch.load(self.path, map_location="cpu", weights_only=False)  # opted in: trust_pickle
        if not isinstance(model, nn.Module):
            raise TypeError(f"{self.path} holds {type(model).__name__}, not a torch.nn.Module")
        return model

    def source_fingerprint(self) -> Any:
        return hash_file(self.path)
