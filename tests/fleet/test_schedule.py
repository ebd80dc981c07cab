"""`optimize schedule`: a CronJob per device class that runs `optimize rebuild` of a registered
model on that class's nodes. Every generated object validates against the Kubernetes schemas;
GPU classes hold a GPU through the NVIDIA runtime class exactly as the bundle's server does, CPU
classes neither; verdicts (regression, usage error) fail the Job without a retry; bad input is
one line, exit 2, with nothing written. Nothing here runs a model."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from click.testing import CliRunner

import optimize
from optimize.cli import main
from optimize.errors import UsageError
from optimize.fleet import k8s
from optimize.fleet import schedule as jobs
from optimize.fleet.cron import check_schedule
from optimize.targets import builtin_device_classes
from optimize.tracking.model_uri import parse_model_uri
from tests.conftest import run_cli, tiny_recipe_dict
from tests.fleet.test_k8s import KUBERNETES_VERSION, device_class

REF = "models:/digits_CNN@production"
BUILTIN = sorted(builtin_device_classes())
GPU_CLASSES = [name for name in BUILTIN if builtin_device_classes()[name].deployment.gpu]
CPU_CLASSES = [name for name in BUILTIN if not builtin_device_classes()[name].deployment.gpu]


def job(name: str, **deployment) -> dict:
    return jobs.cron_job(parse_model_uri(REF), device_class(name, **deployment), jobs.job_settings())


def pod_spec(cron_job: dict) -> dict:
    return cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def container(cron_job: dict) -> dict:
    (only,) = pod_spec(cron_job)["containers"]
    return only


def test_every_builtin_class_gets_a_cronjob_valid_for_kubernetes(tmp_path):
    import kubernetes_validate

    written = optimize.api.schedule(REF, device_classes=BUILTIN, out=tmp_path, namespace="ml-builds")
    assert [path.name for path in written] == [
        *(f"rebuild-digits_CNN-{name}.yaml" for name in BUILTIN),
        "kustomization.yaml",
    ]
    kustomization = yaml.safe_load(written[-1].read_text())
    assert kustomization["resources"] == [path.name for path in written[:-1]]
    for path in written[:-1]:
        cron_job = yaml.safe_load(path.read_text())
        kubernetes_validate.validate(cron_job, KUBERNETES_VERSION, strict=True)
        assert cron_job["metadata"]["namespace"] == "ml-builds"
        assert len(cron_job["metadata"]["name"]) <= jobs.CRONJOB_NAME_LIMIT
    assert not [path for path in tmp_path.iterdir() if path.name.endswith(".tmp")]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed: cannot render")
def test_the_folder_renders_with_kustomize_as_one_cronjob_per_class(tmp_path):
    optimize.api.schedule(REF, device_classes=["t4-tensorrt", "arm64-cpu-onnxruntime"], out=tmp_path)
    result = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rendered = [document for document in yaml.safe_load_all(result.stdout) if document]
    assert sorted(obj["metadata"]["labels"][k8s.DEVICE_CLASS_LABEL] for obj in rendered) == [
        "arm64-cpu-onnxruntime",
        "t4-tensorrt",
    ]
    assert {obj["kind"] for obj in rendered} == {"CronJob"}


@pytest.mark.parametrize("name", GPU_CLASSES)
def test_a_gpu_class_holds_a_gpu_through_the_nvidia_runtime_like_its_server(name):
    cron_job = job(name)
    server = k8s.class_patch("digits_CNN", device_class(name))["spec"]["template"]["spec"]
    assert container(cron_job)["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    assert pod_spec(cron_job)["runtimeClassName"] == server["runtimeClassName"] == "nvidia"
    assert container(cron_job)["resources"] == server["containers"][0]["resources"]


@pytest.mark.parametrize("name", CPU_CLASSES)
def test_a_cpu_class_has_neither_a_gpu_limit_nor_a_runtime_class(name):
    cron_job = job(name)
    assert "resources" not in container(cron_job)
    assert "runtimeClassName" not in pod_spec(cron_job)


def test_the_gpu_setting_of_a_class_decides_not_its_runtime():
    assert "runtimeClassName" in pod_spec(job("intel-cpu-openvino", gpu=True))
    assert "resources" not in container(job("t4-tensorrt", gpu=False))


@pytest.mark.parametrize("name", BUILTIN)
def test_jobs_land_where_the_class_servers_do(name):
    """nodeSelector: the class's node labels plus its CPU architecture, as the bundle's
    overlay selects; edge classes tolerate KubeEdge's taint there too."""
    pod = pod_spec(job(name))
    server = k8s.class_patch("digits_CNN", device_class(name))["spec"]["template"]["spec"]
    target = device_class(name)
    assert pod["nodeSelector"] == server["nodeSelector"] == k8s.node_selector(target)
    assert target.deployment.node_labels.items() <= pod["nodeSelector"].items()
    assert pod.get("tolerations") == server.get("tolerations")


def test_node_labels_of_the_class_are_the_selector():
    pod = pod_spec(job("x86-cpu-onnxruntime", node_labels={"example.com/pool": "builders"}))
    assert pod["nodeSelector"] == {"example.com/pool": "builders", "kubernetes.io/arch": "amd64"}


def test_one_rebuild_at_a_time_started_late_or_not_at_all_with_history_kept():
    spec = job("t4-tensorrt")["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == jobs.STARTING_DEADLINE_S > 0
    assert spec["successfulJobsHistoryLimit"] == jobs.SUCCESSFUL_HISTORY > 0
    assert spec["failedJobsHistoryLimit"] == jobs.FAILED_HISTORY > 0
    assert (spec["schedule"], spec["timeZone"]) == (jobs.NIGHTLY, jobs.TIME_ZONE)
    assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] == jobs.RUN_DEADLINE_S


def test_a_regression_or_usage_error_fails_the_job_while_a_crash_is_retried():
    job_spec = job("x86-cpu-onnxruntime")["spec"]["jobTemplate"]["spec"]
    fail_job, ignore_disruption = job_spec["podFailurePolicy"]["rules"]
    assert fail_job["action"] == "FailJob"
    assert fail_job["onExitCodes"] == {
        "containerName": container(job("x86-cpu-onnxruntime"))["name"],
        "operator": "In",
        "values": [optimize.errors.EXIT_GATE_FAILED, optimize.errors.EXIT_INVALID],
    }
    assert ignore_disruption == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert job_spec["backoffLimit"] == jobs.BACKOFF_LIMIT > 0  # a crash (not a verdict) is retried
    assert job_spec["template"]["spec"]["restartPolicy"] == "Never"  # what podFailurePolicy needs


def test_the_container_rebuilds_the_reference_for_its_class_on_its_own_empty_folder():
    rebuild = container(job("jetson-orin-tensorrt"))
    command = rebuild["command"] + rebuild["args"]
    assert command[:2] == ["optimize", "rebuild"]
    assert command[command.index("--from") + 1] == REF
    assert command[command.index("--device-class") + 1] == "jetson-orin-tensorrt"
    assert {"--require-targets", "--quiet"} <= set(command)
    assert command[command.index("--tracking-uri") + 1] == "$(MLFLOW_TRACKING_URI)"  # expanded by the kubelet
    env = {variable["name"]: variable for variable in rebuild["env"]}
    assert env["OPTIMIZE_ARTIFACTS"]["value"] == jobs.ARTIFACTS_MOUNT
    assert rebuild["volumeMounts"] == [{"name": "artifacts", "mountPath": jobs.ARTIFACTS_MOUNT}]
    assert pod_spec(job("jetson-orin-tensorrt"))["volumes"] == [{"name": "artifacts", "emptyDir": {}}]
    assert rebuild["image"] == jobs.BUILD_IMAGE


def test_options_reach_the_manifest(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "schedule",
            "--from",
            "models:/digits/7",
            "--device-class",
            "t4-tensorrt",
            "--schedule",
            "30 1 * * mon-fri",
            "--time-zone",
            "Europe/Berlin",
            "--image",
            "registry.example/optimize-build:trt10",
            "--tracking-secret",
            "tracking:server-url",
            "--namespace",
            "builds",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "kubectl create secret generic tracking --from-literal=server-url=" in result.output
    cron_job = yaml.safe_load((tmp_path / "rebuild-digits-t4-tensorrt.yaml").read_text())
    assert (cron_job["spec"]["schedule"], cron_job["spec"]["timeZone"]) == (
        "30 1 * * mon-fri",
        "Europe/Berlin",
    )
    assert cron_job["metadata"]["namespace"] == "builds"
    assert cron_job["metadata"]["annotations"]["optimize.dev/model"] == "models:/digits/7"
    rebuild = container(cron_job)
    assert rebuild["image"] == "registry.example/optimize-build:trt10"
    assert "models:/digits/7" in rebuild["args"]
    uri = next(v for v in rebuild["env"] if v["name"] == "MLFLOW_TRACKING_URI")
    assert uri["valueFrom"] == {"secretKeyRef": {"name": "tracking", "key": "server-url"}}
    credentials = [v for v in rebuild["env"] if v["name"].startswith("MLFLOW_TRACKING_") and v is not uri]
    assert {v["valueFrom"]["secretKeyRef"]["optional"] for v in credentials} == {True}


def test_the_help_names_the_defaults_the_jobs_get():
    helps = " ".join(param.help or "" for param in main.commands["schedule"].params)
    defaults = (jobs.NIGHTLY, jobs.TIME_ZONE, jobs.BUILD_IMAGE, f"{jobs.TRACKING_SECRET}:{jobs.TRACKING_KEY}")
    assert all(default in helps for default in defaults)


def test_a_second_schedule_into_the_folder_adds_to_its_kustomization(tmp_path):
    optimize.api.schedule(REF, device_classes=["x86-cpu-onnxruntime"], out=tmp_path)
    optimize.api.schedule(
        REF, device_classes=["t4-tensorrt", "x86-cpu-onnxruntime"], out=tmp_path, image="example/trt:1"
    )
    assert yaml.safe_load((tmp_path / "kustomization.yaml").read_text())["resources"] == [
        "rebuild-digits_CNN-x86-cpu-onnxruntime.yaml",
        "rebuild-digits_CNN-t4-tensorrt.yaml",
    ]


def test_a_class_of_the_recipe_is_accepted_with_recipe(write_recipe, tmp_path):
    own = {"name": "orin-dla", "runtime": "tensorrt", "arch": "aarch64", "deployment": {"edge_nodes": True}}
    recipe = write_recipe(tiny_recipe_dict(device_classes=[own]))
    with pytest.raises(UsageError, match="--device-class orin-dla: unknown"):
        optimize.api.schedule(REF, device_classes=["orin-dla"], out=tmp_path / "without")
    (path, _) = optimize.api.schedule(REF, device_classes=["orin-dla"], recipe=recipe, out=tmp_path / "with")
    pod = pod_spec(yaml.safe_load(path.read_text()))
    assert pod["nodeSelector"] == {k8s.DEVICE_CLASS_LABEL: "orin-dla", "kubernetes.io/arch": "arm64"}
    assert pod["runtimeClassName"] == "nvidia"


@pytest.mark.parametrize("model", ["digits", "Digits.CNN_v2", "m" * 64])
def test_job_names_fit_a_cronjob_and_stay_distinct_per_class(model):
    names = {jobs.job_name(model, device_class(name)) for name in BUILTIN}
    assert len(names) == len(BUILTIN)
    for name in names:
        assert len(name) <= jobs.CRONJOB_NAME_LIMIT and name[0].isalpha() and name[-1].isalnum()


@pytest.mark.parametrize(
    "schedule",
    [
        "0 3 * * *",
        "*/15 * * * *",
        "0 3 1-7 * mon",
        "0 0,12 * JAN-Mar sun-sat",
        "5 4 ? * 0",
        "@daily",
        "@every 1h30m",
    ],
)
def test_schedules_kubernetes_accepts_are_accepted(schedule):
    assert check_schedule(schedule) == schedule


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("0 3 * *", "4 fields, not 5"),
        ("0 24 * * *", "hour '24' is out of range 0-23"),
        ("0 3 0 * *", "day-of-month '0' is out of range 1-31"),
        ("0 3 * * 7", "day-of-week '7' is out of range 0-6 or sun-sat"),
        ("0 3 * foo *", "month 'foo' is out of range 1-12 or jan-dec"),
        ("*/0 * * * *", "minute '*/0' has a step of 0"),
        ("0 3 * * 5-2", "day-of-week '5-2' starts after it ends"),
        ("0 3 * * *-1", "day-of-week '*-1' is not"),
        ("@nightly", "@nightly is not a descriptor"),
        ("@every soon", "@every takes a duration"),
        ("CRON_TZ=Europe/Berlin 0 3 * * *", "a time zone goes in --time-zone"),
    ],
)
def test_schedules_kubernetes_refuses_name_what_is_wrong(schedule, problem):
    with pytest.raises(UsageError) as refused:
        check_schedule(schedule)
    message = str(refused.value)
    assert message.startswith(f"--schedule '{schedule}': {problem}") and "valid: five fields" in message


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        (
            "--from",
            "models:/digits",
            "--from models:/digits: not a registry reference; valid: models:/NAME@ALIAS",
        ),
        (
            "--device-class",
            "x86-cpu-onnxruntim",
            "--device-class x86-cpu-onnxruntim: unknown (did you mean 'x86-cpu-onnxruntime'?)",
        ),
        ("--schedule", "0 25 * * *", "--schedule '0 25 * * *': hour '25' is out of range 0-23"),
        (
            "--time-zone",
            "Europe/Berln",
            "--time-zone Europe/Berln: not a time zone (did you mean 'Europe/Berlin'?)",
        ),
        ("--tracking-secret", "Tracking:uri", "--tracking-secret Tracking:uri: valid: NAME[:KEY]"),
        ("--namespace", "ML_builds", "--namespace ML_builds: valid:"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(option, value, says, tmp_path):
    given = {"--from": REF, "--device-class": "x86-cpu-onnxruntime", option: value}
    args = [item for pair in given.items() for item in pair]
    result = run_cli("schedule", *args, "--out", str(tmp_path / "jobs"), timeout=120)
    assert result.returncode == 2, result.stderr
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {says}"), lines
    assert not (tmp_path / "jobs").exists()


def test_a_folder_whose_kustomization_is_not_one_is_refused_before_any_job_is_written(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("- not: a mapping\n")
    with pytest.raises(UsageError, match="kustomization.yaml is not a kustomization"):
        optimize.api.schedule(REF, device_classes=["x86-cpu-onnxruntime"], out=tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == ["kustomization.yaml"]
