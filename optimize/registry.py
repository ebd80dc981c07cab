"""A name → class registry filled by a decorator, as timm registers models.

The registries themselves are in `optimize.registries`; a member is a new file with
`@REGISTRY.register("name")` on its class plus its import in the package's `__init__`.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


def did_you_mean(word: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    matches = difflib.get_close_matches(str(word), sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


class Registry(Generic[T]):
    """`members`: the package whose import registers every entry. It is imported on the first
    lookup, not with the registry, so members can import the registry without a cycle."""

    def __init__(self, kind: str, members: str):
        self.kind = kind
        self.members = members
        self._entries: dict[str, T] = {}
        self._loaded = False

    def _load(self) -> dict[str, T]:
        if not self._loaded:  # a member whose import failed is retried on the next lookup
            importlib.import_module(self.members)
            self._loaded = True
        return self._entries

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = entry
            entry.name = name  # type: ignore[attr-defined]
            return entry

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._load()[name]
        except KeyError:
            raise KeyError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        return f"unknown {self.kind} '{name}'{did_you_mean(name, self.names())}; valid: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return list(self._load())

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def __iter__(self) -> Iterator[tuple[str, T]]:
        return iter(self._load().items())
