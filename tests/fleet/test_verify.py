"""`optimize verify` on a node: a fresh CPU bundle passes; a flipped byte, a missing or unlisted
file, wrong reference outputs, another runtime version or a placeholder engine each fail with
one line naming the check (exit 3). The decisions themselves are pure functions, tested alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import optimize
from optimize.fleet.bundle_format import MANIFEST, CanaryRecord, RuntimeIdentity, read_bundle
from optimize.fleet.verify import (
    VerificationError,
    capability_problem,
    compare_canary,
    file_problems,
    runtime_problem,
)
from optimize.hashing import hash_file
from optimize.versions import library_version
from tests.conftest import ASSETS, run_cli, tiny_recipe_dict

CLASSES = {"onnxruntime": "x86-cpu-onnxruntime", "openvino": "intel-cpu-openvino"}
ENGINE_FILES = {"onnxruntime": 1, "openvino": 2}  # model.onnx; model.xml + model.bin
GATES = {
    "min_speedup": None,
    "min_agreement": 0.9,
    "per_target": {"x86-cpu-onnxruntime": {"max_latency_p90_ms": 50.0}},
}


def tiny_bundles(root: Path, runtimes: tuple[str, ...] = tuple(CLASSES)) -> dict[str, Path]:
    """`optimize bundle` of a tiny FP32 run for each runtime's CPU class, by runtime name."""
    shutil.copy(ASSETS / "tiny_models.py", root / "tiny_models.py")
    targets = [CLASSES[runtime] for runtime in runtimes]
    # a global and a per-class gate, which the bundle carries to the node's prober (GATES)
    recipe = tiny_recipe_dict(targets=targets, tracking={"enabled": False}, gates=GATES)
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    outcome = optimize.run(root / "recipe.yaml", artifacts=root / "artifacts")
    assert outcome.exit_code == 0, outcome.problems
    return {
        runtime: optimize.bundle(
            device_class=CLASSES[runtime], artifacts=root / "artifacts", out=root / "bundles"
        )
        for runtime in runtimes
    }


def rehash(folder: Path, **changes) -> None:
    """Rewrite bundle.json with `changes` merged into its sections and every file's SHA-256 as it
    is now: a bundle changed on purpose, consistent except in what the test changed."""
    manifest = json.loads((folder / MANIFEST).read_text())
    for section, values in changes.items():
        manifest[section] = {**manifest[section], **values}
    manifest["files"] = {
        path.relative_to(folder).as_posix(): hash_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    return tiny_bundles(tmp_path_factory.mktemp("bundles"))


@pytest.fixture
def bundle(pristine, tmp_path) -> Path:
    """A copy of the ONNX Runtime bundle that a test may damage."""
    return Path(shutil.copytree(pristine["onnxruntime"], tmp_path / pristine["onnxruntime"].name))


def failure(bundle: Path) -> str:
    with pytest.raises(VerificationError) as raised:
        optimize.verify(bundle)
    assert raised.value.exit_code == 3 and "\n" not in str(raised.value)
    return str(raised.value)


def engine_file(bundle: Path) -> str:
    return read_bundle(bundle).engine.file


@pytest.mark.parametrize("runtime", sorted(CLASSES))
def test_a_fresh_cpu_bundle_passes_every_check(pristine, runtime):
    manifest = read_bundle(pristine[runtime])
    result = optimize.verify(pristine[runtime])
    assert result.checks == ("format", "files", "runtime", "engine", "canary")
    assert result.samples == manifest.canary.samples == 32
    assert result.agreement_top1 == 1.0 and result.max_abs_diff <= manifest.canary.max_abs_diff
    assert result.runtime_version == library_version(runtime)
    # the engine, config.pbtxt, two canary files, five Kubernetes manifests and the agent's config
    assert result.files == len(manifest.files) == ENGINE_FILES[runtime] + 9


def test_the_command_prints_one_summary_line_and_exits_0_on_the_tar_gz(pristine, tmp_path):
    folder = pristine["onnxruntime"]
    manifest = read_bundle(folder)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    result = run_cli("verify", f"{folder}.tar.gz", env={"TMPDIR": str(temporary)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        f"ok {folder.name}: {len(manifest.files)} files, 32 canary samples, top-1 agreement 100.0% (≥ 95.0%), "
        "max abs diff "
    )
    assert result.stdout.endswith(
        f"(≤ {manifest.canary.max_abs_diff:.3g}), onnxruntime {library_version('onnxruntime')}\n"
    )
    assert result.stdout.count("\n") == 1
    assert not list(temporary.glob("optimize-verify-*"))  # the unpacked copy is gone


def test_a_flipped_byte_in_the_engine_fails_the_files_check_and_the_command_exits_3(bundle):
    engine = bundle / engine_file(bundle)
    data = bytearray(engine.read_bytes())
    data[len(data) // 2] ^= 0x01
    engine.write_bytes(bytes(data))
    result = run_cli("verify", str(bundle))
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"error: files: {engine_file(bundle)} does not match its SHA-256 in bundle.json (damaged or changed)"
    )


def test_a_missing_file_fails_the_files_check(bundle):
    (bundle / "canary" / "outputs.npz").unlink()
    assert failure(bundle) == "files: canary/outputs.npz is missing"


def test_a_file_not_listed_fails_the_files_check(bundle):
    extra = (bundle / engine_file(bundle)).with_name("extra.onnx")
    extra.write_bytes(b"not in bundle.json")
    assert failure(bundle) == f"files: {extra.relative_to(bundle).as_posix()} is not listed in bundle.json"


def test_reference_outputs_that_the_engine_does_not_give_fail_the_canary(bundle):
    with np.load(bundle / "canary" / "outputs.npz") as stored:
        logits = stored["logits"]
    np.savez(bundle / "canary" / "outputs.npz", logits=np.roll(logits, 1, axis=1) * 3)
    rehash(bundle)
    allowed = read_bundle(bundle).canary.max_abs_diff
    message = failure(bundle)
    assert message.startswith("canary: 32 samples: output 'logits' differs from the reference by up to ")
    assert f"(allowed {allowed:.3g}); top-1 of 'logits' agrees with the reference on " in message
    assert message.endswith("(needs ≥ 95.0%)")


def test_another_runtime_version_fails_before_the_engine_is_opened(bundle):
    installed = library_version("onnxruntime")
    rehash(bundle, runtime={"version": "1.17.0"})
    assert failure(bundle) == (
        f"runtime: bundle built for onnxruntime 1.17.0, this host has {installed}: rebuild the engine on "
        "this device class (optimize rebuild --device-class x86-cpu-onnxruntime)"
    )


def test_a_placeholder_engine_is_refused_as_not_loadable(bundle):
    rehash(bundle, runtime={"placeholder": True})
    assert failure(bundle) == (
        "runtime: the onnxruntime engine is a placeholder (runtime.placeholder: true), not a loadable engine"
    )


def test_an_engine_the_runtime_cannot_open_fails_the_engine_check(bundle):
    (bundle / engine_file(bundle)).write_bytes(b"\x08\x07garbage")
    rehash(bundle)
    assert failure(bundle).startswith(
        f"engine: onnxruntime {library_version('onnxruntime')} cannot open {engine_file(bundle)}: "
    )


def test_a_manifest_of_another_format_fails_the_format_check(bundle):
    manifest = json.loads((bundle / MANIFEST).read_text())
    (bundle / MANIFEST).write_text(json.dumps({**manifest, "format": "optimize-bundle/2"}))
    assert failure(bundle) == (
        "format: bundle.json: format: Input should be 'optimize-bundle/1' (got 'optimize-bundle/2') "
        "(did you mean 'optimize-bundle/1'?)"
    )


def test_a_path_that_is_no_bundle_is_a_usage_error_and_an_unreadable_archive_a_format_failure(tmp_path):
    result = run_cli("verify", str(tmp_path / "nothing.tar.gz"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: no bundle at {tmp_path / 'nothing.tar.gz'} (a bundle folder or its .tar.gz)"
    )
    (tmp_path / "broken.tar.gz").write_bytes(b"not gzip")
    assert failure(tmp_path / "broken.tar.gz").startswith(
        "format: broken.tar.gz is not a readable bundle archive: "
    )


# The decisions, without a bundle


def test_file_problems_name_missing_changed_and_unlisted_files_and_never_read_outside(tmp_path):
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    (tmp_path / MANIFEST).write_text("{}")
    assert file_problems(tmp_path, {"a": hash_file(tmp_path / "a"), "b": hash_file(tmp_path / "b")}) == []
    listed = {"a": "0" * 64, "c": "0" * 64, "../outside": "0" * 64}
    assert file_problems(tmp_path, listed) == [
        "../outside is missing",
        "a does not match its SHA-256 in bundle.json (damaged or changed)",
        "c is missing",
        "b is not listed in bundle.json",
    ]


def test_runtime_problem_wants_the_exact_version_and_a_real_engine():
    recorded = RuntimeIdentity(name="tensorrt", version="10.3.0", compute_capability="8.7")
    assert runtime_problem(recorded, "10.3.0", "jetson-orin-tensorrt") is None
    assert runtime_problem(recorded, "10.7.0", "jetson-orin-tensorrt") == (
        "bundle built for tensorrt 10.3.0, this host has 10.7.0: rebuild the engine on this device class "
        "(optimize rebuild --device-class jetson-orin-tensorrt)"
    )
    assert runtime_problem(recorded, "10.3.0.1", "c").startswith(
        "bundle built for tensorrt 10.3.0, this host has 10.3.0.1"
    )
    assert runtime_problem(recorded, "not-installed", "c").startswith(
        "bundle built for tensorrt 10.3.0, this host has no tensorrt: install tensorrt 10.3.0 or rebuild"
    )
    placeholder = recorded.model_copy(update={"placeholder": True})
    assert "placeholder" in runtime_problem(placeholder, "10.3.0", "c")


def test_capability_problem_wants_the_gpu_generation_that_built_the_plan():
    assert capability_problem("8.7", "8.7", "jetson-orin-tensorrt") is None
    assert capability_problem("8.7", "9.0", "jetson-orin-tensorrt") == (
        "bundle built for a GPU of compute capability 8.7, this host's has 9.0: rebuild the engine on this "
        "device class (optimize rebuild --device-class jetson-orin-tensorrt)"
    )


CANARY = CanaryRecord(samples=4, reference="engine", min_agreement_top1=0.75, max_abs_diff=0.01)
REFERENCE = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [1.0, 2.0]], np.float32)


def test_compare_canary_passes_within_thresholds_and_names_each_output_beyond_them():
    close = compare_canary({"logits": REFERENCE + 0.005}, {"logits": REFERENCE}, "logits", CANARY)
    assert (
        close.problems == []
        and close.agreement_top1 == 1.0
        and close.max_abs_diff == pytest.approx(0.005, abs=1e-6)
    )

    flipped = REFERENCE.copy()
    flipped[:2] = flipped[:2, ::-1]  # half the samples' top-1 changes
    result = compare_canary(
        {"logits": flipped, "extra": np.zeros((4, 3))},
        {"logits": REFERENCE, "extra": np.full((4, 3), 0.5)},
        "logits",
        CANARY,
    )
    assert result.agreement_top1 == 0.5
    assert result.problems == [
        "output 'logits' differs from the reference by up to 1 (allowed 0.01)",
        "top-1 of 'logits' agrees with the reference on 50.0% (needs ≥ 75.0%)",
        "output 'extra' differs from the reference by up to 0.5 (allowed 0.01)",
    ]


def test_compare_canary_refuses_nan_missing_references_and_other_shapes():
    nan = REFERENCE.copy()
    nan[0, 0] = np.nan
    assert (
        compare_canary({"logits": nan}, {"logits": REFERENCE}, "logits", CANARY)
        .problems[0]
        .startswith("output 'logits' differs from the reference by up to nan")
    )
    assert compare_canary({"scores": REFERENCE}, {}, "scores", CANARY).problems == [
        "no reference for output 'scores' in canary/outputs.npz"
    ]
    assert compare_canary({"logits": REFERENCE[:2]}, {"logits": REFERENCE}, "logits", CANARY).problems == [
        "output 'logits' has shape [2, 2], the reference [4, 2]"
    ]
    embedding = CANARY.model_copy(update={"min_agreement_top1": None})
    assert compare_canary({"e": REFERENCE}, {"e": REFERENCE}, "e", embedding).agreement_top1 is None
