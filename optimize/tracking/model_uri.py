"""`models:/NAME@ALIAS` and `models:/NAME/VERSION`: the registry references `optimize rebuild
--from`, `optimize promote` and the scheduled rebuild jobs take."""

from __future__ import annotations

import re
from dataclasses import dataclass

from optimize.errors import UsageError

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_PATTERN = re.compile(
    rf"models:/(?P<name>{_NAME})(?:@(?P<alias>[A-Za-z_][A-Za-z0-9_-]*)|/(?P<version>[1-9][0-9]*))"
)


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def is_model_uri(text: str) -> bool:
    return text.startswith("models:/")


def parse_model_uri(text: str, option: str = "--from") -> ModelRef:
    """The registered model a reference names; a malformed one is a UsageError saying the forms."""
    match = _PATTERN.fullmatch(text.strip())
    if match is None:
        raise UsageError(
            f"{option} {text}: not a registry reference; valid: models:/NAME@ALIAS (e.g. "
            f"models:/digits@candidate) or models:/NAME/VERSION (e.g. models:/digits/3)"
        )
    version = match["version"]
    return ModelRef(match["name"], match["alias"], int(version) if version else None)
