"""The schema's fields as documentation rows: for `optimize stages` and the recipe reference."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def type_text(annotation: Any) -> str:
    """A readable type: Literal['a', 'b'] → 'a' | 'b', Optional[int] → int | None."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_text(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


_BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "len ≥", "max_length": "len ≤"}


def constraint_text(metadata: list[Any]) -> str:
    parts = []
    for item in metadata:
        for attribute, symbol in _BOUNDS.items():
            value = getattr(item, attribute, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
    return ", ".join(parts)


def field_rows(model: type) -> list[tuple[str, str, str, str]]:
    """(name, type, default, description) for each documented field of a pydantic model."""
    from pydantic_core import PydanticUndefined

    rows = []
    for name, info in model.model_fields.items():
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("internal"):
            continue
        from pydantic import BaseModel

        if info.default is not PydanticUndefined:
            value = info.default
        elif info.default_factory is not None:
            value = info.default_factory()
        else:
            value = PydanticUndefined
        if value is PydanticUndefined:
            default = "required"
        elif isinstance(value, BaseModel):
            default = "(see its section)"
        else:
            default = repr(value)
        constraints = constraint_text(info.metadata)
        shown_type = type_text(info.annotation) + (f" ({constraints})" if constraints else "")
        rows.append((info.alias or name, shown_type, default, info.description or ""))
    return rows


def params_variants(params: Any) -> list[tuple[str | None, type]]:
    """(tag, model) for each variant of a stage's params: (None, model) for one model, or one entry
    per member of a tagged union (quantize: one per method, tagged with the method's name)."""
    import types
    import typing

    from pydantic import Tag

    if isinstance(params, type):
        return [(None, params)]
    origin, args = typing.get_origin(params), typing.get_args(params)
    if origin is typing.Annotated:
        tags = [item.tag for item in args[1:] if isinstance(item, Tag)]
        variants = params_variants(args[0])
        return [(tags[0], model) for _, model in variants] if tags else variants
    if origin in (typing.Union, types.UnionType):
        return [variant for member in args for variant in params_variants(member)]
    raise TypeError(f"not a model or a union of models: {params!r}")


def model_summary(model: type) -> str:
    """The first paragraph of a model's docstring, on one line."""
    return " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())


def stages_tables() -> list[Table]:
    from optimize.registries import STAGES

    tables = []
    for name, stage in STAGES:
        heading = f"[bold]{name}[/]  {stage.consumes.value} → {stage.produces.value}\n{stage.summary()}"
        for index, (tag, model) in enumerate(params_variants(stage.Params)):
            if tag is None:
                title = heading
            else:  # one table per variant (quantize: per method), the stage's heading over the first
                variant = f"[bold]{name}[/] method [bold]{tag}[/]: {model_summary(model)}"
                title = f"{heading}\n{variant}" if index == 0 else variant
            table = Table(title=title, title_justify="left")
            for column in ("parameter", "type", "default", "description"):
                table.add_column(column)
            for row in field_rows(model):
                table.add_row(*row)
            tables.append(table)
    return tables
