"""`torchvision:<arch>`: any architecture in torchvision's model registry."""

from __future__ import annotations

from pathlib import Path

from optimize.models.base import ModelSource
from optimize.recipe.model_spec import ModelSpec
from optimize.registries import MODEL_SOURCES
from optimize.registry import did_you_mean


def torchvision_architectures() -> list[str]:
    """torchvision's model names. Importing torchvision (and torch) costs seconds, so the list is
    kept per torchvision version in the user's cache folder; validation then imports nothing."""
    import json
    import os

    from optimize.versions import library_version

    cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "optimize"
    cache = cache_dir / f"torchvision-{library_version('torchvision')}-models.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    import torchvision

    architectures = sorted(torchvision.models.list_models())
    try:
        from optimize.store import atomic_write_text

        atomic_write_text(cache, json.dumps(architectures))
    except OSError:
        pass  # a read-only home: validation is just slower
    return architectures


@MODEL_SOURCES.register("torchvision")
class TorchvisionSource(ModelSource):
    """Any architecture in torchvision's model registry, built with `model.args` (random weights
    unless `model.weights` names a state_dict)."""

    libraries = ("torch", "torchvision")
    syntax = "<arch>"

    @classmethod
    def check(cls, spec: ModelSpec, base_dir: Path | None) -> str | None:
        if "weights" in spec.args:
            return (
                "model.args.weights would download from a hub, which is not supported; "
                "put a local state_dict in model.weights instead"
            )
        architectures = torchvision_architectures()
        if spec.reference not in architectures:
            return f"torchvision has no model '{spec.reference}'{did_you_mean(spec.reference, architectures)}"
        return super().check(spec, base_dir)

    def build(self, pretrained: bool = True):
        import torchvision

        return torchvision.models.get_model(self.spec.reference, weights=None, **self.spec.args)
