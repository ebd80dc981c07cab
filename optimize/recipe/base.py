"""Building blocks shared by every part of the recipe schema."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from optimize.registry import did_you_mean

SLUG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Slug = Annotated[
    str,
    Field(pattern=SLUG_PATTERN, description="letters, digits, '.', '_' and '-'; at most 64 characters"),
]


class StrictModel(BaseModel):
    """Unknown keys are errors that name the key, the closest valid key and all valid keys. Dumps
    use the keys a recipe writes (aliases), so a dumped recipe validates again."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(), serialize_by_alias=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
            shown = sorted(
                (f.alias or name)
                for name, f in cls.model_fields.items()
                if not (isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("internal"))
            )
            for key in data:
                if key not in allowed:
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key '{at}'{hint}; valid keys: {valid}",
                        {"at": str(key), "hint": did_you_mean(str(key), shown), "valid": ", ".join(shown)},
                    )
        return data


PACKAGE_PREFIX = "package:"


def resolve_user_path(value: str | Path, base_dir: Path | None) -> Path:
    """A path from a recipe: `package:<module>/<sub/path>` finds data shipped in an installed
    package; a relative path is taken against the recipe's folder."""
    text = str(value)
    if text.startswith(PACKAGE_PREFIX):
        module, _, sub = text[len(PACKAGE_PREFIX) :].partition("/")
        spec = importlib.util.find_spec(module) if module.isidentifier() else None
        if spec is None or not spec.submodule_search_locations:
            raise PydanticCustomError(
                "package_missing",
                "no installed package '{module}' (from '{text}')",
                {"module": module, "text": text},
            )
        return Path(next(iter(spec.submodule_search_locations))) / sub
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path.resolve()


def sources_elsewhere(info: ValidationInfo) -> bool:
    """True when a recipe is re-read on another machine to rebuild what a run recorded (a
    registered model): its model and data sources stay on the machine that ran it, unchecked."""
    return bool((info.context or {}).get("sources_elsewhere"))


def _existing_path(value: Path | str, info: ValidationInfo) -> Path:
    base_dir = (info.context or {}).get("base_dir")
    path = resolve_user_path(value, base_dir)
    if not path.exists() and not sources_elsewhere(info):
        raise PydanticCustomError("path_missing", "no such file or folder: {path}", {"path": str(path)})
    return path


ExistingPath = Annotated[Path, AfterValidator(_existing_path)]
