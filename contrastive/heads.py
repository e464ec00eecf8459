"""Heads on top of the encoder: the projection head and the classification head.

The projection head maps embeddings to the space where the contrastive losses compare
views (SimCLR found the loss works best one non-linear head away from the embedding that
is used downstream). The classification head is linear: a linear read-out of a good
embedding is what contrastive training promises.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

__all__ = ["projection_head", "classification_head"]


def projection_head(
    embedding_dim: int, output_dim: int = 128, depth: int = 2, name: str = "projector"
) -> keras.Sequential:
    """Builds ``depth`` dense layers: ``depth - 1`` hidden ReLU layers, then a linear one.

    Args:
        embedding_dim: Size of the encoder's embedding (the hidden layers' width).
        output_dim: Size of the projections the losses see. Defaults to 128.
        depth: Number of dense layers, at least 1. Defaults to 2.
        name: The model's name. Defaults to ``"projector"``.

    Raises:
        ValueError: For a depth or output size below 1.
    """
    if depth < 1 or output_dim < 1:
        raise ValueError(
            f"depth and output_dim must be >= 1; received depth={depth}, "
            f"output_dim={output_dim}."
        )
    layers = [keras.Input(shape=(embedding_dim,))]
    layers += [keras.layers.Dense(embedding_dim, activation="relu") for _ in range(depth - 1)]
    layers.append(keras.layers.Dense(output_dim))
    return keras.Sequential(layers, name=name)


def classification_head(
    embedding_dim: int, num_classes: int, name: str = "classifier"
) -> keras.Sequential:
    """Builds the linear classifier that turns embeddings into class logits.

    Args:
        embedding_dim: Size of the encoder's embedding.
        num_classes: Number of classes, at least 2.
        name: The model's name. Defaults to ``"classifier"``.

    Raises:
        ValueError: For fewer than two classes.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2; received num_classes={num_classes}.")
    return keras.Sequential(
        [keras.Input(shape=(embedding_dim,)), keras.layers.Dense(num_classes)], name=name
    )
