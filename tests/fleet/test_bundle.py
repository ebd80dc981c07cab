"""`optimize bundle`: a run's ok targets as deployment bundles (a Triton model repository whose
config parses as Triton's own ModelConfig, bundle.json, a canary set, manifests) that
`optimize verify` accepts; bad requests are one line, exit 2, and leave nothing behind."""

from __future__ import annotations

import importlib.util
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

import optimize
from optimize.fleet.bundle import model_version
from optimize.fleet.bundle_format import MANIFEST, TensorSpec, read_bundle
from optimize.fleet.triton import render_config
from optimize.hashing import hash_file
from optimize.registries import RUNTIMES
from tests.conftest import ASSETS, run_cli, tiny_recipe_dict

TARGETS = ["x86-cpu-onnxruntime", "intel-cpu-openvino"]


def model_config_type():
    """Triton's ModelConfig message as the `tritonclient` package ships it, loaded from its file:
    importing tritonclient.grpc would need grpcio, which parsing a config does not."""
    found = importlib.util.find_spec("tritonclient")
    if found is None:
        pytest.skip("tritonclient is not installed (a dev dependency: make setup installs it)")
    path = Path(found.submodule_search_locations[0]) / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ModelConfig


def parse_config(text: str):
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_type()())


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    """One tiny INT8 run with `bundle: true`: a bundle per CPU target, plus a skipped TensorRT one."""
    root = tmp_path_factory.mktemp("bundles")
    shutil.copy(ASSETS / "tiny_models.py", root / "tiny_models.py")
    stages = [*tiny_recipe_dict()["stages"], {"quantize": {"precision": "int8"}}]
    recipe = tiny_recipe_dict(
        stages=stages, targets=[*TARGETS, "jetson-orin-tensorrt"], tracking={"enabled": False}, bundle=True
    )
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    outcome = optimize.run(root / "recipe.yaml", artifacts=root / "artifacts")
    assert outcome.exit_code == 0, outcome.problems
    return outcome, root / "artifacts"


def test_run_with_bundle_true_writes_one_verified_bundle_per_ok_target(bundled):
    outcome, artifacts = bundled
    assert sorted(folder.name for folder in outcome.bundles) == sorted(
        f"tiny-{model_version(outcome.run_id)}-{name}" for name in TARGETS
    )
    for folder in outcome.bundles:
        bundle = read_bundle(folder)
        target = next(t for t in outcome.target_records if t["name"] == bundle.device_class["name"])
        assert bundle.model.run_id == outcome.run_id and bundle.runtime.version == target["runtime_version"]
        assert bundle.engine.engine_key == target["engine_key"] and bundle.canary.reference == "engine"
        assert bundle.measured["accuracy"] == target["metrics"]["accuracy"]
        listed = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
        assert set(bundle.files) == listed - {MANIFEST}
        assert all(hash_file(folder / name) == digest for name, digest in bundle.files.items())
        with tarfile.open(folder.with_name(folder.name + ".tar.gz")) as archive:
            assert {m.name for m in archive.getmembers() if m.isfile()} == {
                f"{folder.name}/{n}" for n in listed
            }
        verified = optimize.verify(folder)
        assert verified.samples == bundle.canary.samples


def test_the_triton_config_describes_the_engine(bundled):
    outcome, _ = bundled
    for folder in outcome.bundles:
        bundle = read_bundle(folder)
        config = parse_config((folder / "model_repository" / "tiny" / "config.pbtxt").read_text())
        assert config.name == "tiny" and config.max_batch_size == bundle.device_class["batch"]["max"]
        assert [(i.name, list(i.dims)) for i in config.input] == [("images", [3, 8, 8])]
        assert [(o.name, list(o.dims)) for o in config.output] == [("logits", [10])]
        served = {
            p.name for p in (folder / "model_repository" / "tiny" / str(bundle.model.version)).iterdir()
        }
        runtime = RUNTIMES.get(bundle.runtime.name)
        assert served == set(runtime.triton.files.values())
        assert config.platform == (runtime.triton.platform or "") and config.backend == (
            runtime.triton.backend or ""
        )
        assert bundle.preprocessing.layout == "NCHW" and bundle.preprocessing.mean == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("runtime", RUNTIMES.names())
def test_every_runtime_config_parses_as_triton_model_config(runtime):
    """Contract over the runtime registry: what Triton serves it with is a valid ModelConfig; a
    TensorRT plan is named for the compute capability that built it."""
    triton = RUNTIMES.get(runtime).triton
    tensors = [TensorSpec(name="images", dtype="float32", shape=[-1, 3, 32, 32])]
    outputs = [TensorSpec(name="logits", dtype="float16", shape=[-1, 10])]
    config = parse_config(
        render_config(
            "m",
            triton,
            tensors,
            outputs,
            32,
            gpu=runtime == "tensorrt",
            compute_capability="8.7" if runtime == "tensorrt" else None,
        )
    )
    assert list(config.input[0].dims) == [3, 32, 32] and config.max_batch_size == 32
    if runtime == "tensorrt":
        assert dict(config.cc_model_filenames) == {"8.7": "model.plan"}
        assert config.instance_group[0].kind == config.instance_group[0].KIND_GPU


def test_a_fixed_batch_model_is_served_without_triton_batching():
    triton = RUNTIMES.get("onnxruntime").triton
    fixed = [TensorSpec(name="x", dtype="int64", shape=[1, 128])]
    config = parse_config(render_config("m", triton, fixed, fixed, 0, gpu=False))
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [1, 128]
    assert not config.HasField("dynamic_batching")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--device-class", "x86-cpu-onnxruntim"],
            "has no target 'x86-cpu-onnxruntim' (did you mean 'x86-cpu-onnxruntime'?)",
        ),
        (["--device-class", "jetson-orin-tensorrt"], "target 'jetson-orin-tensorrt' of run"),
        (["no-such-run", "--device-class", "x86-cpu-onnxruntime"], "no run 'no-such-run'"),
    ],
)
def test_bad_bundle_requests_are_one_line_exit_2(bundled, tmp_path, args, message):
    _, artifacts = bundled
    result = run_cli("bundle", *args, "--artifacts", str(artifacts), "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_existing_bundle_is_never_overwritten(bundled):
    outcome, artifacts = bundled
    existing = outcome.bundles[0]
    before = json.loads((existing / MANIFEST).read_text())
    result = run_cli(
        "bundle", "--device-class", read_bundle(existing).device_class["name"], "--artifacts", str(artifacts)
    )
    assert (
        result.returncode == 2
        and f"{existing} exists; remove it or give another --out folder" in result.stderr
    )
    assert json.loads((existing / MANIFEST).read_text()) == before
    assert not [p for p in existing.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_the_canary_reproduces_the_engine_outputs(bundled):
    outcome, _ = bundled
    folder = outcome.bundles[0]
    with (
        np.load(folder / "canary" / "inputs.npz") as inputs,
        np.load(folder / "canary" / "outputs.npz") as outputs,
    ):
        assert inputs["input:images"].shape == (32, 3, 8, 8) and outputs["logits"].shape == (32, 10)
        assert set(inputs.files) == {"input:images", "labels"}
