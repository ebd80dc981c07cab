"""What the INT8 methods share: their options (activation scheme, calibration subset), the scheme
the recipe's targets need, and the handler steps around a backend's own quantization
(calibration samples in, QDQ graph out, layers counted, details for the manifest).

Which activations a target takes is a capability its runtime declares
(`Runtime.needs_symmetric_int8_activations`), never a runtime's name compared here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from optimize.errors import StageError
from optimize.quantization.base import CalibratedOptions, Problem, Quantizer
from optimize.registries import RUNTIMES

if TYPE_CHECKING:
    import onnx

    from optimize.quantization.data import Feeds
    from optimize.recipe.schema import Recipe
    from optimize.stages.base import StageContext, StageOutput


class Int8Options(CalibratedOptions):
    """Options of every INT8 method: QDQ weights and activations, calibrated."""

    precision: Literal["int8"] = Field(
        "int8", description="int8: weights and activations in INT8, as a QDQ graph (the default)"
    )
    backend: str = Field(description="chooses the INT8 method")  # each method narrows it to one value
    activations: Literal["auto", "symmetric", "asymmetric"] = Field(
        "auto",
        description="symmetric = signed int8, zero point 0 (all TensorRT takes); asymmetric = with zero "
        "points (NNCF: preset mixed); auto: symmetric when a target's runtime takes only that (TensorRT) "
        "or there are no targets, else the backend's CPU default (NNCF: its preset for the model type)",
    )


def target_runtimes(recipe: Recipe) -> dict[str, str]:
    """Runtime of each target (by name; the TensorRT runtime need not be installed here)."""
    from optimize.targets import device_classes_for

    classes = device_classes_for(recipe.device_classes)
    return {name: classes[name].runtime for name in recipe.targets if name in classes}


def symmetric_only_targets(recipe: Recipe) -> dict[str, str]:
    """Targets whose runtime builds INT8 activations only as signed int8 with a zero point of 0,
    with that runtime's name."""
    return {
        name: runtime
        for name, runtime in target_runtimes(recipe).items()
        if RUNTIMES.get(runtime).needs_symmetric_int8_activations
    }


def _runs(targets: dict[str, str]) -> str:
    """'orin runs tensorrt' / 'a, b run tensorrt'."""
    verb = "runs" if len(targets) == 1 else "run"
    return f"{', '.join(targets)} {verb} {', '.join(sorted(set(targets.values())))}"


def activation_scheme(params: Int8Options, recipe: Recipe) -> tuple[str, str]:
    """(scheme, why) for INT8 activations from the runtimes of the recipe's targets: 'symmetric'
    (signed, zero point 0), 'asymmetric', or 'cpu' (the backend's own default for CPUs)."""
    if params.activations != "auto":
        return params.activations, "set in the recipe"
    strict = symmetric_only_targets(recipe)
    if strict:
        return "symmetric", f"{_runs(strict)}, which takes only signed symmetric INT8"
    runtimes = target_runtimes(recipe)
    if not runtimes:
        return "symmetric", "no targets: signed symmetric INT8 builds on every runtime"
    return "cpu", f"every target runs on a CPU runtime ({', '.join(sorted(set(runtimes.values())))})"


class Int8Quantizer(Quantizer):
    """The steps every INT8 method shares; a backend implements quantize_int8()."""

    def roles_read(self, params: Int8Options) -> tuple[str, ...]:
        return ("calibration",)

    def check(self, params: Int8Options, recipe: Recipe, where: tuple) -> list[Problem]:
        strict = symmetric_only_targets(recipe) if params.activations == "asymmetric" else {}
        if not strict:
            return []
        return [
            (
                (*where, "activations"),
                f"{_runs(strict)}, which takes only symmetric INT8 activations; "
                "use activations: symmetric (or auto)",
            )
        ]

    def cache_extra(self, params: Int8Options, recipe: Recipe) -> dict[str, Any]:
        """The activation scheme depends on the recipe's targets, which are not step params."""
        return {"activation_scheme": activation_scheme(params, recipe)[0]}

    def weights(self, params: Int8Options) -> str:
        """How weight scales are shared: 'per-channel' or 'per-tensor'."""
        return "per-channel"

    def quantize_int8(
        self,
        model: onnx.ModelProto,
        calibration: list[Feeds],
        params: Int8Options,
        scheme: str,
        context: StageContext,
    ) -> tuple[onnx.ModelProto, dict[str, float]]:
        """The QDQ model, and metrics of the backend's own (e.g. an accuracy budget's)."""
        raise NotImplementedError

    def quantize(
        self, model: onnx.ModelProto, params: Int8Options, context: StageContext
    ) -> tuple[onnx.ModelProto, StageOutput]:
        from optimize.quantization.data import sample_feeds
        from optimize.quantization.graph import activation_storage, float_layer_names, quantized_layer_names
        from optimize.stages.base import StageOutput

        scheme, why = activation_scheme(params, context.recipe)
        calibration, _ = sample_feeds(context.data, "calibration", params.subset_size)
        metrics: dict[str, float] = {"calibration_samples": float(len(calibration))}
        output, extra = self.quantize_int8(model, calibration, params, scheme, context)
        metrics.update(extra)
        quantized, fp32 = quantized_layer_names(output), float_layer_names(output)
        if not quantized:
            raise StageError(context.step_id, "no layer was quantized; check ignored_nodes / ignored_types")
        metrics.update({"int8_layers": float(len(quantized)), "fp32_layers": float(len(fp32))})
        info = {
            "precision": "int8",
            "backend": params.backend,
            "format": "QDQ",
            "activations": activation_storage(output),
            "activations_reason": why,
            "weights": f"symmetric {self.weights(params)}",
            "calibration_samples": len(calibration),
            "int8_layers": len(quantized),
            "fp32_layers": fp32,
        }
        return output, StageOutput(metrics=metrics, info=info)
