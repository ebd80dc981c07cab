"""The adapter that builds an engine with the real `tensorrt` module: parse the ONNX file, copy a
`BuildPlan` onto the builder config, build, and keep the class's timing cache.

Every decision is already in the plan (`plan.py`); this module only applies it, so it is the one
part of the build that needs TensorRT and a GPU. The `tensorrt` module is passed in (`trt`), never
imported here. Parser errors are turned into one message by a pure function, tested without it.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimize.runtimes.tensorrt.logger import INFO, collecting, shared_logger
from optimize.runtimes.tensorrt.placement import (
    engine_layer_devices,
    network_layer_devices,
    placement_summary,
    reported_dla_layers,
)
from optimize.runtimes.tensorrt.plan import PlanError, describe_plan

if TYPE_CHECKING:
    from optimize.runtimes.tensorrt.plan import BuildPlan

log = logging.getLogger(__name__)


def format_parser_errors(path: Path | str, errors: list[dict[str, Any]]) -> str:
    """Every ONNX parser error in one message: node index, name, operator, code and description."""
    shown = []
    for number, error in enumerate(errors, 1):
        node = error.get("node", -1)
        where = "model" if node is None or node < 0 else f"node {node}"
        if error.get("node_name"):
            where += f" '{error['node_name']}'"
        if error.get("operator"):
            where += f" ({error['operator']})"
        shown.append(f"[{number}] {where}: {error.get('code', 'error')}: {error.get('desc', '').strip()}")
    count = f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
    message = f"TensorRT's ONNX parser rejected {Path(path).name} with {count}: " + "; ".join(
        shown or ["(no details)"]
    )
    if any(
        e.get("operator") == "DequantizeLinear" and "activation types" in e.get("desc", "") for e in errors
    ):
        message += (
            " (TensorRT dequantizes only activations and weights: a QDQ model from ONNX Runtime's quantize_static "
            "needs extra_options QuantizeBias=False so biases stay float)"
        )
    return message


def _atomic_write_bytes(path: Path, data) -> None:
    """Write beside the target and rename: a concurrent reader sees the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def _enum(trt, enum_name: str, member: str):
    """trt.<enum>.<member>, or a clear error naming the TensorRT version that lacks it."""
    try:
        return getattr(getattr(trt, enum_name), member)
    except AttributeError:
        raise PlanError(f"TensorRT {trt.__version__} has no {enum_name}.{member}") from None


def _parser_error(error) -> dict[str, Any]:
    return {
        "code": error.code().name,
        "node": error.node(),
        "node_name": error.node_name(),
        "operator": error.node_operator(),
        "desc": error.desc(),
    }


def _parse(trt, network, logger, model_path: Path):
    """Parse into the network; the parser is returned because it owns the weights the network
    points to and must live until the engine is built."""
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(model_path)):
        errors = [_parser_error(parser.get_error(index)) for index in range(parser.num_errors)]
        raise PlanError(format_parser_errors(model_path, errors))
    return parser


def apply_plan(trt, builder, network, config, plan: BuildPlan) -> None:
    """Set every builder option of the plan on a real IBuilderConfig."""
    for name in plan.builder_flags:
        config.set_flag(_enum(trt, "BuilderFlag", name))
    for name in plan.cleared_builder_flags:
        config.clear_flag(_enum(trt, "BuilderFlag", name))
    for pool, size in plan.memory_pool_limits.items():
        config.set_memory_pool_limit(_enum(trt, "MemoryPoolType", pool), size)
    config.builder_optimization_level = plan.builder_optimization_level
    config.hardware_compatibility_level = _enum(
        trt, "HardwareCompatibilityLevel", plan.hardware_compatibility_level
    )
    config.profiling_verbosity = _enum(trt, "ProfilingVerbosity", plan.profiling_verbosity)
    if plan.max_aux_streams is not None:
        config.max_aux_streams = plan.max_aux_streams
    if plan.default_device_type == "DLA":
        if plan.dla_core >= builder.num_DLA_cores:
            raise PlanError(
                f"the class asks for DLA core {plan.dla_core}; TensorRT finds {builder.num_DLA_cores} DLA cores here"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    network_inputs = {network.get_input(index).name for index in range(network.num_inputs)}
    if plan.profiles:
        profile = builder.create_optimization_profile()
        for shape in plan.profiles:
            if shape.name not in network_inputs:
                raise PlanError(
                    f"profile input '{shape.name}' is not an input of the parsed network ({sorted(network_inputs)})"
                )
            profile.set_shape(shape.name, shape.min, shape.opt, shape.max)
        if config.add_optimization_profile(profile) < 0:
            raise PlanError(f"TensorRT rejected the optimisation profile: {describe_plan(plan)}")


def _attach_timing_cache(config, path: Path):
    """Load the class's timing cache into the config (a fresh one when absent or refused)."""
    data = path.read_bytes() if path.is_file() else b""
    try:
        cache = config.create_timing_cache(data) if data else None
        if cache is not None and config.set_timing_cache(cache, False):
            return cache, True
    except Exception as exc:  # a damaged file
        log.warning("cannot read the timing cache %s: %s", path, exc)
    if data:
        log.warning(
            "TensorRT refused the timing cache %s (another device or version); starting a new one", path
        )
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)
    return cache, False


def _save_timing_cache(config, path: Path) -> None:
    """Write the grown cache back, merged with what a concurrent build may have written meanwhile."""
    cache = config.get_timing_cache()
    if path.is_file():
        try:
            other = config.create_timing_cache(path.read_bytes())
            if other is not None:
                cache.combine(other, False)
        except Exception as exc:  # a damaged or foreign file is simply replaced
            log.warning("cannot merge the timing cache %s: %s", path, exc)
    _atomic_write_bytes(path, cache.serialize())


def _network_placement(trt, network, config) -> list[dict[str, str]]:
    """Per network layer: assigned to the DLA by the config, and can the DLA run it."""
    layers = [network.get_layer(index) for index in range(network.num_layers)]
    return network_layer_devices(
        [
            (
                layer.name,
                layer.type.name,
                config.get_device_type(layer) == trt.DeviceType.DLA,
                bool(config.can_run_on_DLA(layer)),
            )
            for layer in layers
        ]
    )


def _engine_placement(trt, serialized, plan: BuildPlan, said) -> list[dict[str, str]]:
    """Per engine layer, from the engine inspector of the engine just built (on this host),
    loaded as the runner loads it (DLA core, host code of a version-compatible engine)."""
    runtime = trt.Runtime(shared_logger(trt))
    runtime.DLA_core = plan.dla_core
    if plan.version_compatible:
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None:
        return []
    inspector = engine.create_engine_inspector()
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    del inspector, engine  # the inspector goes before its engine, the engine before its runtime
    return engine_layer_devices(text, reported_dla_layers(said.at(INFO)))


def build_engine(trt, model_path: Path, plan: BuildPlan, class_name: str, cache_path: Path | None):
    """Parse, configure and build; returns (serialized engine, timing cache loaded?, DLA placement
    or None). Every TensorRT object shares the process's logger; what it said during this build
    is quoted when the build fails."""
    with collecting(trt) as said:
        logger = shared_logger(trt)
        builder = trt.Builder(logger)
        flags = 0
        for name in plan.network_flags:
            flags |= 1 << int(_enum(trt, "NetworkDefinitionCreationFlag", name))
        network = builder.create_network(flags)
        parser = _parse(trt, network, logger, model_path)
        config = builder.create_builder_config()
        apply_plan(trt, builder, network, config, plan)
        network_placement = (
            _network_placement(trt, network, config) if plan.default_device_type == "DLA" else None
        )
        cache, loaded = _attach_timing_cache(config, cache_path) if cache_path else (None, False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            errors = said.errors()[-3:]
            raise PlanError(
                f"TensorRT could not build an engine for '{class_name}' (build_serialized_network returned None); "
                f"tried: {describe_plan(plan)}" + (f"; TensorRT said: {' | '.join(errors)}" if errors else "")
            )
        if cache_path and cache is not None:
            _save_timing_cache(config, cache_path)
        del parser  # only now: the network used its weights until the build finished
        placement = (
            placement_summary(network_placement, _engine_placement(trt, serialized, plan, said))
            if network_placement is not None
            else None
        )
    return serialized, loaded, placement
