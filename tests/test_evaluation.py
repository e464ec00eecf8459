"""Tests for contrastive.evaluation: metrics against scikit-learn and by hand."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)
from sklearn.neighbors import KNeighborsClassifier

from contrastive import evaluation
from contrastive.evaluation import (
    CLASSIFICATION_METRIC_NAMES,
    EMBEDDING_METRIC_NAMES,
    METRIC_NAMES,
    classification_metrics,
    confusion,
    embedding_metrics,
    knn_accuracy,
    linear_probe_accuracy,
    per_class_report,
)

# Eight samples, three classes, two mistakes: accuracy is 6 / 8 = 0.75.
Y_TRUE = np.array([0, 0, 0, 1, 1, 1, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 1, 2, 2, 2])
CLASS_NAMES = ["zero", "one", "two"]


def _clusters(seed: int, per_class: int = 30, dims: int = 8, classes: int = 4):
    """Makes tight clusters along different axes, well separated by angle."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dims)[:classes] * 5.0
    labels = np.repeat(np.arange(classes), per_class)
    points = centres[labels] + rng.normal(scale=0.1, size=(len(labels), dims))
    return points, labels


@pytest.fixture(scope="module")
def digits_split():
    """Real digits pixels split into a train half and a test half."""
    features, labels = load_digits(return_X_y=True)
    return features[:1000], labels[:1000], features[1000:], labels[1000:]


def test_classification_metrics_has_exactly_documented_keys():
    metrics = classification_metrics(Y_TRUE, Y_PRED)

    assert tuple(metrics) == CLASSIFICATION_METRIC_NAMES
    assert all(isinstance(value, float) for value in metrics.values())


def test_classification_metrics_accuracy_is_hand_computed_value():
    assert classification_metrics(Y_TRUE, Y_PRED)["accuracy"] == pytest.approx(0.75)


def test_classification_metrics_macro_recall_is_hand_computed_value():
    # Recall per class: 2/3, 2/3 and 2/2.
    expected = (2 / 3 + 2 / 3 + 1.0) / 3

    assert classification_metrics(Y_TRUE, Y_PRED)["recall_macro"] == pytest.approx(
        expected
    )


def test_classification_metrics_match_sklearn_functions():
    metrics = classification_metrics(Y_TRUE, Y_PRED)
    expected = {"accuracy": accuracy_score(Y_TRUE, Y_PRED)}
    for average in ("macro", "weighted"):
        expected[f"precision_{average}"] = precision_score(
            Y_TRUE, Y_PRED, average=average
        )
        expected[f"recall_{average}"] = recall_score(Y_TRUE, Y_PRED, average=average)
        expected[f"f1_{average}"] = f1_score(Y_TRUE, Y_PRED, average=average)

    assert metrics == pytest.approx(expected)


def test_classification_metrics_scores_unpredicted_class_as_zero_without_warning():
    # Class 2 is never predicted, so its precision is undefined.
    y_pred = np.array([0, 0, 1, 1, 1, 1, 1, 0])

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = classification_metrics(Y_TRUE, y_pred)

    expected = precision_score(Y_TRUE, y_pred, average="macro", zero_division=0)
    assert metrics["precision_macro"] == pytest.approx(expected)
    assert metrics["precision_macro"] == pytest.approx((2 / 3 + 3 / 5 + 0.0) / 3)


def test_classification_metrics_rejects_length_mismatch_naming_both_lengths():
    with pytest.raises(ValueError, match=r"y_true with 8 samples and y_pred with 3"):
        classification_metrics(Y_TRUE, [0, 1, 2])


def test_classification_metrics_rejects_empty_labels():
    with pytest.raises(ValueError, match=r"y_true is empty"):
        classification_metrics([], [])


def test_classification_metrics_rejects_probabilities_with_argmax_hint():
    probabilities = np.full((8, 3), 1 / 3)

    with pytest.raises(ValueError, match=r"y_pred must be a 1-D.*argmax\(axis=1\)"):
        classification_metrics(Y_TRUE, probabilities)


def test_metric_names_lists_every_key_once():
    embedding_keys = embedding_metrics(
        *_clusters(0), *_clusters(1), k=3, seed=0
    ).keys()

    assert set(METRIC_NAMES) == set(CLASSIFICATION_METRIC_NAMES) | set(embedding_keys)
    assert len(METRIC_NAMES) == len(set(METRIC_NAMES)) == 9


def test_per_class_report_matches_sklearn_report():
    report = per_class_report(Y_TRUE, Y_PRED, CLASS_NAMES)
    expected = classification_report(
        Y_TRUE, Y_PRED, target_names=CLASS_NAMES, output_dict=True, zero_division=0
    )

    assert report.keys() == expected.keys()
    assert report["one"] == pytest.approx(expected["one"])
    assert report["zero"]["recall"] == pytest.approx(2 / 3)
    assert report["accuracy"] == pytest.approx(0.75)


def test_per_class_report_is_json_serialisable_with_builtin_types():
    report = per_class_report(Y_TRUE, Y_PRED, CLASS_NAMES)

    restored = json.loads(json.dumps(report))

    assert restored == report
    assert type(report["two"]["support"]) is int


def test_per_class_report_lists_absent_class_with_zero_support():
    names = CLASS_NAMES + ["three"]

    report = per_class_report(Y_TRUE, Y_PRED, names)

    assert report["three"]["support"] == 0
    assert report["three"]["f1-score"] == 0.0


def test_per_class_report_rejects_label_outside_class_names():
    y_true = np.array([0, 1, 1, 0])

    with pytest.raises(ValueError, match=r"y_pred must lie in 0\.\.1.*to 2"):
        per_class_report(y_true, [0, 1, 2, 0], ["zero", "one"])


def test_per_class_report_rejects_duplicate_class_names():
    with pytest.raises(ValueError, match=r"class_names must be unique.*'one'"):
        per_class_report(Y_TRUE, Y_PRED, ["zero", "one", "one"])


def test_confusion_matches_sklearn_matrix():
    matrix = confusion(Y_TRUE, Y_PRED, 3)

    np.testing.assert_array_equal(matrix, confusion_matrix(Y_TRUE, Y_PRED))
    assert matrix[0, 1] == 1
    assert matrix.dtype == np.int64


def test_confusion_keeps_rows_for_classes_missing_from_both_vectors():
    matrix = confusion(Y_TRUE, Y_PRED, 5)

    assert matrix.shape == (5, 5)
    assert matrix[3:].sum() == 0
    assert matrix.sum() == len(Y_TRUE)


def test_confusion_rejects_label_at_or_above_num_classes():
    with pytest.raises(ValueError, match=r"y_true must lie in 0\.\.1 for 2 classes"):
        confusion(Y_TRUE, Y_PRED, 2)


def test_confusion_rejects_non_positive_num_classes():
    with pytest.raises(ValueError, match=r"num_classes must be a positive integer"):
        confusion(Y_TRUE, Y_PRED, 0)


def test_knn_accuracy_is_perfect_on_well_separated_clusters():
    train_x, train_y = _clusters(seed=0)
    test_x, test_y = _clusters(seed=1)

    assert knn_accuracy(train_x, train_y, test_x, test_y, k=5) == 1.0


def test_knn_accuracy_is_near_chance_with_shuffled_train_labels():
    train_x, train_y = _clusters(seed=0)
    test_x, test_y = _clusters(seed=1)
    shuffled = np.random.default_rng(2).permutation(train_y)

    # Four classes: chance is 0.25.
    assert knn_accuracy(train_x, shuffled, test_x, test_y, k=5) < 0.5


def test_knn_accuracy_uses_cosine_not_euclidean_distance():
    # The test point is close in angle to class 0 but close in distance to class 1.
    train_x = np.array([[10.0, 0.0], [0.5, 0.6]])
    train_y = np.array([0, 1])
    test_x = np.array([[1.0, 0.1]])

    assert knn_accuracy(train_x, train_y, test_x, np.array([0]), k=1) == 1.0


def test_knn_accuracy_matches_sklearn_cosine_classifier_on_digits(digits_split):
    train_x, train_y, test_x, test_y = digits_split
    reference = KNeighborsClassifier(n_neighbors=5, metric="cosine")
    expected = reference.fit(train_x, train_y).score(test_x, test_y)

    assert knn_accuracy(train_x, train_y, test_x, test_y, k=5) == pytest.approx(
        expected
    )
    assert expected > 0.9


def test_knn_accuracy_clips_k_to_train_size():
    train_x, train_y = _clusters(seed=0, per_class=2, classes=3)
    test_x, test_y = _clusters(seed=1, per_class=5, classes=3)

    clipped = knn_accuracy(train_x, train_y, test_x, test_y, k=50)

    assert clipped == knn_accuracy(train_x, train_y, test_x, test_y, k=len(train_x))


@pytest.mark.parametrize("bad_k", [0, -3, 2.5, True])
def test_knn_accuracy_rejects_k_that_is_not_positive_integer(bad_k):
    train_x, train_y = _clusters(seed=0)

    with pytest.raises(ValueError, match=r"k must be an integer >= 1"):
        knn_accuracy(train_x, train_y, train_x, train_y, k=bad_k)


def test_knn_accuracy_rejects_one_dimensional_embeddings():
    with pytest.raises(ValueError, match=r"train_embeddings must be 2-D.*\(12,\)"):
        knn_accuracy(np.zeros(12), np.zeros(12), np.zeros((3, 2)), np.zeros(3))


def test_knn_accuracy_rejects_embedding_label_length_mismatch():
    train_x, train_y = _clusters(seed=0)

    with pytest.raises(
        ValueError, match=r"test_embeddings with 120 samples and test_labels with 7"
    ):
        knn_accuracy(train_x, train_y, train_x, train_y[:7])


def test_knn_accuracy_rejects_feature_dimension_mismatch():
    train_x, train_y = _clusters(seed=0)

    with pytest.raises(ValueError, match=r"same number of features.*8 and 3"):
        knn_accuracy(train_x, train_y, train_x[:, :3], train_y)


def test_knn_accuracy_rejects_empty_embeddings():
    with pytest.raises(ValueError, match=r"train_embeddings is empty.*\(0, 4\)"):
        knn_accuracy(np.zeros((0, 4)), [], np.zeros((2, 4)), [0, 1])


def test_knn_accuracy_rejects_non_finite_embeddings():
    train_x, train_y = _clusters(seed=0)
    broken = train_x.copy()
    broken[3, 2] = np.nan

    with pytest.raises(ValueError, match=r"train_embeddings contains NaN"):
        knn_accuracy(broken, train_y, train_x, train_y)


def test_linear_probe_accuracy_is_perfect_on_separable_clusters():
    train_x, train_y = _clusters(seed=0)
    test_x, test_y = _clusters(seed=1)

    assert linear_probe_accuracy(train_x, train_y, test_x, test_y) == 1.0


def test_linear_probe_accuracy_is_high_on_real_digits(digits_split):
    accuracy = linear_probe_accuracy(*digits_split, seed=0)

    assert 0.9 < accuracy < 1.0


def test_linear_probe_accuracy_ignores_feature_scale(digits_split):
    train_x, train_y, test_x, test_y = digits_split
    # Standardisation must undo a wildly rescaled feature.
    scale = np.ones(train_x.shape[1])
    scale[10] = 1e6

    plain = linear_probe_accuracy(train_x, train_y, test_x, test_y)
    rescaled = linear_probe_accuracy(train_x * scale, train_y, test_x * scale, test_y)

    assert rescaled == pytest.approx(plain, abs=2 / len(test_y))


def test_linear_probe_accuracy_is_near_chance_with_shuffled_labels():
    train_x, train_y = _clusters(seed=0)
    test_x, test_y = _clusters(seed=1)
    shuffled = np.random.default_rng(3).permutation(train_y)

    assert linear_probe_accuracy(train_x, shuffled, test_x, test_y) < 0.5


def test_linear_probe_accuracy_rejects_single_train_class():
    train_x, _ = _clusters(seed=0)

    with pytest.raises(ValueError, match=r"at least 2 classes.*\[0\]"):
        linear_probe_accuracy(
            train_x, np.zeros(len(train_x), dtype=int), train_x, np.zeros(120)
        )


def test_embedding_metrics_combines_knn_and_probe(digits_split):
    train_x, train_y, test_x, test_y = digits_split

    metrics = embedding_metrics(train_x, train_y, test_x, test_y, k=3, seed=0)

    assert tuple(metrics) == EMBEDDING_METRIC_NAMES
    assert metrics["knn_accuracy"] == knn_accuracy(
        train_x, train_y, test_x, test_y, k=3
    )
    assert metrics["linear_probe_accuracy"] == linear_probe_accuracy(
        train_x, train_y, test_x, test_y, seed=0
    )


def test_evaluation_module_imports_neither_tensorflow_nor_keras():
    code = (
        "import sys, contrastive.evaluation; "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )

    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=pathlib.Path(__file__).resolve().parents[1],
    )

    assert result.stdout.strip() == "[]"
    assert evaluation.__all__
