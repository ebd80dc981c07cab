"""The contract of a quantization method, torchao style: a config model (the method's recipe
options) and a handler registered for it with @QUANTIZERS.register(name).

The recipe's `quantize` keys are validated as a union of the registered configs. The selector
keys (SELECTOR_DEFAULTS: `precision`, then `backend`) choose the method: a config answers to the
values its own fields of those names allow (`precision: Literal["int8"]`), and a config with
`selected_when_set` is chosen over one with the same selector only when those options are set
(NNCF with `max_accuracy_drop` is accuracy-controlled NNCF). An option of another method is a
schema error that names the option, the methods it belongs to and the method of the step.

A module of this package never imports the stages package at import time: the quantize stage
imports this package to build its parameters, so the reverse import would be a cycle.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Union

from pydantic import BeforeValidator, Discriminator, Field, Tag, TypeAdapter
from pydantic_core import PydanticCustomError

from optimize.recipe.base import Slug, StrictModel
from optimize.registries import QUANTIZERS
from optimize.registry import did_you_mean

if TYPE_CHECKING:
    import onnx

    from optimize.recipe.schema import Recipe
    from optimize.stages.base import StageContext, StageOutput

# The recipe keys that choose a method, in the order they narrow the choice, and the value a key
# that is left out stands for.
SELECTOR_DEFAULTS: dict[str, str] = {"precision": "int8", "backend": "nncf"}

Problem = tuple[tuple, str]  # (location in the recipe, message), as Stage.check returns them


class QuantizeOptions(StrictModel):
    """Options of every method. A method's config subclasses this (or a subclass) and narrows each
    selector field it answers to to one Literal value."""

    # The field StageParams (optimize.stages.base) gives every step, declared again here because
    # this package must not import the stages package (tests check the two stay the same).
    id: Slug | None = Field(
        None, description="name to refer to this step by (e.g. as a teacher); default: the stage type"
    )
    precision: str = Field(description="chooses the method; each method narrows it to its own value")
    ignored_nodes: list[str] = Field(default_factory=list, description="node names left in floating point")
    ignored_types: list[str] = Field(
        default_factory=list, description="op types left in floating point, e.g. [Softmax]"
    )

    # Options whose being set (not null) chooses this method over one with the same selector.
    selected_when_set: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def selector(cls) -> dict[str, str]:
        """The selector values this config answers to, read from its Literal fields."""
        values = {}
        for key in SELECTOR_DEFAULTS:
            field = cls.model_fields.get(key)
            if field is not None:
                allowed = typing.get_args(field.annotation)
                if typing.get_origin(field.annotation) is not typing.Literal or len(allowed) != 1:
                    raise TypeError(f"{cls.__name__}.{key} must be a Literal of one value to choose a method")
                values[key] = allowed[0]
        return values


class CalibratedOptions(QuantizeOptions):
    """Options of a method that reads data.calibration."""

    subset_size: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="calibration samples used (the first of data.calibration); default: all",
    )


class Quantizer:
    """A method's handler. Subclass, set Config (and libraries), implement quantize(), and register
    with @QUANTIZERS.register("<name>"); then import the module by name in the package's __init__."""

    name: ClassVar[str]  # set by the registry
    Config: ClassVar[type[QuantizeOptions]]
    libraries: ClassVar[tuple[str, ...]] = ("onnx",)  # their versions are in the step's cache key

    def roles_read(self, params: QuantizeOptions) -> tuple[str, ...]:
        """Data roles this use of the method reads."""
        return ()

    def precision(self, params: QuantizeOptions) -> str:
        """The precision of the model the step writes."""
        return params.precision

    def check(self, params: QuantizeOptions, recipe: Recipe, where: tuple) -> list[Problem]:
        """Problems visible from the recipe alone; `where` is the step's location."""
        return []

    def cache_extra(self, params: QuantizeOptions, recipe: Recipe) -> dict[str, Any]:
        """What changes the output besides the params and the input model (e.g. the targets)."""
        return {}

    def scope_problems(self, model: onnx.ModelProto, params: QuantizeOptions) -> list[str]:
        """Ignored nodes or types the model lacks, checked before quantize() runs."""
        from optimize.quantization.graph import scope_problems

        return scope_problems(model, list(params.ignored_nodes), list(params.ignored_types))

    def quantize(
        self, model: onnx.ModelProto, params: QuantizeOptions, context: StageContext
    ) -> tuple[onnx.ModelProto, StageOutput]:
        """The quantized model, with the step's metrics and the details for its manifest."""
        raise NotImplementedError


def quantizer_for(params: QuantizeOptions) -> Quantizer:
    """The handler registered for the params' config (a recipe step's model subclasses it)."""
    handlers = {handler.Config: handler for _, handler in QUANTIZERS}
    for cls in type(params).__mro__:
        if cls in handlers:
            return handlers[cls]()
    raise TypeError(f"no quantizer is registered for {type(params).__name__}")


# -- choosing a method from a step's options ------------------------------------------------------


def _methods() -> list[type[Quantizer]]:
    return [handler for _, handler in QUANTIZERS]


def _expected(values: list[str]) -> str:
    quoted = [repr(value) for value in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def choose(options: Mapping[str, Any]) -> type[Quantizer]:
    """The method a step's options choose. A selector value no method answers to is an error at
    that key, listing the values that are valid there."""
    candidates = _methods()
    for key, default in SELECTOR_DEFAULTS.items():
        answering = [h for h in candidates if key in h.Config.selector()]
        if not answering:
            continue
        value = options.get(key, default)
        matching = [h for h in answering if h.Config.selector()[key] == value]
        if not matching:
            valid = list(dict.fromkeys(h.Config.selector()[key] for h in answering))
            if key not in options:
                message, got = "'{at}' must be set here, to {expected}", ""
            else:
                message, got = "Input should be {expected} (got {got}){hint}", repr(value)
            raise PydanticCustomError(
                "quantize_method",
                message,
                {
                    "at": key,
                    "expected": _expected(valid),
                    "got": got,
                    "hint": did_you_mean(str(value), valid),
                },
            )
        candidates = matching
    chosen = [h for h in candidates if all(options.get(k) is not None for k in h.Config.selected_when_set)]
    if not chosen:
        keys = sorted({k for h in candidates for k in h.Config.selected_when_set})
        raise PydanticCustomError(
            "quantize_method", "set {keys} to choose a method", {"keys": " or ".join(keys)}
        )
    return max(chosen, key=lambda h: len(h.Config.selected_when_set))


def describe_selector(selector: Mapping[str, str]) -> str:
    """'precision int8 with backend nncf'."""
    return " with ".join(f"{key} {value}" for key, value in selector.items())


def describe_methods(methods: list[type[Quantizer]]) -> str:
    """The methods as the selector values that pick out exactly them: 'precision int8' when every
    int8 method is among them, else 'precision int8 with backend nncf', joined with 'or'."""

    def parts(chosen: list, pool: list, keys: list[str]) -> list[str]:
        if not keys:
            return [""]
        key, rest = keys[0], keys[1:]
        found = []
        for value in dict.fromkeys(h.Config.selector().get(key) for h in chosen):
            sub_chosen = [h for h in chosen if h.Config.selector().get(key) == value]
            sub_pool = [h for h in pool if h.Config.selector().get(key) == value]
            if value is None:
                found += parts(sub_chosen, sub_pool, rest)
            elif set(sub_chosen) == set(sub_pool):
                found.append(f"{key} {value}")
            else:
                found += [
                    f"{key} {value}" + (f" with {sub}" if sub else "")
                    for sub in parts(sub_chosen, sub_pool, rest)
                ]
        return found

    return " or ".join(dict.fromkeys(parts(methods, _methods(), list(SELECTOR_DEFAULTS))))


def _check_options(value: Any) -> Any:
    """Before validation: the method is chosen, and an option of another method is an error."""
    if not isinstance(value, Mapping):
        return value
    method = choose(value)
    fields = method.Config.model_fields
    methods = _methods()
    selecting = {key for h in methods for key in h.Config.selected_when_set}
    # null is 'not set' for an option whose setting chooses a method
    value = {k: v for k, v in value.items() if not (v is None and k in selecting and k not in fields)}
    for key in sorted(value):
        owners = [h for h in methods if key in h.Config.model_fields]
        if key in fields or not owners:  # unknown keys are reported by the config (StrictModel)
            continue
        same = [
            h
            for h in owners
            if h.Config.selector() == method.Config.selector() and h.Config.selected_when_set
        ]
        if same:
            needs = " or ".join(dict.fromkeys(k for h in same for k in h.Config.selected_when_set))
            raise PydanticCustomError("quantize_option", "'{at}' needs {needs}", {"at": key, "needs": needs})
        raise PydanticCustomError(
            "quantize_option",
            "'{at}' applies to {allowed} only; this step is {current}",
            {
                "at": key,
                "allowed": describe_methods(owners),
                "current": describe_selector(method.Config.selector()),
            },
        )
    return value


def _method_tag(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return choose(value).name
    if isinstance(value, QuantizeOptions):
        return quantizer_for(value).name
    return None


class _AnyOfInJsonSchema:
    """In JSON Schema the configs overlap (a selector key left out matches several methods'
    defaults), so a step may match more than one: anyOf, not oneOf. Validation picks one."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        if "oneOf" in schema:
            schema["anyOf"] = schema.pop("oneOf")
        return schema


def params_type() -> Any:
    """The quantize stage's parameters: the registered configs as one union, tagged by method."""
    members = tuple(Annotated[handler.Config, Tag(name)] for name, handler in QUANTIZERS)
    union = Union[members]  # noqa: UP007
    return Annotated[union, Discriminator(_method_tag), BeforeValidator(_check_options), _AnyOfInJsonSchema()]


_ADAPTER: TypeAdapter | None = None


def validate_params(options: Mapping[str, Any] | None = None, /, **more: Any) -> QuantizeOptions:
    """A method's config from recipe options, as a recipe step validates them:
    validate_params(precision="int4", group_size=64) → an Int4WeightOnlyConfig."""
    global _ADAPTER
    if _ADAPTER is None:
        _ADAPTER = TypeAdapter(params_type())
    return _ADAPTER.validate_python({**(options or {}), **more})
