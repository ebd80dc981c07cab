"""The preflight's checks on their own, on plain arrays: labels a classifier can learn from, and
outputs shaped like a classifier's."""

from __future__ import annotations

import numpy as np
import pytest

from optimize.errors import RecipeError
from optimize.preflight import check_class_indices, classifier_classes


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_integer_labels_are_class_indices(dtype):
    check_class_indices("train", np.array([0, 3, 9], dtype))


@pytest.mark.parametrize(
    "labels, shown",
    [
        (np.array([1.0, 0.37, 2.5], np.float32), "0.37"),  # the first fractional value is the example
        (np.array([3.0, 1.0]), "3.0"),  # whole numbers stored as floats: cast explicitly
        (np.array([True, False]), "True"),
    ],
)
def test_other_labels_are_refused_with_an_example(labels, shown):
    with pytest.raises(RecipeError) as raised:
        check_class_indices("eval", labels)
    message = str(raised.value)
    assert message.startswith(
        f"data.eval: labels are {'bool' if labels.dtype == bool else 'float'} (e.g. {shown}); "
    )
    assert "use task: embedding" in message and "cast the labels to integers explicitly" in message


def test_a_classifier_outputs_batch_by_classes():
    assert classifier_classes((1, 10)) == 10
    with pytest.raises(RecipeError, match=r"outputs shape \[1, 8, 32\]; use task: embedding"):
        classifier_classes((1, 8, 32))


def test_a_negative_label_in_labelled_data_names_how_to_mark_data_unlabelled():
    from optimize.data.provider import check_outputs_fit_labels
    from optimize.errors import RecipeError

    with pytest.raises(
        RecipeError,
        match=r"data.train: labels must be class indices ≥ 0 \(found -1\); for data without labels set labeled: false",
    ):
        check_outputs_fit_labels("train", 10, [3, -1, 2])
