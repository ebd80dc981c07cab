"""Cache keys (pure): equal inputs give equal keys whatever the order; any change to anything a
result depends on, the code that computes it included, gives a new key."""

import pytest

from optimize import keys

STEP = dict(
    input_hash="a" * 64,
    stage_type="train",
    params={"epochs": 4, "lr": 0.002},
    data_fingerprints={"train": "t", "eval": "e"},
    library_versions={"torch": "2.14.1"},
    interface={"inputs": [{"name": "images", "shape": [1, 3, 32, 32]}], "outputs": ["logits"], "task": "c"},
    measurement={"batch_size": 32, "reference": None},
    extra={},
    code="code-1",
)


def test_step_key_is_stable_and_order_independent():
    reordered = dict(STEP, params={"lr": 0.002, "epochs": 4}, data_fingerprints={"eval": "e", "train": "t"})
    assert keys.step_key(**STEP) == keys.step_key(**reordered)


@pytest.mark.parametrize(
    "change",
    [
        {"input_hash": "b" * 64},
        {"stage_type": "distill"},
        {"params": {"epochs": 5, "lr": 0.002}},
        {"data_fingerprints": {"train": "t2", "eval": "e"}},
        {"library_versions": {"torch": "2.15.0"}},
        {"interface": {**STEP["interface"], "outputs": ["scores"]}},
        {"measurement": {"batch_size": 64, "reference": None}},
        {"measurement": {"batch_size": 32, "reference": "r" * 64}},
        {"extra": {"teacher": "t" * 64}},
        {"code": "code-2"},
    ],
    ids=["input", "stage", "params", "data", "libraries", "interface", "batch", "reference", "extra", "code"],
)
def test_every_component_changes_the_step_key(change):
    assert keys.step_key(**{**STEP, **change}) != keys.step_key(**STEP)


SESSION = dict(
    engines={"candidate": "c", "fp32": "f", "original": "o"},
    feeds_hash="feeds",
    references={"fp32": "rf", "original": "ro"},
    settings={"min_runs": 50},
    device_class={"runtime": "onnxruntime", "threads": 2},
    host={"cpu": "Xeon", "cpu_count": "2"},
    runtime={"runtime": "onnxruntime", "version": "1.32.0"},
    task="classification",
    eval_output="logits",
    labeled=True,
    code="code-1",
)


@pytest.mark.parametrize(
    "change",
    [
        {"engines": {"candidate": "c", "fp32": "f2", "original": "o"}},  # a new baseline re-times the pair
        {"engines": {"candidate": "c", "fp32": "f"}},
        {"feeds_hash": "feeds2"},
        {"references": {"fp32": "rf"}},
        {"settings": {"min_runs": 60}},
        {"device_class": {"runtime": "onnxruntime", "threads": 1}},
        {"host": {"cpu": "EPYC", "cpu_count": "2"}},
        {"runtime": {"runtime": "onnxruntime", "version": "1.33.0"}},
        {"labeled": False},
        {"eval_output": "boxes"},
        {"code": "code-2"},
    ],
)
def test_every_component_changes_the_evaluation_session_key(change):
    assert keys.evaluation_key(**{**SESSION, **change}) != keys.evaluation_key(**SESSION)


def test_engine_key_covers_model_settings_identity_and_code():
    base = ("m", {"settings": {"a": 1}}, {"version": "1"}, "code")
    variants = [
        ("m2", *base[1:]),
        (base[0], {"settings": {"a": 2}}, *base[2:]),
        (*base[:2], {"version": "2"}, base[3]),
        (*base[:3], "code-2"),
    ]
    assert len({keys.engine_key(*base), *(keys.engine_key(*v) for v in variants)}) == 5


def test_threads_change_how_an_engine_runs_not_what_is_built():
    from optimize.targets import builtin_device_classes

    one = builtin_device_classes()["x86-cpu-onnxruntime"]
    two = one.model_copy(update={"threads": (one.threads or 1) + 1})
    assert keys.engine_build_settings(one) == keys.engine_build_settings(two)
    assert keys.engine_run_settings(one) != keys.engine_run_settings(two)


def test_how_a_bundle_is_served_changes_no_engine_or_evaluation_key():
    """Image, nodes, GPU request and replicas change nothing about the engine or its timing: a
    class's deployment settings never rebuild or re-time it, and built-in keys stay as they were."""
    from optimize.targets import builtin_device_classes

    served = {
        "node_labels": {"example.com/pool": "edge"},
        "gpu": True,
        "server_image": "registry.example.com/triton:custom",
        "per_node": True,
        "replicas": 3,
        "edge_nodes": True,
        "model_root": "/srv/models/model_repository",
    }
    for device_class in builtin_device_classes().values():
        changed = type(device_class).model_validate({**device_class.model_dump(), "deployment": served})
        assert "deployment" not in keys.engine_build_settings(device_class)
        assert keys.engine_build_settings(changed) == keys.engine_build_settings(device_class)
        assert keys.engine_run_settings(changed) == keys.engine_run_settings(device_class)


def test_torch_steps_key_on_the_interfaces_shapes_and_task_onnx_steps_on_all_of_it():
    interface = {
        "inputs": [{"name": "images", "shape": [1, 3, 8, 8], "dtype": "float32", "dynamic_batch": True}],
        "outputs": ["logits"],
        "task": "classification",
    }
    renamed = {**interface, "outputs": ["scores"]}
    reshaped = {**interface, "inputs": [{**interface["inputs"][0], "shape": [1, 3, 16, 16]}]}
    torch_view, onnx_view = (
        (lambda i: keys.interface_read_by(False, i)),
        (lambda i: keys.interface_read_by(True, i)),
    )
    assert torch_view(renamed) == torch_view(interface) != torch_view(reshaped)
    assert onnx_view(renamed) != onnx_view(interface)
