"""`python:<module>:<factory>`: the user's own model factory, called with `model.args`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optimize.code_fingerprint import user_code_fingerprint
from optimize.errors import RecipeError
from optimize.models.base import ModelSource
from optimize.pyimport import ImportProblem, load_callable, reference_resolvable, split_reference
from optimize.recipe.model_spec import ModelSpec
from optimize.registries import MODEL_SOURCES


@MODEL_SOURCES.register("python")
class PythonSource(ModelSource):
    """The user's own factory function, called with `model.args`; its module tree is fingerprinted."""

    reads_unknown_files = True  # a factory may load weights or configs from anywhere
    syntax = "<module>:<factory>"

    @classmethod
    def check(cls, spec: ModelSpec, base_dir: Path | None) -> str | None:
        problem = reference_resolvable(spec.reference, [base_dir] if base_dir else [])
        return problem or super().check(spec, base_dir)

    def build(self, pretrained: bool = True):
        from torch import nn

        try:
            factory = load_callable(self.spec.reference, [self.base_dir])
        except ImportProblem as exc:  # a name in the recipe, found wrong once the module is imported
            raise RecipeError(f"model.source: {exc}") from exc
        model = factory(**self.spec.args)
        if not isinstance(model, nn.Module):
            raise TypeError(f"{self.spec.reference} returned {type(model).__name__}, not a torch.nn.Module")
        return model

    def source_fingerprint(self) -> Any:
        """The factory's module and the modules it imports (helpers included)."""
        return user_code_fingerprint(split_reference(self.spec.reference)[0], [self.base_dir])
