"""What a trained model reports: test metrics, embedding scores and pictures.

A trial and the champion are judged the same way, so their numbers line up in the MLflow
UI: the inference model predicts the test split, scikit-learn scores the predictions
(`contrastive.evaluation`), k-NN and a linear probe score the embeddings on their own, and
`contrastive.plots` draws the pictures. Every metric is logged with the ``test_`` prefix.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

from contrastive import evaluation, plots  # noqa: E402

__all__ = ["Evaluation", "embedding_model", "evaluate_model", "log_evaluation"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Evaluation:
    """One model's scores on one dataset's test split.

    Args:
        metrics: ``test_``-prefixed metrics (see `contrastive.evaluation.METRIC_NAMES`).
        report: scikit-learn's per-class report, JSON-ready.
        confusion: ``(K, K)`` confusion matrix (rows: true class).
        test_embeddings: Embeddings of the test images.
        predictions: Predicted class of each test image.
    """

    metrics: dict[str, float]
    report: dict
    confusion: np.ndarray
    test_embeddings: np.ndarray
    predictions: np.ndarray


def embedding_model(inference_model: keras.Model) -> keras.Model:
    """The part of an inference model from raw images to embeddings."""
    # `.input` (one tensor), not `.inputs` (a list): a model built on a list warns on
    # every call with a plain array that the input structures differ.
    return keras.Model(
        inference_model.input, inference_model.get_layer("embedding").output
    )


def evaluate_model(
    inference_model: keras.Model,
    x_test: np.ndarray,
    y_test: np.ndarray,
    x_reference: np.ndarray | None,
    y_reference: np.ndarray | None,
    *,
    class_names: tuple[str, ...],
    k: int = 5,
    seed: int = 0,
) -> Evaluation:
    """Scores ``inference_model`` on test images.

    Args:
        inference_model: Raw images -> probabilities, with an ``embedding`` layer.
        x_test: Test images in the dataset's value range.
        y_test: Their labels.
        x_reference: Labelled images the k-NN and linear probe learn from (the labelled
            training set: what the classifier itself had). None leaves the two
            embedding metrics out, for callers that have no such set
            (`contrastive.assessment` then cross-validates them).
        y_reference: Their labels, or None with ``x_reference``.
        class_names: Display names of the classes.
        k: Neighbours of the k-NN score. Defaults to 5.
        seed: Seeds the linear probe. Defaults to 0.
    """
    embedder = embedding_model(inference_model)
    predictions = _in_batches(inference_model, x_test).argmax(axis=1)
    test_embeddings = _in_batches(embedder, x_test)

    scores = evaluation.classification_metrics(y_test, predictions)
    if x_reference is not None:
        reference_embeddings = _in_batches(embedder, x_reference)
        scores.update(
            evaluation.embedding_metrics(
                reference_embeddings, y_reference, test_embeddings, y_test, k=k,
                seed=seed,
            )
        )
    return Evaluation(
        metrics={f"test_{name}": float(value) for name, value in scores.items()},
        report=evaluation.per_class_report(y_test, predictions, list(class_names)),
        confusion=evaluation.confusion(y_test, predictions, len(class_names)),
        test_embeddings=test_embeddings,
        predictions=predictions,
    )


def _in_batches(model: keras.Model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Runs ``model`` eagerly in batches.

    Every trial has a new model, so ``model.predict`` would trace a new function each
    time (and TensorFlow warns about retracing); a few eager batches cost less.
    """
    parts = [
        keras.ops.convert_to_numpy(model(x[i:i + batch_size], training=False))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(parts, axis=0)


def log_evaluation(
    tracker,
    run_id: str,
    result: Evaluation,
    *,
    y_test: np.ndarray,
    class_names: tuple[str, ...],
    history: dict[str, list[float]] | None = None,
    x_test: np.ndarray | None = None,
    seed: int = 0,
) -> None:
    """Logs an `Evaluation` on a run: metrics, JSON reports and PNG pictures.

    Pictures: t-SNE and PCA of the test embeddings (``plots/embeddings_*.png``), the
    confusion matrix, the training curves when ``history`` is given, and, when the raw
    ``x_test`` is given (the champion), the same projection of the raw inputs beside
    the embeddings. A picture that fails to draw is a warning, never an error.
    """
    tracker.log_metrics(run_id, result.metrics)
    tracker.log_json(run_id, result.report, "evaluation/per_class_report.json")
    tracker.log_json(
        run_id,
        {"class_names": list(class_names), "matrix": result.confusion.tolist()},
        "evaluation/confusion_matrix.json",
    )

    names = list(class_names)
    for method in ("tsne", "pca"):
        tracker.log_figure(
            run_id,
            lambda method=method: plots.embedding_figure(
                result.test_embeddings, y_test, names, method=method, seed=seed
            ),
            f"plots/embeddings_{method}.png",
        )
    tracker.log_figure(
        run_id,
        lambda: plots.confusion_matrix_figure(result.confusion, names),
        "plots/confusion_matrix.png",
    )
    if history:
        tracker.log_figure(
            run_id, lambda: plots.history_figure(history), "plots/training_curves.png"
        )
    if x_test is not None:
        tracker.log_figure(
            run_id,
            lambda: plots.embedding_comparison_figure(
                x_test, result.test_embeddings, y_test, names, method="tsne", seed=seed
            ),
            "plots/raw_vs_embeddings_tsne.png",
        )
