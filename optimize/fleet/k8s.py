"""The Kubernetes manifests of a bundle: a kustomize base that serves the model with Triton
Inference Server, and an overlay that places it on the nodes of its device class.

The base holds what any node needs (the server, its ports, probes, metrics and the model
repository from the node's release folder); the overlay holds what the class decides (image, node
selection, GPU, tolerations, replicas), so an operator adapts a class without touching the server.
A bundle is built for one class, so its base is already a Deployment or a DaemonSet (`per_node`):
kustomize cannot change a resource's kind.

Pure functions return plain dicts; `write_manifests` is the only one that touches the disk.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from optimize.fleet.bundle_format import K8S
from optimize.store import atomic_write_text
from optimize.targets.device_class import DEVICE_CLASS_LABEL, TRITON_IMAGE

CONTAINER = "tritonserver"
PROBER_PORT = 9400
AGENT_CONFIG = "agent.yml"
AGENT_CONFIG_MAP = "optimize-prometheus-agent"
AGENT_CONFIG_MOUNT = "/etc/optimize"
AGENT_WAL_MOUNT = "/wal"
# the agent's configuration as shipped (deploy/prometheus/agent.yml links here; packaged for nodes)
AGENT_TEMPLATE = Path(__file__).with_name("prometheus-agent.yml")
RELEASES_MOUNT = "/releases"  # the node's release root: releases/<version>/ and the `current` link
MODEL_REPOSITORY = f"{RELEASES_MOUNT}/current/model_repository"
REPOSITORY_POLL_S = 15
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
HEALTH_PATH = "/v2/health/ready"
ARCH_LABELS = {"x86_64": "amd64", "aarch64": "arm64"}  # `arch` -> kubernetes.io/arch
EDGE_TAINT = "node-role.kubernetes.io/edge"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_RUNTIME_CLASS = "nvidia"  # K3s with the NVIDIA container toolkit
SERVER_COMPONENT = "inference-server"
KUSTOMIZATION = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}


def dns_label(text: str, limit: int = 63) -> str:
    """`text` as a DNS-1035 label (a Service name and a label value) of at most `limit`
    characters (a CronJob's name: 52): model and class names may hold capitals, '.' and '_' and
    reach 64 characters; a long name keeps a hash of the whole."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    label = label if label[:1].isalpha() else f"m-{label}"
    if len(label) <= limit:
        return label
    return f"{label[: limit - 9].rstrip('-')}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def resource_name(model_name: str, device_class) -> str:
    """One name for the workload and its Service, distinct per class: overlays of several classes
    may be applied to one cluster."""
    return dns_label(f"{model_name}-{device_class.name}")


def selector_labels(model_name: str, device_class) -> dict[str, str]:
    """What the workload and the Service select on: never the version, since a Deployment's
    selector cannot change when the next version rolls out."""
    return {
        "app.kubernetes.io/name": dns_label(model_name),
        "app.kubernetes.io/instance": resource_name(model_name, device_class),
    }


def component_labels(device_class, component: str = SERVER_COMPONENT) -> dict[str, str]:
    """What the pod is for (the server, a rebuild job) and the class whose nodes run it."""
    return {
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "optimize",
        DEVICE_CLASS_LABEL: device_class.name,
    }


def labels(model_name: str, device_class, version: int) -> dict[str, str]:
    """The workload's labels: the version of the bundle whose manifests were applied last."""
    return {
        **selector_labels(model_name, device_class),
        "app.kubernetes.io/version": str(version),
        **component_labels(device_class),
    }


def metadata(model_name: str, device_class, version: int) -> dict[str, Any]:
    return {
        "name": resource_name(model_name, device_class),
        "labels": labels(model_name, device_class, version),
    }


def node_selector(device_class) -> dict[str, str]:
    """The class's node labels and the CPU architecture its engine runs on (none for `arch: any`)."""
    selector = dict(device_class.deployment.node_labels)
    if device_class.arch in ARCH_LABELS:
        selector["kubernetes.io/arch"] = ARCH_LABELS[device_class.arch]
    return selector


def placement(device_class) -> dict[str, Any]:
    """The pod-spec fields that put a pod of the class on its nodes: their labels, the NVIDIA
    runtime for a GPU class, and a toleration of KubeEdge's taint for classes on edge nodes."""
    pod: dict[str, Any] = {"nodeSelector": node_selector(device_class)}
    if device_class.deployment.gpu:
        pod["runtimeClassName"] = GPU_RUNTIME_CLASS
    if device_class.deployment.edge_nodes:
        pod["tolerations"] = [{"key": EDGE_TAINT, "operator": "Exists"}]
    return pod


def gpu_resources(device_class) -> dict[str, Any]:
    """The container fields that hold the node's GPU for a GPU class (none for a CPU class):
    limits only, since a GPU request must equal its limit."""
    if not device_class.deployment.gpu:
        return {}
    return {"resources": {"limits": {GPU_RESOURCE: 1}}}


def workload_kind(device_class) -> str:
    return "DaemonSet" if device_class.deployment.per_node else "Deployment"


def _probe(period_s: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": HEALTH_PATH, "port": "http"},
        "periodSeconds": period_s,
        "failureThreshold": failures,
    }


def server_container() -> dict[str, Any]:
    """Triton on the node's current release, read through the `current` link, in poll mode: a
    rollout switches the link on one node and that node's server loads the new version within
    `REPOSITORY_POLL_S`, with no restart and without touching the nodes not yet switched (a
    cluster-wide apply would restart every node's pod at once). Auto-completion is off
    (`--disable-auto-complete-config`, the current name of `--strict-model-config=true`), so the
    bundle's config.pbtxt is served as written. All probes ask whether the models are ready: a
    startup probe waits up to five minutes for a TensorRT engine to load, then liveness restarts a
    server whose model stopped serving."""
    return {
        "name": CONTAINER,
        "image": TRITON_IMAGE,
        "command": ["tritonserver"],
        "args": [
            f"--model-repository={MODEL_REPOSITORY}",
            "--model-control-mode=poll",
            f"--repository-poll-secs={REPOSITORY_POLL_S}",
            "--disable-auto-complete-config",
        ],
        "ports": [{"name": name, "containerPort": port, "protocol": "TCP"} for name, port in PORTS.items()],
        "startupProbe": _probe(period_s=5, failures=60),
        "readinessProbe": _probe(period_s=5, failures=3),
        "livenessProbe": _probe(period_s=10, failures=6),
        "volumeMounts": [{"name": "releases", "mountPath": RELEASES_MOUNT, "readOnly": True}],
    }


def pod_template(model_name: str, device_class) -> dict[str, Any]:
    """The server's pod, the same for every version (so applying a new bundle's manifests restarts
    nothing: each node's server moves to a version when the rollout switches that node), scraped
    by Prometheus on the metrics port. The version a pod serves is Triton's to say (its metrics'
    `version` label)."""
    return {
        "metadata": {
            "labels": selector_labels(model_name, device_class) | component_labels(device_class),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(PORTS["metrics"]),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            **host_network(device_class),
            "containers": [server_container(), *monitoring_containers(device_class.deployment.monitoring)],
            "volumes": [
                {
                    "name": "releases",
                    "hostPath": {"path": device_class.deployment.model_root, "type": "Directory"},
                },
                *monitoring_volumes(device_class.deployment.monitoring),
            ],
        },
    }


def host_network(device_class) -> dict[str, Any]:
    """A per-node server shares its node's network: clients and the rollout's health check reach
    Triton on the node's own ports, and the agent reaches node_exporter on localhost:9100."""
    if not device_class.deployment.per_node:
        return {}
    return {"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}


def monitoring_containers(monitoring) -> list[dict[str, Any]]:
    """Beside the server, in its pod (so `localhost` reaches Triton's metrics): the canary prober
    on the node's current release, and a Prometheus agent that scrapes both and remote-writes to
    the centre, keeping samples in its write-ahead log on the host while the link is down."""
    if not monitoring.enabled:
        return []
    prober = {
        "name": "prober",
        "image": monitoring.prober_image,
        "command": ["optimize", "monitor", f"{RELEASES_MOUNT}/current"],
        "args": ["--port", str(PROBER_PORT), "--interval", str(monitoring.interval_s)],
        "ports": [{"name": "prober", "containerPort": PROBER_PORT, "protocol": "TCP"}],
        "volumeMounts": [{"name": "releases", "mountPath": RELEASES_MOUNT, "readOnly": True}],
    }
    agent = {
        "name": "prometheus-agent",
        "image": monitoring.agent_image,
        "args": [
            "--enable-feature=agent,expand-external-labels",
            f"--config.file={AGENT_CONFIG_MOUNT}/{AGENT_CONFIG}",
            f"--storage.agent.path={AGENT_WAL_MOUNT}",
            f"--storage.agent.retention.max-time={monitoring.outage_budget}",
        ],
        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "volumeMounts": [
            {"name": "agent-config", "mountPath": AGENT_CONFIG_MOUNT, "readOnly": True},
            {"name": "agent-wal", "mountPath": AGENT_WAL_MOUNT},
        ],
    }
    return [prober, agent]


def monitoring_volumes(monitoring) -> list[dict[str, Any]]:
    if not monitoring.enabled:
        return []
    return [
        {"name": "agent-config", "configMap": {"name": AGENT_CONFIG_MAP}},
        {"name": "agent-wal", "hostPath": {"path": monitoring.wal_path, "type": "DirectoryOrCreate"}},
    ]


def agent_config(monitoring, host_network: bool) -> dict[str, Any]:
    """deploy/prometheus/agent.yml as the pod runs it: the prober and Triton on localhost, and
    node_exporter where the pod shares the node's network (a per-node server); the class's
    remote-write endpoint."""
    config = yaml.safe_load(AGENT_TEMPLATE.read_text(encoding="utf-8"))
    pod_jobs = ("optimize-monitor", "triton", *(("node",) if host_network else ()))
    config["scrape_configs"] = [job for job in config["scrape_configs"] if job["job_name"] in pod_jobs]
    for job in config["remote_write"]:
        job["url"] = monitoring.remote_write_url
    return config


def workload(model_name: str, device_class, version: int) -> dict[str, Any]:
    """The base's Deployment or DaemonSet. A GPU server holds its node's GPU, so a rollout stops
    the old pod before starting the new one (a surge pod would wait for a GPU that never frees)."""
    kind = workload_kind(device_class)
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(model_name, device_class)},
        "template": pod_template(model_name, device_class),
    }
    if kind == "Deployment":
        spec["replicas"] = 1
        if device_class.deployment.gpu:
            spec["strategy"] = {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
            }
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": metadata(model_name, device_class, version),
        "spec": spec,
    }


def service(model_name: str, device_class, version: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(model_name, device_class, version),
        "spec": {
            "selector": selector_labels(model_name, device_class),
            "ports": [
                {"name": name, "port": port, "targetPort": name, "protocol": "TCP"}
                for name, port in PORTS.items()
            ],
        },
    }


def class_patch(model_name: str, device_class) -> dict[str, Any]:
    """The overlay's strategic-merge patch: the class's image, nodes, GPU and tolerations."""
    deployment = device_class.deployment
    container = {"name": CONTAINER, "image": deployment.server_image, **gpu_resources(device_class)}
    spec: dict[str, Any] = {"template": {"spec": {**placement(device_class), "containers": [container]}}}
    if not deployment.per_node:
        spec["replicas"] = deployment.replicas
    return {
        "apiVersion": "apps/v1",
        "kind": workload_kind(device_class),
        "metadata": {"name": resource_name(model_name, device_class)},
        "spec": spec,
    }


def base_files(model_name: str, device_class, version: int) -> dict[str, dict[str, Any]]:
    """{file name: object} of `k8s/base/`."""
    kustomization: dict[str, Any] = {**KUSTOMIZATION, "resources": ["workload.yaml", "service.yaml"]}
    files = {
        "workload.yaml": workload(model_name, device_class, version),
        "service.yaml": service(model_name, device_class, version),
    }
    monitoring = device_class.deployment.monitoring
    if monitoring.enabled:
        kustomization["configMapGenerator"] = [
            {
                "name": AGENT_CONFIG_MAP,
                "files": [AGENT_CONFIG],
            }  # named with a content hash: a new config restarts the pod
        ]
        files[AGENT_CONFIG] = agent_config(monitoring, device_class.deployment.per_node)
    return {"kustomization.yaml": kustomization, **files}


def overlay_files(model_name: str, device_class) -> dict[str, dict[str, Any]]:
    """{file name: object} of `k8s/overlays/<class>/`."""
    return {
        "kustomization.yaml": {
            **KUSTOMIZATION,
            "resources": ["../../base"],
            "patches": [{"path": "device-class.yaml"}],
        },
        "device-class.yaml": class_patch(model_name, device_class),
    }


def write_manifests(folder: Path, device_class, model_name: str, version: int) -> list[Path]:
    """Write the base and the class's overlay under `folder/k8s/`; each file appears whole or not
    at all. Returns the files written."""
    trees = {
        folder / K8S / "base": base_files(model_name, device_class, version),
        folder / K8S / "overlays" / device_class.name: overlay_files(model_name, device_class),
    }
    written = []
    for directory, files in trees.items():
        for name, document in files.items():
            path = directory / name
            atomic_write_text(path, yaml.safe_dump(document, sort_keys=False))
            written.append(path)
    return written
