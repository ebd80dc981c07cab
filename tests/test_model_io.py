import pytest
import torch
from torch import nn

from optimize.model_io import ModelIO

IO = ModelIO(inputs=("image", "scale"), outputs=("boxes", "logits"), eval_output="logits")


class TwoInTwoOut(nn.Module):
    def forward(self, image, scale):
        return image.sum(dim=1) * scale, image.mean(dim=1) - scale


def test_a_dict_batch_is_fed_in_the_declared_order_whatever_its_key_order():
    batch = {"scale": torch.full((2, 3), 2.0), "image": torch.ones(2, 4, 3)}
    assert [t.shape for t in IO.positional(batch)] == [(2, 4, 3), (2, 3)]
    assert torch.equal(IO.call(TwoInTwoOut(), batch), torch.full((2, 3), -1.0))  # the scored output


def test_feeds_name_every_input():
    feeds = IO.feeds({"scale": torch.zeros(1, 3), "image": torch.zeros(1, 4, 3)})
    assert list(feeds) == ["image", "scale"] and feeds["image"].shape == (1, 4, 3)


def test_outputs_must_match_the_declared_count():
    single = ModelIO(inputs=("image",), outputs=("logits",), eval_output="logits")
    with pytest.raises(ValueError, match="returns 2 outputs but 1 are declared"):
        single.scored((torch.zeros(1), torch.zeros(1)))
    assert single.named([1]) == {"logits": 1}


def test_from_interface_defaults_the_scored_output_to_the_first():
    io = ModelIO.from_interface({"inputs": [{"name": "x"}], "outputs": ["a", "b"]})
    assert io.eval_output == "a" and io.eval_index == 0
