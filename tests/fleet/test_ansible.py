"""The Ansible rollout (deploy/ansible) with the real ansible-playbook against three local hosts
(`ansible_connection: local`, each its own optimize_release_root under tmp_path, no workload to
reload unless a test says so): a bundle rolls out everywhere; one with a flipped byte fails
verification on the first batch, which stops the rollout, and every host keeps serving what it
had; a failed health check switches the host back; a good one reloads through the release's
kustomize overlay, old releases are pruned (never the current or previous one), a rerun changes
nothing, and rollback.yml returns every host to the old release. The bundles are two real tiny
runs through `optimize bundle`, checked on the hosts by the real `optimize verify`. ansible-lint
passes on the role and the playbooks."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

import optimize
from tests.conftest import ASSETS, REPO, tiny_recipe_dict

ANSIBLE = REPO / "deploy" / "ansible"
BIN = Path(sys.executable).parent
PLAYBOOK = BIN / "ansible-playbook"
LINT = BIN / "ansible-lint"
DEVICE_CLASS = "x86-cpu-onnxruntime"
GROUP = "x86_cpu_onnxruntime"  # Ansible group names hold no '-'
HOSTS = ("node1", "node2", "node3")

pytestmark = pytest.mark.skipif(
    not PLAYBOOK.exists(), reason=f"ansible-core is not installed in this environment ({PLAYBOOK} missing)"
)


@dataclass(frozen=True)
class Bundles:
    v1: Path
    v2: Path
    corrupted_v2: Path  # v2 with one byte of its engine flipped, under the same name
    version1: int
    version2: int


def tar_folder(folder: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)


def corrupt(archive: Path, out: Path) -> Path:
    """A copy of the archive (same name) whose engine file has one byte flipped."""
    unpacked = out / "unpacked"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    (folder,) = unpacked.iterdir()
    engine = folder / json.loads((folder / "bundle.json").read_text())["engine"]["file"]
    data = bytearray(engine.read_bytes())
    data[len(data) // 2] ^= 0xFF
    engine.write_bytes(bytes(data))
    tar_folder(folder, out / archive.name)
    shutil.rmtree(unpacked)
    return out / archive.name


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Bundles:
    """Two runs of the tiny recipe, each bundled by `optimize bundle` (the API) for
    x86-cpu-onnxruntime: versions v1 < v2 of one model. A version is its run's date and time to
    the second, so the second run starts in a later second."""
    root = tmp_path_factory.mktemp("bundles")
    shutil.copy(ASSETS / "tiny_models.py", root / "tiny_models.py")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tracking={"enabled": False}), sort_keys=False))
    archives = []
    for index in (1, 2):
        if index == 2:
            time.sleep(1.05 - time.time() % 1)
        outcome = optimize.run(recipe, artifacts=root / "artifacts")
        assert outcome.exit_code == 0, outcome.problems
        folder = optimize.bundle(
            device_class=DEVICE_CLASS, artifacts=root / "artifacts", out=root / "bundles"
        )
        archives.append(Path(f"{folder}.tar.gz"))
    versions = [version_of(archive) for archive in archives]
    assert versions[0] < versions[1], versions
    bad = root / "corrupted"
    bad.mkdir()
    return Bundles(archives[0], archives[1], corrupt(archives[1], bad), *versions)


def version_of(archive: Path) -> int:
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/bundle.json"))
        return json.load(tar.extractfile(member))["model"]["version"]


@dataclass
class Fleet:
    """Three local hosts in the device class's group, each with its own optimize_release_root."""

    roots: dict[str, Path]
    inventory: Path
    env: dict[str, str]
    cwd: Path

    def play(self, playbook: str, *extra: str, **variables) -> subprocess.CompletedProcess:
        args = [str(PLAYBOOK), "-i", str(self.inventory), str(ANSIBLE / playbook), *extra]
        if variables:
            args += ["-e", json.dumps(variables)]
        return subprocess.run(args, capture_output=True, text=True, env=self.env, cwd=self.cwd, timeout=300)

    def rollout(self, bundle: Path, **variables) -> subprocess.CompletedProcess:
        return self.play("rollout.yml", bundle=str(bundle), **variables)

    def link(self, host: str, name: str = "current") -> int | None:
        path = self.roots[host] / name
        return int(Path(os.readlink(path)).name) if path.is_symlink() else None

    def releases(self, host: str) -> list[int]:
        folder = self.roots[host] / "releases"
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.exists() else []


def ansible_env(tmp_path: Path) -> dict[str, str]:
    """Ansible's state, temporary files and configuration under tmp_path, never ~/.ansible, and
    the venv's `optimize` first on PATH."""
    config = tmp_path / "ansible.cfg"
    config.write_text("[defaults]\nretry_files_enabled = False\n")
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(config),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local-tmp"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote-tmp"),
        "ANSIBLE_PIPELINING": "True",  # one process per task on a node, not four
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_LOCALHOST_WARNING": "False",
    }


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    roots = {host: tmp_path / host for host in HOSTS}
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "optimize_release_verify_command": f"{BIN / 'optimize'} verify",
                "optimize_release_reload": "none",
                "optimize_release_health_check": "none",
            },
            "children": {
                GROUP: {"hosts": {host: {"optimize_release_root": str(root)} for host, root in roots.items()}}
            },
        }
    }
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return Fleet(roots, path, ansible_env(tmp_path), tmp_path)


def recap(result: subprocess.CompletedProcess) -> dict[str, dict[str, int]]:
    """PLAY RECAP's counts by host: {'node1': {'ok': 12, 'changed': 3, 'failed': 0, ...}}."""
    counts = {}
    for line in result.stdout.split("PLAY RECAP")[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if match:
            counts[match[1]] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match[2])}
    return counts


def rolled_out_to(result: subprocess.CompletedProcess) -> set[str]:
    """The hosts the rollout play (not the play that picks them) ran any task on."""
    play = result.stdout.split("PLAY [Roll the bundle out]")[-1].split("PLAY RECAP")[0]
    return set(re.findall(r"^\w+: \[(\w+)\]", play, flags=re.MULTILINE)) & set(HOSTS)


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


KUBECTL = """#!/bin/sh
# Stands in for kubectl on a node without a cluster: records the call, and for `apply -k DIR`
# renders DIR with the real `kubectl kustomize` (or, without kubectl, checks DIR is an overlay).
echo "$@" >> {record}
[ "$1" = apply ] && [ "$2" = -k ] || exit 1
if command -v kubectl >/dev/null; then exec kubectl kustomize "$3" >/dev/null; fi
test -f "$3/kustomization.yaml"
"""


def kubectl_stand_in(folder: Path) -> tuple[Path, Path]:
    """(the stand-in's path, the file it records its calls in)."""
    script, record = folder / "kubectl", folder / "kubectl-calls"
    script.write_text(KUBECTL.format(record=record))
    script.chmod(0o755)
    return script, record


@contextlib.contextmanager
def triton_health() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that answers Triton's readiness path with 200: (its URL, the paths asked)."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            asked.append(self.path)
            self.send_response(200 if self.path == "/v2/health/ready" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v2/health/ready", asked
    finally:
        server.shutdown()
        server.server_close()


def test_rollout_verification_and_health_failures_pruning_and_rollback(fleet: Fleet, bundles: Bundles):
    v1, v2 = bundles.version1, bundles.version2
    for root in fleet.roots.values():  # three older releases on every node
        for old in (1, 2, 3):
            (root / "releases" / str(old)).mkdir(parents=True)

    # v1 everywhere, keeping two releases
    result = fleet.rollout(bundles.v1, optimize_release_serial="100%", optimize_release_keep=2)
    assert result.returncode == 0, output(result)
    for host, root in fleet.roots.items():
        assert (fleet.link(host), fleet.link(host, "previous"), fleet.releases(host)) == (v1, None, [3, v1])
        assert (root / "current" / "bundle.json").is_file()

    # v2 with a flipped byte in its engine, in the default batches (one node first): it fails
    # verification on that node, is removed there, and the rollout stops after the first batch
    result = fleet.rollout(bundles.corrupted_v2)
    assert result.returncode != 0, output(result)
    assert f"Release {v2} failed verification, current is unchanged ({v1})" in result.stdout
    assert "does not match its SHA-256" in result.stdout  # optimize verify's own reason
    assert recap(result)["node1"]["failed"] == 1
    assert rolled_out_to(result) == {"node1"}
    for host in HOSTS:
        assert (fleet.link(host), fleet.releases(host)) == (v1, [3, v1]), host

    # a good v2 whose health check fails: the first node switches back to v1, and the rollout stops
    result = fleet.rollout(
        bundles.v2,
        optimize_release_health_check="command",
        optimize_release_health_command="test -e not-served",
        optimize_release_health_retries=0,
    )
    assert result.returncode != 0, output(result)
    assert f"Release {v2} failed after the switch (Run the health command" in result.stdout
    assert f"current is back on {v1}" in result.stdout
    assert rolled_out_to(result) == {"node1"}
    for host in HOSTS:
        assert (fleet.link(host), fleet.link(host, "previous")) == (v1, None), host

    # v2 everywhere, reloaded with `kubectl apply -k` of the release's overlay (a stand-in that
    # renders it) and checked on Triton's readiness URL, keeping one release: the current one,
    # and the previous one all the same
    kubectl, calls = kubectl_stand_in(fleet.cwd)
    with triton_health() as (url, asked):
        result = fleet.rollout(
            bundles.v2,
            optimize_release_serial="100%",
            optimize_release_keep=1,
            optimize_release_reload="kubectl",
            optimize_release_kubectl_command=str(kubectl),
            optimize_release_health_check="http",
            optimize_release_health_url=url,
        )
    assert result.returncode == 0, output(result)
    for host in HOSTS:
        assert (fleet.link(host), fleet.link(host, "previous"), fleet.releases(host)) == (v2, v1, [v1, v2])
    assert sorted(calls.read_text().splitlines()) == sorted(
        f"apply -k {root}/current/k8s/overlays/{DEVICE_CLASS}" for root in fleet.roots.values()
    )
    assert asked == ["/v2/health/ready"] * len(HOSTS)

    # the same bundle again: nothing copied, unpacked, switched or pruned
    result = fleet.rollout(bundles.v2, optimize_release_serial="100%")
    assert result.returncode == 0, output(result)
    assert {host: recap(result)[host]["changed"] for host in HOSTS} == dict.fromkeys(HOSTS, 0), result.stdout

    result = fleet.play("rollback.yml", device_class=DEVICE_CLASS)
    assert result.returncode == 0, output(result)
    for host in HOSTS:
        assert (fleet.link(host), fleet.link(host, "previous"), fleet.releases(host)) == (v1, None, [v1, v2])


def test_rollback_with_nothing_older_fails_and_leaves_current(fleet: Fleet):
    for root in fleet.roots.values():
        (root / "releases" / "5").mkdir(parents=True)
        (root / "current").symlink_to("releases/5")
    result = fleet.play("rollback.yml", device_class=DEVICE_CLASS)
    assert result.returncode != 0
    assert (
        "No release to roll back to on this node: no release older than 5 and no previous link"
        in result.stdout
    )
    assert all(fleet.link(host) == 5 for host in HOSTS)


def test_requests_without_a_bundle_or_device_class_fail_before_any_node_is_touched(
    fleet: Fleet, tmp_path: Path
):
    result = fleet.play("rollout.yml")
    assert result.returncode != 0
    assert "No bundle given" in result.stdout

    result = fleet.rollout(tmp_path / "nothing.tar.gz")
    assert result.returncode != 0
    assert "nothing.tar.gz is not a bundle archive" in result.stdout

    result = fleet.play("rollback.yml", device_class="t4-tensorrt")  # no such group in the inventory
    assert result.returncode != 0
    assert "Name the device class to roll back" in result.stdout
    assert not any(root.exists() for root in fleet.roots.values())


def test_the_example_inventory_has_a_group_per_device_class_and_runs_here(tmp_path: Path):
    """Its groups are built-in device classes with '-' as '_'; its runnable group is local nodes
    under the checkout's artifacts/ with the venv's optimize (what the README's flow uses)."""
    from optimize.targets import builtin_device_classes

    result = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(ANSIBLE / "inventory.example.yml"), "--list"],
        capture_output=True,
        text=True,
        env=ansible_env(tmp_path),
        timeout=60,
    )
    assert result.returncode == 0, output(result)
    inventory = json.loads(result.stdout)
    groups = set(inventory["all"]["children"]) - {"ungrouped"}
    classes = {name.replace("-", "_") for name in builtin_device_classes()}
    assert groups and groups <= classes, groups - classes
    local = inventory["_meta"]["hostvars"]
    assert set(inventory[GROUP]["hosts"]) == set(local)
    for variables in local.values():
        assert variables["ansible_connection"] == "local"
        assert variables["optimize_release_root"].startswith("{{ playbook_dir }}/../../artifacts/")
        assert variables["optimize_release_reload"] == variables["optimize_release_health_check"] == "none"


def test_ansible_lint_passes_on_the_role_and_playbooks(tmp_path: Path):
    if not LINT.exists():
        pytest.skip(f"ansible-lint is not installed in this environment ({LINT} missing)")
    env = {**ansible_env(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = subprocess.run(
        [str(LINT), "--offline", "--nocolor", str(ANSIBLE)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, output(result)
