"""The fleet's Prometheus side with the real Debian `prometheus` 2.42 and `promtool`: the alert
and recording rules (deploy/prometheus/rules.yml) pass `promtool check rules` and their unit
tests (`promtool test rules`, one per alert: fires on a drop or rise, silent on a healthy series);
the node agent's config as it ships (deploy/prometheus/agent.yml) passes `promtool check config
--agent`; the Grafana dashboard (deploy/grafana/optimize-fleet.json) parses and its queries use
only metric names the prober, the recording rules, Triton or node_exporter define.

The outage test: a real Prometheus in agent mode scrapes a target every second and remote-writes
to a second real Prometheus (the receiver, --web.enable-remote-write-receiver); the receiver is
stopped for ~10 s and restarted on the same data folder; once the agent has caught up, the
receiver holds a sample for every scrape across the outage. Loopback only, each server a plain
subprocess on a free port with its own data folder, killed at the end. The scrape target is the
real prober, `optimize monitor` on a tiny ONNX Runtime bundle, probing every second."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules.yml"
RULES_TEST = PROMETHEUS_DIR / "rules.test.yml"
AGENT = PROMETHEUS_DIR / "agent.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "optimize-fleet.json"

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found (Debian package `prometheus`; .ci/run installs it)"
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not found (Debian package `prometheus`; .ci/run installs it)"
)

ALERTS = {
    "OptimizeCanaryAgreementLow",
    "OptimizeCanaryLatencyHigh",
    "OptimizeProbeFailing",
    "OptimizeNodeSilent",
    "OptimizeProberAbsent",
}

# What `optimize monitor` exports (histogram and counter series by their exposed names).
PROBER_METRICS = {
    "optimize_canary_agreement_ratio",
    "optimize_canary_max_abs_diff",
    "optimize_canary_latency_seconds_bucket",
    "optimize_canary_latency_seconds_sum",
    "optimize_canary_latency_seconds_count",
    "optimize_engine_info",
    "optimize_probe_failures_total",
    "optimize_probe_last_success_timestamp_seconds",
    "optimize_node_temperature_celsius",
    "optimize_node_memory_pressure_ratio",
}
# Standard names: Prometheus' own, node_exporter's and Triton's.
STANDARD_METRICS = {
    "up",
    "node_hwmon_temp_celsius",
    "node_thermal_zone_temp",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemTotal_bytes",
    "node_pressure_memory_waiting_seconds_total",
    "node_pressure_memory_stalled_seconds_total",
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_gpu_utilization",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_memory_total_bytes",
}


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)


@needs_promtool
def test_rules_check_and_unit_tests() -> None:
    checked = _run(PROMTOOL, "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run(PROMTOOL, "test", "rules", RULES_TEST.name, cwd=PROMETHEUS_DIR)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test() -> None:
    rules = yaml.safe_load(RULES.read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    assert alerts == ALERTS
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    firing = {
        case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case["exp_alerts"]
    }
    silent = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if not case["exp_alerts"]
    }
    assert firing == ALERTS and silent == ALERTS


@needs_promtool
def test_agent_config_as_shipped() -> None:
    checked = _run(PROMTOOL, "check", "config", "--agent", str(AGENT))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load(AGENT.read_text())
    targets = {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets == {
        "optimize-monitor": ["localhost:9400"],
        "triton": ["localhost:8002"],
        "node": ["localhost:9100"],
    }
    assert len(config["remote_write"]) == 1
    text = AGENT.read_text()
    assert "--storage.agent.retention.max-time=24h" in text
    assert "--enable-feature=agent" in text


# -- Grafana dashboard ---------------------------------------------------------------------------

_PROMQL_WORDS = (
    # functions
    "abs absent absent_over_time avg_over_time ceil changes clamp clamp_max clamp_min count_over_time"
    " delta deriv exp floor histogram_quantile idelta increase irate label_join label_replace"
    " last_over_time ln max_over_time min_over_time predict_linear quantile_over_time rate resets"
    " round scalar sort sort_desc sum_over_time time timestamp vector"
    # aggregations and keywords
    " sum min max avg group stddev stdvar count count_values bottomk topk quantile by without on"
    " ignoring group_left group_right and or unless bool offset"
)
PROMQL_WORDS = set(_PROMQL_WORDS.split())


def _metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside label matchers, strings and range
    selectors that are not functions, aggregations, keywords, Grafana variables or grouping labels."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)  # ranges (incl. $__rate_interval)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\w+", " ", expr)  # Grafana variables
    names = set(re.findall(r"(?<![\w.])[A-Za-z_:][\w:]*", expr))
    return {name for name in names if name not in PROMQL_WORDS and not re.fullmatch(r"\d\w*", name)}


def _recorded_names() -> set[str]:
    rules = yaml.safe_load(RULES.read_text())
    return {rule["record"] for group in rules["groups"] for rule in group["rules"] if "record" in rule}


def _panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_metric_names_are_extracted() -> None:
    assert _metric_names(
        'histogram_quantile(0.9, sum by (le, device_class) (rate(a_bucket{device_class=~"$device_class"}'
        "[$__rate_interval]))) * on (node) group_left (version) b:c:info or vector(1)"
    ) == {"a_bucket", "b:c:info"}


def test_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    query = variables["device_class"]["query"]
    query = query["query"] if isinstance(query, dict) else query
    assert query == "label_values(optimize_engine_info, device_class)"
    known = PROBER_METRICS | STANDARD_METRICS | _recorded_names()
    titles, used = [], set()
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        titles.append(panel["title"].lower())
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = _metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            assert names <= known, (panel["title"], names - known)
            used |= names
    for word in ("latency", "agreement", "temperature", "memory", "version", "failure"):
        assert any(word in title for title in titles), word
    assert {"optimize:canary_latency_seconds:p50", "optimize:canary_latency_seconds:p90"} <= used


# -- outage: the agent's WAL buffers while the receiver is down ----------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _wait_ready(port: int, process: subprocess.Popen, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"prometheus on :{port} exited with {process.returncode}"
        with contextlib.suppress(OSError):
            if _get(f"http://127.0.0.1:{port}/-/ready", timeout=1) is not None:
                return
        time.sleep(0.2)
    raise AssertionError(f"prometheus on :{port} not ready in {deadline_s} s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def _servers() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            _stop(process)


def _scrape_or_empty(scrape, port: int) -> str:
    """The prober's /metrics, or nothing while it is still starting."""
    try:
        return scrape(port)
    except OSError:
        return ""


def _receiver_samples(port: int, at: float, window_s: int) -> list[float]:
    query = urllib.parse.urlencode(
        {"query": f"optimize_canary_agreement_ratio[{window_s}s]", "time": f"{at:.3f}"}
    )
    body = json.loads(_get(f"http://127.0.0.1:{port}/api/v1/query?{query}", timeout=5))
    assert body["status"] == "success", body
    result = body["data"]["result"]
    return [float(ts) for ts, _ in result[0]["values"]] if result else []


@pytest.mark.slow
@needs_prometheus
def test_agent_buffers_through_a_receiver_outage(tmp_path: Path) -> None:
    from tests.fleet.test_monitor import monitoring, scrape
    from tests.fleet.test_verify import tiny_bundles

    bundle = tiny_bundles(tmp_path, ("onnxruntime",))["onnxruntime"]
    target_port = _free_port()
    prober = contextlib.ExitStack()  # the real prober, killed in the finally below
    prober.enter_context(
        monitoring(str(bundle), "--port", str(target_port), "--address", "127.0.0.1", "--interval", "1")
    )
    deadline = time.monotonic() + 30
    while "optimize_canary_agreement_ratio " not in _scrape_or_empty(scrape, target_port):
        assert time.monotonic() < deadline, "the prober measured no canary agreement"
        time.sleep(0.5)

    receiver_port, agent_port = _free_port(), _free_port()
    (tmp_path / "receiver.yml").write_text("global:\n  scrape_interval: 1m\n")
    (tmp_path / "agent.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
                "scrape_configs": [
                    {
                        "job_name": "optimize-monitor",
                        "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
                    }
                ],
                "remote_write": [
                    {
                        "url": f"http://127.0.0.1:{receiver_port}/api/v1/write",
                        "queue_config": {
                            "batch_send_deadline": "500ms",
                            "min_backoff": "100ms",
                            "max_backoff": "1s",
                        },
                    }
                ],
            }
        )
    )
    receiver_cmd = [
        PROMETHEUS,
        f"--config.file={tmp_path / 'receiver.yml'}",
        f"--storage.tsdb.path={tmp_path / 'receiver-data'}",
        f"--web.listen-address=127.0.0.1:{receiver_port}",
        "--web.enable-remote-write-receiver",
        "--log.level=warn",
    ]
    agent_cmd = [
        PROMETHEUS,
        "--enable-feature=agent",
        f"--config.file={tmp_path / 'agent.yml'}",
        f"--storage.agent.path={tmp_path / 'agent-data'}",
        f"--web.listen-address=127.0.0.1:{agent_port}",
        "--log.level=warn",
    ]
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("receiver", "receiver2", "agent")}

    def start(cmd: list[str], log: str, port: int) -> subprocess.Popen:
        process = subprocess.Popen(cmd, stdout=logs[log], stderr=subprocess.STDOUT, cwd=tmp_path)
        servers.append(process)
        _wait_ready(port, process)
        return process

    begun = time.monotonic()
    try:
        with _servers() as servers:
            receiver = start(receiver_cmd, "receiver", receiver_port)
            start(agent_cmd, "agent", agent_port)
            # The agent's first scrape comes ~5 s after it starts (its target discovery settles
            # first); let a few samples flow before the outage.
            deadline = time.monotonic() + 20
            while len(_receiver_samples(receiver_port, time.time(), 60)) < 3:
                assert time.monotonic() < deadline, "no sample reached the receiver before the outage"
                time.sleep(0.5)

            _stop(receiver)
            outage_start = time.time()
            time.sleep(10)
            outage_end = time.time()
            receiver = start(receiver_cmd, "receiver2", receiver_port)

            # The agent retries with backoff (at most 1 s here), then sends what its WAL kept.
            deadline = time.monotonic() + 20
            while True:
                samples = _receiver_samples(receiver_port, time.time(), 120)
                if samples and samples[-1] > outage_end + 2:
                    break
                assert time.monotonic() < deadline, "the agent did not catch up after the outage"
                time.sleep(0.5)
    finally:
        prober.close()
        for log in logs.values():
            log.close()

    during = [ts for ts in samples if outage_start < ts < outage_end]
    assert len(during) >= 8, f"{len(during)} samples from the 10 s outage reached the receiver"
    gaps = [(a, b) for a, b in zip(samples, samples[1:], strict=False) if b - a > 1.5]
    assert not gaps, f"gaps in the received series: {gaps}"
    assert samples[0] < outage_start - 2 and samples[-1] > outage_end + 2
    assert time.monotonic() - begun < 60


@needs_promtool
def test_grafana_queries_parse(tmp_path: Path) -> None:
    """Every panel's and variable's query is valid PromQL: promtool parses them as recording rules
    (Grafana's variables replaced by what they expand to)."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [
        target["expr"].replace("$device_class", ".*").replace("$__rate_interval", "5m")
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
    ]
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"panel:{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = _run(PROMTOOL, "check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_prometheus
def test_agent_config_runs_with_the_documented_flags(tmp_path: Path) -> None:
    """The shipped agent config starts a real agent with the flags its header documents, and the
    node label comes from NODE_NAME (the remote-write URL pointed at a closed loopback port)."""
    config = yaml.safe_load(AGENT.read_text())
    config["remote_write"][0]["url"] = f"http://127.0.0.1:{_free_port()}/api/v1/write"
    text = yaml.safe_dump(config).replace("'${NODE_NAME}'", "${NODE_NAME}")
    (tmp_path / "agent.yml").write_text(text)
    port = _free_port()
    with _servers() as servers, (tmp_path / "agent.log").open("w") as log:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                "--enable-feature=agent,expand-external-labels",
                f"--config.file={tmp_path / 'agent.yml'}",
                f"--storage.agent.path={tmp_path / 'agent-data'}",
                "--storage.agent.retention.max-time=24h",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env={"NODE_NAME": "node-7", "PATH": "/usr/bin:/bin"},
        )
        servers.append(process)
        _wait_ready(port, process)
        loaded = yaml.safe_load(
            json.loads(_get(f"http://127.0.0.1:{port}/api/v1/status/config"))["data"]["yaml"]
        )
        flags = json.loads(_get(f"http://127.0.0.1:{port}/api/v1/status/flags"))["data"]
    assert loaded["global"]["external_labels"] == {"node": "node-7"}
    assert flags["storage.agent.retention.max-time"] == "1d"
