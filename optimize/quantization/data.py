"""Calibration and validation samples as ONNX Runtime feeds, one sample per item: NNCF and ONNX
Runtime calibrate sample by sample, and NNCF's accuracy control ranks layers per sample."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from optimize.data.provider import DataProvider

Feeds = dict  # {input name: array with a batch axis of 1}


def sample_feeds(data: DataProvider, role: str, limit: int | None = None) -> tuple[list[Feeds], np.ndarray]:
    """Up to `limit` samples of a data role as batch-1 feeds, with their labels (-1 if none)."""
    import numpy as np

    items: list[Feeds] = []
    labels = []
    for feeds, batch_labels in data.numpy_batches(role, 256):
        for index in range(len(batch_labels)):
            items.append({name: value[index : index + 1] for name, value in feeds.items()})
            labels.append(int(batch_labels[index]))
            if limit is not None and len(items) >= limit:
                return items, np.asarray(labels)
    return items, np.asarray(labels)


class FeedReader:
    """ONNX Runtime's CalibrationDataReader protocol over prepared feeds."""

    def __init__(self, items: list[Feeds]):
        self._items = iter(items)

    def get_next(self) -> Feeds | None:
        return next(self._items, None)


def inference_session(model: onnx.ModelProto):
    """A CPU session on an in-memory model (what NNCF hands a validation function)."""
    import onnxruntime as ort

    from optimize.onnx_tools import session_options

    return ort.InferenceSession(
        model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"]
    )


@dataclass
class Validation:
    """The eval set and the number an accuracy budget is about: top-1 accuracy for classifiers,
    mean cosine similarity to the FP32 model's outputs for embedding models."""

    items: list[Feeds]
    labels: np.ndarray
    eval_index: int  # position of the scored output among the model's outputs
    reference: np.ndarray | None = None  # FP32 outputs, for embedding models
    _session: tuple | None = field(default=None, repr=False)  # (model, session): NNCF asks sample by sample

    @classmethod
    def build(cls, data: DataProvider, task: str, fp32: onnx.ModelProto) -> Validation:
        """The run's eval samples (data.eval, capped at evaluation.max_samples by the provider)."""
        items, labels = sample_feeds(data, "eval")
        validation = cls(items, labels, data.model_io.eval_index)
        if task == "embedding":
            validation.reference = validation.outputs(fp32)
        return validation

    def session(self, model: onnx.ModelProto):
        if self._session is None or self._session[0] is not model:
            self._session = (model, inference_session(model))
        return self._session[1]

    def outputs(self, model: onnx.ModelProto) -> np.ndarray:
        import numpy as np

        session = self.session(model)
        return np.concatenate([session.run(None, feeds)[self.eval_index] for feeds in self.items])

    def scores(self, model: onnx.ModelProto, indices: list[int]) -> list[float]:
        """Per-sample score (1/0 correct, or cosine to FP32) for the samples at `indices`."""
        import numpy as np

        session = self.session(model)
        scores = []
        for index in indices:
            output = session.run(None, self.items[index])[self.eval_index].reshape(-1)
            if self.reference is None:
                scores.append(float(output.argmax() == self.labels[index]))
            else:
                reference = self.reference[index].reshape(-1)
                norms = max(float(np.linalg.norm(output) * np.linalg.norm(reference)), 1e-12)
                scores.append(float(output @ reference) / norms)
        return scores

    def metric(self, model: onnx.ModelProto) -> float:
        scores = self.scores(model, list(range(len(self.items))))
        return sum(scores) / len(scores)

    def nncf_dataset(self):
        """Items are indices, so the validation function can look up labels and references."""
        import nncf

        return nncf.Dataset(list(range(len(self.items))), lambda index: self.items[index])

    def nncf_validation_fn(self, model: onnx.ModelProto, indices) -> tuple[float, list[float]]:
        """NNCF's validation_fn contract: the metric plus one value per sample (for ranking)."""
        scores = self.scores(model, list(indices))
        return sum(scores) / max(len(scores), 1), scores
