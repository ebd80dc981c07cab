"""Where the layers of a DLA build run: on the DLA, or on the GPU after falling back.

With GPU fallback on (the default), TensorRT moves every layer the DLA cannot run to the GPU
without failing, so a "DLA" class can end up measuring the GPU. Two readings are combined:
  * per network layer, the builder config before the build: `get_device_type(layer)` and
    `can_run_on_DLA(layer)` (a layer assigned to the DLA that it cannot run falls back);
  * per engine layer, TensorRT's engine inspector (`LayerInformationFormat.JSON`, detailed
    verbosity) and the builder's own report ("Layers Running on DLA" / "[DlaLayer] ..."), which
    say what the built engine runs where (the DLA layers of a subgraph fuse into one engine layer).
Pure: both come in as plain values, so the summary and the table note are tested without TensorRT.
"""

from __future__ import annotations

import json
from typing import Any

MOSTLY_FALLEN_BACK = 0.5  # below this share of layers on the DLA, the table says the GPU did the work


def network_layer_devices(layers: list[tuple[str, str, bool, bool]]) -> list[dict[str, str]]:
    """(name, type, assigned to the DLA, can run on the DLA) per network layer -> its device."""
    return [
        {"name": name, "type": kind, "device": "DLA" if on_dla and can_run else "GPU"}
        for name, kind, on_dla, can_run in layers
    ]


def reported_dla_layers(info_lines: list[str]) -> set[str]:
    """Engine layer names the builder reported under 'Layers Running on DLA' ('[DlaLayer] name')."""
    return {line.split("]", 1)[1].strip() for line in info_lines if line.strip().startswith("[DlaLayer]")}


def engine_layer_devices(engine_json: str, dla_reported: set[str]) -> list[dict[str, str]]:
    """Each engine layer of the inspector's JSON with its device: DLA when the builder reported it
    on the DLA or its layer type names the DLA, else GPU."""
    layers = json.loads(engine_json).get("Layers", [])
    placed = []
    for layer in layers:
        info = layer if isinstance(layer, dict) else {"Name": str(layer)}
        name, kind = str(info.get("Name", "")), str(info.get("LayerType", ""))
        on_dla = name in dla_reported or "DLA" in kind.upper()
        placed.append({"name": name, "type": kind, "device": "DLA" if on_dla else "GPU"})
    return placed


def placement_summary(network: list[dict[str, str]], engine: list[dict[str, str]]) -> dict[str, Any]:
    """Counts and the share of network layers on the DLA. When the engine has no DLA layer at all,
    nothing reached the DLA, whatever the config allowed: every layer counts as fallen back."""
    if engine and not any(layer["device"] == "DLA" for layer in engine):
        network = [{**layer, "device": "GPU"} for layer in network]
    on_dla = sum(layer["device"] == "DLA" for layer in network)
    total = len(network)
    return {
        "dla_layers": on_dla,
        "gpu_layers": total - on_dla,
        "dla_share": on_dla / total if total else 0.0,
        "network": network,
        "engine": engine,
    }


def fallback_note(summary: dict[str, Any]) -> str | None:
    """The line the results table shows when most layers fell back to the GPU."""
    if summary["dla_share"] >= MOSTLY_FALLEN_BACK:
        return None
    total = summary["dla_layers"] + summary["gpu_layers"]
    fell_back = [layer["name"] for layer in summary["network"] if layer["device"] == "GPU"][:3]
    return (
        f"DLA: only {summary['dla_layers']} of {total} layers run on the DLA; the rest fell back to the GPU "
        f"(e.g. {', '.join(fell_back) or 'all'}), so its numbers mostly measure the GPU"
    )
