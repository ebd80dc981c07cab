"""`onnx:<path>`: start from an ONNX file, skipping the torch stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optimize.artifacts import ArtifactKind, write_artifact_meta
from optimize.hashing import hash_file
from optimize.models.base import ModelSource
from optimize.recipe.base import resolve_user_path
from optimize.recipe.model_spec import InputSpec, ModelSpec
from optimize.registries import MODEL_SOURCES

_ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32"}


def graph_inputs(path: Path) -> list[InputSpec]:
    """Input specs read from an ONNX graph (symbolic axes become dynamic, example size 1)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = [
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim
        ]
        specs.append(
            InputSpec(
                name=value.name,
                shape=[d or 1 for d in dims],
                dtype=_ONNX_DTYPES.get(tensor.elem_type, "float32"),
                dynamic_batch=bool(dims) and dims[0] is None,
                dynamic_axes=[i for i, d in enumerate(dims) if d is None and i > 0],
            )
        )
    return specs


@MODEL_SOURCES.register("onnx")
class OnnxSource(ModelSource):
    """An exported ONNX file: the torch stages are skipped; inputs are read from the graph."""

    artifact_kind = ArtifactKind.ONNX
    needs_input_spec = False
    libraries = ("onnx",)
    syntax = "<path>"

    @classmethod
    def check(cls, spec: ModelSpec, base_dir: Path | None) -> str | None:
        path = resolve_user_path(spec.reference, base_dir)
        if not path.is_file():
            return f"no such ONNX file: {path}"
        if spec.weights is not None:
            return "model.weights does not apply to onnx: sources (the weights are in the file)"
        import onnx

        try:
            onnx.checker.check_model(str(path))
        except Exception as exc:  # the checker raises several exception types
            return f"{path} is not a valid ONNX model: {str(exc).strip().splitlines()[0][:300]}"
        return None

    @property
    def path(self) -> Path:
        return resolve_user_path(self.spec.reference, self.base_dir)

    def inputs(self) -> list[InputSpec]:
        declared = self.spec.declared_inputs()
        if declared is not None:
            return declared
        return graph_inputs(self.path)

    def output_names(self) -> list[str]:
        import onnx

        return [o.name for o in onnx.load(str(self.path), load_external_data=False).graph.output]

    def source_fingerprint(self) -> Any:
        return hash_file(self.path)

    def materialize(self, workdir: Path, reads=None) -> None:
        import shutil

        import onnx

        from optimize.onnx_tools import stored_precision

        shutil.copyfile(self.path, workdir / "model.onnx")
        write_artifact_meta(
            workdir,
            ArtifactKind.ONNX,
            "model.onnx",
            precision=stored_precision(onnx.load(str(self.path), load_external_data=False)),
            inputs=[spec.model_dump(mode="json") for spec in self.inputs()],
            outputs=self.output_names(),
            fp32_reference=True,
        )
