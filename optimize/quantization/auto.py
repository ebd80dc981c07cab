"""`precision: auto`: quantized candidates for every target to choose from.

The step writes several quantized files: INT8 (the step's model), INT8 with the layers ONNX
Runtime would run in float kept in float (they then cost no quantize/dequantize conversions), and
for models with MatMul weights (transformers) INT8 with activations quantized per run (backend
dynamic) and INT4 weight-only. Each target builds every
candidate next to its FP32 baseline, times them all in one session, and ships the fastest one
whose accuracy drop against FP32 is within `max_accuracy_drop`, FP32 itself if no quantized one is
(optimize.precision_choice decides; the target's table says which and why).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from optimize.errors import StageError
from optimize.quantization.base import CalibratedOptions, Quantizer
from optimize.registries import QUANTIZERS

if TYPE_CHECKING:
    import onnx

    from optimize.stages.base import StageContext, StageOutput

CANDIDATE_FOLDER = "candidates"  # in the step's artifact: candidates/<name>/model.onnx
# Candidates another registered method makes: the options that choose it.
OTHER_METHODS: dict[str, dict[str, str]] = {
    "int8-dynamic": {"backend": "dynamic"},
    "int4": {"precision": "int4"},
}
FLOAT_MAC_OPS = ("Conv", "FusedConv", "ConvTranspose", "MatMul", "FusedMatMul", "Gemm", "FusedGemm")


class AutoPrecisionConfig(CalibratedOptions):
    """Quantized candidates (INT8, INT8 with ONNX Runtime's float layers kept in float, INT4 for
    MatMul weights), each target shipping the fastest within an accuracy budget, or FP32
    (`precision: auto`)."""

    precision: Literal["auto"] = Field(
        "auto", description="auto: every target times the candidates and FP32 and ships the fastest in budget"
    )
    candidates: list[Literal["int8-partial", "int8-dynamic", "int4"]] | None = Field(
        None,
        description="what to try besides FP32 and INT8 (the step's own model); default: int8-partial, and "
        "int8-dynamic (activations quantized per run) and int4 where the model has MatMul/Gemm weights",
    )
    max_accuracy_drop: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="a candidate may lose at most this much accuracy against FP32 on the target (absolute; "
        "1 − agreement without labels)",
    )


@QUANTIZERS.register("auto")
class AutoPrecisionQuantizer(Quantizer):
    Config = AutoPrecisionConfig
    libraries = ("nncf", "onnx", "onnxruntime")

    def roles_read(self, params: AutoPrecisionConfig) -> tuple[str, ...]:
        return ("calibration",)

    def precision(self, params: AutoPrecisionConfig) -> str:
        return "int8"  # the step's own model; targets may ship another candidate

    def cache_extra(self, params: AutoPrecisionConfig, recipe) -> dict[str, Any]:
        """What each candidate's method reads from the recipe (the targets' scheme and layouts)."""
        from optimize.quantization.base import quantizer_for

        extra = {"int8": self._int8().cache_extra(self._int8_params(params), recipe)}
        for name in OTHER_METHODS:
            options = self._other_params(name, params)
            extra[name] = quantizer_for(options).cache_extra(options, recipe)
        return extra

    @staticmethod
    def _other_params(name: str, params: AutoPrecisionConfig):
        from optimize.quantization.base import validate_params

        return validate_params({**OTHER_METHODS[name], "ignored_nodes": list(params.ignored_nodes)})

    @staticmethod
    def _int8():
        from optimize.quantization.nncf_int8 import NncfInt8Quantizer

        return NncfInt8Quantizer()

    @staticmethod
    def _int8_params(params: AutoPrecisionConfig, ignored: list[str] = ()):
        from optimize.quantization.base import validate_params

        return validate_params(
            precision="int8",
            subset_size=params.subset_size,
            ignored_nodes=[*params.ignored_nodes, *ignored],
            ignored_types=list(params.ignored_types),
        )

    def quantize(
        self, model: onnx.ModelProto, params: AutoPrecisionConfig, context: StageContext
    ) -> tuple[onnx.ModelProto, StageOutput]:
        from optimize.quantization.graph import MATMUL_OPS, weighted_layers
        from optimize.stages.base import StageOutput

        wanted = (
            params.candidates
            if params.candidates is not None
            else ["int8-partial", *(["int8-dynamic", "int4"] if weighted_layers(model, MATMUL_OPS) else [])]
        )
        int8, int8_output = self._int8().quantize(model, self._int8_params(params), context)
        # the step's own model is the INT8 candidate; the others get folders of their own
        candidates: dict[str, dict[str, Any]] = {"int8": {"folder": "", "precision": "int8"}}
        skipped: dict[str, str] = {}
        if "int8-partial" in wanted:
            blockers = float_layers_in_onnxruntime(int8, model)
            if not blockers:
                skipped["int8-partial"] = (
                    "ONNX Runtime runs every quantized layer of the INT8 file in integer kernels"
                )
            else:
                partial, output = self._int8().quantize(model, self._int8_params(params, blockers), context)
                info = {**output.info, "kept_in_float": blockers}
                candidates["int8-partial"] = self._write(context, "int8-partial", partial, info)
        for name in OTHER_METHODS:
            if name in wanted:
                try:
                    candidates[name] = self._candidate(model, self._other_params(name, params), name, context)
                except StageError as exc:
                    if params.candidates is not None:  # asked for by name: its failure is the step's
                        raise
                    skipped[name] = str(exc).removeprefix(f"stage '{context.step_id}': ")
        info = {
            "precision": "auto",
            "max_accuracy_drop": params.max_accuracy_drop,
            "candidates": candidates,
            "not_candidates": skipped,
            "int8": int8_output.info,
        }
        return int8, StageOutput(metrics=int8_output.metrics, info=info)

    def _candidate(self, model: onnx.ModelProto, params, name: str, context: StageContext):
        """Another registered method's output as a candidate (its handler, its checks)."""
        from optimize.quantization.base import quantizer_for

        problems = quantizer_for(params).check(params, context.recipe, ())
        if problems:
            raise StageError(context.step_id, f"{name}: {problems[0][1]}")
        output, result = quantizer_for(params).quantize(model, params, context)
        return self._write(context, name, output, result.info)

    @staticmethod
    def _write(
        context: StageContext, name: str, model: onnx.ModelProto, info: dict[str, Any]
    ) -> dict[str, Any]:
        """candidates/<name>/ as an artifact folder of its own; returns its record."""
        from optimize.artifacts import ArtifactKind, write_artifact_meta
        from optimize.hashing import hash_tree
        from optimize.onnx_tools import save_model, stored_precision

        folder = Path(context.workdir) / CANDIDATE_FOLDER / name
        folder.mkdir(parents=True)
        save_model(model, folder / "model.onnx")
        precision = stored_precision(model)
        write_artifact_meta(
            folder,
            ArtifactKind.ONNX,
            "model.onnx",
            precision=precision,
            inputs=context.input.meta.get("inputs"),
            outputs=context.input.meta.get("outputs"),
            quantization=info,
        )
        return {"folder": f"{CANDIDATE_FOLDER}/{name}", "hash": hash_tree(folder), "precision": precision}


def float_layers_in_onnxruntime(quantized: onnx.ModelProto, fp32: onnx.ModelProto) -> list[str]:
    """Layers of the FP32 graph that ONNX Runtime's optimised graph of the quantized file (after
    the build's rewrites) still runs in float between quantize/dequantize pairs."""
    import copy
    import tempfile

    import onnx

    from optimize.onnx_tools import session
    from optimize.runtimes.onnxruntime_int8 import prepare

    rewritten = copy.deepcopy(quantized)
    prepare(rewritten, unsigned_after_activations=True)
    with tempfile.TemporaryDirectory(prefix="auto-precision-") as scratch:
        source, optimized = Path(scratch) / "model.onnx", Path(scratch) / "optimized.onnx"
        onnx.save(rewritten, source)
        session(source, optimization="extended", save_optimized_to=optimized)
        graph = onnx.load(str(optimized), load_external_data=False).graph
    producers = {output: node for node in graph.node for output in node.output}
    names = {node.name for node in fp32.graph.node if node.op_type in FLOAT_MAC_OPS}
    # a float layer fed by a dequantized activation: the conversions are cost without gain
    return [
        node.name
        for node in graph.node
        if node.op_type in FLOAT_MAC_OPS
        and node.name in names
        and getattr(producers.get(node.input[0]), "op_type", None) == "DequantizeLinear"
    ]
