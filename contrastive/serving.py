"""Downstream use of a registered model: labels, probabilities and embeddings.

The registered model is a plain Keras model from raw images (the dataset's own value
range, float32) to class probabilities; its ``embedding`` layer holds the embeddings, and
the model's MLflow metadata holds the class names. `load_classifier` wraps all three::

    from contrastive import load_classifier

    classifier = load_classifier("models:/contrastive-classifier@champion")
    labels = classifier.predict(images)            # class indices
    names = classifier.predict_names(images)       # class names
    probabilities = classifier.predict_proba(images)
    embeddings = classifier.embed(images)

Loading keeps Keras' ``safe_mode`` on: the model holds built-in layers only.
"""

from __future__ import annotations

import logging
import os

import numpy as np

__all__ = ["Classifier", "load_classifier"]

logger = logging.getLogger(__name__)


class Classifier:
    """A loaded contrastive classifier.

    Args:
        model: The Keras inference model (raw images -> probabilities).
        class_names: Display names of the classes, in output order.
        value_range: ``(low, high)`` of the raw pixel values the model expects.
    """

    def __init__(self, model, class_names: tuple[str, ...], value_range: tuple[float, float]):
        import keras

        self.model = model
        self.class_names = tuple(class_names)
        self.value_range = tuple(value_range)
        self.input_shape = tuple(model.input_shape[1:])
        self._embedder = keras.Model(model.input, model.get_layer("embedding").output)

    def _check(self, images) -> np.ndarray:
        x = np.asarray(images, dtype="float32")
        if x.shape[1:] != self.input_shape:
            if x.shape == self.input_shape:
                x = x[None]
            elif x.ndim == len(self.input_shape) and self.input_shape[-1] == 1 and (
                x.shape[1:] == self.input_shape[:-1]
            ):
                x = x[..., None]
            else:
                raise ValueError(
                    f"images must have shape (N, {', '.join(map(str, self.input_shape))}) "
                    f"for this model; received shape {x.shape}."
                )
        return x

    def predict_proba(self, images) -> np.ndarray:
        """Class probabilities, ``(N, num_classes)``."""
        return self.model.predict(self._check(images), batch_size=512, verbose=0)

    def predict(self, images) -> np.ndarray:
        """Predicted class indices, ``(N,)``."""
        return self.predict_proba(images).argmax(axis=1)

    def predict_names(self, images) -> list[str]:
        """Predicted class names."""
        return [self.class_names[i] for i in self.predict(images)]

    def embed(self, images) -> np.ndarray:
        """Embeddings, ``(N, embedding_dim)``: the encoder's output."""
        return self._embedder.predict(self._check(images), batch_size=512, verbose=0)


def load_classifier(model_uri: str, tracking_uri: str | None = None) -> Classifier:
    """Loads a logged or registered model, e.g. ``models:/NAME@champion``.

    Args:
        model_uri: Any MLflow model URI of a model logged by this package.
        tracking_uri: The store to read from; None means MLflow's own resolution
            (``MLFLOW_TRACKING_URI``, else the project's SQLite store). Defaults to None.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import mlflow

    from contrastive.stores import resolve_tracking_uri

    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    info = mlflow.models.get_model_info(model_uri)
    metadata = info.metadata or {}
    model = mlflow.keras.load_model(model_uri)
    num_classes = model.output_shape[-1]
    class_names = metadata.get("class_names") or [str(i) for i in range(num_classes)]
    value_range = metadata.get("value_range") or (0.0, 255.0)
    return Classifier(model, tuple(class_names), tuple(value_range))
