"""Contrastive losses: supervised contrastive (SupCon) and NT-Xent (SimCLR).

This module holds the two batch-level contrastive objectives the platform trains
encoders with, as pure functions (for custom ``train_step`` code) and as
serialisable ``keras.losses.Loss`` classes (for ``model.compile`` and for Keras
Tuner, which tunes the temperature).

* Supervised contrastive loss, the "outside" form L^sup_out (eq. 2) of
  Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020,
  https://arxiv.org/abs/2004.11362.
* NT-Xent (normalised temperature-scaled cross-entropy) of Chen et al.,
  "A Simple Framework for Contrastive Learning of Visual Representations"
  (SimCLR), ICML 2020, https://arxiv.org/abs/2002.05709.

NT-Xent is SupCon where each sample's only positive is its other augmented view,
so both share one core, ``_supcon_core``. Everything is written with
``keras.ops`` so it traces inside a TensorFlow ``train_step`` under
``tf.function`` with a dynamic batch size. The similarities and the softmax are
always computed in float32, whatever the input dtype, so the losses stay finite
under a ``mixed_float16`` policy even at small temperatures.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
from keras import ops  # noqa: E402

__all__ = ["supcon_loss", "nt_xent_loss", "SupConLoss", "NTXentLoss"]

logger = logging.getLogger(__name__)

# Added to the diagonal logits so that exp() of them is exactly 0 after the
# row-max shift. A finite value (not -inf) keeps every intermediate finite, so
# masked entries contribute 0 (not NaN) to the loss and to its gradient. Logits
# of unit vectors lie in [-1/t, 1/t], far above this for any sane temperature.
_DIAGONAL_LOGIT = -1e30

# Floor on the squared norm when L2-normalising: an all-zero projection stays
# zero (similarity 0 to everything) instead of producing 0/0.
_SQUARED_NORM_EPSILON = 1e-12


def _validate_temperature(temperature: Any) -> float:
    """Checks that a Python temperature is a finite number greater than zero.

    Args:
        temperature: The value to check. Python and NumPy numbers are accepted.

    Returns:
        The temperature as a Python float.

    Raises:
        TypeError: If `temperature` is not a real number (booleans included).
        ValueError: If `temperature` is not finite or not greater than zero.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(
            "temperature must be a real number > 0; received "
            f"temperature={temperature!r} of type {type(temperature).__name__}. "
            "Pass a positive float such as temperature=0.1."
        )

    value = float(temperature)
    if math.isnan(value) or value <= 0:
        raise ValueError(
            f"temperature must be > 0; received temperature={temperature}. "
            "Pass a positive float such as temperature=0.1."
        )
    if math.isinf(value):
        raise ValueError(
            f"temperature must be finite; received temperature={temperature}. "
            "Pass a positive float such as temperature=0.1."
        )
    return value


def _temperature_tensor(temperature: Any) -> Any:
    """Returns the temperature as a float32 tensor, validating Python numbers.

    Args:
        temperature: A Python/NumPy number (validated) or a tensor (used as is,
            since its value may only be known when the graph runs).

    Returns:
        A float32 scalar tensor.

    Raises:
        TypeError: If a non-tensor `temperature` is not a real number.
        ValueError: If a numeric `temperature` is not finite or not > 0.
    """
    # NumPy scalars have a shape too, so numbers are recognised first.
    if isinstance(temperature, numbers.Number) or not hasattr(temperature, "shape"):
        temperature = _validate_temperature(temperature)
    return ops.cast(temperature, "float32")


def _l2_normalize(features: Any) -> Any:
    """L2-normalises each row; the input must already be float32.

    Args:
        features: A (N, D) float32 tensor.

    Returns:
        The (N, D) tensor with unit-norm rows (zero rows stay zero).
    """
    squared_norm = ops.sum(ops.square(features), axis=-1, keepdims=True)
    return features * ops.rsqrt(ops.maximum(squared_norm, _SQUARED_NORM_EPSILON))


def _flatten_labels(labels: Any, num_rows: int | None) -> Any:
    """Turns (N,) or (N, 1) labels into a (N,) tensor, checking static shapes.

    Args:
        labels: Class ids of shape (N,) or (N, 1), any numeric dtype.
        num_rows: The static number of feature rows, or None when dynamic.

    Returns:
        A (N,) tensor with the labels' dtype.

    Raises:
        ValueError: If the labels' rank or static length does not fit.
    """
    labels = ops.convert_to_tensor(labels)
    shape = tuple(labels.shape)
    if len(shape) == 2 and shape[1] == 1:
        labels = ops.reshape(labels, (-1,))
    elif len(shape) != 1:
        raise ValueError(
            "labels must have shape (N,) or (N, 1); received labels of shape "
            f"{shape}. Pass one integer class id per row of features."
        )

    num_labels = labels.shape[0]
    if num_rows is not None and num_labels is not None and num_labels != num_rows:
        raise ValueError(
            "labels must have one entry per row of features; received "
            f"{num_labels} labels for {num_rows} feature rows. Stack the labels "
            "of every view in the same order as the features."
        )
    return labels


def _supcon_core(features: Any, labels: Any, temperature: Any) -> Any:
    """Computes L^sup_out (Khosla et al., eq. 2) in float32.

    Args:
        features: A (N, D) float tensor of all views, any float dtype.
        labels: A (N,) or (N, 1) tensor of class ids.
        temperature: A positive Python number or a scalar tensor.

    Returns:
        A float32 scalar: the mean over anchors that have at least one positive
        of the mean over their positives of -log softmax; 0 if no anchor has one.

    Raises:
        ValueError: If `features` is not rank 2, or the static shapes of
            `features` and `labels` disagree.
    """
    temperature = _temperature_tensor(temperature)
    features = ops.convert_to_tensor(features)
    if len(features.shape) != 2:
        raise ValueError(
            "features must have shape (N, D); received features of shape "
            f"{tuple(features.shape)}. Flatten the projections to one row per view."
        )
    labels = _flatten_labels(labels, features.shape[0])

    # Cast before anything else: squaring norms of ~1000 overflows float16.
    features = _l2_normalize(ops.cast(features, "float32"))
    logits = ops.matmul(features, ops.transpose(features)) / temperature

    # Masks are built from the runtime batch size, so tracing with a dynamic
    # batch dimension (last smaller batch of an epoch) needs no Python ints.
    row_ids = ops.arange(ops.shape(features)[0])
    is_self = ops.equal(ops.expand_dims(row_ids, 1), ops.expand_dims(row_ids, 0))
    same_label = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
    positive = ops.cast(
        ops.logical_and(same_label, ops.logical_not(is_self)), "float32"
    )

    # A sample is never in its own denominator: its logit becomes a very large
    # negative number, whose exp() is 0 after the shift by the row maximum.
    logits = ops.where(is_self, ops.cast(_DIAGONAL_LOGIT, "float32"), logits)
    logits = logits - ops.stop_gradient(ops.max(logits, axis=1, keepdims=True))
    log_denominator = ops.log(ops.sum(ops.exp(logits), axis=1, keepdims=True))
    log_prob = logits - log_denominator

    # Mean over each anchor's positives, then over anchors that have any; the
    # maximum(.., 1) only guards divisions whose numerator is already 0.
    num_positives = ops.sum(positive, axis=1)
    has_positive = ops.cast(num_positives > 0, "float32")
    per_anchor = -ops.sum(positive * log_prob, axis=1) / ops.maximum(
        num_positives, 1.0
    )
    num_anchors = ops.maximum(ops.sum(has_positive), 1.0)
    return ops.sum(has_positive * per_anchor) / num_anchors


def supcon_loss(features: Any, labels: Any, temperature: Any = 0.1) -> Any:
    """Supervised contrastive loss L^sup_out (Khosla et al. 2020, eq. 2).

    For each anchor i, the loss averages over its positives p (the other rows
    with the same label) the term -log(exp(s_ip / t) / sum_{a != i} exp(s_ia / t)),
    where s is the cosine similarity of L2-normalised rows. Anchors with no
    positive in the batch (e.g. labels [0, 1, 1, 3] with one view: anchors 0
    and 3) are excluded from the mean over anchors; when no anchor has a
    positive the loss is exactly 0 and its gradient is finite (zero). A row is
    never its own positive nor in its own denominator. The computation runs
    in float32 whatever the input dtype.

    Args:
        features: A (N, D) float tensor with all views of a batch stacked (e.g.
            2B rows for B samples with 2 views). Rows need not be normalised.
        labels: A (N,) or (N, 1) tensor of integer class ids, row-aligned with
            `features`.
        temperature: The softmax temperature t, a Python number > 0 or a scalar
            tensor (not checked, as its value is only known at run time).
            Defaults to 0.1.

    Returns:
        A float32 scalar tensor.

    Raises:
        TypeError: If a non-tensor `temperature` is not a real number.
        ValueError: If a numeric `temperature` is not finite or not > 0, if
            `features` is not rank 2, or if the labels do not have shape (N,) or
            (N, 1) matching the features.
    """
    return _supcon_core(features, labels, temperature)


def nt_xent_loss(view_a: Any, view_b: Any, temperature: Any = 0.1) -> Any:
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

    Row i of `view_a` and row i of `view_b` are the positive pair; the other
    2B - 2 rows are negatives. The loss is the mean over all 2B anchors of
    -log(exp(s_ip / t) / sum_{a != i} exp(s_ia / t)), computed as `supcon_loss`
    on concat([view_a, view_b]) with labels concat([arange(B), arange(B)]).

    Args:
        view_a: A (B, D) float tensor, projections of the first views.
        view_b: A (B, D) float tensor, projections of the second views.
        temperature: The softmax temperature t, a Python number > 0 or a scalar
            tensor. Defaults to 0.1.

    Returns:
        A float32 scalar tensor (0 for B = 1, where the only other row is the
        positive).

    Raises:
        TypeError: If a non-tensor `temperature` is not a real number.
        ValueError: If a numeric `temperature` is not finite or not > 0, or if
            the views are not rank 2 with the same static shape.
    """
    view_a = ops.convert_to_tensor(view_a)
    view_b = ops.convert_to_tensor(view_b)
    if len(view_a.shape) != 2 or len(view_b.shape) != 2:
        raise ValueError(
            "view_a and view_b must both have shape (B, D); received shapes "
            f"{tuple(view_a.shape)} and {tuple(view_b.shape)}."
        )
    for axis in (0, 1):
        size_a, size_b = view_a.shape[axis], view_b.shape[axis]
        if size_a is not None and size_b is not None and size_a != size_b:
            raise ValueError(
                "view_a and view_b must have the same shape (row i of each is a "
                f"positive pair); received shapes {tuple(view_a.shape)} and "
                f"{tuple(view_b.shape)}."
            )

    # Both views in float32 before concatenating, so mixed dtypes are fine.
    features = ops.concatenate(
        [ops.cast(view_a, "float32"), ops.cast(view_b, "float32")], axis=0
    )
    sample_ids = ops.arange(ops.shape(view_a)[0])
    labels = ops.concatenate([sample_ids, sample_ids], axis=0)
    return _supcon_core(features, labels, temperature)


class _BatchContrastiveLoss(keras.losses.Loss):
    """Shared base: a validated temperature and a scalar-per-batch contract.

    `call` returns one scalar per batch (the averaging over anchors is done
    inside), which Keras' reductions pass through unchanged. Per-sample weights
    have no meaning for such a loss, so they are refused instead of silently
    rescaling it.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        name: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        dtype: Any = None,
    ) -> None:
        """Initialises the loss.

        Args:
            temperature: The softmax temperature, a finite number > 0.
                Defaults to 0.1.
            name: The loss name; None derives it from the class name.
                Defaults to None.
            reduction: A Keras reduction name; any of them returns the batch
                scalar unchanged. Defaults to "sum_over_batch_size".
            dtype: The dtype inputs are converted to and the result is returned
                in; None means `keras.backend.floatx()`. The similarities are
                computed in float32 regardless. Defaults to None.

        Raises:
            TypeError: If `temperature` is not a real number.
            ValueError: If `temperature` is not finite or not > 0.
        """
        self.temperature = _validate_temperature(temperature)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        logger.debug("Built %s(temperature=%s)", type(self).__name__, temperature)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """Computes the batch loss.

        Args:
            y_true: Labels (see the subclass).
            y_pred: Projections (see the subclass).
            sample_weight: Must be None. Defaults to None.

        Returns:
            A scalar tensor.

        Raises:
            ValueError: If `sample_weight` is given.
        """
        if sample_weight is not None:
            raise ValueError(
                f"{type(self).__name__} is a batch-level loss and takes no "
                "sample_weight; received a sample_weight. Drop sample_weight / "
                "class_weight from fit() and evaluate() for contrastive training."
            )
        return super().__call__(y_true, y_pred)

    def get_config(self) -> dict[str, Any]:
        """Returns the constructor arguments, temperature included.

        Returns:
            A JSON-serialisable dict accepted by `from_config`.
        """
        config = super().get_config()
        config["dtype"] = self._dtype_policy.name
        config["temperature"] = self.temperature
        return config


@keras.saving.register_keras_serializable(package="contrastive")
class SupConLoss(_BatchContrastiveLoss):
    """Supervised contrastive loss as a Keras loss; see `supcon_loss`.

    Call it as `loss(y_true=labels, y_pred=features)`, where `features` is the
    (N, D) stack of all views and `labels` their (N,) or (N, 1) class ids. Anchors
    with no positive in the batch are excluded from the mean; the loss is 0 when
    none has one.
    """

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Computes the loss of one batch.

        Args:
            y_true: A (N,) or (N, 1) tensor of class ids.
            y_pred: A (N, D) tensor of projections.

        Returns:
            A float32 scalar tensor.
        """
        return supcon_loss(y_pred, y_true, temperature=self.temperature)


@keras.saving.register_keras_serializable(package="contrastive")
class NTXentLoss(_BatchContrastiveLoss):
    """NT-Xent (SimCLR) as a Keras loss; see `nt_xent_loss`.

    `y_pred` is concat([view_a, view_b], axis=0) of shape (2B, D) and is split
    in half; `y_true` is ignored and may be None or zeros.
    """

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """Computes the batch loss, accepting `y_true=None`.

        Args:
            y_true: Ignored; may be None.
            y_pred: A (2B, D) tensor, the first B rows being view a.
            sample_weight: Must be None. Defaults to None.

        Returns:
            A scalar tensor.

        Raises:
            ValueError: If `sample_weight` is given or `y_pred` has an odd
                static number of rows.
        """
        # Keras converts y_true to a tensor, which None cannot be.
        y_true = 0.0 if y_true is None else y_true
        return super().__call__(y_true, y_pred, sample_weight)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Computes the loss of one batch.

        Args:
            y_true: Ignored.
            y_pred: A (2B, D) tensor: view a stacked over view b.

        Returns:
            A float32 scalar tensor.

        Raises:
            ValueError: If `y_pred` is not rank 2 or has an odd static number
                of rows.
        """
        shape = tuple(y_pred.shape)
        if len(shape) != 2 or (shape[0] is not None and shape[0] % 2):
            raise ValueError(
                "NTXentLoss expects y_pred = concat([view_a, view_b], axis=0) of "
                f"shape (2B, D); received y_pred of shape {shape}. Stack exactly "
                "two views per sample, view a first."
            )

        # With a dynamic batch, split raises at run time if the size is odd.
        view_a, view_b = ops.split(y_pred, 2, axis=0)
        return nt_xent_loss(view_a, view_b, temperature=self.temperature)
