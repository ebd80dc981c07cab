"""`optimize schedule`: one Kubernetes CronJob per device class that runs `optimize rebuild` of a
registered model on a node of that class, so engines are rebuilt where they will load.

Each job exchanges nothing but the tracking server: the model comes from the registry, the
artifacts folder is the pod's own emptyDir, and the build is logged back as a run. The Job's
status is the rebuild's exit code: a regression (1) or a usage error (2) fails the Job at once,
a crashed pod is retried up to `BACKOFF_LIMIT` times.

Pure functions return plain dicts; `write_schedule` is the only one that touches the disk.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from optimize.errors import EXIT_GATE_FAILED, EXIT_INVALID, UsageError
from optimize.fleet import k8s
from optimize.fleet.cron import check_schedule
from optimize.registry import did_you_mean
from optimize.store import atomic_write_text

BUILD_IMAGE = "ghcr.io/optimize-dev/optimize-build:0.1.0"  # built from deploy/docker/build.Dockerfile
NIGHTLY = "0 3 * * *"
TIME_ZONE = "Etc/UTC"
TRACKING_SECRET = "mlflow-tracking"
TRACKING_KEY = "uri"
# Optional keys of the same Secret, for a server behind MLflow's basic authentication.
CREDENTIAL_KEYS = {"MLFLOW_TRACKING_USERNAME": "username", "MLFLOW_TRACKING_PASSWORD": "password"}
COMPONENT = "rebuild"
MODEL_ANNOTATION = "optimize.dev/model"  # the registry reference, which no label value can hold
CONTAINER = "rebuild"
ARTIFACTS_MOUNT = "/artifacts"
KUSTOMIZATION_FILE = "kustomization.yaml"
CRONJOB_NAME_LIMIT = 52  # the Job controller appends an 11-character suffix to a CronJob's name
STARTING_DEADLINE_S = 3600  # a start missed by up to an hour (controller down) still runs that night
RUN_DEADLINE_S = 6 * 3600  # a hung build ends before the next night, which Forbid would otherwise skip
BACKOFF_LIMIT = 2  # retries of a crashed pod (OOM-killed, node lost); never of a verdict
SUCCESSFUL_HISTORY = 3
FAILED_HISTORY = 3  # failed Jobs kept for `kubectl logs`: the regression table of the last nights
VERDICT_EXIT_CODES = [EXIT_GATE_FAILED, EXIT_INVALID]  # the same on any retry: fail the Job at once
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")


@dataclass(frozen=True)
class JobSettings:
    """What every CronJob of one `optimize schedule` shares; build it with `job_settings`."""

    schedule: str
    time_zone: str
    image: str
    secret_name: str
    secret_key: str
    namespace: str | None


def job_settings(
    schedule: str = NIGHTLY,
    time_zone: str = TIME_ZONE,
    image: str = BUILD_IMAGE,
    tracking_secret: str = TRACKING_SECRET,
    namespace: str | None = None,
) -> JobSettings:
    """The settings, each checked as the API server would check it (one line naming the option
    and what is valid), so a bad value is refused here rather than by `kubectl apply`."""
    name, key = tracking_secret_parts(tracking_secret)
    if namespace is not None and not DNS_LABEL.fullmatch(namespace):
        raise UsageError(
            f"--namespace {namespace}: valid: up to 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    if not image.strip() or any(character.isspace() for character in image):
        raise UsageError(f"--image '{image}': valid: an image reference such as {BUILD_IMAGE}")
    return JobSettings(check_schedule(schedule), _time_zone(time_zone), image, name, key, namespace)


def tracking_secret_parts(text: str | None) -> tuple[str, str]:
    """(Secret name, key) of `--tracking-secret NAME[:KEY]` (None: the default)."""
    name, _, key = (text or TRACKING_SECRET).partition(":")
    key = key or TRACKING_KEY
    if not DNS_SUBDOMAIN.fullmatch(name) or not SECRET_KEY.fullmatch(key):
        raise UsageError(
            f"--tracking-secret {text}: valid: NAME[:KEY], a Secret's name (lower-case letters, digits, "
            f"'-' and '.') and the key holding the tracking URI (letters, digits, '-', '_', '.'; "
            f"default {TRACKING_KEY})"
        )
    return name, key


def _time_zone(name: str) -> str:
    zones = zoneinfo.available_timezones()
    if name not in zones:  # Kubernetes refuses `Local` too: the controller's zone is no one's choice
        raise UsageError(
            f"--time-zone {name}: not a time zone{did_you_mean(name, zones)}; "
            f"valid: an IANA name such as {TIME_ZONE} or Europe/Berlin"
        )
    return name


def resolve_classes(names: list[str], classes: dict[str, Any]) -> list[Any]:
    """The device classes named, in order and once each; an unknown name gets the closest one."""
    if not names:
        raise UsageError(f"--device-class: give at least one; valid: {', '.join(classes)}")
    for name in names:
        if name not in classes:
            raise UsageError(
                f"--device-class {name}: unknown{did_you_mean(name, classes)}; valid: {', '.join(classes)} "
                "(or a class of the recipe given with --recipe)"
            )
    return [classes[name] for name in dict.fromkeys(names)]


def job_name(model_name: str, device_class) -> str:
    return k8s.dns_label(f"rebuild-{model_name}-{device_class.name}", CRONJOB_NAME_LIMIT)


def file_name(model_name: str, device_class) -> str:
    return f"rebuild-{model_name}-{device_class.name}.yaml"


def rebuild_container(model_ref, device_class, settings: JobSettings) -> dict[str, Any]:
    """`optimize rebuild` of the registered model for the class, with `--require-targets` (a pod
    on a node that cannot build the class fails loudly) and the tracking URI from the Secret
    (Kubernetes expands `$(MLFLOW_TRACKING_URI)` from the container's environment)."""
    secret = {"name": settings.secret_name}
    credentials = [
        {"name": variable, "valueFrom": {"secretKeyRef": {**secret, "key": key, "optional": True}}}
        for variable, key in CREDENTIAL_KEYS.items()
    ]
    return {
        "name": CONTAINER,
        "image": settings.image,
        "command": ["optimize", "rebuild"],
        "args": [
            "--from",
            str(model_ref),
            "--device-class",
            device_class.name,
            "--tracking-uri",
            "$(MLFLOW_TRACKING_URI)",
            "--require-targets",
            "--quiet",
        ],
        "env": [
            {
                "name": "MLFLOW_TRACKING_URI",
                "valueFrom": {"secretKeyRef": {**secret, "key": settings.secret_key}},
            },
            *credentials,
            {"name": "OPTIMIZE_ARTIFACTS", "value": ARTIFACTS_MOUNT},
        ],
        "volumeMounts": [{"name": "artifacts", "mountPath": ARTIFACTS_MOUNT}],
        **k8s.gpu_resources(device_class),
    }


def failure_policy() -> dict[str, Any]:
    """A verdict (regression, usage error) fails the Job without a retry that would only repeat
    it; a pod evicted by a drain or preemption is retried without counting as a failure."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": VERDICT_EXIT_CODES},
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }


def cron_job(model_ref, device_class, settings: JobSettings) -> dict[str, Any]:
    """The CronJob that rebuilds `model_ref` (a ModelRef) for `device_class` on its nodes. Forbid:
    a night's rebuild never runs beside the previous one still holding the node's GPU."""
    name = job_name(model_ref.name, device_class)
    labels = {
        "app.kubernetes.io/name": k8s.dns_label(model_ref.name),
        "app.kubernetes.io/instance": name,
        **k8s.component_labels(device_class, COMPONENT),
    }
    namespace = {"namespace": settings.namespace} if settings.namespace else {}
    metadata = {
        "name": name,
        **namespace,
        "labels": labels,
        "annotations": {MODEL_ANNOTATION: str(model_ref)},
    }
    pod = {
        "restartPolicy": "Never",  # podFailurePolicy needs it: each retry is a new pod
        **k8s.placement(device_class),
        "containers": [rebuild_container(model_ref, device_class, settings)],
        "volumes": [{"name": "artifacts", "emptyDir": {}}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata,
        "spec": {
            "schedule": settings.schedule,
            "timeZone": settings.time_zone,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": STARTING_DEADLINE_S,
            "successfulJobsHistoryLimit": SUCCESSFUL_HISTORY,
            "failedJobsHistoryLimit": FAILED_HISTORY,
            "jobTemplate": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "backoffLimit": BACKOFF_LIMIT,
                    "activeDeadlineSeconds": RUN_DEADLINE_S,
                    "podFailurePolicy": failure_policy(),
                    "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
                },
            },
        },
    }


def kustomization(out: Path, files: list[str]) -> dict[str, Any]:
    """The folder's kustomization listing `files` after the resources it already lists, so
    schedules written into one folder (e.g. one per build image) are applied together."""
    path = out / KUSTOMIZATION_FILE
    try:
        existing = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    except yaml.YAMLError:
        existing = None
    if not isinstance(existing, dict):
        raise UsageError(f"--out {out}: {path.name} is not a kustomization; remove it or give another folder")
    document = existing or dict(k8s.KUSTOMIZATION)
    listed = document.get("resources") or []
    document["resources"] = [*listed, *(name for name in files if name not in listed)]
    return document


def write_schedule(out: Path, model_ref, device_classes: list[Any], settings: JobSettings) -> list[Path]:
    """Write one CronJob file per class and the kustomization listing them; each file appears
    whole or not at all. Returns the files written, the kustomization last."""
    documents = {file_name(model_ref.name, dc): cron_job(model_ref, dc, settings) for dc in device_classes}
    documents[KUSTOMIZATION_FILE] = kustomization(out, list(documents))
    written = []
    for name, document in documents.items():
        atomic_write_text(out / name, yaml.safe_dump(document, sort_keys=False))
        written.append(out / name)
    return written
