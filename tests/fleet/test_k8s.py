"""The Kubernetes manifests of a bundle: every built-in device class's overlay renders with the
real `kubectl kustomize` and every object validates against the Kubernetes schemas; the pure
rendering puts GPU, node selection, edge tolerations and the workload kind where they belong."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from optimize.fleet import k8s
from optimize.targets import builtin_device_classes

KUBERNETES_VERSION = "1.32"  # the schemas objects are validated against (kubectl v1.32 renders them)
MODEL, VERSION = "digits_CNN", 20250301120000
BUILTIN = sorted(builtin_device_classes())


def device_class(name: str, **deployment):
    """A built-in class, with `deployment` settings replaced where given."""
    builtin = builtin_device_classes()[name]
    if not deployment:
        return builtin
    dumped = builtin.model_dump()
    return type(builtin).model_validate({**dumped, "deployment": {**dumped["deployment"], **deployment}})


def rendered(folder, name: str) -> list[dict]:
    """The class's overlay as `kubectl kustomize` renders it."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(folder / "k8s" / "overlays" / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not installed: cannot render overlays"
)
@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_class_renders_objects_valid_for_kubernetes(name, tmp_path):
    import kubernetes_validate

    target = builtin_device_classes()[name]
    written = k8s.write_manifests(tmp_path, target, MODEL, VERSION)
    assert sorted(path.relative_to(tmp_path).as_posix() for path in written) == sorted(
        [f"k8s/base/{file}" for file in ("kustomization.yaml", "workload.yaml", "service.yaml", "agent.yml")]
        + [f"k8s/overlays/{name}/{file}" for file in ("kustomization.yaml", "device-class.yaml")]
    )
    objects = rendered(tmp_path, name)
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)

    by_kind = {obj["kind"]: obj for obj in objects}
    assert set(by_kind) == {"Service", "ConfigMap", k8s.workload_kind(target)}
    pod = by_kind[k8s.workload_kind(target)]["spec"]["template"]["spec"]
    server, prober, agent = pod["containers"]
    assert (server["name"], prober["name"], agent["name"]) == ("tritonserver", "prober", "prometheus-agent")
    agent_config = yaml.safe_load(by_kind["ConfigMap"]["data"]["agent.yml"])
    node_jobs = ["node"] if target.deployment.per_node else []  # node_exporter on the node's network
    assert [job["job_name"] for job in agent_config["scrape_configs"]] == [
        "optimize-monitor",
        "triton",
        *node_jobs,
    ]
    assert pod.get("hostNetwork", False) == target.deployment.per_node
    config_volume = next(v for v in pod["volumes"] if v["name"] == "agent-config")
    assert (
        config_volume["configMap"]["name"] == by_kind["ConfigMap"]["metadata"]["name"]
    )  # hashed name followed
    assert server["image"] == target.deployment.server_image  # the overlay's patch applied
    assert pod["nodeSelector"] == k8s.node_selector(target)
    assert ("nvidia.com/gpu" in server.get("resources", {}).get("limits", {})) == target.deployment.gpu


def test_gpu_class_requests_a_gpu_through_the_nvidia_runtime_class():
    pod = k8s.class_patch(MODEL, device_class("t4-tensorrt"))["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {"optimize.dev/device-class": "t4-tensorrt", "kubernetes.io/arch": "amd64"}


def test_cpu_class_has_no_gpu_limit_and_no_runtime_class():
    pod = k8s.class_patch(MODEL, device_class("arm64-cpu-onnxruntime"))["spec"]["template"]["spec"]
    assert "resources" not in pod["containers"][0]
    assert "runtimeClassName" not in pod
    assert pod["nodeSelector"]["kubernetes.io/arch"] == "arm64"


def test_gpu_and_node_labels_default_from_the_class_unless_given():
    assert (
        device_class("t4-tensorrt").deployment.gpu and not device_class("intel-cpu-openvino").deployment.gpu
    )
    assert device_class("intel-cpu-openvino", gpu=True).deployment.gpu
    assert not device_class("t4-tensorrt", gpu=False).deployment.gpu
    assert device_class("t4-tensorrt", gpu=None).deployment.gpu  # null: the runtime's default
    assert device_class("t4-tensorrt").deployment.node_labels == {"optimize.dev/device-class": "t4-tensorrt"}


def test_per_node_gives_a_daemonset_without_replicas():
    target = device_class("x86-cpu-onnxruntime", per_node=True, replicas=4)
    base, patch = k8s.workload(MODEL, target, VERSION), k8s.class_patch(MODEL, target)
    assert base["kind"] == patch["kind"] == "DaemonSet"
    assert "replicas" not in base["spec"] and "replicas" not in patch["spec"]


def test_deployment_takes_the_class_replicas_and_a_gpu_rollout_frees_the_gpu_first():
    target = device_class("t4-tensorrt", replicas=3)
    base = k8s.workload(MODEL, target, VERSION)
    assert base["kind"] == "Deployment"
    assert base["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert k8s.class_patch(MODEL, target)["spec"]["replicas"] == 3
    assert "strategy" not in k8s.workload(MODEL, device_class("x86-cpu-onnxruntime"), VERSION)["spec"]


def test_edge_classes_tolerate_kubeedge_nodes_and_others_do_not():
    jetson = k8s.class_patch(MODEL, device_class("jetson-orin-nano-tensorrt"))["spec"]["template"]["spec"]
    assert jetson["tolerations"] == [{"key": "node-role.kubernetes.io/edge", "operator": "Exists"}]
    server = k8s.class_patch(MODEL, device_class("t4-tensorrt"))["spec"]["template"]["spec"]
    assert "tolerations" not in server


def test_node_labels_replace_the_project_label_and_any_arch_adds_none():
    assert k8s.node_selector(device_class("ampere-plus-tensorrt")) == {
        "optimize.dev/device-class": "ampere-plus-tensorrt"
    }
    labelled = device_class("x86-cpu-onnxruntime", node_labels={"example.com/pool": "inference"})
    assert k8s.node_selector(labelled) == {"example.com/pool": "inference", "kubernetes.io/arch": "amd64"}


def test_server_polls_the_current_release_with_probes_and_metrics():
    target = device_class("x86-cpu-onnxruntime", model_root="/srv/optimize")
    template = k8s.pod_template(MODEL, target)
    server, *_monitoring = template["spec"]["containers"]
    assert server["args"] == [
        "--model-repository=/releases/current/model_repository",  # through the link, as switched
        "--model-control-mode=poll",
        "--repository-poll-secs=15",
        "--disable-auto-complete-config",
    ]
    assert server["volumeMounts"] == [{"name": "releases", "mountPath": "/releases", "readOnly": True}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert template["spec"]["volumes"][0]["hostPath"] == {
        "path": "/srv/optimize",
        "type": "Directory",
    }
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8002",
        "prometheus.io/path": "/metrics",
    }


def test_a_new_version_restarts_no_pod():
    """Applying a new bundle's manifests changes the workload's version label only: the pod
    template stays, so no node's server restarts before the rollout switches that node."""
    target = device_class("x86-cpu-onnxruntime")
    one, two = (k8s.workload(MODEL, target, version) for version in (VERSION, VERSION + 1))
    assert one["spec"]["selector"] == two["spec"]["selector"]
    assert one["spec"]["template"] == two["spec"]["template"]
    assert two["metadata"]["labels"]["app.kubernetes.io/version"] == str(VERSION + 1)


@pytest.mark.parametrize("model", ["digits_CNN.v2", "7-segment", "m" * 64])
def test_names_are_dns_labels_distinct_per_class(model):
    names = {k8s.resource_name(model, device_class(name)) for name in BUILTIN}
    assert len(names) == len(BUILTIN)
    for name in names:
        assert len(name) <= 63
        assert name[0].isalpha() and name[-1].isalnum()
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


def test_files_are_written_whole_with_no_temporary_left(tmp_path):
    k8s.write_manifests(tmp_path, device_class("jetson-orin-tensorrt"), MODEL, VERSION)
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert not [path for path in files if path.name.endswith(".tmp")]
    assert yaml.safe_load((tmp_path / "k8s" / "base" / "workload.yaml").read_text())["kind"] == "DaemonSet"


def test_the_node_agent_buffers_for_the_outage_budget_and_writes_to_the_centre():
    """Beside each server: the prober on the current release and a Prometheus agent whose WAL on
    the host is the buffer, kept for the class's outage budget and sent to its remote-write URL."""
    target = device_class(
        "jetson-orin-tensorrt",
        monitoring={"remote_write_url": "https://central.example.net/api/v1/write", "outage_budget": "72h"},
    )
    _, prober, agent = k8s.pod_template(MODEL, target)["spec"]["containers"]
    assert prober["command"] == ["optimize", "monitor", "/releases/current"]
    assert prober["args"] == ["--port", "9400", "--interval", "60"]
    assert "--storage.agent.retention.max-time=72h" in agent["args"]
    assert agent["env"] == [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    wal = next(v for v in k8s.monitoring_volumes(target.deployment.monitoring) if v["name"] == "agent-wal")
    assert wal["hostPath"] == {"path": "/var/lib/optimize/prometheus-agent", "type": "DirectoryOrCreate"}
    config = k8s.agent_config(target.deployment.monitoring, host_network=True)
    assert [job["url"] for job in config["remote_write"]] == ["https://central.example.net/api/v1/write"]


def test_monitoring_can_be_left_out():
    target = device_class("x86-cpu-onnxruntime", monitoring={"enabled": False})
    assert [c["name"] for c in k8s.pod_template(MODEL, target)["spec"]["containers"]] == ["tritonserver"]
    assert "agent.yml" not in k8s.base_files(MODEL, target, VERSION)
