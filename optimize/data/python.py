"""The user's own dataset: `python:<module>:<function>` returning a torch Dataset."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from optimize.code_fingerprint import user_code_fingerprint
from optimize.data.base import DataContext, DataSourceSpec
from optimize.pyimport import ImportProblem, load_callable, split_reference
from optimize.registries import DATA_SOURCES


@DATA_SOURCES.register("python")
class PythonData(DataSourceSpec):
    """`python:<module>:<function>`: calls function(**args), which returns a Dataset of
    (input, label) pairs; the module is looked up in the recipe's folder, then installed packages."""

    source: str = Field(pattern=r"^python:[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the function")
    labeled_data: bool = Field(True, alias="labeled", description="false when labels are meaningless (-1)")

    reads_unknown_files: ClassVar[bool] = True

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
        try:
            function = load_callable(self.reference, [context.base_dir])
        except ImportProblem as exc:  # the provider reports it as this role's loading problem
            raise ValueError(str(exc)) from exc
        return function(**self.args)

    def content_fingerprint(self, context: DataContext) -> Any:
        """The module and the modules it imports (the files it reads are added by the provider)."""
        return user_code_fingerprint(split_reference(self.reference)[0], [context.base_dir])
