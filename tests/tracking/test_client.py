"""The MLflow adapter's pure parts: where results go and how nested values become params."""

from pathlib import Path

from optimize.tracking.client import flatten, metric_key, resolve_tracking_uri


def test_tracking_uri_precedence(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None, Path("/tmp/a")) == "sqlite:////tmp/a/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri(None, Path("/tmp/a")) == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("sqlite:///x.db", Path("/tmp/a")) == "sqlite:///x.db"


def test_flatten_nested_recipe():
    flat = flatten(
        {"model": {"args": {"num_classes": 10}}, "stages": [{"train": {"lr": 0.1}}], "weights": None}
    )
    assert flat == {"model.args.num_classes": "10", "stages.0.train.lr": "0.1"}


def test_metric_key():
    assert metric_key("stage", "00_train", "accuracy") == "stage.00_train.accuracy"
