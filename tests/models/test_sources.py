"""Model sources: torchvision, the user's factory, local weights (weights_only), ONNX files,
and pickled modules behind an explicit opt-in."""

from __future__ import annotations

import pytest
import torch

from optimize.models.base import open_source
from optimize.models.onnx import graph_inputs
from optimize.recipe.model_spec import ModelSpec
from tests.assets.tiny_models import tiny_cnn

INPUT = {"name": "images", "shape": [1, 3, 8, 8]}


def source(tmp_path, **spec):
    return open_source(ModelSpec.model_validate(spec, context={"base_dir": tmp_path}), tmp_path)


def test_torchvision_source_builds_with_args(tmp_path):
    model = source(
        tmp_path, source="torchvision:resnet18", args={"num_classes": 10}, input=INPUT
    ).pretrained()
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 10)


def test_start_model_is_seeded(tmp_path):
    first = source(
        tmp_path, source="torchvision:mobilenet_v2", args={"num_classes": 10}, input=INPUT
    ).pretrained()
    second = source(
        tmp_path, source="torchvision:mobilenet_v2", args={"num_classes": 10}, input=INPUT
    ).pretrained()
    assert torch.equal(first.classifier[1].weight, second.classifier[1].weight)


def test_python_factory_and_state_dict_weights(tmp_path):
    import shutil

    from tests.conftest import ASSETS

    shutil.copy(ASSETS / "tiny_models.py", tmp_path / "tiny_models.py")
    trained = tiny_cnn(width=8)
    torch.nn.init.constant_(trained.fc.bias, 0.25)
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    built = source(
        tmp_path, source="python:tiny_models:tiny_cnn", args={"width": 8}, input=INPUT, weights="w.pt"
    ).pretrained()
    assert torch.equal(built.fc.bias, trained.fc.bias)


def test_weights_file_with_pickled_code_is_refused(tmp_path):
    import pickle

    torch.save({"fc.weight": torch.zeros(1), "evil": pickle.dumps(object)}, tmp_path / "w.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    built = source(tmp_path, source="torchvision:resnet18", input=INPUT, weights="evil.pt")
    with pytest.raises(Exception, match="Weights only load failed|weights_only"):
        built.pretrained()


def test_pickle_source_needs_opt_in_and_then_loads(tmp_path):
    from pydantic import ValidationError

    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 10)), tmp_path / "model.pkl")
    with pytest.raises(ValidationError, match="trust_pickle"):
        source(tmp_path, source="torch-pickle:model.pkl", input=INPUT)
    model = source(tmp_path, source="torch-pickle:model.pkl", input=INPUT, trust_pickle=True).pretrained()
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 10)


def test_onnx_source_reads_its_inputs_from_the_graph(tmp_path):
    model = tiny_cnn(width=8).eval()
    torch.onnx.export(
        model,
        (torch.randn(1, 3, 8, 8),),
        str(tmp_path / "m.onnx"),
        input_names=["pixels"],
        output_names=["logits"],
        dynamic_axes={"pixels": {0: "batch"}},
        dynamo=False,
    )
    (spec,) = graph_inputs(tmp_path / "m.onnx")
    assert spec.name == "pixels" and spec.shape == [1, 3, 8, 8] and spec.dynamic_batch
    onnx_source = source(tmp_path, source="onnx:m.onnx")
    assert onnx_source.output_names() == ["logits"]


def test_an_onnx_source_stores_the_precision_its_graph_holds(tmp_path):
    """A user's already-quantized file is int8 to the runtimes that build it, not fp32."""
    import json

    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    from optimize.onnx_tools import stored_precision

    scale, zero = numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.int8(0), "z")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [scale, zero],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "q.onnx")
    (tmp_path / "store").mkdir()
    source(tmp_path, source="onnx:q.onnx").materialize(tmp_path / "store")
    assert json.loads((tmp_path / "store" / "artifact.json").read_text())["precision"] == "int8"
    assert stored_precision(helper.make_model(helper.make_graph([], "empty", [], []))) == "fp32"


def test_missing_onnx_file_fails_validation(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="no such ONNX file"):
        source(tmp_path, source="onnx:missing.onnx")


def test_python_source_fingerprint_follows_helper_modules_and_files_the_factory_reads(tmp_path):
    from optimize.file_reads import ReadsMemo
    from optimize.store import ArtifactStore

    (tmp_path / "factory.py").write_text(
        "import json\nfrom layers import head\n\n"
        "def build(config):\n"
        "    width = json.load(open(config))['width']\n"
        "    return head(width)\n"
    )
    (tmp_path / "layers.py").write_text(
        "from torch import nn\n\ndef head(width):\n    return nn.Linear(width, 10)\n"
    )
    (tmp_path / "config.json").write_text('{"width": 8}')
    spec = dict(source="python:factory:build", args={"config": str(tmp_path / "config.json")}, input=INPUT)
    memo = ReadsMemo(ArtifactStore(tmp_path / "store"))

    def fingerprint():
        return source(tmp_path, **spec).fingerprint(memo)

    first = fingerprint()
    assert fingerprint() == first
    (tmp_path / "config.json").write_text('{"width": 16}')  # read by the factory at build time
    reconfigured = fingerprint()
    assert reconfigured["files_read"] != first["files_read"]
    (tmp_path / "layers.py").write_text(
        "from torch import nn\n\ndef head(width):\n    return nn.Linear(width, 5)\n"
    )
    assert fingerprint()["source"] != reconfigured["source"]  # a helper module it imports


def test_huggingface_fingerprint_covers_every_tokenizer_file_and_the_tokenizers_version(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    (checkpoint / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    (checkpoint / "special_tokens_map.json").write_text('{"cls_token": "[CLS]"}')
    spec = dict(source="huggingface:checkpoint", task="embedding")
    first = source(tmp_path, **spec).fingerprint()
    assert {"tokenizer_config.json", "special_tokens_map.json"} <= set(first["source"]["files"])
    assert {"transformers", "tokenizers"} <= set(first["libraries"])
    (checkpoint / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    assert source(tmp_path, **spec).fingerprint() != first
