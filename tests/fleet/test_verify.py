"""`optimize verify` on a node: a fresh CPU bundle passes; a flipped byte, a missing or unlisted
file, wrong reference outputs, another runtime version or a placeholder engine each fail with
one line naming the check (exit 3). The decisions themselves are pure functions, tested alone."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

import optimize
from optimize.fleet.bundle_format import MANIFEST, CanaryRecord, RuntimeIdentity
from optimize.fleet.verify import (
    VerificationError,
    capability_problem,
    compare_canary,
    file_problems,
    runtime_problem,
)
from optimize.hashing import hash_file
from optimize.targets import builtin_device_classes
from optimize.versions import library_version
from tests.conftest import run_cli

CLASSES = {"onnxruntime": "x86-cpu-onnxruntime", "openvino": "intel-cpu-openvino"}
ENGINE_FILES = {"onnxruntime": ["model.onnx"], "openvino": ["model.xml", "model.bin"]}
SAMPLES = 24


def tiny_onnx(path: Path) -> None:
    """images [N, 6] → logits [N, 4] (MatMul + Add) and their softmax: two outputs, one scored."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(6, 4)).astype(np.float32), "weights")
    bias = numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "bias")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["images", "weights"], ["product"]),
            helper.make_node("Add", ["product", "bias"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 6])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 4]),
        ],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_bundle(folder: Path, runtime: str) -> Path:
    """A bundle as bundle_format describes it, around a tiny ONNX model: the engine under Triton's
    file names, canary inputs and the engine's own outputs on them, every file hashed."""
    from optimize.registries import RUNTIMES

    version_folder = folder / "model_repository" / "tiny" / "1"
    version_folder.mkdir(parents=True)
    tiny_onnx(folder / "tiny.onnx")
    if runtime == "openvino":
        import openvino as ov

        ov.save_model(ov.convert_model(str(folder / "tiny.onnx")), str(version_folder / "model.xml"))
        (folder / "tiny.onnx").unlink()
    else:
        (folder / "tiny.onnx").rename(version_folder / "model.onnx")
    (folder / "model_repository" / "tiny" / "config.pbtxt").write_text('name: "tiny"\n')
    device_class = builtin_device_classes()[CLASSES[runtime]]
    inputs = np.random.default_rng(1).normal(size=(SAMPLES, 6)).astype(np.float32)
    (folder / "canary").mkdir()
    np.savez(
        folder / "canary" / "inputs.npz", **{"input:images": inputs, "labels": np.zeros(SAMPLES, np.int64)}
    )
    runner = RUNTIMES.get(runtime)().open_file(version_folder / ENGINE_FILES[runtime][0], device_class)
    logits, probabilities = runner.run({"images": inputs})
    np.savez(folder / "canary" / "outputs.npz", logits=logits, probabilities=probabilities)
    manifest = {
        "model": {
            "name": "tiny",
            "version": 1,
            "run_id": "20250101-000000-tiny",
            "recipe_hash": "0" * 64,
            "recipe_sha256": "0" * 64,
            "task": "classification",
            "inputs": [{"name": "images", "dtype": "float32", "shape": [-1, 6]}],
            "outputs": ["logits", "probabilities"],
            "eval_output": "logits",
        },
        "device_class": device_class.model_dump(mode="json"),
        "runtime": {"name": runtime, "version": library_version(runtime)},
        "engine": {
            "file": f"model_repository/tiny/1/{ENGINE_FILES[runtime][0]}",
            "engine_key": "0" * 64,
            "precision": "fp32",
            "max_batch_size": 64,
        },
        "files": {},
        "preprocessing": {},
        "measured": {"accuracy": 0.9},
        "canary": {
            "samples": SAMPLES,
            "reference": "engine",
            "min_agreement_top1": 0.99,
            "max_abs_diff": 1e-4,
        },
    }
    (folder / MANIFEST).write_text(json.dumps(manifest))
    rehash(folder)
    return folder


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
    root = tmp_path_factory.mktemp("bundles")
    return {runtime: write_bundle(root / f"tiny-1-{CLASSES[runtime]}", runtime) for runtime in CLASSES}


@pytest.fixture
def bundle(pristine, tmp_path) -> Path:
    """A copy of the ONNX Runtime bundle that a test may damage."""
    return Path(shutil.copytree(pristine["onnxruntime"], tmp_path / pristine["onnxruntime"].name))


def failure(bundle: Path) -> str:
    with pytest.raises(VerificationError) as raised:
        optimize.verify(bundle)
    assert raised.value.exit_code == 3 and "\n" not in str(raised.value)
    return str(raised.value)


@pytest.mark.parametrize("runtime", sorted(CLASSES))
def test_a_fresh_cpu_bundle_passes_every_check(pristine, runtime):
    result = optimize.verify(pristine[runtime])
    assert result.checks == ("format", "files", "runtime", "engine", "canary")
    assert result.samples == SAMPLES and result.agreement_top1 == 1.0 and result.max_abs_diff <= 1e-4
    assert result.runtime_version == library_version(runtime)
    assert result.files == len(ENGINE_FILES[runtime]) + 3  # engine, config.pbtxt, two canary files


def test_the_command_prints_one_summary_line_and_exits_0_on_the_tar_gz(pristine, tmp_path):
    archive = tmp_path / "tiny-1-x86-cpu-onnxruntime.tar.gz"
    with tarfile.open(archive, "w:gz") as packed:
        packed.add(pristine["onnxruntime"], arcname=pristine["onnxruntime"].name)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    result = run_cli("verify", str(archive), env={"TMPDIR": str(temporary)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"ok tiny-1-x86-cpu-onnxruntime: 4 files, {SAMPLES} canary samples, top-1 agreement 100.0% "
        f"(≥ 99.0%), max abs diff 0 (≤ 0.0001), onnxruntime {library_version('onnxruntime')}"
    )
    assert not list(temporary.glob("optimize-verify-*"))  # the unpacked copy is gone


def test_a_flipped_byte_in_the_engine_fails_the_files_check_and_the_command_exits_3(bundle):
    engine = bundle / "model_repository" / "tiny" / "1" / "model.onnx"
    data = bytearray(engine.read_bytes())
    data[len(data) // 2] ^= 0x01
    engine.write_bytes(bytes(data))
    result = run_cli("verify", str(bundle))
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "error: files: model_repository/tiny/1/model.onnx does not match its SHA-256 in bundle.json "
        "(damaged or changed)"
    )


def test_a_missing_file_fails_the_files_check(bundle):
    (bundle / "canary" / "outputs.npz").unlink()
    assert failure(bundle) == "files: canary/outputs.npz is missing"


def test_a_file_not_listed_fails_the_files_check(bundle):
    (bundle / "model_repository" / "tiny" / "1" / "extra.onnx").write_bytes(b"not in bundle.json")
    assert failure(bundle) == "files: model_repository/tiny/1/extra.onnx is not listed in bundle.json"


def test_reference_outputs_that_the_engine_does_not_give_fail_the_canary(bundle):
    with np.load(bundle / "canary" / "outputs.npz") as stored:
        logits, probabilities = stored["logits"], stored["probabilities"]
    np.savez(bundle / "canary" / "outputs.npz", logits=logits[:, ::-1] + 0.5, probabilities=probabilities)
    rehash(bundle)
    message = failure(bundle)
    assert message.startswith(
        f"canary: {SAMPLES} samples: output 'logits' differs from the reference by up to "
    )
    assert "(allowed 0.0001); top-1 of 'logits' agrees with the reference on " in message
    assert message.endswith("(needs ≥ 99.0%)")


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
    (bundle / "model_repository" / "tiny" / "1" / "model.onnx").write_bytes(b"\x08\x07garbage")
    rehash(bundle)
    assert failure(bundle).startswith(
        f"engine: onnxruntime {library_version('onnxruntime')} cannot open model_repository/tiny/1/model.onnx: "
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
    assert (
        result.stderr.strip()
        == f"error: no bundle at {tmp_path / 'nothing.tar.gz'} (a bundle folder or its .tar.gz)"
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
