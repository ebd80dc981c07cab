"""Accuracy-controlled INT8 with NNCF: quantize, then return the most sensitive layers to FP32
until the drop on data.eval is within the budget. Chosen by setting max_accuracy_drop on the
NNCF method; the result is checked against the budget again here, on the same eval samples."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from pydantic import Field

from optimize.errors import StageError
from optimize.quantization.base import Problem
from optimize.quantization.nncf_int8 import (
    NncfInt8Config,
    NncfInt8Quantizer,
    common_options,
    explain_full_bias_correction,
    signed_activations,
)
from optimize.registries import QUANTIZERS

if TYPE_CHECKING:
    import onnx

    from optimize.quantization.data import Feeds, Validation
    from optimize.recipe.schema import Recipe
    from optimize.stages.base import StageContext


class NncfInt8AccuracyControlConfig(NncfInt8Config):
    """INT8 with NNCF and an accuracy budget (`precision: int8`, `backend: nncf`, with
    `max_accuracy_drop` set): the most sensitive layers go back to FP32 until the drop on data.eval
    is within it, else the stage fails."""

    max_accuracy_drop: float = Field(
        ge=0,
        lt=1,
        description="absolute drop allowed on data.eval (top-1, or cosine to FP32 for embeddings); "
        "setting it chooses this method",
    )
    max_fp32_layers: int | None = Field(
        None, ge=1, description="most layers that may go back to FP32 (default: no limit)"
    )

    selected_when_set = ("max_accuracy_drop",)


@QUANTIZERS.register("nncf-int8-accuracy-control")
class NncfInt8AccuracyControlQuantizer(NncfInt8Quantizer):
    Config = NncfInt8AccuracyControlConfig

    def roles_read(self, params: NncfInt8AccuracyControlConfig) -> tuple[str, ...]:
        return ("calibration", "eval")

    def check(self, params: NncfInt8AccuracyControlConfig, recipe: Recipe, where: tuple) -> list[Problem]:
        problems = super().check(params, recipe, where)
        eval_data = recipe.data.eval
        if recipe.model.task == "classification" and eval_data is not None and not eval_data.labeled:
            problems.append(
                ((*where, "max_accuracy_drop"), "needs labelled data.eval to measure top-1 accuracy")
            )
        return problems

    def quantize_int8(
        self,
        model: onnx.ModelProto,
        calibration: list[Feeds],
        params: NncfInt8AccuracyControlConfig,
        scheme: str,
        context: StageContext,
    ) -> tuple[onnx.ModelProto, dict[str, float]]:
        """NNCF's accuracy control, then our own check of the budget on the same eval samples:
        a model that misses it, or meets it only with nothing quantized, fails the stage."""
        from optimize.quantization.data import Validation
        from optimize.quantization.graph import float_layer_names, quantized_layer_names

        task = context.recipe.model.task
        validation = Validation.build(context.data, task, model)
        output = quantize_with_accuracy_control(model, calibration, validation, params, scheme)
        reference, achieved = validation.metric(model), validation.metric(output)
        drop = reference - achieved
        name = "top-1 accuracy" if task == "classification" else "cosine to FP32"
        fp32 = float_layer_names(output)
        if drop > params.max_accuracy_drop + 1e-9:
            limit = f" (max_fp32_layers: {params.max_fp32_layers})" if params.max_fp32_layers else ""
            raise StageError(
                context.step_id,
                f"max_accuracy_drop {params.max_accuracy_drop} not met: {name} {achieved:.4f} against FP32 "
                f"{reference:.4f} (drop {drop:.4f}) with {len(fp32)} layers back in FP32{limit}",
            )
        if not quantized_layer_names(output):
            raise StageError(
                context.step_id,
                f"max_accuracy_drop {params.max_accuracy_drop} is met only with every layer back in FP32, so "
                "nothing would be quantized; raise the budget or improve calibration (data, subset_size)",
            )
        return output, {"budget_fp32_metric": reference, "budget_int8_metric": achieved, "budget_drop": drop}


def quantize_with_accuracy_control(
    model: onnx.ModelProto,
    calibration: list[Feeds],
    validation: Validation,
    params: NncfInt8AccuracyControlConfig,
    scheme: str,
) -> onnx.ModelProto:
    """Quantize, then return the most sensitive layers to FP32 until the drop on the eval set
    is at most params.max_accuracy_drop (or params.max_fp32_layers is reached)."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    restorer = AdvancedAccuracyRestorerParameters(
        max_num_iterations=params.max_fp32_layers if params.max_fp32_layers is not None else sys.maxsize
    )
    options = common_options(params, scheme, calibration)
    # the same quantization options under the name this function takes them by
    options["advanced_quantization_parameters"] = options.pop("advanced_parameters")
    with explain_full_bias_correction(params):
        quantized = nncf.quantize_with_accuracy_control(
            model,
            nncf.Dataset(calibration),
            validation.nncf_dataset(),
            validation.nncf_validation_fn,
            max_drop=params.max_accuracy_drop,
            drop_type=nncf.DropType.ABSOLUTE,
            advanced_accuracy_restorer_parameters=restorer,
            **options,
        )
    return signed_activations(quantized) if scheme == "symmetric" else quantized
