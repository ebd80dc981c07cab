"""MACs read from real ONNX graphs match the layer formulas, survive quantisation, and are None when unknown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from torch import nn

from optimize.onnx_macs import onnx_macs

CNN_INPUT = (1, 3, 16, 16)


def small_cnn() -> nn.Module:
    """Dense stride-2 conv, depthwise conv, BatchNorms (folded away by export), ReLUs and a Linear head."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # -> 8 × 8 × 8
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise -> 8 × 8 × 8
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    ).eval()


def conv_macs(out_channels: int, out_h: int, out_w: int, in_per_group: int, kernel: int) -> int:
    """Every output element sums (input channels / group) × kernel area products."""
    return out_channels * out_h * out_w * in_per_group * kernel * kernel


# per image: stem conv + depthwise conv + Linear (in × out)
CNN_MACS = conv_macs(8, 8, 8, 3, 3) + conv_macs(8, 8, 8, 1, 3) + 8 * 10  # 13824 + 4608 + 80 = 18512


def export(model: nn.Module, example: torch.Tensor, path: Path, dynamic: dict[int, str]) -> Path:
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": dynamic, "y": {0: dynamic[0]}},
    )
    return path


@pytest.fixture(scope="module")
def cnn_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(
        small_cnn(), torch.randn(CNN_INPUT), tmp_path_factory.mktemp("cnn") / "cnn.onnx", {0: "batch"}
    )


def test_cnn_count_matches_the_layer_formula_at_batch_1_and_4(cnn_path: Path) -> None:
    import torch_pruning as tp

    model = onnx.load(str(cnn_path))
    assert "BatchNormalization" not in {node.op_type for node in model.graph.node}  # folded into the convs
    tp_macs, _ = tp.utils.count_ops_and_params(small_cnn(), torch.randn(CNN_INPUT))
    # torch-pruning reads 23130 against 18512 here: it adds the conv biases (one per output element, 2 × 512),
    # the BatchNorms (2 per element, 2 × 1024), the ReLUs (2 × 512), the pooling's input (512) and the Linear
    # bias (10) = 4618. The multiply-accumulates of the convs and the Linear agree exactly.
    before = model.SerializeToString()
    assert onnx_macs(model) == CNN_MACS, f"torch-pruning counts {int(tp_macs)}"
    assert onnx_macs(model, batch=4) == 4 * CNN_MACS
    assert model.SerializeToString() == before  # the caller's model is left as it was
    convs_at_32px = 4 * (conv_macs(8, 8, 8, 3, 3) + conv_macs(8, 8, 8, 1, 3))  # 4× the pixels, same head
    assert onnx_macs(model, input_shapes={"x": [2, 3, 32, 32]}) == 2 * (convs_at_32px + 8 * 10)


def test_3d_mlp_counts_matmul_broadcast_over_batch_and_sequence(tmp_path: Path) -> None:
    mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    path = export(mlp, torch.randn(2, 5, 16), tmp_path / "mlp.onnx", {0: "batch", 1: "seq"})
    model = onnx.load(str(path))
    assert "MatMul" in {node.op_type for node in model.graph.node}
    assert onnx_macs(model, input_shapes={"x": [2, 5, 16]}) == 2 * 5 * (16 * 32 + 32 * 4)
    assert onnx_macs(model, batch=2) is None  # the sequence length stays symbolic


def test_transposed_conv_counts_each_input_element_against_its_group_of_filters(tmp_path: Path) -> None:
    up = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2).eval()
    model = onnx.load(str(export(up, torch.randn(1, 4, 5, 5), tmp_path / "up.onnx", {0: "batch"})))
    # input elements (4 × 5 × 5) × output channels per group (6 / 2) × kernel (3 × 3)
    assert onnx_macs(model, batch=2) == 2 * (4 * 5 * 5) * 3 * 9


class TinyEncoder(nn.Module):
    """Hugging Face BERT's embedding pattern, then one self-attention block.

    Position and type ids are sliced and gathered from buffers by the input's length: ONNX shape
    inference loses the sizes there, and only folding that shape arithmetic sizes the `mix` Linear.
    """

    def __init__(self, vocab: int = 50, hidden: int = 16, heads: int = 2, max_len: int = 32) -> None:
        super().__init__()
        self.tokens, self.positions, self.types = (
            nn.Embedding(vocab, hidden),
            nn.Embedding(max_len, hidden),
            nn.Embedding(2, hidden),
        )
        self.mix, self.qkv, self.out = (
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, 3 * hidden),
            nn.Linear(hidden, hidden),
        )
        self.heads = heads
        self.register_buffer("position_ids", torch.arange(max_len).expand((1, -1)), persistent=False)
        self.register_buffer("type_ids", torch.zeros(1, max_len, dtype=torch.long), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        batch, length = ids.shape
        positions = self.position_ids[:, :length]
        types = self.type_ids.expand(positions.shape[0], -1).gather(1, positions).expand(batch, length)
        x = self.mix(self.positions(positions) + self.types(types)) + self.tokens(ids)
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        attention = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        return self.out((attention @ v).transpose(1, 2).reshape(batch, length, -1))


def test_sequence_model_counts_at_the_given_length(tmp_path: Path) -> None:
    ids = torch.ones(1, 8, dtype=torch.long)
    model = onnx.load(
        str(export(TinyEncoder().eval(), ids, tmp_path / "encoder.onnx", {0: "batch", 1: "seq"}))
    )
    batch, length, hidden = 2, 12, 16
    linears = hidden * hidden + hidden * 3 * hidden + hidden * hidden  # mix, qkv, out: per token
    attention = 2 * length * hidden  # scores q·kᵀ and context a·v: per token, over all heads
    assert onnx_macs(model, input_shapes={"x": [batch, length]}) == batch * length * (linears + attention)
    assert onnx_macs(model, batch=2) is None  # the length is unknown


class RandomImages(CalibrationDataReader):
    def __init__(self, count: int = 4) -> None:
        rng = np.random.default_rng(0)
        self._batches = iter([{"x": rng.standard_normal(CNN_INPUT, dtype=np.float32)} for _ in range(count)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def test_qdq_quantised_cnn_keeps_the_float_count(cnn_path: Path, tmp_path: Path) -> None:
    quantized = tmp_path / "cnn_qdq.onnx"
    quantize_static(
        str(cnn_path),
        str(quantized),
        RandomImages(),
        quant_format=QuantFormat.QDQ,
        weight_type=QuantType.QInt8,
    )
    model = onnx.load(str(quantized))
    assert "DequantizeLinear" in {node.op_type for node in model.graph.node}
    assert onnx_macs(model) == CNN_MACS
    assert onnx_macs(model, batch=4) == 4 * CNN_MACS


def test_integer_operator_formats_keep_the_float_count(cnn_path: Path, tmp_path: Path) -> None:
    """QLinearConv with the contrib QGemm and QLinearGlobalAveragePool, and dynamic ConvInteger/MatMulInteger."""
    quantize_static(
        str(cnn_path), str(tmp_path / "qop.onnx"), RandomImages(), quant_format=QuantFormat.QOperator
    )
    quantize_dynamic(str(cnn_path), str(tmp_path / "dynamic.onnx"))
    for name, op in (("qop.onnx", "QGemm"), ("dynamic.onnx", "ConvInteger")):
        model = onnx.load(str(tmp_path / name))
        assert op in {node.op_type for node in model.graph.node}
        assert onnx_macs(model, batch=4) == 4 * CNN_MACS, name


def test_onnxruntime_fused_convs_count_as_plain_convs(cnn_path: Path, tmp_path: Path) -> None:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "fused.onnx")
    ort.InferenceSession(str(cnn_path), options, providers=["CPUExecutionProvider"])
    model = onnx.load(options.optimized_model_filepath)
    assert "FusedConv" in {node.op_type for node in model.graph.node}
    assert onnx_macs(model, batch=4) == 4 * CNN_MACS


def nbits(name: str, a: str, y: str, k: int, n: int, block: int = 32) -> tuple[onnx.NodeProto, list]:
    """A 4-bit weight [N, K] in blocks: packed uint8 [N, K / block, block / 2] plus float scales."""
    rng = np.random.default_rng(0)
    packed = rng.integers(0, 256, n * k // 2).tolist()
    weight = helper.make_tensor(f"{name}.w", TensorProto.UINT8, [n, k // block, block // 2], packed)
    scales = helper.make_tensor(f"{name}.s", TensorProto.FLOAT, [n * k // block], [0.01] * (n * k // block))
    node = helper.make_node(
        "MatMulNBits",
        [a, weight.name, scales.name],
        [y],
        domain="com.microsoft",
        K=k,
        N=n,
        bits=4,
        block_size=block,
    )
    return node, [weight, scales]


def contrib_model(nodes: list[onnx.NodeProto], initializers: list, a: list[int], y: str) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "contrib",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, a)],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)],  # no shape hint: it must be inferred
        initializers,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def runs_in_onnxruntime(model: onnx.ModelProto, a: np.ndarray) -> tuple[int, ...]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"a": a})[0].shape


def test_matmul_nbits_counts_m_n_k() -> None:
    node, weights = nbits("fc", "a", "y", k=64, n=32)
    model = contrib_model([node], weights, [1, 8, 64], "y")
    assert runs_in_onnxruntime(model, np.ones((1, 8, 64), np.float32)) == (1, 8, 32)
    assert onnx_macs(model) == 8 * 64 * 32


def test_shapes_carry_through_contrib_ops_onnx_does_not_know() -> None:
    """ONNX infers nothing after a MatMulNBits; the counter fills its output in so the next layer counts."""
    first, w1 = nbits("fc1", "a", "h", k=64, n=32)
    second, w2 = nbits("fc2", "h_relu", "y", k=32, n=16)
    model = contrib_model(
        [first, helper.make_node("Relu", ["h"], ["h_relu"]), second], w1 + w2, ["batch", 8, 64], "y"
    )
    assert runs_in_onnxruntime(model, np.ones((3, 8, 64), np.float32)) == (3, 8, 16)
    assert onnx_macs(model, batch=3) == 3 * 8 * (64 * 32 + 32 * 16)


def symbolic_matmul_model() -> onnx.ModelProto:
    weight = helper.make_tensor("w", TensorProto.FLOAT, [64, 32], np.zeros(64 * 32).tolist())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "w"], ["y"])],
        "symbolic",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, "seq", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "seq", 32])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_unresolved_symbolic_dim_is_unknown_until_given() -> None:
    model = symbolic_matmul_model()
    assert onnx_macs(model, batch=4) is None
    assert onnx_macs(model, input_shapes={"a": [1, 8, 64]}) == 8 * 64 * 32


def test_loop_is_unknown() -> None:
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4).flatten().tolist())
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["v_in", "w"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1, 4]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1, 4]),
        ],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "v"], ["v_final"], body=body)],
        "loop",
        [
            helper.make_tensor_value_info("trips", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 4]),
        ],
        [helper.make_tensor_value_info("v_final", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    assert onnx_macs(model) is None
