"""What flows between stages: a stored folder holding one model and its description."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

ARTIFACT_META = "artifact.json"


class ArtifactKind(str, Enum):
    TORCH = "torch"  # a PyTorch module: structure recipe + tensors, loadable without pickle
    ONNX = "onnx"  # an ONNX model file (FP32, FP16 or with QDQ / MatMulNBits nodes)
    ENGINE = "engine"  # a runtime-specific build for one device class


@dataclass(frozen=True)
class Artifact:
    kind: ArtifactKind
    hash: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def file(self) -> Path:
        """The main file of the artifact (model.onnx, model.pt, model.engine, ...)."""
        return self.path / self.meta["file"]

    @property
    def precision(self) -> str:
        return self.meta.get("precision", "fp32")

    @property
    def input_shapes(self) -> dict[str, list[int]]:
        """The model's example input shapes by name, as its metadata records them."""
        return {spec["name"]: spec["shape"] for spec in self.meta.get("inputs") or []}

    @property
    def size_bytes(self) -> int:
        """The model's files; an artifact nested in its folder (precision auto's candidates) is not
        part of it."""
        nested = {meta.parent for meta in self.path.rglob(ARTIFACT_META) if meta.parent != self.path}
        return sum(
            p.stat().st_size
            for p in self.path.rglob("*")
            if p.is_file() and p.name != ARTIFACT_META and nested.isdisjoint(p.parents)
        )

    @classmethod
    def open(cls, path: Path, digest: str) -> Artifact:
        meta = json.loads((path / ARTIFACT_META).read_text(encoding="utf-8"))
        return cls(kind=ArtifactKind(meta["kind"]), hash=digest, path=path, meta=meta)


def write_artifact_meta(workdir: Path, kind: ArtifactKind, file: str, **meta: Any) -> None:
    """Describe a work folder's model; the store hashes this file together with the model."""
    record = {"kind": kind.value, "file": file, **meta}
    (workdir / ARTIFACT_META).write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
