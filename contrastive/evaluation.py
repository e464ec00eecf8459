"""Classification and embedding-quality metrics computed from plain NumPy arrays.

This module turns predictions and frozen embeddings into numbers that can be logged,
compared across trials and written to JSON. It deliberately knows nothing about how a
model was trained or where results are tracked: every function takes arrays and returns
Python floats, dicts or NumPy arrays. All metrics are scikit-learn's own
implementations, so the numbers match what practitioners get from scikit-learn
directly.

Two families of metrics live here:

* Classification metrics on predicted class indices (accuracy, macro and weighted
  precision / recall / F1, a per-class report and a confusion matrix).
* Embedding metrics that measure how linearly separable and how locally clustered the
  learned representation is: cosine k-nearest-neighbour accuracy and a logistic
  regression "linear probe" on standardised frozen embeddings.

``METRIC_NAMES`` lists every scalar key these functions can produce, so documentation
and trackers can refer to a single source of truth.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = [
    "CLASSIFICATION_METRIC_NAMES",
    "EMBEDDING_METRIC_NAMES",
    "METRIC_NAMES",
    "classification_metrics",
    "confusion",
    "embedding_metrics",
    "knn_accuracy",
    "linear_probe_accuracy",
    "per_class_report",
]

logger = logging.getLogger(__name__)

CLASSIFICATION_METRIC_NAMES: tuple[str, ...] = (
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
)
"""Keys of the dict returned by :func:`classification_metrics`, in order."""

EMBEDDING_METRIC_NAMES: tuple[str, ...] = ("knn_accuracy", "linear_probe_accuracy")
"""Keys of the dict returned by :func:`embedding_metrics`, in order."""

METRIC_NAMES: tuple[str, ...] = CLASSIFICATION_METRIC_NAMES + EMBEDDING_METRIC_NAMES
"""Every scalar metric key this module can produce."""

# lbfgs on standardised 64- to 512-dimensional embeddings converges in a few hundred
# iterations; the generous ceiling keeps the probe from stopping early on hard,
# barely separable representations, where an unconverged fit would understate them.
_PROBE_MAX_ITER = 5000


def _as_label_vector(values: Any, name: str) -> np.ndarray:
    """Converts labels to a non-empty 1-D array.

    Args:
        values: Array-like of class labels.
        name: Argument name used in error messages.

    Returns:
        The labels as a 1-D NumPy array.

    Raises:
        ValueError: If the labels are empty or not one-dimensional.
    """
    array = np.asarray(values)

    if array.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of class labels, received shape "
            f"{array.shape}. If these are per-class scores or one-hot rows, pass "
            f"class indices instead, e.g. {name}.argmax(axis=1)."
        )
    if array.size == 0:
        raise ValueError(
            f"{name} is empty; at least one labelled sample is required to compute "
            "a metric."
        )
    return array


def _check_same_length(
    first: np.ndarray, first_name: str, second: np.ndarray, second_name: str
) -> None:
    """Raises if two arrays do not hold the same number of samples.

    Args:
        first: First array; its leading dimension is compared.
        first_name: Name of the first array in error messages.
        second: Second array; its leading dimension is compared.
        second_name: Name of the second array in error messages.

    Raises:
        ValueError: If the leading dimensions differ.
    """
    if len(first) != len(second):
        raise ValueError(
            f"{first_name} and {second_name} must have the same length, received "
            f"{first_name} with {len(first)} samples and {second_name} with "
            f"{len(second)} samples. Pass predictions and labels for the same "
            "samples."
        )


def _check_class_range(labels: np.ndarray, name: str, num_classes: int) -> None:
    """Raises unless every label is an integer in ``range(num_classes)``.

    scikit-learn silently drops labels outside the ``labels=`` list it is given, which
    would make a confusion matrix or report quietly disagree with accuracy; checking
    here turns that into a loud error.

    Args:
        labels: 1-D array of labels.
        name: Argument name used in error messages.
        num_classes: Number of classes K; labels must lie in ``0 .. K-1``.

    Raises:
        ValueError: If a label is not an integer or lies outside the range.
    """
    if labels.dtype.kind not in "iub":
        integral = labels.dtype.kind == "f" and bool(
            np.all(np.isfinite(labels)) and np.all(labels == np.round(labels))
        )
        if not integral:
            raise ValueError(
                f"{name} must hold integer class indices in 0..{num_classes - 1}, "
                f"received dtype {labels.dtype} (first values {labels[:5].tolist()}). "
                "Encode class names as indices first."
            )

    low, high = labels.min(), labels.max()
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"{name} must lie in 0..{num_classes - 1} for {num_classes} classes, "
            f"received values from {low} to {high}. Check num_classes / class_names "
            "against the label encoding."
        )


def _check_labels_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validates a pair of label vectors for a classification metric.

    Args:
        y_true: Ground-truth labels.
        y_pred: Predicted labels.

    Returns:
        Both label vectors as 1-D NumPy arrays.

    Raises:
        ValueError: If either is empty or not 1-D, or their lengths differ.
    """
    true = _as_label_vector(y_true, "y_true")
    pred = _as_label_vector(y_pred, "y_pred")
    _check_same_length(true, "y_true", pred, "y_pred")
    return true, pred


def _check_embeddings(
    embeddings: Any, embeddings_name: str, labels: Any, labels_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validates one embedding matrix and its labels.

    Args:
        embeddings: Array-like of shape (n_samples, n_features).
        embeddings_name: Name of the embeddings in error messages.
        labels: Array-like of n_samples labels.
        labels_name: Name of the labels in error messages.

    Returns:
        The embeddings as a float 2-D array and the labels as a 1-D array.

    Raises:
        ValueError: If the embeddings are not 2-D, are empty, hold NaN or infinity,
            or do not match the labels in length.
    """
    matrix = np.asarray(embeddings)

    if matrix.ndim != 2:
        raise ValueError(
            f"{embeddings_name} must be 2-D (n_samples, n_features), received shape "
            f"{matrix.shape}. Flatten or pool the encoder output per sample first."
        )
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(
            f"{embeddings_name} is empty, received shape {matrix.shape}; at least "
            "one sample with at least one feature is required."
        )

    matrix = matrix.astype(np.float64, copy=False)
    if not np.all(np.isfinite(matrix)):
        raise ValueError(
            f"{embeddings_name} contains NaN or infinite values; the encoder "
            "probably diverged. Metrics need finite embeddings."
        )

    label_vector = _as_label_vector(labels, labels_name)
    _check_same_length(matrix, embeddings_name, label_vector, labels_name)
    return matrix, label_vector


def _check_embedding_split(
    train_embeddings: Any,
    train_labels: Any,
    test_embeddings: Any,
    test_labels: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validates the train and test halves of an embedding evaluation.

    Args:
        train_embeddings: Train embeddings, shape (n_train, d).
        train_labels: Train labels, shape (n_train,).
        test_embeddings: Test embeddings, shape (n_test, d).
        test_labels: Test labels, shape (n_test,).

    Returns:
        The four validated arrays in the same order.

    Raises:
        ValueError: If any array is malformed or the feature dimensions differ.
    """
    train_x, train_y = _check_embeddings(
        train_embeddings, "train_embeddings", train_labels, "train_labels"
    )
    test_x, test_y = _check_embeddings(
        test_embeddings, "test_embeddings", test_labels, "test_labels"
    )

    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            "train_embeddings and test_embeddings must have the same number of "
            f"features, received {train_x.shape[1]} and {test_x.shape[1]}. Embed "
            "both splits with the same encoder."
        )
    return train_x, train_y, test_x, test_y


def _to_json_ready(value: Any) -> Any:
    """Recursively converts NumPy scalars in a nested structure to Python types.

    Args:
        value: A dict, list, NumPy scalar or plain Python value.

    Returns:
        The same structure built only from dict, list, str, int, float and bool.
    """
    if isinstance(value, dict):
        return {str(key): _to_json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_ready(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def classification_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Computes accuracy and macro / weighted precision, recall and F1.

    Classes that are never predicted get precision 0 instead of a warning
    (``zero_division=0``), which is the conservative choice for model selection.

    Args:
        y_true: Ground-truth labels, shape (n_samples,).
        y_pred: Predicted labels, shape (n_samples,).

    Returns:
        A dict with exactly the keys of ``CLASSIFICATION_METRIC_NAMES``, each a
        Python float in [0, 1].

    Raises:
        ValueError: If the labels are empty, not 1-D, or of different lengths.
    """
    true, pred = _check_labels_pair(y_true, y_pred)

    metrics: dict[str, float] = {"accuracy": float(accuracy_score(true, pred))}

    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            true, pred, average=average, zero_division=0
        )
        metrics[f"precision_{average}"] = float(precision)
        metrics[f"recall_{average}"] = float(recall)
        metrics[f"f1_{average}"] = float(f1)

    # Return keys in the documented order, whatever order they were computed in.
    return {name: metrics[name] for name in CLASSIFICATION_METRIC_NAMES}


def _check_class_names(class_names: Sequence[str]) -> list[str]:
    """Validates a list of class names.

    Args:
        class_names: One display name per class index.

    Returns:
        The names as a list of strings.

    Raises:
        ValueError: If the list is empty or contains duplicates.
    """
    if isinstance(class_names, str):
        raise ValueError(
            "class_names must be a sequence of names, one per class, received the "
            f"single string {class_names!r}. Wrap it in a list."
        )

    names = [str(name) for name in class_names]
    if not names:
        raise ValueError("class_names is empty; give one name per class index.")

    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(
            f"class_names must be unique, received duplicates {duplicates}. Rename "
            "them so each class has its own entry in the report."
        )
    return names


def per_class_report(
    y_true: Any, y_pred: Any, class_names: Sequence[str]
) -> dict[str, Any]:
    """Builds scikit-learn's per-class classification report as a JSON-ready dict.

    Args:
        y_true: Ground-truth class indices in ``0 .. len(class_names) - 1``.
        y_pred: Predicted class indices in the same range.
        class_names: Display name of each class index, unique.

    Returns:
        A dict keyed by class name, plus ``"accuracy"``, ``"macro avg"`` and
        ``"weighted avg"``; each class and average maps to ``precision``,
        ``recall``, ``f1-score`` (floats) and ``support`` (int). Only built-in
        Python types, so ``json.dumps`` works directly. Classes absent from both
        vectors are still listed, with support 0.

    Raises:
        ValueError: If the labels are malformed or outside the class range, or
            the class names are empty or not unique.
    """
    true, pred = _check_labels_pair(y_true, y_pred)
    names = _check_class_names(class_names)
    _check_class_range(true, "y_true", len(names))
    _check_class_range(pred, "y_pred", len(names))

    report = classification_report(
        true,
        pred,
        labels=list(range(len(names))),
        target_names=names,
        output_dict=True,
        zero_division=0,
    )
    report = _to_json_ready(report)

    # scikit-learn reports support as a float; it is a sample count.
    for entry in report.values():
        if isinstance(entry, dict) and "support" in entry:
            entry["support"] = int(round(entry["support"]))
    return report


def confusion(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Computes the confusion matrix over a fixed set of classes.

    Args:
        y_true: Ground-truth class indices in ``0 .. num_classes - 1``.
        y_pred: Predicted class indices in the same range.
        num_classes: Number of classes K. Classes missing from both vectors still
            get a row and a column, so matrices from different runs line up.

    Returns:
        An int64 array of shape (K, K); entry [i, j] counts samples of true class
        i predicted as class j.

    Raises:
        ValueError: If ``num_classes`` is not a positive integer or the labels are
            malformed or outside ``range(num_classes)``.
    """
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, numbers.Integral)
        or num_classes < 1
    ):
        raise ValueError(
            f"num_classes must be a positive integer, received {num_classes!r}."
        )

    true, pred = _check_labels_pair(y_true, y_pred)
    _check_class_range(true, "y_true", int(num_classes))
    _check_class_range(pred, "y_pred", int(num_classes))

    matrix = confusion_matrix(true, pred, labels=list(range(int(num_classes))))
    return matrix.astype(np.int64, copy=False)


def knn_accuracy(
    train_embeddings: Any,
    train_labels: Any,
    test_embeddings: Any,
    test_labels: Any,
    k: int = 5,
) -> float:
    """Measures how well a cosine k-nearest-neighbour vote classifies embeddings.

    Contrastive losses shape the embedding space by angle, so cosine distance is the
    natural neighbourhood measure. A high score means that same-class samples sit
    close together.

    Args:
        train_embeddings: Reference embeddings, shape (n_train, d).
        train_labels: Labels of the reference embeddings, shape (n_train,).
        test_embeddings: Embeddings to classify, shape (n_test, d).
        test_labels: True labels of the test embeddings, shape (n_test,).
        k: Number of neighbours that vote. Defaults to 5. Values larger than
            n_train are clipped to n_train so small splits still work.

    Returns:
        The fraction of test embeddings whose neighbour vote matches their label.

    Raises:
        ValueError: If ``k`` is not an integer >= 1, or the arrays are empty, not
            2-D, non-finite, or of mismatched lengths or feature dimensions.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(
            f"k must be an integer >= 1 (the number of neighbours), received {k!r}."
        )

    train_x, train_y, test_x, test_y = _check_embedding_split(
        train_embeddings, train_labels, test_embeddings, test_labels
    )

    neighbours = min(int(k), len(train_x))
    if neighbours < k:
        logger.debug(
            "k=%d exceeds the %d train embeddings; using k=%d.",
            k,
            len(train_x),
            neighbours,
        )

    classifier = KNeighborsClassifier(n_neighbors=neighbours, metric="cosine")
    classifier.fit(train_x, train_y)
    return float(accuracy_score(test_y, classifier.predict(test_x)))


def linear_probe_accuracy(
    train_embeddings: Any,
    train_labels: Any,
    test_embeddings: Any,
    test_labels: Any,
    seed: int = 0,
) -> float:
    """Measures linear separability with a logistic-regression probe.

    The embeddings stay frozen: they are standardised with statistics of the train
    split only, then a multinomial logistic regression is fitted on them and scored
    on the test split.

    Args:
        train_embeddings: Embeddings to fit the probe on, shape (n_train, d).
        train_labels: Labels of the train embeddings, shape (n_train,).
        test_embeddings: Embeddings to score the probe on, shape (n_test, d).
        test_labels: True labels of the test embeddings, shape (n_test,).
        seed: Random state of the logistic regression. Defaults to 0.

    Returns:
        The probe's accuracy on the test embeddings.

    Raises:
        ValueError: If the arrays are empty, not 2-D, non-finite, of mismatched
            lengths or feature dimensions, or the train labels hold a single class.
    """
    train_x, train_y, test_x, test_y = _check_embedding_split(
        train_embeddings, train_labels, test_embeddings, test_labels
    )

    classes = np.unique(train_y)
    if len(classes) < 2:
        raise ValueError(
            "train_labels must contain at least 2 classes to fit a linear probe, "
            f"received only class {classes.tolist()}. Use a larger or stratified "
            "train split."
        )

    probe = make_pipeline(
        StandardScaler(),
        LogisticRegression(max_iter=_PROBE_MAX_ITER, random_state=seed),
    )

    # An unconverged probe still gives a usable score; report it through logging
    # rather than letting warnings flood a long hyperparameter search.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        probe.fit(train_x, train_y)
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            logger.warning("Linear probe did not fully converge: %s", warning.message)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )

    return float(accuracy_score(test_y, probe.predict(test_x)))


def embedding_metrics(
    train_embeddings: Any,
    train_labels: Any,
    test_embeddings: Any,
    test_labels: Any,
    k: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Computes every embedding-quality metric in one call.

    Args:
        train_embeddings: Reference / probe-fitting embeddings, shape (n_train, d).
        train_labels: Labels of the train embeddings, shape (n_train,).
        test_embeddings: Embeddings to evaluate, shape (n_test, d).
        test_labels: True labels of the test embeddings, shape (n_test,).
        k: Number of neighbours for :func:`knn_accuracy`. Defaults to 5.
        seed: Random state for :func:`linear_probe_accuracy`. Defaults to 0.

    Returns:
        A dict with exactly the keys of ``EMBEDDING_METRIC_NAMES``:
        ``knn_accuracy`` and ``linear_probe_accuracy``.

    Raises:
        ValueError: Under the same conditions as :func:`knn_accuracy` and
            :func:`linear_probe_accuracy`.
    """
    return {
        "knn_accuracy": knn_accuracy(
            train_embeddings, train_labels, test_embeddings, test_labels, k=k
        ),
        "linear_probe_accuracy": linear_probe_accuracy(
            train_embeddings, train_labels, test_embeddings, test_labels, seed=seed
        ),
    }
