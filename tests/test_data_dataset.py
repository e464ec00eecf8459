"""Tests of contrastive.data.dataset: the Dataset value, its summary and digest."""

import json

import numpy as np
import pytest

from contrastive.data import DataError, Dataset, load_dataset
from contrastive.data.dataset import compute_digest


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", label_fraction=0.1, seed=0)


def test_arrays_have_the_documented_dtypes(digits):
    assert digits.x_labeled.dtype == np.float32
    assert digits.y_labeled.dtype == np.int32
    assert digits.x_unlabeled.dtype == np.float32
    assert digits.y_test.dtype == np.int32


def test_input_shape_and_num_classes(digits):
    assert digits.input_shape == (8, 8, 1)
    assert digits.num_classes == 10


def test_class_counts_cover_each_labelled_split(digits):
    counts = digits.class_counts()

    assert sorted(counts) == ["labeled", "test", "val"]
    assert sum(counts["test"]) == len(digits.y_test)
    assert counts["labeled"] == np.bincount(digits.y_labeled, minlength=10).tolist()


def test_summary_is_json_ready_and_complete(digits):
    summary = json.loads(json.dumps(digits.summary()))

    assert summary["sizes"] == {"labeled": 126, "unlabeled": 1131, "val": 270,
                                "test": 270}
    assert summary["input_shape"] == [8, 8, 1]
    assert summary["value_range"] == [0.0, 16.0]
    assert summary["label_fraction"] == 0.1
    assert summary["seed"] == 0
    assert summary["digest"] == digits.digest


def test_arrays_are_read_only(digits):
    with pytest.raises(ValueError, match="read-only"):
        digits.x_labeled[0, 0, 0, 0] = 1.0


def test_fields_cannot_be_reassigned(digits):
    with pytest.raises(AttributeError):
        digits.name = "other"


def test_inconsistent_shapes_are_refused(digits):
    fields = {f: getattr(digits, f) for f in ("name", "source", "x_labeled",
                                               "y_labeled", "x_unlabeled", "x_val",
                                               "y_val", "x_test", "y_test",
                                               "class_names", "value_range",
                                               "digest")}
    fields["x_val"] = np.zeros((3, 9, 9, 1), np.float32)

    with pytest.raises(DataError, match=r"x_val of dataset 'digits' must be float32 "
                                        r"with shape \(N, \*\(8, 8, 1\)\)"):
        Dataset(**fields)


def test_labels_outside_the_classes_are_refused(digits):
    fields = {f: getattr(digits, f) for f in ("name", "source", "x_labeled",
                                               "x_unlabeled", "x_val", "y_val",
                                               "x_test", "y_test", "value_range",
                                               "digest")}
    fields["y_labeled"] = np.full(len(digits.x_labeled), 12, np.int32)
    fields["class_names"] = digits.class_names

    with pytest.raises(DataError, match=r"y_labeled .* must lie in \[0, 9\]"):
        Dataset(**fields)


def test_digest_changes_with_settings():
    arrays = {"x": np.arange(6, dtype=np.float32)}

    assert compute_digest(arrays, {"seed": 0}) != compute_digest(arrays, {"seed": 1})
    assert compute_digest(arrays, {"seed": 0}) == compute_digest(
        {"x": np.arange(6, dtype=np.float32)}, {"seed": 0})


def test_digest_changes_with_content():
    settings = {"seed": 0}
    changed = np.arange(6, dtype=np.float32)
    changed[3] = 99

    assert compute_digest({"x": np.arange(6, dtype=np.float32)}, settings) != (
        compute_digest({"x": changed}, settings))
