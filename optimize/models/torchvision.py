"""`torchvision:<arch>`: any architecture in torchvision's model registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optimize.models import MODEL_SOURCES
from optimize.models.base import ModelSource
from optimize.recipe.model_spec import ModelSpec
from optimize.registry import did_you_mean


@MODEL_SOURCES.register("torchvision")
class TorchvisionSource(ModelSource):
    @classmethod
    def check(cls, spec: ModelSpec, base_dir: Path | None) -> str | None:
        if "weights" in spec.args:
            return (
                "model.args.weights would download from a hub, which is not supported; "
                "put a local state_dict in model.weights instead"
            )
        import torchvision

        architectures = torchvision.models.list_models()
        if spec.reference not in architectures:
            return f"torchvision has no model '{spec.reference}'{did_you_mean(spec.reference, architectures)}"
        return super().check(spec, base_dir)

    def build(self, pretrained: bool = True):
        import torchvision

        return torchvision.models.get_model(self.spec.reference, weights=None, **self.spec.args)

    def source_fingerprint(self) -> Any:
        from optimize.versions import library_version

        return {"torchvision": library_version("torchvision")}
