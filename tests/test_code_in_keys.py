"""Code is in every cache key, module by module: in a copy of the package, an edit to a stage
re-runs that step and everything its new output feeds, while an edit to a stage the recipe does
not use (or a comment, or formatting) re-runs nothing. Granularity is the module's import closure
(optimize/code_fingerprint.py), so the unrelated edit is expected to re-run nothing at all."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import REPO, run_cli, tiny_recipe_dict

pytestmark = pytest.mark.slow


def _manifest(artifacts):
    run_id = (artifacts / "tiny" / "LATEST").read_text().strip()
    return json.loads((artifacts / "tiny" / run_id / "manifest.json").read_text())


def _reran(manifest) -> dict[str, bool]:
    """What this run computed (True) or took from the cache (False), unit by unit."""
    (target,) = manifest["targets"]
    units = {step["id"]: not step["cached"] for step in manifest["steps"]}
    units["original export"] = not manifest["original"]["export"]["cached"]
    units["engine"] = not target["build_cached"]
    units.update({f"{name} engine": not b["build_cached"] for name, b in target["baselines"].items()})
    units["evaluation"] = not target["evaluation_cached"]
    return units


def _edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} no longer holds the text this test edits: {old!r}"
    path.write_text(text.replace(old, new, 1))


def test_a_stage_edit_reruns_it_and_what_follows_an_unrelated_edit_reruns_nothing(write_recipe, tmp_path):
    package = tmp_path / "package"
    shutil.copytree(REPO / "optimize", package / "optimize", ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(package), "OMP_NUM_THREADS": "1"}  # the copy, not the installed package
    stages = [{"train": {"epochs": 2, "lr": 0.02, "batch_size": 16}}, {"prune": {"channel_ratio": 0.5}}]
    settings = tiny_recipe_dict(stages=[*stages, "export", {"quantize": {}}], tracking={"enabled": False})
    settings["model"]["args"]["width"] = 16
    recipe = write_recipe(settings)
    artifacts = tmp_path / "artifacts"

    def run() -> dict[str, bool]:
        completed = run_cli(
            "run", str(recipe), "--artifacts", str(artifacts), "--quiet", cwd=tmp_path, env=env
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
        return _reran(_manifest(artifacts))

    first = run()
    assert all(first.values()), first
    stages = package / "optimize" / "stages"

    # Unrelated: distill is not in the recipe; a comment and a docstring in export change no code.
    _edit(stages / "distill.py", "compresses = True", "compresses = True\n    edited_for_test = 1")
    _edit(stages / "export.py", "def parity_limit(", "# a comment added by the test\ndef parity_limit(")
    _edit(
        stages / "export.py",
        '"""Export the torch model to ONNX',
        '"""Edited docstring. Export the torch model to ONNX',
    )
    assert not any(run().values()), "an edit that changes no used code re-ran work"

    # The export stage now writes one more field into its artifact: both exports (the chain's and
    # the original model's) re-run, and so does everything that reads their new outputs: quantize,
    # the FP32 and original engines, the evaluation session. Train and prune, upstream, do not.
    # The store is content-addressed: quantize writes the same bytes as before (the field is not
    # carried over), so the final engine, keyed on those bytes, is rightly taken from the cache.
    _edit(
        stages / "export.py",
        "fp32_reference=True,",
        "fp32_reference=True,\n            edited_for_test=True,",
    )
    assert run() == {
        "train": False,
        "prune": False,
        "export": True,
        "quantize": True,
        "original export": True,
        "engine": False,
        "fp32 engine": True,
        "original engine": True,
        "evaluation": True,
    }
