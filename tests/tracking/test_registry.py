"""Models through the MLflow Model Registry against a real `mlflow server --serve-artifacts`:
machine A runs a recipe and registers its model; machine B (another empty folder, no access to
A's) rebuilds `models:/tiny@candidate` and its build is on the server for A to read; a damaged
new version is caught against its predecessor's build; two classes rebuild at once; a server
that goes away mid-rebuild costs nothing (`optimize sync` uploads the rebuild once)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from optimize.recipe.schema import RegistrySpec
from optimize.tracking.model_uri import parse_model_uri
from optimize.tracking.registry import (
    BUILD_TAG,
    MANIFEST,
    previous_registered_build,
    registration_tags,
    version_tags,
)
from tests.conftest import run_cli, tiny_recipe_dict, wait_for_entry
from tests.tracking.mlflow_server import MlflowServer

CPU = "x86-cpu-onnxruntime"


# ---- pure parts


def _record(version, kind, time, run="r"):
    return {"registry_version": version, "kind": kind, "time": time, "run_id": run}


def test_the_previous_build_is_of_the_same_version_else_its_closest_predecessor():
    records = [
        _record(1, "run", "2026-01-01", "a"),
        _record(1, "rebuild", "2026-01-02", "b"),
        _record(2, "run", "2026-01-03", "c"),
        _record(4, "rebuild", "2026-01-04", "d"),
        _record(None, "rebuild", "2026-01-05", "e"),  # a build of no registered version
    ]
    assert previous_registered_build(records, 1)["run_id"] == "b"  # the last rebuild of v1
    assert previous_registered_build(records, 2)["run_id"] == "c"  # v2's own run
    assert previous_registered_build(records, 3)["run_id"] == "c"  # v3 never built: its predecessor v2
    assert previous_registered_build(records, 5)["run_id"] == "d"
    assert previous_registered_build(records[4:], 1) is None


def test_registration_asks_production_only_for_a_run_that_passed_its_gates():
    spec = RegistrySpec()
    assert registration_tags(spec, "digits", True)["optimize.registry.promote"] == "true"
    assert registration_tags(spec, "digits", False)["optimize.registry.promote"] == "false"
    assert registration_tags(RegistrySpec(promote="never"), "d", True)["optimize.registry.promote"] == "false"
    assert registration_tags(RegistrySpec(name="fleet-model", alias="nightly"), "d", True) == {
        "optimize.registry.name": "fleet-model",
        "optimize.registry.alias": "nightly",
        "optimize.registry.promote": "true",
    }
    assert registration_tags(RegistrySpec(enabled=False), "d", True) == {}


def test_model_references_parse_and_a_bad_one_says_the_forms():
    from optimize.errors import UsageError

    assert parse_model_uri("models:/tiny@candidate").alias == "candidate"
    assert parse_model_uri("models:/tiny/3").version == 3
    for bad in ("models:/tiny", "models:/tiny/0", "runs:/abc/model", "models:/@x"):
        with pytest.raises(UsageError, match=r"models:/NAME@ALIAS .* models:/NAME/VERSION"):
            parse_model_uri(bad)


# ---- against a real server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.stop()


def _rebuild(folder: Path, ref: str, device_class: str, uri: str) -> subprocess.Popen:
    """`optimize rebuild --from ref` in its own empty folder (its own machine)."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "optimize", "rebuild", "--from", ref, "--device-class", device_class]
        + ["--artifacts", str(folder / "artifacts"), "--tracking-uri", uri, "--quiet"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finished(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _builds_on_server(uri: str, rebuild_id: str) -> int:
    from optimize.tracking.registry import build_records, client_for

    return sum(record["run_id"] == rebuild_id for record in build_records(client_for(uri)))


def _rebuild_id(stdout: str) -> str:
    return stdout.split("rebuild ", 1)[1].split()[0]


@pytest.mark.slow
def test_a_registered_model_rebuilds_on_another_machine_and_its_builds_live_on_the_server(server, tmp_path):
    machine_a = tmp_path / "a"
    machine_a.mkdir()
    (machine_a / "tiny_models.py").write_text(
        (Path(__file__).parents[1] / "assets" / "tiny_models.py").read_text()
    )
    recipe = tiny_recipe_dict(
        targets=[CPU, "intel-cpu-openvino"],
        # long enough an evaluation for the server to be stopped in the middle of a rebuild's
        evaluation={"warmup_runs": 2, "min_runs": 5, "min_time_s": 2.0, "throughput_time_s": 0.05},
    )
    import yaml

    (machine_a / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    run = run_cli(
        "run", str(machine_a / "recipe.yaml"), "--artifacts", str(machine_a / "artifacts"),
        "--tracking-uri", server.uri, "--quiet",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "registered: models:/tiny/1" in run.stdout
    client = server.client()
    version = client.get_model_version_by_alias("tiny", "candidate")
    assert version.version == "1" and client.get_model_version_by_alias("tiny", "production").version == "1"
    assert version.tags["gates"] == "passed" and version.tags["precision"] == "fp32"
    children = client.search_runs(
        [client.get_run(version.run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{version.run_id}'",
    )
    assert {child.data.tags["device_class"] for child in children} == {CPU, "intel-cpu-openvino"}
    for child in children:  # engines with their identity, each build's record
        assert child.data.tags["engine_key"] and child.data.tags["optimize.registry.version"] == "1"
        assert {a.path for a in client.list_artifacts(child.info.run_id)} == {"engine"}
        assert json.loads(child.data.tags[BUILD_TAG])["device_class"] == child.data.tags["device_class"]

    machine_a.rename(tmp_path / "a-elsewhere")  # other machines have neither A's folder nor its files
    # Machines B and C (empty folders; everything comes from the server) rebuild two classes at
    # once against one server; A reads their builds from the server.
    together = [
        _rebuild(tmp_path / "b", "models:/tiny@candidate", CPU, server.uri),
        _rebuild(tmp_path / "c", "models:/tiny/1", "intel-cpu-openvino", server.uri),
    ]
    finished = [_finished(process) for process in together]
    for done in finished:
        assert done.returncode == 0, done.stderr
        assert "buffered" not in done.stderr
        assert _builds_on_server(server.uri, _rebuild_id(done.stdout)) == 1
    cpu_build = _rebuild_id(finished[0].stdout)
    shown = run_cli("history", "--tracking-uri", server.uri, "--device-class", CPU, cwd=tmp_path)
    assert shown.returncode == 0 and cpu_build in shown.stdout and "rebuild" in shown.stdout

    # A damaged new version (perturbed weights), registered as the candidate: caught against
    # version 1's last build of the class.
    _register_variant(client, version, tmp_path / "damaged", _perturb_weights)
    damaged = _finished(_rebuild(tmp_path / "b", "models:/tiny@candidate", CPU, server.uri))
    assert damaged.returncode == 1, damaged.stdout + damaged.stderr
    assert "regression:" in damaged.stdout and "accuracy" in damaged.stdout
    assert f"Previous build (rebuild {cpu_build}," in damaged.stdout

    # A version whose eval samples were not registered, read by a module only machine A has:
    # refused with the reason, before any build.
    _register_variant(client, version, tmp_path / "unreadable", _eval_data_only_on_machine_a)
    refused = _finished(_rebuild(tmp_path / "b", "models:/tiny@candidate", CPU, server.uri))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "data.eval (python:a_only_data:load_eval) cannot be read here" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr

    # The server goes away mid-rebuild: the build finishes, is buffered, and syncs once.
    machine_e = tmp_path / "e"
    process = _rebuild(machine_e, "models:/tiny/1", CPU, server.uri)
    wait_for_entry(machine_e / "artifacts", f"{CPU} engine")
    server.stop(at_once=True)
    try:
        offline = _finished(process)
        assert offline.returncode == 0, offline.stderr
        assert "buffered" in offline.stderr and "optimize sync" in offline.stderr
    finally:
        server.start()
    synced = run_cli("sync", "--artifacts", str(machine_e / "artifacts"))
    assert synced.returncode == 0 and "synced 1 run(s)" in synced.stdout, synced.stdout + synced.stderr
    again = run_cli("sync", "--artifacts", str(machine_e / "artifacts"))
    assert again.returncode == 0 and "nothing to sync" in again.stdout
    assert _builds_on_server(server.uri, _rebuild_id(offline.stdout)) == 1


def _register_variant(client, version, scratch: Path, change) -> str:
    """Version 1's registry folder changed by change(folder, manifest) (the manifest's hash of the
    final model updated, as a real run of that model would record it), registered as a new
    version @candidate; returns its number."""
    from optimize.hashing import hash_tree

    folder = Path(client.download_artifacts(version.run_id, "registry", str(scratch)))
    manifest = json.loads((folder / MANIFEST).read_text())
    change(folder, manifest)
    manifest["steps"][-1]["output"]["hash"] = hash_tree(folder / "final")
    (folder / MANIFEST).write_text(json.dumps(manifest))
    run = client.get_run(version.run_id)
    variant = client.create_run(run.info.experiment_id, run_name="variant").info.run_id
    client.log_artifacts(variant, str(folder), "registry")
    client.set_terminated(variant)
    created = client.create_model_version(
        "tiny", f"{client.get_run(variant).info.artifact_uri}/registry", run_id=variant,
        tags=version_tags(manifest, True),
    )  # fmt: skip
    client.set_registered_model_alias("tiny", "candidate", created.version)
    return created.version


def _perturb_weights(folder: Path, manifest: dict) -> None:
    """The final model's float weights with noise of twice their mean magnitude."""
    import onnx
    from onnx import numpy_helper

    model_file = next((folder / "final").glob("*.onnx"))
    model = onnx.load(str(model_file))
    rng = np.random.default_rng(0)
    for index, tensor in enumerate(model.graph.initializer):
        values = numpy_helper.to_array(tensor)
        if values.dtype == np.float32 and values.size > 16:
            noisy = values + rng.normal(0, 2 * float(np.abs(values).mean()), values.shape).astype(np.float32)
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(noisy, tensor.name))
    onnx.save(model, str(model_file))


def _eval_data_only_on_machine_a(folder: Path, manifest: dict) -> None:
    """As a run whose eval samples were over registry.max_eval_mb, read by a module of A's."""
    import shutil

    shutil.rmtree(folder / "eval")
    source = {"source": "python:a_only_data:load_eval", "labeled": True}
    manifest["recipe"]["given"]["data"]["eval"] = source
    manifest["data"]["eval"] = {"fingerprint": "0" * 64, "source": source}


# ---- registration and promotion in a local store (the registry without a server)


def _logged_run(client, experiment_id: str, scratch: Path, gates: str, run_id: str) -> str:
    """A parent run as `optimize run` logs one that asks for registration."""
    manifest = {
        "run_id": run_id,
        "recipe": {"name": "tiny", "hash": "r" * 64},
        "source": {"hash": "s" * 64},
        "steps": [{"output": {"hash": "m" * 64}}],
        "targets": [{"engine": {"precision": "int8"}}],
    }
    folder = scratch / run_id / "registry"
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    logged = client.create_run(
        experiment_id,
        tags={**registration_tags(RegistrySpec(), "tiny", gates == "passed"), "gates": gates},
    ).info.run_id
    client.log_artifacts(logged, str(folder), "registry")
    client.create_run(experiment_id, tags={"mlflow.parentRunId": logged, "device_class": CPU})
    return logged


def test_registration_is_once_per_run_and_promotion_refuses_a_version_that_failed_its_gates(tmp_path):
    from optimize.tracking.client import local_store_uri
    from optimize.tracking.registry import client_for, register_run

    uri = local_store_uri(tmp_path)
    client = client_for(uri)
    experiment = client.create_experiment("tiny", artifact_location=(tmp_path / "mlruns").as_uri())
    passed = _logged_run(client, experiment, tmp_path, "passed", "run-1")
    failed = _logged_run(client, experiment, tmp_path, "failed", "run-2")

    first = register_run(client, passed)
    assert str(register_run(client, passed).version) == str(first.version) == "1"  # once per run
    assert first.tags["precision"] == "int8" and first.tags["recipe_hash"] == "r" * 64
    assert str(client.get_model_version_by_alias("tiny", "production").version) == "1"
    second = register_run(client, failed)
    assert str(second.version) == "2" and second.tags["gates"] == "failed"
    assert str(client.get_model_version_by_alias("tiny", "candidate").version) == "2"
    assert str(client.get_model_version_by_alias("tiny", "production").version) == "1"  # not on a failure
    children = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{failed}'")
    assert [child.data.tags["optimize.registry.version"] for child in children] == ["2"]

    refused = run_cli("promote", "models:/tiny@candidate", "--artifacts", str(tmp_path))
    assert refused.returncode == 2 and "failed its gates in run run-2" in refused.stderr
    assert "--force" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    forced = run_cli("promote", "models:/tiny/2", "--force", "--artifacts", str(tmp_path))
    assert forced.returncode == 0 and "models:/tiny@production → version 2" in forced.stdout
    assert str(client.get_model_version_by_alias("tiny", "production").version) == "2"
    unknown = run_cli("promote", "models:/tinny/1", "--artifacts", str(tmp_path))
    assert unknown.returncode == 2 and "did you mean 'tiny'" in unknown.stderr

    for ref, reason in (
        ("models:/tiny@nightly", "tiny has aliases: candidate, production"),
        ("models:/tiny/9", "tiny has versions: 1, 2"),
        ("models:/tinny@candidate", "did you mean 'tiny'"),
    ):
        wrong = run_cli("rebuild", "--from", ref, "--device-class", CPU, "--artifacts", str(tmp_path))
        assert wrong.returncode == 2 and reason in wrong.stderr, wrong.stderr
        assert len(wrong.stderr.strip().splitlines()) == 1


def test_a_registry_reference_without_a_registry_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    nowhere = run_cli(
        "rebuild", "--from", "models:/tiny@candidate", "--device-class", CPU, "--artifacts", str(empty)
    )
    assert nowhere.returncode == 2 and "no tracking server given (--tracking-uri" in nowhere.stderr
    closed = "http://127.0.0.1:9"  # the discard port: nothing answers
    down = run_cli("promote", "models:/tiny/1", "--tracking-uri", closed, "--artifacts", str(empty))
    assert down.returncode == 2 and f"cannot reach the registry at {closed}" in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1
    malformed = run_cli("rebuild", "--from", "models:/tiny", "--device-class", CPU, "--artifacts", str(empty))
    assert malformed.returncode == 2 and "models:/NAME@ALIAS" in malformed.stderr
