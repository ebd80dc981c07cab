"""Which layers of a DLA build run on the DLA (no TensorRT): network layers from the builder
config, engine layers from the inspector's JSON and the builder's report, and the table's note."""

from __future__ import annotations

import json

from optimize.runtimes.tensorrt.placement import (
    engine_layer_devices,
    fallback_note,
    network_layer_devices,
    placement_summary,
    reported_dla_layers,
)

NETWORK = network_layer_devices(
    [
        ("conv1", "CONVOLUTION", True, True),
        ("relu1", "ACTIVATION", True, True),
        ("topk", "TOPK", True, False),  # assigned to the DLA, which cannot run it: falls back
        ("shape", "SHAPE", False, False),  # left on the GPU by the config
    ]
)


def test_network_layers_fall_back_when_the_dla_cannot_run_them():
    assert [layer["device"] for layer in NETWORK] == ["DLA", "DLA", "GPU", "GPU"]


def test_engine_layers_from_the_inspector_and_the_builder_report():
    report = [
        "---------- Layers Running on DLA ----------",
        "[DlaLayer] {ForeignNode[conv1...relu1]}",
        "---------- Layers Running on GPU ----------",
        "[GpuLayer] TOPK: topk",
    ]
    dla = reported_dla_layers(report)
    assert dla == {"{ForeignNode[conv1...relu1]}"}
    detailed = json.dumps(
        {
            "Layers": [
                {"Name": "{ForeignNode[conv1...relu1]}", "LayerType": "ForeignNode"},
                {"Name": "topk", "LayerType": "TopK"},
                {"Name": "dla_output_reformat", "LayerType": "DLA Reformat"},  # a layer type naming the DLA
            ],
            "Bindings": ["images", "scores"],
        }
    )
    assert [layer["device"] for layer in engine_layer_devices(detailed, dla)] == ["DLA", "GPU", "DLA"]
    names_only = json.dumps({"Layers": ["{ForeignNode[conv1...relu1]}", "topk"], "Bindings": []})
    assert [layer["device"] for layer in engine_layer_devices(names_only, dla)] == ["DLA", "GPU"]


def test_summary_and_the_mostly_fell_back_note():
    engine = [{"name": "{ForeignNode[conv1...relu1]}", "type": "", "device": "DLA"}]
    summary = placement_summary(NETWORK, engine)
    assert (summary["dla_layers"], summary["gpu_layers"], summary["dla_share"]) == (2, 2, 0.5)
    assert fallback_note(summary) is None  # half on the DLA: not "mostly fell back"
    gpu_only = placement_summary(NETWORK, [{"name": "topk", "type": "TopK", "device": "GPU"}])
    assert gpu_only["dla_share"] == 0  # the config allowed the DLA, the engine has no DLA layer
    note = fallback_note(gpu_only)
    assert note.startswith(
        "DLA: only 0 of 4 layers run on the DLA; the rest fell back to the GPU (e.g. conv1"
    )
    assert note.endswith("so its numbers mostly measure the GPU")
    mostly = placement_summary(
        network_layer_devices([("a", "X", True, True)] + [("b", "Y", True, False)] * 3), engine
    )
    assert mostly["dla_share"] == 0.25 and "only 1 of 4" in fallback_note(mostly)
