"""The interface every model source implements."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from optimize.artifacts import ArtifactKind, write_artifact_meta
from optimize.code_fingerprint import code_fingerprint
from optimize.errors import RecipeError
from optimize.file_reads import ReadsMemo
from optimize.hashing import hash_file, hash_value
from optimize.recipe.model_spec import InputSpec, ModelSpec, unknown_output
from optimize.versions import library_versions

if TYPE_CHECKING:
    import torch
    from torch import nn

    from optimize.model_io import ModelIO
    from optimize.models.weights import WeightsReport


class ModelSource:
    """Builds the starting model of a recipe and says what inputs it takes."""

    name: ClassVar[str]
    artifact_kind: ClassVar[ArtifactKind] = ArtifactKind.TORCH
    needs_input_spec: ClassVar[bool] = True
    # True when building runs user code that may read any file: the files it read last time are
    # remembered and their content is part of the fingerprint.
    reads_unknown_files: ClassVar[bool] = False
    libraries: ClassVar[tuple[str, ...]] = ("torch",)  # their versions are in the fingerprint
    syntax: ClassVar[str] = "<reference>"  # what follows '<kind>:' in `model.source`

    def __init__(self, spec: ModelSpec, base_dir: Path):
        self.spec = spec
        self.base_dir = base_dir
        self.weights_report: WeightsReport | None = None  # how model.weights loaded, once built

    @classmethod
    def check(cls, spec: ModelSpec, base_dir: Path | None) -> str | None:
        """A problem with the spec found without building anything, or None."""
        if cls.needs_input_spec and spec.declared_inputs() is None:
            return (
                f"model.input is required for '{cls.name}' sources, e.g. {{name: images, shape: [1, 3, 32, 32]}} "
                "(or model.inputs: a list of them for a model with several inputs)"
            )
        return None

    def inputs(self) -> list[InputSpec]:
        declared = self.spec.declared_inputs()
        assert declared is not None
        return declared

    def output_names(self) -> list[str]:
        return self.spec.declared_outputs()

    def eval_output(self) -> str:
        """The output accuracy and agreement are scored on."""
        outputs = self.output_names()
        if self.spec.eval_output is not None and self.spec.eval_output not in outputs:
            raise RecipeError(f"model.eval_output: {unknown_output(self.spec.eval_output, outputs)}")
        return self.spec.eval_output or outputs[0]

    def build(self, pretrained: bool = True) -> nn.Module:
        """A fresh module; with pretrained=False only the structure matters (a load skeleton)."""
        raise NotImplementedError

    def source_fingerprint(self) -> Any:
        """What besides the spec decides the built model (a file's content, a library version)."""
        return None

    @functools.cached_property
    def _source_fingerprint(self) -> Any:
        """Computed once per source object: it may hash large weight files."""
        return self.source_fingerprint()

    def fingerprint(self, reads: ReadsMemo | None = None) -> dict[str, Any]:
        """Everything the starting model depends on: the spec, the weights file, what the source
        reads, and the code that builds it (this module's and the source's)."""
        record = {
            "spec": self.spec.model_dump(mode="json"),
            "weights": hash_file(self.spec.weights.path) if self.spec.weights else None,
            "source": self._source_fingerprint,
            "libraries": library_versions(self.libraries),
            "code": code_fingerprint(type(self).__module__),
        }
        if self.reads_unknown_files:
            record["files_read"] = (reads or ReadsMemo()).fingerprint(
                self._reads_key(), "files read building the model", lambda: self.build(pretrained=True)
            )
        return record

    def _reads_key(self) -> str:
        return hash_value(
            {
                "kind": "files-read",
                "spec": self.spec.model_dump(mode="json"),
                "source": self.source_fingerprint(),
            }
        )

    @functools.cached_property
    def io(self) -> ModelIO:
        """How stages call this model and read its outputs."""
        from optimize.model_io import ModelIO

        return ModelIO.from_interface(self.interface())

    def interface(self) -> dict[str, Any]:
        """What the model takes and returns as the pipeline sees it: input names, shapes and
        types, output names and the task. Exports, shape checks and feeds depend on it."""
        return {
            "inputs": [spec.model_dump(mode="json") for spec in self.inputs()],
            "outputs": self.output_names(),
            "eval_output": self.eval_output(),
            "task": self.spec.task,
        }

    def materialize(self, workdir: Path, reads: ReadsMemo | None = None) -> None:
        """Write the starting model into workdir as an artifact (model.pt and its description)."""
        from contextlib import nullcontext

        from optimize.torch_io import save_module

        recording = (
            (reads or ReadsMemo()).recording(self._reads_key(), "files read building the model")
            if self.reads_unknown_files
            else nullcontext()
        )
        with recording:
            model = self.pretrained()
        save_module(model, workdir / "model.pt")
        report = self.weights_report.record() if self.weights_report else {}
        write_artifact_meta(
            workdir, ArtifactKind.TORCH, "model.pt", **({"weights": report} if report else {})
        )

    def tokenizer(self):
        raise TypeError(f"'{self.name}' models have no tokenizer; text data needs a huggingface: model")

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        import torch

        tensors = []
        for spec in self.inputs():
            shape = [batch, *spec.shape[1:]]
            dtype = getattr(torch, spec.dtype)
            tensors.append(
                torch.randn(shape).to(dtype) if dtype.is_floating_point else torch.ones(shape, dtype=dtype)
            )
        return tuple(tensors)

    def pretrained(self, seed: int = 0) -> nn.Module:
        """The starting model: built (random layers seeded, so runs repeat), with
        `model.weights` loaded on top when given."""
        import torch

        from optimize.model_io import forward_arity_problem

        torch.manual_seed(seed)
        model = self.build(pretrained=True)
        problem = forward_arity_problem(model, [spec.name for spec in self.inputs()])
        if problem:
            raise RecipeError(problem)
        if self.spec.weights is not None:
            from optimize.models.weights import load_weights

            try:
                self.weights_report = load_weights(
                    model, load_state_dict_file(self.spec.weights.path), self.spec.weights.strict
                )
            except ValueError as exc:
                raise RecipeError(f"model.weights: {self.spec.weights.path}: {exc}") from None
        return model.eval()


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from .safetensors or a torch file, never unpickling code."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return state


def open_source(spec: ModelSpec, base_dir: Path) -> ModelSource:
    """The ModelSource object for a recipe's `model:` section."""
    from optimize.registries import MODEL_SOURCES

    return MODEL_SOURCES.get(spec.kind)(spec, base_dir)
