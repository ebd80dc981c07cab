"""A device class: a family of devices that can share one engine (same runtime, runtime version
line and hardware generation), with the build and measurement settings for it."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, PositiveInt, model_validator

from optimize.recipe.base import Slug, StrictModel
from optimize.registries import RUNTIMES

Precision = Literal["fp32", "fp16", "int8", "int4"]

# The node label the fleet tooling sets on every node of a class: GPU Feature Discovery does not
# label Jetson nodes, so scheduling cannot rest on NVIDIA's labels alone.
DEVICE_CLASS_LABEL = "optimize.dev/device-class"
# Triton Inference Server, the server of every bundle: its ONNX Runtime, OpenVINO and TensorRT
# backends run all three runtimes' engines. Jetson (JetPack 6) needs the -igpu build of a release.
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.01-py3"
NODE_IMAGE = "ghcr.io/optimize-dev/optimize-node:0.1.0"  # built from deploy/docker/node.Dockerfile
PROMETHEUS_IMAGE = "quay.io/prometheus/prometheus:v2.53.3"


class BatchProfile(StrictModel):
    min: PositiveInt = Field(1, description="smallest batch the engine accepts")
    opt: PositiveInt = Field(8, description="batch the engine is tuned for; throughput is measured at it")
    max: PositiveInt = Field(32, description="largest batch the engine accepts")

    @model_validator(mode="after")
    def _ordered(self) -> BatchProfile:
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"needs min ≤ opt ≤ max, got {self.min}, {self.opt}, {self.max}")
        return self


class Monitoring(StrictModel):
    """The node-local monitoring beside each server (optimize.fleet.k8s): the canary prober and a
    Prometheus in agent mode that buffers its samples while the link to the centre is down."""

    enabled: bool = Field(True, description="run the prober and the agent beside each server")
    prober_image: str = Field(
        NODE_IMAGE,
        min_length=1,
        description="an image with `pip install 'optimize[node]'` (deploy/docker/node.Dockerfile builds one)",
    )
    interval_s: PositiveInt = Field(60, description="seconds between canary probes")
    agent_image: str = Field(
        PROMETHEUS_IMAGE, min_length=1, description="Prometheus 2.x image run in agent mode"
    )
    remote_write_url: str = Field(
        "https://prometheus.example.invalid/api/v1/write",
        min_length=1,
        description="the central Prometheus' remote-write endpoint (started with --web.enable-remote-write-receiver)",
    )
    outage_budget: str = Field(
        "24h",
        pattern=r"^[0-9]+[smhdwy]$",
        description="how long a node may be cut off without losing samples (--storage.agent.retention.max-time)",
    )
    wal_path: str = Field(
        "/var/lib/optimize/prometheus-agent",
        pattern=r"^/",
        description="host path of the agent's write-ahead log: the buffer; give it room for one outage budget",
    )


class Deployment(StrictModel):
    """How a bundle of the class is served on Kubernetes (optimize.fleet.k8s). Nothing here
    changes the engine or how it is measured, so no cache key reads it."""

    node_labels: dict[str, str] | None = Field(
        None,
        description=f"labels every node of the class carries, the server's nodeSelector (kubernetes.io/arch "
        f"is added from `arch`); null: {{{DEVICE_CLASS_LABEL}: <class name>}}, set by the fleet tooling",
    )
    gpu: bool | None = Field(
        None,
        description="the server needs an NVIDIA GPU: a nvidia.com/gpu limit of 1 and runtimeClassName nvidia "
        "(K3s with the NVIDIA container toolkit); null: true for TensorRT classes",
    )
    server_image: str = Field(
        TRITON_IMAGE,
        min_length=1,
        description="Triton Inference Server image; for TensorRT its TensorRT must be the one that built the "
        "engine (a plan loads on no other). Jetson (JetPack 6): the release's -igpu tag",
    )
    per_node: bool = Field(
        False, description="one server on every node of the class (a DaemonSet) instead of `replicas` of them"
    )
    replicas: PositiveInt = Field(1, description="servers of the class's Deployment (without per_node)")
    edge_nodes: bool = Field(
        False,
        description="the class's nodes may be KubeEdge edge nodes: tolerate their node-role.kubernetes.io/edge "
        "taint",
    )
    monitoring: Monitoring = Field(default_factory=Monitoring)
    model_root: str = Field(
        "/opt/optimize/models",
        pattern=r"^/",
        description="absolute host path of the node's release root (the rollout's releases/<version>/ and "
        "`current` link), mounted read-only; the server polls current/model_repository, so a switched "
        "link is served without a restart",
    )


class DeviceClassBase(StrictModel):
    name: Slug
    description: str = ""
    arch: Literal["x86_64", "aarch64", "any"] = Field(
        "any", description="CPU architecture the engine runs on"
    )
    accepted_precisions: list[Precision] = Field(
        default_factory=lambda: ["fp32", "fp16", "int8", "int4"], description="model precisions it can build"
    )
    runtime_version: str | None = Field(None, description="runtime version line, e.g. '10.*' or '>=1.20'")
    memory_budget_mb: PositiveInt | None = Field(None, description="memory the model may use on the device")
    batch: BatchProfile = Field(default_factory=BatchProfile)
    threads: PositiveInt | None = Field(
        None, description="CPU threads for inference (null: the runtime's default)"
    )
    deployment: Deployment = Field(default_factory=Deployment, description="how its bundles are served")

    @model_validator(mode="before")
    @classmethod
    def _deployment_defaults_of_the_class(cls, data: Any) -> Any:
        """`deployment.gpu` and `node_labels` left null default from the class (its runtime, its
        name) here, so every reader of a validated class (manifests, Triton config, bundle.json,
        the rollout) sees the values it is served with."""
        if not isinstance(data, dict):
            return data
        given = data.get("deployment", {})
        given = given.model_dump(exclude_unset=True) if isinstance(given, Deployment) else given
        if not isinstance(given, dict):
            return data  # the field's own validation names the problem
        defaults = {
            "gpu": data.get("runtime") in RUNTIMES and RUNTIMES.get(data["runtime"]).runs_on_gpu,
            "node_labels": {DEVICE_CLASS_LABEL: str(data.get("name", ""))},
        }
        resolved = {key: value for key, value in given.items() if not (key in defaults and value is None)}
        return {**data, "deployment": {**defaults, **resolved}}

    @model_validator(mode="after")
    def _settings_fit_the_batch(self) -> DeviceClassBase:
        """A runtime's settings may constrain the batch profile (TensorRT's DLA: one static shape)."""
        check = getattr(getattr(self, "settings", None), "batch_problem", None)
        problem = check(self.batch) if check else None
        if problem:
            raise ValueError(problem)
        return self


def _device_class_union():
    members = []
    for name, runtime in RUNTIMES:
        members.append(
            type(
                f"{runtime.__name__}Class",
                (DeviceClassBase,),
                {
                    "__annotations__": {"runtime": Literal[name], "settings": runtime.Settings},
                    "settings": Field(
                        default_factory=runtime.Settings, description=f"{name}-specific build settings"
                    ),
                    "__module__": __name__,
                },
            )
        )
    return Annotated[Union[tuple(members)], Field(discriminator="runtime")]  # noqa: UP007


DeviceClass = _device_class_union()
