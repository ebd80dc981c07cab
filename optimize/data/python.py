"""The user's own dataset: `python:<module>:<function>` returning a torch Dataset."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from optimize.data import DATA_SOURCES
from optimize.data.base import DataContext, DataSourceSpec
from optimize.hashing import hash_file
from optimize.pyimport import load_callable, module_file, split_reference


@DATA_SOURCES.register("python")
class PythonData(DataSourceSpec):
    """`python:<module>:<function>`: calls function(**args), which returns a Dataset of
    (input, label) pairs; the module is looked up in the recipe's folder, then installed packages."""

    source: str = Field(pattern=r"^python:[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the function")
    labeled_data: bool = Field(True, alias="labeled", description="false when labels are meaningless (-1)")

    @field_validator("source")
    @classmethod
    def _check_reference(cls, value: str) -> str:
        split_reference(value.split(":", 1)[1])
        return value

    @property
    def labeled(self) -> bool:  # type: ignore[override]
        return self.labeled_data

    @property
    def reference(self) -> str:
        return self.source.split(":", 1)[1]

    def load(self, context: DataContext):
        return load_callable(self.reference, [context.base_dir])(**self.args)

    def content_fingerprint(self, context: DataContext) -> Any:
        path = module_file(split_reference(self.reference)[0], [context.base_dir])
        return hash_file(path) if path else None
