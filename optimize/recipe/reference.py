"""The recipe reference, generated from the schema: Markdown for docs/recipe-reference.md and
JSON Schema for editors (YAML language servers validate and complete recipes with it)."""

from __future__ import annotations

import json

from optimize.recipe.field_docs import field_rows, model_summary, params_variants


def _section(title: str, model: type, intro: str = "", level: int = 3) -> list[str]:
    lines = [f"{'#' * level} {title}", ""]
    if intro:
        lines += [intro, ""]
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for name, type_text, default, description in field_rows(model):
        cells = [f"`{name}`", type_text.replace("|", "\\|"), f"`{default}`", description.replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _doc(entry) -> str:
    return " ".join((entry.__doc__ or "").split())


def markdown() -> str:
    from optimize.recipe.gate_limits import Gates
    from optimize.recipe.model_spec import InputSpec, ModelSpec
    from optimize.recipe.schema import DataSpec, EvaluationSpec, Recipe, TrackingSpec
    from optimize.registries import DATA_SOURCES, MODEL_SOURCES, RUNTIMES, STAGES
    from optimize.targets.device_class import BatchProfile, Deployment, DeviceClassBase

    lines = [
        "# Recipe reference",
        "",
        "Generated from the schema by `optimize schema --format markdown`; do not edit by hand.",
        "Unknown keys are errors. Relative paths resolve against the recipe's folder; "
        "`package:<module>/<path>` names a file shipped inside an installed package.",
        "",
        "## Top level",
        "",
        *_section("recipe", Recipe),
        "## Model",
        "",
        *_section("model", ModelSpec),
        "### model sources",
        "",
        "| `model.source` | what it is |",
        "| --- | --- |",
        *(f"| `{name}:{source.syntax}` | {_doc(source)} |" for name, source in MODEL_SOURCES),
        "",
        *_section("model.input, each of model.inputs", InputSpec),
        "## Data",
        "",
        *_section(
            "data", DataSpec, "Each role is a data source mapping, or the path of a YAML file holding one."
        ),
    ]
    for name, spec in DATA_SOURCES:
        lines += _section(f"data source `{name}`", spec, _doc(spec))
    lines += ["## Stages", "", "Written as a list: `- <stage>: {params}` (or just `- <stage>`).", ""]
    for name, stage in STAGES:
        title = f"stage `{name}` ({stage.consumes.value} → {stage.produces.value})"
        variants = params_variants(stage.Params)
        if variants == [(None, stage.Params)]:
            lines += _section(title, stage.Params, stage.summary())
            continue
        lines += [f"### {title}", "", stage.summary(), ""]
        for tag, model in variants:
            lines += _section(f"`{name}` method `{tag}`", model, model_summary(model), level=4)
    lines += ["## Targets and device classes", ""]
    lines += _section("device class (any runtime)", DeviceClassBase, "`runtime` picks the settings below.")
    lines += _section("device_class.batch", BatchProfile)
    lines += _section("device_class.deployment", Deployment)
    for name, runtime in RUNTIMES:
        lines += _section(f"settings for runtime `{name}`", runtime.Settings, _doc(runtime.Settings))
    lines += ["## Evaluation, gates, tracking", ""]
    lines += _section("evaluation", EvaluationSpec)
    lines += _section(
        "gates",
        Gates,
        "Global limits apply to every target (and size/accuracy to the final model); "
        "`per_target` overrides them for one device class.",
    )
    lines += _section("tracking", TrackingSpec)
    return "\n".join(lines).rstrip() + "\n"


def json_schema() -> str:
    from optimize.recipe.schema import Recipe

    return json.dumps(Recipe.model_json_schema(mode="validation"), indent=2, sort_keys=True) + "\n"
