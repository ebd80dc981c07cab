"""Saving models without pickled code, and loading re-shaped (pruned) models exactly."""

import pytest
import torch
from torch import nn

from optimize.torch_io import load_into, save_module
from tests.assets.tiny_models import tiny_cnn


def _shrink_first_conv(model: nn.Module, keep: int) -> None:
    """A hand-made structured prune: fewer stem channels, everything downstream resized."""
    with torch.no_grad():
        conv, bn = model.stem[0], model.stem[1]
        conv.weight = nn.Parameter(conv.weight[:keep].clone())
        conv.out_channels = keep
        for name in ("weight", "bias"):
            setattr(bn, name, nn.Parameter(getattr(bn, name)[:keep].clone()))
        bn.running_mean = bn.running_mean[:keep].clone()
        bn.running_var = bn.running_var[:keep].clone()
        bn.num_features = keep
        for conv_in in (model.block[0],):
            conv_in.weight = nn.Parameter(conv_in.weight[:, :keep].clone())
            conv_in.in_channels = keep
        last_conv, last_bn = model.block[3], model.block[4]
        last_conv.weight = nn.Parameter(last_conv.weight[:keep].clone())
        last_conv.out_channels = keep
        for name in ("weight", "bias"):
            setattr(last_bn, name, nn.Parameter(getattr(last_bn, name)[:keep].clone()))
        last_bn.running_mean = last_bn.running_mean[:keep].clone()
        last_bn.running_var = last_bn.running_var[:keep].clone()
        last_bn.num_features = keep
        model.block[3].out_channels = keep
        model.fc.weight = nn.Parameter(model.fc.weight[:, :keep].clone())
        model.fc.in_features = keep


def test_round_trip_of_a_reshaped_model(tmp_path):
    model = tiny_cnn(width=16).eval()
    _shrink_first_conv(model, keep=8)
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    save_module(model, tmp_path / "model.pt")
    loaded = load_into(tiny_cnn(width=16), tmp_path / "model.pt")
    assert loaded.stem[0].out_channels == 8 and loaded.fc.in_features == 8
    assert torch.allclose(loaded(x), expected, atol=1e-6)


def test_saved_file_loads_with_weights_only(tmp_path):
    save_module(tiny_cnn(), tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    assert payload["format"] == "optimize-torch/1"


def test_foreign_file_is_refused(tmp_path):
    torch.save({"anything": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a model saved by optimize"):
        load_into(tiny_cnn(), tmp_path / "x.pt")
