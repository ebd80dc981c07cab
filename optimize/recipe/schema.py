"""The recipe schema: the single source of truth for validation, `optimize stages` and docs.

Stage parameter models live with their stages and data-source models with their sources; this
module assembles them (from the registries) into the `Recipe` model.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    PositiveFloat,
    PositiveInt,
    Tag,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from optimize.recipe.base import Slug, StrictModel, resolve_user_path
from optimize.recipe.evaluation import EvaluationSpec
from optimize.recipe.gate_limits import Gates
from optimize.recipe.model_spec import ModelSpec
from optimize.recipe.training import TrainingSpec
from optimize.registries import DATA_SOURCES, STAGES
from optimize.registry import did_you_mean
from optimize.targets.device_class import DeviceClass

# -- stages -------------------------------------------------------------------------------


def _step_model(name: str, params: Any, title: str) -> Any:
    """The params model of a stage plus a `stage` tag, so a list item knows its stage. A stage whose
    params are a tagged union of models (quantize: one per method) gets the same union of step
    models, each with the tag, its own name and the union's discriminator and validators."""
    if isinstance(params, type):
        return create_model(
            title,
            __base__=params,
            __module__=__name__,
            stage=(Literal[name], Field(description="stage type", json_schema_extra={"internal": True})),
        )
    origin, args = get_origin(params), get_args(params)
    if origin is Annotated:
        inner, *metadata = args
        return Annotated[(_step_model(name, inner, title), *metadata)]
    if origin is Union:
        return Union[tuple(_step_model(name, member, f"{_model_of(member).__name__}Step") for member in args)]  # noqa: UP007
    raise TypeError(f"stage '{name}': Params must be a model or a tagged union of models, not {params!r}")


def _model_of(member: Any) -> type:
    """The model inside an Annotated union member."""
    return get_args(member)[0] if get_origin(member) is Annotated else member


STEP_MODELS = {name: _step_model(name, stage.Params, f"{stage.__name__}Step") for name, stage in STAGES}


def _normalise_step(value: Any) -> Any:
    """'- export' and '- train: {epochs: 4}' both become {'stage': ..., **params}."""
    if isinstance(value, StrictModel):
        return value
    if isinstance(value, str):
        value = {value: {}}
    if isinstance(value, dict) and "stage" in value:
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise PydanticCustomError(
            "stage_step", "a step is written '- <stage>: {{params}}', e.g. '- train: {{epochs: 4}}'"
        )
    ((name, params),) = value.items()
    if name not in STAGES:
        raise PydanticCustomError(
            "unknown_stage",
            "unknown stage '{at}'{hint}; valid stages: {valid}",
            {
                "at": str(name),
                "hint": did_you_mean(str(name), STAGES.names()),
                "valid": ", ".join(STAGES.names()),
            },
        )
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise PydanticCustomError(
            "stage_params",
            "parameters of '{key}' must be a mapping, e.g. '- {key}: {{}}'",
            {"key": str(name)},
        )
    return {"stage": name, **params}


def _step_tag(value: Any) -> str | None:
    return value.get("stage") if isinstance(value, dict) else getattr(value, "stage", None)


StageStep = Annotated[
    Union[tuple(Annotated[model, Tag(name)] for name, model in STEP_MODELS.items())],  # noqa: UP007
    Discriminator(_step_tag),
    BeforeValidator(_normalise_step),
]

# -- data -----------------------------------------------------------------------------------


def _from_file(read, value: str, info) -> Any:
    """Read a definition file a recipe names; its problems become errors at the naming key."""
    from optimize.errors import RecipeError

    if not value.strip():
        raise PydanticCustomError(
            "definition_file", "expected a mapping or the path of a YAML file, got an empty string"
        )
    try:
        return read(resolve_user_path(value, (info.context or {}).get("base_dir")))
    except RecipeError as exc:
        raise PydanticCustomError("definition_file", "{message}", {"message": str(exc)}) from None


def _data_tag(value: Any) -> str | None:
    source = value.get("source") if isinstance(value, dict) else getattr(value, "source", None)
    return str(source).split(":", 1)[0] if source is not None else None


def _data_definition(value: Any, info) -> Any:
    """A data role may be a path to a YAML definition (e.g. in calibration/) instead of a mapping."""
    if isinstance(value, str):
        from optimize.recipe.loader import load_data_definition

        return _from_file(load_data_definition, value, info)
    if isinstance(value, dict):
        kind = _data_tag(value)
        if kind is None:
            raise PydanticCustomError(
                "data_source",
                "a data source needs 'source' ({valid})",
                {"valid": ", ".join(DATA_SOURCES.names())},
            )
        if kind not in DATA_SOURCES:
            raise PydanticCustomError(
                "data_source",
                "unknown data source '{kind}'{hint}; valid: {valid}",
                {
                    "kind": kind,
                    "hint": did_you_mean(kind, DATA_SOURCES.names()),
                    "valid": ", ".join(DATA_SOURCES.names()),
                },
            )
    return value


DataSource = Annotated[
    Union[tuple(Annotated[spec, Tag(name)] for name, spec in DATA_SOURCES)],  # noqa: UP007
    Discriminator(_data_tag),
    BeforeValidator(_data_definition),
]


def _worker_count(value: Any) -> int | str:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise PydanticCustomError(
        "workers", "expected auto or a number of loader processes ≥ 0 (0: load in the main process)"
    )


class DataSpec(StrictModel):
    train: DataSource | None = Field(None, description="data for train and distill stages")
    eval: DataSource | None = Field(None, description="data for accuracy, agreement and parity checks")
    calibration: DataSource | None = Field(None, description="data for quantization calibration")
    workers: Annotated[Literal["auto"] | int, BeforeValidator(_worker_count)] = Field(
        "auto",
        description="loader processes; auto: cores − 1 where samples cost work (decoding files not "
        "in the cache, python datasets, augmentation), 0 for in-memory arrays",
    )
    cache: Literal["auto", "on", "off"] = Field(
        "auto",
        description="keep decoded, resized images (imagefolder) in memory after the first read; "
        "auto: when the whole role fits the budget, on: as many as fit",
    )
    cache_mb: PositiveInt = Field(
        2048, le=1_048_576, description="memory budget of the cache, all roles together"
    )

    @model_validator(mode="after")
    def _augment_train_only(self) -> DataSpec:
        for role in ("eval", "calibration"):
            source = getattr(self, role)
            if source is not None and source.augment:
                raise PydanticCustomError(
                    "augment_role",
                    "augment: augmentation applies to data.train only (train and distill steps); "
                    "evaluation and calibration data are never augmented",
                    {"at": role},
                )
        return self


# -- evaluation, gates, tracking ------------------------------------------------------------


class TrackingSpec(StrictModel):
    enabled: bool = Field(True, description="log runs to MLflow")
    experiment: str | None = Field(
        None, min_length=1, max_length=200, description="MLflow experiment; default: the recipe name"
    )


class RegistrySpec(StrictModel):
    """What a tracked run registers in the MLflow Model Registry, so machines without a shared
    folder rebuild from `models:/NAME@ALIAS`."""

    enabled: bool = Field(True, description="register the final model as a version (needs tracking)")
    name: Slug | None = Field(None, description="registered model name; default: the recipe name")
    alias: str = Field(
        "candidate",
        pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$",
        description="alias every new version gets (models:/NAME@ALIAS)",
    )
    promote: Literal["on_pass", "never"] = Field(
        "on_pass",
        description="on_pass: a run that passes every gate also moves the `production` alias to its "
        "version; never: only `optimize promote` does",
    )
    max_eval_mb: PositiveFloat = Field(
        512,
        description="the eval samples (as evaluated, after preprocessing) travel with the version up to "
        "this size, so a rebuild elsewhere scores exactly the same samples without the data source",
    )


# -- the recipe -----------------------------------------------------------------------------


def _device_class_file(value: Any, info) -> Any:
    """`device_classes:` may name a YAML file holding a list of device classes."""
    if isinstance(value, str):
        from optimize.recipe.loader import load_device_class_file

        return _from_file(load_device_class_file, value, info)
    return value


class Recipe(StrictModel):
    name: Slug = Field(description="names the run folder and the MLflow run")
    description: str = ""
    model: ModelSpec
    data: DataSpec = Field(default_factory=DataSpec)
    stages: list[StageStep] = Field(default_factory=list, description="steps, in order")
    targets: list[Slug] = Field(default_factory=list, description="device classes to build and evaluate")
    device_classes: Annotated[list[DeviceClass], BeforeValidator(_device_class_file)] = Field(
        default_factory=list, description="device classes defined here (a list, or a YAML file holding one)"
    )
    training: TrainingSpec = Field(
        default_factory=TrainingSpec, description="device, precision and layout of torch training stages"
    )
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    gates: Gates = Field(default_factory=Gates)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    bundle: bool = Field(
        False,
        description="write a deployment bundle (optimize bundle) per ok target into <artifacts>/bundles "
        "when the run passes all its gates",
    )

    def step_ids(self) -> list[str]:
        return [step.id or step.stage for step in self.stages]
