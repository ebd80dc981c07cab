"""The contract every runtime implements: say whether this host can build and run a device
class, build an engine from an ONNX artifact, and open it as a Runner for evaluation."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from optimize.recipe.base import StrictModel
from optimize.versions import library_version

if TYPE_CHECKING:
    import numpy as np

    from optimize.artifacts import Artifact
    from optimize.targets.device_class import DeviceClass


@dataclass(frozen=True)
class Availability:
    can_build: bool
    can_run: bool
    reason: str = ""  # why not, when either is False


@dataclass(frozen=True)
class TritonModel:
    """How Triton Inference Server serves this runtime's engines: `platform` or `backend` as
    config.pbtxt names it, and each engine file under the name Triton looks for."""

    files: dict[str, str]  # engine file -> file name in the model version folder
    platform: str | None = None
    backend: str | None = None


class Runner:
    """One loaded engine. `run` takes {input name: array} and returns the outputs in order."""

    input_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def timed_run(self, feeds: dict[str, np.ndarray]) -> float:
        """Milliseconds for one inference, measured the way the device measures it best.
        CPU runtimes use a wall clock; GPU runtimes override this with device events."""
        start = time.perf_counter()
        self.run(feeds)
        return (time.perf_counter() - start) * 1000.0

    def device_memory_mb(self) -> float | None:
        """Accelerator memory held by the engine, where the runtime can say."""
        return None

    def close(self) -> None:
        pass


class Runtime:
    name: ClassVar[str]
    Settings: ClassVar[type[StrictModel]]
    distribution: ClassVar[str]  # the pip distribution whose version keys engines
    library: ClassVar[str]  # the Python module it runs through
    engine_file: ClassVar[str]
    # What the runtime needs from a quantized model: True when it builds INT8 activations only
    # as signed int8 with a zero point of 0 (the quantize stage reads this, never a runtime name).
    needs_symmetric_int8_activations: ClassVar[bool] = False
    # The layout of INT8/INT4 MatMul weights it runs fastest (optimize.quantization.layouts):
    # "integer" (integer MatMul kernels), "dequantize" (weights behind DequantizeLinear, which it
    # compiles into compressed-weight MatMuls) or "nbits" (8-bit MatMulNBits).
    int8_weight_format: ClassVar[str] = "nbits"
    triton: ClassVar[TritonModel]
    runs_on_gpu: ClassVar[bool] = False  # its engines need a GPU: its classes' servers ask for one

    def version(self) -> str:
        return library_version(self.distribution)

    def import_library(self) -> None:
        """Load the runtime's library, so memory measured after this is the engine's own."""
        import importlib

        importlib.import_module(self.library)

    def availability(self, device_class: DeviceClass) -> Availability:
        raise NotImplementedError

    @staticmethod
    def foreign_arch(device_class: DeviceClass) -> str | None:
        """Why this host cannot run the class's engines (another CPU architecture), or None."""
        import platform

        host = platform.machine()
        if device_class.arch in ("any", host):
            return None
        return f"the class runs on {device_class.arch} (host is {host})"

    def version_problem(self, device_class: DeviceClass, installed: str | None = None) -> Availability | None:
        """Not installed, or not of the class's version line: neither build nor run here."""
        installed = installed or self.version()
        if installed in ("not-installed", None):
            return Availability(False, False, f"{self.distribution} is not installed")
        if not version_matches(installed, device_class.runtime_version):
            return Availability(
                False,
                False,
                f"{self.distribution} {installed} is installed; the class needs {device_class.runtime_version}",
            )
        return None

    def device_identity(self, device_class: DeviceClass) -> dict[str, Any]:
        """Everything besides the model and the class settings that changes the engine."""
        return {"runtime": self.name, "version": self.version()}

    def build(self, model: Artifact, device_class: DeviceClass, workdir: Path) -> dict[str, Any]:
        """Write the engine into workdir (with its artifact.json); return build details."""
        raise NotImplementedError

    def open(self, engine: Artifact, device_class: DeviceClass) -> Runner:
        raise NotImplementedError

    def open_file(self, file: Path, device_class: DeviceClass, meta: dict[str, Any] | None = None) -> Runner:
        """Open an engine file outside the store (a deployment bundle's, under Triton's file name),
        with the artifact.json it was built with (`meta`), as `open` opens a stored one."""
        from optimize.artifacts import Artifact, ArtifactKind

        engine = Artifact(ArtifactKind.ENGINE, "", file.parent, {**(meta or {}), "file": file.name})
        return self.open(engine, device_class)

    def host_report(self) -> list[str]:
        """Lines `optimize targets` prints about this host's stack for the runtime (what it found
        and what to install), where there is more to say than each class's availability."""
        return []

    def inexact_rewrite(self, build: dict[str, Any]) -> str | None:
        """What the build changed in the model's arithmetic, when it did (then the engine's
        outputs are measured against the model file's), else None."""
        return None


def version_matches(installed: str, line: str | None) -> bool:
    """'10.*' / '10' match 10.x; '>=1.20' compares release numbers; None matches anything."""
    if not line:
        return True
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        version = Version(installed)
    except InvalidVersion:
        return False
    text = line.strip()
    if text[0].isdigit():
        text = f"=={text}" if "*" in text else f"=={text}.*"
    return version.release and SpecifierSet(text).contains(Version(".".join(map(str, version.release))))
