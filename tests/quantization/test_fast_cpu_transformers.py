"""The fast CPU paths for transformer layers, on a tiny transformer-like graph (an embedding
Gather, MatMul + bias layers with a residual, a pooled Gemm head): the layouts of INT8 weights
(optimize.quantization.layouts) are exact rewrites of NNCF's DequantizeLinear weights, ONNX
Runtime runs them in its integer kernels, and the dynamic INT8 and INT4 methods write the layout
the targets' runtimes want, with their ops and attributes, close to FP32."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.hashing import hash_tree
from optimize.onnx_tools import session
from optimize.quantization import layouts
from optimize.quantization.base import quantizer_for, validate_params
from optimize.quantization.dynamic_int8 import compress_int8
from optimize.registries import RUNTIMES
from optimize.stages.quantize import QuantizeStage
from optimize.targets import builtin_device_classes
from tests.conftest import REPO, recipe_stub

VOCAB, WIDTH, HIDDEN, SEQ = 96, 64, 128, 8
ORT = {"cpu": "onnxruntime"}


def tiny_transformer() -> onnx.ModelProto:
    """ids → embedding → MatMul+bias → Relu → MatMul+bias (+ residual) → MatMul → mean over
    tokens → Gemm(transB) head: every kind of weight the layouts rewrite."""
    rng = np.random.default_rng(0)

    def weight(name, *shape, scale=0.2):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    initializers = [
        weight("table", VOCAB, WIDTH, scale=1.0),
        weight("w_up", WIDTH, HIDDEN),
        weight("b_up", HIDDEN),
        weight("w_down", HIDDEN, WIDTH),
        weight("b_down", WIDTH),
        weight("w_out", WIDTH, WIDTH),
        weight("w_head", 16, WIDTH),
        weight("b_head", 16),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["x"], name="embed"),
        helper.make_node("MatMul", ["x", "w_up"], ["up"], name="up"),
        helper.make_node("Add", ["up", "b_up"], ["up_b"], name="up_bias"),
        helper.make_node("Relu", ["up_b"], ["act"], name="act"),
        helper.make_node("MatMul", ["act", "w_down"], ["down"], name="down"),
        helper.make_node("Add", ["down", "b_down"], ["down_b"], name="down_bias"),
        helper.make_node("Add", ["down_b", "x"], ["res"], name="residual"),
        helper.make_node("MatMul", ["res", "w_out"], ["out"], name="out"),
        helper.make_node("ReduceMean", ["out"], ["pooled"], axes=[1], keepdims=0, name="pool"),
        helper.make_node("Gemm", ["pooled", "w_head", "b_head"], ["logits"], transB=1, name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-transformer",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", SEQ])],
        [
            helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", SEQ, WIDTH]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 16]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def fp32() -> onnx.ModelProto:
    return tiny_transformer()


@pytest.fixture(scope="module")
def feeds() -> dict[str, np.ndarray]:
    return {"ids": np.random.default_rng(1).integers(0, VOCAB, (4, SEQ)).astype(np.int64)}


def run(model: onnx.ModelProto, feeds, optimization: str = "all") -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
        None, feeds
    )


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def ops(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def optimized_ops(model: onnx.ModelProto, tmp_path) -> dict[str, int]:
    """The op types ONNX Runtime runs (its graph after the 'extended' optimisation a target builds)."""
    source, target = tmp_path / "model.onnx", tmp_path / "optimized.onnx"
    onnx.save(model, source)
    session(source, optimization="extended", save_optimized_to=target)
    return ops(onnx.load(target))


def context(runtimes: dict[str, str]):
    return SimpleNamespace(step_id="quantize", recipe=recipe_stub(list(runtimes), runtimes), data=None)


def quantized(options: dict, fp32: onnx.ModelProto, runtimes: dict[str, str] = ORT):
    params = validate_params(options)
    return quantizer_for(params).quantize(
        onnx.ModelProto.FromString(fp32.SerializeToString()), params, context(runtimes)
    )


# -- the layouts ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def int8_weights(fp32) -> onnx.ModelProto:
    """NNCF's INT8 weights behind DequantizeLinear (the `dequantize` layout)."""
    return compress_int8(
        onnx.ModelProto.FromString(fp32.SerializeToString()), validate_params(backend="dynamic")
    )


def copy(model: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.ModelProto.FromString(model.SerializeToString())


def test_nbits_and_gather_block_quantized_hold_the_same_int8_values(int8_weights, feeds):
    model = copy(int8_weights)
    # accuracy_level 0 computes in float: the rewrite alone, without activation quantization
    assert layouts.convert(model, "nbits", accuracy_level=0) == {
        "nbits_matmuls": 4,
        "block_quantized_gathers": 1,
    }
    counts = ops(model)
    assert (
        counts["MatMulNBits"] == 4
        and counts["GatherBlockQuantized"] == 1
        and "DequantizeLinear" not in counts
    )
    assert {a.name: a.i for n in model.graph.node if n.op_type == "MatMulNBits" for a in n.attribute}[
        "bits"
    ] == 8
    for ours, theirs in zip(run(model, feeds), run(int8_weights, feeds), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_the_integer_layout_runs_in_onnx_runtime_integer_kernels(int8_weights, fp32, feeds, tmp_path):
    model = copy(int8_weights)
    assert layouts.convert(model, "integer") == {"integer_matmuls": 4, "block_quantized_gathers": 1}
    counts = ops(model)
    assert counts["MatMulInteger"] == 4 and counts["GatherBlockQuantized"] == 1
    assert counts["DynamicQuantizeLinear"] == 4  # one per activation (the Gemm head's is pooled)
    executed = optimized_ops(model, tmp_path)
    assert executed.get("DynamicQuantizeMatMul", 0) + executed.get("MatMulIntegerToFloat", 0) == 4
    assert "MatMulInteger" not in executed and "MatMul" not in executed
    # activations quantized per run: close to the INT8-weight file and to FP32, not equal
    for ours, theirs in zip(run(model, feeds), run(fp32, feeds), strict=True):
        assert cosine(ours, theirs) > 0.99


def test_a_per_tensor_or_signed_weight_is_rewritten_as_well(feeds):
    model = tiny_transformer()
    weight = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w_out"))
    scale = np.float32(np.abs(weight).max() / 127)
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.round(weight / scale).astype(np.int8), "w_out_q"),
            numpy_helper.from_array(np.array(scale, np.float32), "w_out_scale"),
            numpy_helper.from_array(np.array(0, np.int8), "w_out_zero"),
        ]
    )
    dequantize = helper.make_node("DequantizeLinear", ["w_out_q", "w_out_scale", "w_out_zero"], ["w_out_dq"])
    model.graph.node.insert(0, dequantize)
    next(n for n in model.graph.node if n.name == "out").input[1] = "w_out_dq"
    reference = run(model, feeds)
    for layout in ("nbits", "integer"):
        rewritten = copy(model)
        layouts.convert(rewritten, layout, accuracy_level=0)
        assert "DequantizeLinear" not in ops(rewritten)
        assert cosine(run(rewritten, feeds)[0], reference[0]) > 0.999


# -- the dynamic INT8 method ----------------------------------------------------------------------


def test_dynamic_int8_for_onnx_runtime_is_the_integer_layout(fp32, feeds, tmp_path):
    model, output = quantized({"precision": "int8", "backend": "dynamic"}, fp32)
    assert output.info["format"] == "integer" and output.info["format_by_target"] == {"cpu": "integer"}
    assert "DynamicQuantizeMatMul" in output.info["kernels"] and output.info["contrib_ops"] == [
        "GatherBlockQuantized"
    ]
    assert (
        output.info["int8_layers"] == 4
        and output.info["int8_embeddings"] == 1
        and output.info["fp32_layers"] == []
    )
    assert {"MatMulInteger", "DynamicQuantizeLinear", "GatherBlockQuantized"} <= set(ops(model))
    for ours, theirs in zip(run(model, feeds), run(fp32, feeds), strict=True):
        assert cosine(ours, theirs) > 0.99
    assert QuantizeStage.precision_after(validate_params(backend="dynamic"), "fp32") == "int8"


@pytest.mark.parametrize(
    "runtimes, layout, op",
    [
        ({"intel": "openvino"}, "dequantize", "DequantizeLinear"),
        ({"cpu": "onnxruntime", "intel": "openvino"}, "nbits", "MatMulNBits"),
        ({}, "integer", "MatMulInteger"),
    ],
    ids=["openvino", "both", "no-targets"],
)
def test_dynamic_int8_lays_weights_out_for_the_targets_runtimes(runtimes, layout, op, fp32, feeds):
    model, output = quantized({"precision": "int8", "backend": "dynamic"}, fp32, runtimes)
    assert output.info["format"] == layout and op in ops(model)
    params = validate_params(backend="dynamic")
    assert quantizer_for(params).cache_extra(params, context(runtimes).recipe) == {"int8_format": layout}
    assert cosine(run(model, feeds)[0], run(fp32, feeds)[0]) > 0.99


def test_dynamic_int8_refuses_a_runtime_that_takes_only_calibrated_symmetric_int8():
    recipe = recipe_stub(["orin"], {"orin": "tensorrt"})
    ((location, message),) = QuantizeStage.check(validate_params(backend="dynamic"), recipe, 1, REPO)
    assert location == ("stages", 1, "quantize", "backend")
    assert (
        message.startswith("orin runs tensorrt, which takes INT8 only as QDQ") and "backend nncf" in message
    )
    assert QuantizeStage.check(validate_params(backend="dynamic"), recipe_stub(["cpu"], ORT), 1, REPO) == []


def test_dynamic_int8_refuses_a_model_without_matmul_weights():
    from optimize.errors import StageError

    conv = helper.make_model(
        helper.make_graph(
            [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
            "conv",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    with pytest.raises(StageError, match="weighted layers are Conv; use backend nncf"):
        quantized({"backend": "dynamic"}, conv)


# -- INT4 -----------------------------------------------------------------------------------------


def test_int4_for_onnx_runtime_computes_in_int8_with_block_quantized_embeddings(fp32, feeds, tmp_path):
    model, output = quantized({"precision": "int4", "group_size": 32, "ratio": 1.0}, fp32)
    nbits = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert nbits and all({a.name: a.i for a in n.attribute}["accuracy_level"] == 4 for n in nbits)
    assert all({a.name: a.i for a in n.attribute}["bits"] == 4 for n in nbits)
    # the last MatMul and the embeddings stay INT8: integer kernels, a block-quantized gather
    assert (
        output.info["int8_format"] == "integer"
        and output.info["int8_rewritten"]["block_quantized_gathers"] == 1
    )
    assert (
        "MatMulInteger" in ops(model)
        and "GatherBlockQuantized" in ops(model)
        and "DequantizeLinear" not in ops(model)
    )
    executed = optimized_ops(model, tmp_path)
    assert "MatMulNBits" in executed and {"DynamicQuantizeMatMul", "MatMulIntegerToFloat"} & set(executed)
    for ours, theirs in zip(run(model, feeds), run(fp32, feeds), strict=True):
        assert cosine(ours, theirs) > 0.97


def test_int4_accuracy_level_and_int8_format_are_the_recipes_to_set(fp32, feeds):
    model, output = quantized(
        {"precision": "int4", "group_size": 32, "accuracy_level": 0, "int8_format": "dequantize"}, fp32
    )
    assert output.info["int8_format_reason"] == "set in the recipe" and output.info["int8_rewritten"] == {}
    assert all(
        {a.name: a.i for a in n.attribute}["accuracy_level"] == 0
        for n in model.graph.node
        if n.op_type == "MatMulNBits"
    )
    assert "DequantizeLinear" in ops(model) and "GatherBlockQuantized" not in ops(model)


def test_int4_embeddings_with_all_layers_become_a_4bit_gather_onnx_runtime_loads(fp32, feeds):
    """NNCF 3.4 writes an INT4 embedding's Gather as a MatMulNBits of the token ids."""
    model, _ = quantized({"precision": "int4", "group_size": 32, "all_layers": True, "ratio": 1.0}, fp32)
    (gather,) = [n for n in model.graph.node if n.op_type == "GatherBlockQuantized"]
    assert {a.name: a.i for a in gather.attribute}["bits"] == 4 and gather.input[1] == "ids"
    table = numpy_helper.to_array(next(t for t in fp32.graph.initializer if t.name == "table"))
    embedded = run(model, {"ids": np.arange(VOCAB, dtype=np.int64).reshape(-1, SEQ)}, "disabled")
    assert embedded  # loads and runs
    cut = onnx.utils.Extractor(model).extract_model(["ids"], [gather.output[0]])
    rows = run(cut, {"ids": np.arange(VOCAB, dtype=np.int64).reshape(-1, SEQ)})[0].reshape(VOCAB, WIDTH)
    step = (table.max(1) - table.min(1))[:, None] / 15  # one 4-bit step of the widest block
    assert np.all(np.abs(rows - table) <= step * 0.51 + 1e-6)


# -- what each CPU runtime makes of the files -----------------------------------------------------


def artifact(model: onnx.ModelProto, folder, precision: str) -> Artifact:
    folder.mkdir()
    onnx.save(model, folder / "model.onnx")
    inputs = [{"name": "ids", "shape": [1, SEQ]}]
    write_artifact_meta(folder, ArtifactKind.ONNX, "model.onnx", precision=precision, inputs=inputs)
    return Artifact.open(folder, hash_tree(folder))


@pytest.mark.parametrize("class_name", ["x86-cpu-onnxruntime", "intel-cpu-openvino"])
@pytest.mark.parametrize(
    "options", [{"backend": "dynamic"}, {"precision": "int4", "group_size": 32}], ids=["int8", "int4"]
)
def test_both_cpu_runtimes_build_and_run_the_onnx_runtime_layout(options, class_name, fp32, feeds, tmp_path):
    model, _ = quantized(options, fp32)
    device_class = builtin_device_classes()[class_name]
    runtime = RUNTIMES.get(device_class.runtime)()
    precision = options.get("precision", "int8")
    (tmp_path / "engine").mkdir()
    built = runtime.build(artifact(model, tmp_path / "model", precision), device_class, tmp_path / "engine")
    engine = Artifact.open(tmp_path / "engine", hash_tree(tmp_path / "engine"))
    runner = runtime.open(engine, device_class)
    try:
        outputs = runner.run(feeds)
    finally:
        runner.close()
    assert cosine(outputs[0], run(fp32, feeds)[0]) > 0.97
    if class_name == "x86-cpu-onnxruntime":
        assert built["int8_mac_share"] >= 0.9
