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


def stages_tables() -> list[Table]:
    from optimize.registries import STAGES

    tables = []
    for name, stage in STAGES:
        table = Table(
            title=f"[bold]{name}[/]  {stage.consumes.value} → {stage.produces.value}\n{stage.summary()}",
            title_justify="left",
        )
        for column in ("parameter", "type", "default", "description"):
            table.add_column(column)
        for row in field_rows(stage.Params):
            table.add_row(*row)
        tables.append(table)
    return tables
