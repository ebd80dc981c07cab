"""`optimize verify`: the node's check of a bundle before it serves it. A file damaged in transit,
an engine for another runtime version or GPU, or an engine whose outputs drifted from the build
host's stops the rollout here, with one line naming what failed.

The checks run in order and the first failure raises: `format` (bundle.json is a `Bundle`),
`files` (every listed file present with its SHA-256, nothing unlisted), `runtime` (the runtime
and version the engine was built with, and its GPU), `engine` (the runtime opens it), `canary`
(the canary inputs give the reference outputs, within bundle.json's thresholds).

A node has no torch: this module and what it imports load none of the build libraries.
"""

from __future__ import annotations

import contextlib
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from optimize.errors import EXIT_STAGE_FAILED, OptimizeError, UsageError, first_line
from optimize.evaluation import agreement, load_outputs, read_feeds, run_batched
from optimize.fleet.bundle_format import MANIFEST, Bundle, CanaryRecord, RuntimeIdentity, read_bundle
from optimize.hashing import hash_file
from optimize.targets.device_class import DeviceClass

if TYPE_CHECKING:
    from optimize.runtimes.base import Runner, Runtime

CHECKS = ("format", "files", "runtime", "engine", "canary")


class VerificationError(OptimizeError):
    """A check failed: the bundle must not be served here."""

    exit_code = EXIT_STAGE_FAILED

    def __init__(self, check: str, reason: str):
        super().__init__(f"{check}: {reason}")
        self.check = check
        self.reason = reason


@dataclass(frozen=True)
class Verification:
    """A bundle that passed every check, and the canary's numbers."""

    bundle: Bundle
    checks: tuple[str, ...]
    files: int
    samples: int
    agreement_top1: float | None  # classification only
    max_abs_diff: float
    runtime_version: str

    def summary(self) -> str:
        agreement = (
            f"top-1 agreement {self.agreement_top1:.1%} (≥ {self.bundle.canary.min_agreement_top1:.1%}), "
            if self.agreement_top1 is not None
            else ""
        )
        return (
            f"{self.bundle.folder_name}: {self.files} files, {self.samples} canary samples, {agreement}"
            f"max abs diff {self.max_abs_diff:.3g} (≤ {self.bundle.canary.max_abs_diff:.3g}), "
            f"{self.bundle.runtime.name} {self.runtime_version}"
        )


def verify_bundle(path: Path) -> Verification:
    """Every check on a bundle folder or its .tar.gz (unpacked into a temporary folder that is
    removed after). Raises VerificationError naming the first check that failed."""
    if not path.exists():
        raise UsageError(f"no bundle at {path} (a bundle folder or its .tar.gz)")
    with _unpacked(path) as folder:
        bundle, device_class = _check_format(folder)
        problems = file_problems(folder, bundle.files)
        if problems:
            raise VerificationError("files", "; ".join(problems))
        runtime, version = _check_runtime(bundle, device_class)
        try:
            runner = runtime.open_file(folder / bundle.engine.file, device_class, bundle.engine.meta)
        except Exception as exc:  # whatever the runtime raises: the engine does not load here
            raise VerificationError(
                "engine",
                f"{bundle.runtime.name} {version} cannot open {bundle.engine.file}: {first_line(exc)}",
            ) from exc
        try:
            outputs, samples = _run_canary(runner, folder, bundle, device_class)
        finally:
            runner.close()
        references = _read_canary(load_outputs, folder / bundle.canary.outputs)
        result = compare_canary(outputs, references, bundle.model.eval_output, bundle.canary)
        if result.problems:
            raise VerificationError("canary", f"{samples} samples: " + "; ".join(result.problems))
        return Verification(
            bundle, CHECKS, len(bundle.files), samples, result.agreement_top1, result.max_abs_diff, version
        )


@contextlib.contextmanager
def _unpacked(path: Path) -> Iterator[Path]:
    """The bundle folder: the path itself, or the folder at the top of the .tar.gz, unpacked into a
    temporary folder for as long as the checks run."""
    if path.is_dir():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="optimize-verify-") as temporary:
        root = Path(temporary)
        try:
            with tarfile.open(path, "r:*") as archive:
                archive.extractall(root, filter="data")  # no absolute paths, links out or devices
        except (tarfile.TarError, OSError) as exc:
            raise VerificationError(
                "format", f"{path.name} is not a readable bundle archive: {first_line(exc)}"
            ) from None
        tops = [entry for entry in root.iterdir() if (entry / MANIFEST).is_file()]
        yield tops[0] if len(tops) == 1 else root


def _check_format(folder: Path) -> tuple[Bundle, DeviceClass]:
    """bundle.json as a `Bundle`, with its device class as this version of optimize reads one."""
    if not (folder / MANIFEST).is_file():
        raise VerificationError("format", f"no {MANIFEST} at the bundle's top: not an optimize bundle")
    try:
        bundle = read_bundle(folder)
    except ValidationError as exc:
        raise VerificationError("format", f"{MANIFEST}: {_first_error(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VerificationError("format", f"{MANIFEST} cannot be read: {first_line(exc)}") from None
    try:
        device_class = TypeAdapter(DeviceClass).validate_python(bundle.device_class)
    except ValidationError as exc:
        raise VerificationError("format", f"{MANIFEST}: device_class: {_first_error(exc)}") from None
    if device_class.runtime != bundle.runtime.name:
        raise VerificationError(
            "format",
            f"{MANIFEST}: runtime {bundle.runtime.name!r}, but its device class runs {device_class.runtime!r}",
        )
    return bundle, device_class


def _first_error(exc: ValidationError) -> str:
    """The first of pydantic's problems on one line, with how many more there are."""
    from optimize.recipe.loader import describe_error, format_location, printable

    errors = exc.errors()
    location, message = describe_error(errors[0])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return printable(f"{format_location(location)}: {message}{more}")


def file_problems(folder: Path, listed: Mapping[str, str]) -> list[str]:
    """How the folder differs from bundle.json's `files`: missing, changed and unlisted files.
    Names are compared with what is in the folder, so a listed '../x' is missing, never read."""
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {MANIFEST}
    problems = []
    for name, digest in sorted(listed.items()):
        if name not in present:
            problems.append(f"{name} is missing")
        elif hash_file(folder / name) != digest:
            problems.append(f"{name} does not match its SHA-256 in {MANIFEST} (damaged or changed)")
    problems += [f"{name} is not listed in {MANIFEST}" for name in sorted(present - set(listed))]
    return problems


def runtime_problem(recorded: RuntimeIdentity, installed: str, device_class: str) -> str | None:
    """Why this host's runtime cannot load the engine: a placeholder is never loadable, and an
    engine is measured (a TensorRT plan is only valid) on the exact version that built it."""
    if recorded.placeholder:
        return (
            f"the {recorded.name} engine is a placeholder (runtime.placeholder: true), not a loadable engine"
        )
    built = f"bundle built for {recorded.name} {recorded.version}"
    rebuild = f"rebuild the engine on this device class (optimize rebuild --device-class {device_class})"
    if installed == "not-installed":
        return f"{built}, this host has no {recorded.name}: install {recorded.name} {recorded.version} or {rebuild}"
    if installed != recorded.version:
        return f"{built}, this host has {installed}: {rebuild}"
    return None


def capability_problem(recorded: str, here: str | None, device_class: str) -> str | None:
    """A TensorRT plan loads only on the GPU generation (compute capability) that built it."""
    if here == recorded:
        return None
    return (
        f"bundle built for a GPU of compute capability {recorded}, this host's has {here or 'none'}: "
        f"rebuild the engine on this device class (optimize rebuild --device-class {device_class})"
    )


def _check_runtime(bundle: Bundle, device_class: DeviceClass) -> tuple[Runtime, str]:
    from optimize.registries import RUNTIMES

    runtime = RUNTIMES.get(bundle.runtime.name)()
    installed = runtime.version()
    problem = runtime_problem(bundle.runtime, installed, device_class.name)
    if problem is None and bundle.runtime.compute_capability:
        try:
            here = runtime.device_identity(device_class).get("compute_capability")
        except OptimizeError as exc:  # no GPU here
            raise VerificationError("runtime", getattr(exc, "reason", str(exc))) from None
        problem = capability_problem(bundle.runtime.compute_capability, here, device_class.name)
    if problem:
        raise VerificationError("runtime", problem)
    return runtime, installed


def _run_canary(
    runner: Runner, folder: Path, bundle: Bundle, device_class: DeviceClass
) -> tuple[dict[str, np.ndarray], int]:
    """The engine's outputs by name over the canary inputs, in batches the engine takes: its fixed
    batch, else the device class's batch profile."""
    inputs, _labels = _read_canary(read_feeds, folder / bundle.canary.inputs)
    missing = [name for name in runner.input_names if name not in inputs]
    if missing:
        raise VerificationError(
            "canary", f"{bundle.canary.inputs} has no input {', '.join(map(repr, missing))} the engine takes"
        )
    first = bundle.model.inputs[0].shape if bundle.model.inputs else []
    fixed = first[0] if first else -1  # -1: a batch axis
    batch, least = (fixed, fixed) if fixed > 0 else (device_class.batch.max, device_class.batch.min)
    feeds = {name: inputs[name] for name in runner.input_names}
    try:
        produced = run_batched(runner, feeds, batch, min_batch=least)
    except Exception as exc:  # the runtime's own error, e.g. a shape it refuses
        raise VerificationError(
            "canary", f"the engine failed on the canary inputs: {first_line(exc)}"
        ) from exc
    if len(produced) != len(bundle.model.outputs):
        raise VerificationError(
            "canary",
            f"the engine gives {len(produced)} outputs, {MANIFEST} names {len(bundle.model.outputs)} "
            f"({', '.join(bundle.model.outputs)})",
        )
    return dict(zip(bundle.model.outputs, produced, strict=True)), len(produced[0])


@dataclass(frozen=True)
class CanaryResult:
    agreement_top1: float | None
    max_abs_diff: float
    problems: list[str]


def compare_canary(
    outputs: Mapping[str, np.ndarray],
    references: Mapping[str, np.ndarray],
    eval_output: str,
    canary: CanaryRecord,
) -> CanaryResult:
    """The engine's outputs against the reference outputs: every value within max_abs_diff, and
    (classification) the scored output's top-1 the same on at least min_agreement_top1 of them."""
    problems, largest, top1 = [], 0.0, None
    for name, values in outputs.items():
        reference = references.get(name)
        if reference is None:
            problems.append(f"no reference for output '{name}' in {canary.outputs}")
            continue
        if reference.shape != values.shape:
            problems.append(
                f"output '{name}' has shape {list(values.shape)}, the reference {list(reference.shape)}"
            )
            continue
        task = "classification" if name == eval_output and canary.min_agreement_top1 is not None else ""
        measured = agreement(reference, values, task)
        diff = measured["max_abs_diff"]
        largest = max(largest, diff)
        if not diff <= canary.max_abs_diff:
            problems.append(
                f"output '{name}' differs from the reference by up to {diff:.3g} (allowed {canary.max_abs_diff:.3g})"
            )
        if task:
            top1 = measured["agreement_top1"]
            if top1 < canary.min_agreement_top1:
                problems.append(
                    f"top-1 of '{name}' agrees with the reference on {top1:.1%} (needs ≥ {canary.min_agreement_top1:.1%})"
                )
    return CanaryResult(top1, largest, problems)


def _read_canary(read: Callable[[Path], Any], path: Path) -> Any:
    """A canary file, its failure the canary check's (a file that hashes right can still be no
    .npz, or lack the labels)."""
    try:
        return read(path)
    except Exception as exc:  # numpy's zip, pickle and key errors alike
        raise VerificationError("canary", f"cannot read {path.name}: {first_line(exc)}") from None
