"""Device, precision and layout of torch stages: bad choices refused at recipe load, `cpu` and
`auto` on a CPU host giving the same stored model, what the manifest records, which choices the
cache key sees, and (on a GPU host, marked gpu) bf16 training whose model loads on a CPU host."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import optimize
from optimize.cli import main
from optimize.torch_device import TorchSetup, amp_problem, device_problem, resolve_device
from tests.assets.tiny_models import tiny_cnn, tiny_mlp
from tests.conftest import tiny_recipe_dict

NO_CUDA = not torch.cuda.is_available()


def test_device_names_are_checked_against_the_pattern_and_the_host():
    assert device_problem("cpu") is None and device_problem("auto") is None
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", "mps"):
        assert "valid: auto, cpu, cuda, cuda:N" in device_problem(bad)
    if NO_CUDA:
        assert "this host has no CUDA device" in device_problem("cuda:0")
        assert resolve_device("auto") == "cpu"
    assert "fp16 needs a CUDA device" in (amp_problem("fp16", "cpu") or "")
    assert amp_problem("bf16", "cpu") is None


def test_channels_last_auto_follows_the_model():
    assert TorchSetup.choose("cpu", "off", "auto", tiny_cnn()).channels_last
    assert not TorchSetup.choose("cpu", "off", "auto", tiny_mlp()).channels_last
    assert not TorchSetup.choose("cpu", "off", "off", tiny_cnn()).channels_last


BAD_INPUT = [
    ({"training": {"device": "tpu"}}, "training.device: no such device; valid: auto, cpu, cuda, cuda:N"),
    ({"training": {"amp": "fp16", "device": "cpu"}}, "training.amp: amp fp16 needs a CUDA device"),
    ({"stages": [{"train": {"device": "cuda:x"}}]}, "stages[0].train.device: no such device"),
    (
        {"stages": [{"train": {"amp": "fp16"}}, "export"], "training": {"device": "cpu"}},
        "stages[0].train.amp: amp fp16 needs a CUDA device",
    ),
    ({"data": {"workers": -1}}, "data.workers: expected auto or a number of loader processes ≥ 0"),
]
if NO_CUDA:
    BAD_INPUT.append(({"training": {"device": "cuda"}}, "training.device: this host has no CUDA device"))


@pytest.mark.parametrize(
    "change, message", BAD_INPUT, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD_INPUT)]
)
def test_bad_training_choices_exit_2_with_one_line(change, message, write_recipe):
    recipe = tiny_recipe_dict()
    for key, value in change.items():
        recipe[key] = {**recipe[key], **value} if isinstance(value, dict) and key in recipe else value
    result = CliRunner().invoke(main, ["validate", str(write_recipe(recipe))])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert message in result.output, result.output


def trained(write_recipe, artifacts, training: dict, **step):
    recipe = tiny_recipe_dict(
        stages=[{"train": {"epochs": 1, "lr": 0.02, "batch_size": 32, **step}}], targets=[]
    )
    recipe["training"] = training
    return optimize.run(write_recipe(recipe), artifacts=artifacts, targets=[]).result.steps[0]


def stored(step) -> dict[str, torch.Tensor]:
    return torch.load(step.artifact.file, map_location="cpu", weights_only=True)["state_dict"]


def test_cpu_and_auto_on_a_cpu_host_store_the_same_model(write_recipe, tmp_path):
    if not NO_CUDA:
        pytest.skip("auto means CUDA on this host")
    on_cpu = trained(write_recipe, tmp_path / "a", {"device": "cpu"})
    auto = trained(write_recipe, tmp_path / "b", {"device": "auto"})
    first, second = stored(on_cpu), stored(auto)
    assert first.keys() == second.keys()
    for key, tensor in first.items():
        assert tensor.device.type == "cpu" and tensor.is_contiguous()
        assert tensor.dtype == second[key].dtype and torch.equal(tensor, second[key])
    assert on_cpu.info["device"] == auto.info["device"] == "cpu"
    assert on_cpu.info["amp"] == "off" and on_cpu.info["channels_last"] is True


def test_the_cache_key_sees_precision_not_device(write_recipe, artifacts):
    first = trained(write_recipe, artifacts, {"device": "cpu"})
    same = trained(write_recipe, artifacts, {"device": "auto", "channels_last": "off"}, device="cpu")
    bf16 = trained(write_recipe, artifacts, {"device": "cpu", "amp": "bf16"})
    assert not first.cached and same.cached
    assert not bf16.cached and bf16.info["amp"] == "bf16"
    assert stored(bf16)["stem.0.weight"].dtype == torch.float32  # weights stay fp32; only arithmetic is bf16


def test_frozen_modules_keep_their_weights_and_statistics(write_recipe, artifacts):
    step = trained(write_recipe, artifacts, {}, freeze=["stem*"])
    after = stored(step)
    torch.manual_seed(0)  # the source builds the model seeded (ModelSource.pretrained)
    start = tiny_cnn(width=8).state_dict()
    frozen = [key for key in after if key.startswith("stem.")]
    assert frozen and all(torch.equal(after[key], start[key]) for key in frozen)  # BN running stats too
    assert not torch.equal(after["fc.weight"], start["fc.weight"])
    assert step.info["frozen"] == ["stem"]


@pytest.mark.gpu
@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")
def test_train_and_distill_on_cuda_in_bf16_store_a_cpu_model(write_recipe, artifacts):
    from optimize.models.base import open_source
    from optimize.torch_io import load_into

    recipe = tiny_recipe_dict(
        stages=[
            {"train": {"epochs": 2, "lr": 0.02, "batch_size": 32}},
            {"prune": {"channel_ratio": 0.5}},
            {"distill": {"epochs": 1, "lr": 0.02, "batch_size": 32}},
        ],
        targets=[],
    )
    recipe["training"] = {"device": "cuda", "amp": "bf16"}
    recipe["tracking"] = {"enabled": False}  # the GPU image has no MLflow
    result = optimize.run(write_recipe(recipe), artifacts=artifacts, targets=[]).result
    loaded = result.recipe
    for step in (result.steps[0], result.steps[2]):
        assert step.info["device"].startswith("cuda") and step.info["amp"] == "bf16"
        state = torch.load(step.artifact.file, map_location="cpu", weights_only=True)["state_dict"]
        assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in state.values())
        skeleton = open_source(loaded.recipe.model, loaded.base_dir).build(pretrained=False)
        model = load_into(skeleton, step.artifact.file)
        assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    assert result.steps[2].metrics["accuracy"] > 0.3
