"""Input pipelines: tf.data streams that feed the joint step.

An epoch is one pass over the larger pool (usually the unlabelled one). Every step takes
a batch from each pool; the smaller pool repeats, reshuffled on each pass, so the few
labelled images are seen many times an epoch while the unlabelled images are each seen
once. Without unlabelled images (label fraction 1), the unlabelled batch is empty and the
step trains on SupCon and cross-entropy alone. Batches are prefetched so that reading
overlaps the step.
"""

from __future__ import annotations

import math
import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

__all__ = ["training_stream", "evaluation_stream", "steps_per_epoch"]


def training_stream(
    x_labeled: np.ndarray,
    y_labeled: np.ndarray,
    x_unlabeled: np.ndarray,
    *,
    labeled_batch_size: int = 64,
    unlabeled_batch_size: int = 192,
    seed: int = 0,
) -> tuple[tf.data.Dataset, int]:
    """Builds the endless ``(x_labeled, y_labeled, x_unlabeled)`` stream.

    Args:
        x_labeled: ``(n_l, H, W, C)`` labelled images, at least one.
        y_labeled: ``(n_l,)`` integer labels.
        x_unlabeled: ``(n_u, H, W, C)`` unlabelled images; may be empty.
        labeled_batch_size: Labelled images per step (capped at ``n_l``). Defaults to 64.
        unlabeled_batch_size: Unlabelled images per step (capped at ``n_u``). Defaults
            to 192.
        seed: Seeds the shuffles. Defaults to 0.

    Returns:
        The stream and the number of steps in one epoch.

    Raises:
        ValueError: Without labelled images or with a batch size below 1.
    """
    if len(x_labeled) == 0:
        raise ValueError("training needs at least one labelled image; received none.")
    if labeled_batch_size < 1 or unlabeled_batch_size < 1:
        raise ValueError(
            "batch sizes must be >= 1; received "
            f"labeled_batch_size={labeled_batch_size}, "
            f"unlabeled_batch_size={unlabeled_batch_size}."
        )
    n_labeled, n_unlabeled = len(x_labeled), len(x_unlabeled)
    labeled_batch = min(labeled_batch_size, n_labeled)
    labeled = _endless(
        (x_labeled.astype("float32"), y_labeled.astype("int32")), labeled_batch, seed
    )

    if n_unlabeled == 0:
        empty = np.zeros((0, *x_labeled.shape[1:]), "float32")
        stream = labeled.map(lambda x, y: (x, y, tf.constant(empty)))
    else:
        unlabeled_batch = min(unlabeled_batch_size, n_unlabeled)
        unlabeled = _endless(x_unlabeled.astype("float32"), unlabeled_batch, seed + 1)
        stream = tf.data.Dataset.zip(labeled, unlabeled).map(
            lambda pair, x_u: (pair[0], pair[1], x_u)
        )
    steps = steps_per_epoch(
        n_labeled, n_unlabeled, labeled_batch_size, unlabeled_batch_size
    )
    return stream.prefetch(tf.data.AUTOTUNE), steps


def steps_per_epoch(
    n_labeled: int, n_unlabeled: int, labeled_batch_size: int, unlabeled_batch_size: int
) -> int:
    """Steps in one pass over the larger pool, batch sizes capped at the pool sizes."""
    steps = math.ceil(n_labeled / min(labeled_batch_size, n_labeled))
    if n_unlabeled:
        steps = max(steps, math.ceil(n_unlabeled / min(unlabeled_batch_size, n_unlabeled)))
    return steps


def evaluation_stream(x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> tf.data.Dataset:
    """Batches ``(x, y)`` in order, once, for validation and test."""
    data = (x.astype("float32"), y.astype("int32"))
    return tf.data.Dataset.from_tensor_slices(data).batch(batch_size).prefetch(
        tf.data.AUTOTUNE
    )


def _endless(tensors, batch_size: int, seed: int) -> tf.data.Dataset:
    size = len(tensors[0]) if isinstance(tensors, tuple) else len(tensors)
    return (
        tf.data.Dataset.from_tensor_slices(tensors)
        .shuffle(size, seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch_size, drop_remainder=True)
    )
