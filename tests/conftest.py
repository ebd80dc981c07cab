"""Shared fixtures: a recipe writer around a tiny model on a digits subset, and CLI helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ASSETS = Path(__file__).parent / "assets"

if "PYTEST_XDIST_WORKER" in os.environ:
    # Two test processes on two cores: one OpenMP thread each (torch training, in-process and in
    # the `optimize` commands tests start), so they do not oversubscribe the cores. Engines are
    # timed with the runtimes' own thread pools, which this does not change.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parent.parent
# A command a test runs without --artifacts (`optimize validate recipe.yaml`) writes its store
# here, never into the checkout's ./artifacts.
os.environ.setdefault("OPTIMIZE_ARTIFACTS", tempfile.mkdtemp(prefix="optimize-test-artifacts-"))


# The modules that take longest, started first: with the suite spread over two processes
# (`make test`), they then run beside the many short ones instead of after them.
LONGEST_FIRST = (
    "tests/test_demo.py",
    "tests/tracking/test_offline_sync.py",
    "tests/test_cli_gates.py",
    "tests/workflows/test_rebuild.py",
    "tests/test_reliability.py",
    "tests/test_cli_run.py",
    "tests/fleet/test_node_install.py",
    "tests/fleet/test_bundle.py",
    "tests/test_multi_input.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: index for index, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


def tiny_recipe_dict(**overrides: Any) -> dict[str, Any]:
    """A fast recipe: a tiny residual CNN on 8×8 digits, a few seconds end to end."""
    recipe: dict[str, Any] = {
        "name": "tiny",
        "model": {
            "source": "python:tiny_models:tiny_cnn",
            "args": {"num_classes": 10, "width": 8},
            "input": {"name": "images", "shape": [1, 3, 8, 8]},
            "output_name": "logits",
        },
        "data": {
            "train": {"source": "digits", "split": "train", "image_size": 8, "samples": 400},
            "eval": {"source": "digits", "split": "test", "image_size": 8, "samples": 100},
            "calibration": {"source": "digits", "split": "calibration", "image_size": 8, "samples": 64},
        },
        "stages": [{"train": {"epochs": 3, "lr": 0.02, "batch_size": 16}}, {"export": {"opset": 17}}],
        "targets": ["x86-cpu-onnxruntime"],
        # At 0.02 ms the tiny CNN's INT8 engine is slower than its FP32 one (per-op overhead), which
        # the default speed gate rightly fails; tests about other things turn that default off
        # (tests/test_cli_gates.py keeps it).
        "gates": {"min_speedup": None},
        "evaluation": {
            "warmup_runs": 2,
            "min_runs": 5,
            "min_time_s": 0.05,
            "throughput_time_s": 0.05,
            "latency_processes": 1,
        },
    }
    for key, value in overrides.items():
        if value is None:
            recipe.pop(key, None)
        else:
            recipe[key] = value
    return recipe


def recipe_stub(targets: list[str], runtimes: dict[str, str]):
    """Just what the quantize checks read from a recipe: its targets and their device classes'
    runtimes (named freely, so a test can register a runtime of its own)."""
    from types import SimpleNamespace

    classes = [SimpleNamespace(name=name, runtime=runtime) for name, runtime in runtimes.items()]
    return SimpleNamespace(
        targets=targets,
        device_classes=classes,
        data=SimpleNamespace(eval=None),
        model=SimpleNamespace(task="classification"),
    )


@pytest.fixture
def write_recipe(tmp_path: Path):
    """write_recipe(dict_or_text, name='recipe.yaml') → path, with tiny_models.py beside it."""
    shutil.copy(ASSETS / "tiny_models.py", tmp_path / "tiny_models.py")

    def write(content: dict[str, Any] | str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
        return path

    return write


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600):
    """Run the real `optimize` command in a subprocess (as a user would)."""

    full_env = {**os.environ, **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None) if env is None or "MLFLOW_TRACKING_URI" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "optimize", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=full_env,
        timeout=timeout,
    )


def wait_for_entry(artifacts: Path, label: str, timeout: float = 300) -> None:
    """Block until the store holds a finished entry with this label (e.g. 'stage train')."""
    import json
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in (artifacts / "store" / "entries").glob("*.json"):
            try:
                if json.loads(entry.read_text()).get("label") == label:
                    return
            except ValueError:
                pass
        time.sleep(0.2)
    raise TimeoutError(label)
