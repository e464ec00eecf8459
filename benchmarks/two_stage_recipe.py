"""The usual alternative to the joint step: contrastive pre-training, then a classifier.

The keras.io contrastive examples (SimCLR-style semi-supervised classification, and
supervised contrastive learning) train in two stages: first the encoder and a
projection head learn from a contrastive loss on two augmented views of every image,
labels unused; then a classifier head learns from the labels on top of the frozen
encoder. This module is this project's own implementation of that design, written
for `benchmarks/performance.py` to time against `contrastive.model.ContrastiveModel`
with the same encoder, heads, augmentation, loss function, batches and optimiser.

Where the design leaves a choice, the cheaper one is taken, so that the comparison
does not flatter the joint step: pre-training has no linear probe riding along (the
SimCLR example trains one at every step), and the classifier stage keeps the encoder
frozen (no fine-tuning). What stays is what makes the recipe the recipe: two stages,
and each view encoded by its own call.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from contrastive.losses import nt_xent_loss  # noqa: E402

__all__ = ["Pretrainer", "classifier_stage"]


class Pretrainer(keras.Model):
    """Stage one: NT-Xent on two views of every image, labelled or not.

    Takes the platform's training stream, ``(x_labeled, y_labeled, x_unlabeled)``, and
    ignores the labels, so that both stages see the same images per step as the joint
    step does.

    Args:
        encoder: Images in [0, 1] to embeddings.
        projector: Embeddings to projections.
        augmenter: The view pipeline.
        value_range: ``(low, high)`` of raw pixel values.
        temperature: NT-Xent's temperature.
    """

    def __init__(self, encoder, projector, augmenter, value_range, temperature, **kwargs):
        super().__init__(**kwargs)
        low, high = value_range
        self.encoder = encoder
        self.projector = projector
        self.augmenter = augmenter
        self.temperature = float(temperature)
        self.normalizer = keras.layers.Rescaling(1.0 / (high - low), offset=-low / (high - low))
        self.loss_tracker = keras.metrics.Mean(name="ntxent_loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        x_labeled, _, x_unlabeled = data
        images = self.normalizer(ops.concatenate([x_unlabeled, x_labeled], axis=0))
        first = self.augmenter(images, training=True)
        second = self.augmenter(images, training=True)
        with tf.GradientTape() as tape:
            # One encoder call per view, as in the keras.io examples.
            projections_1 = self.projector(self.encoder(first, training=True), training=True)
            projections_2 = self.projector(self.encoder(second, training=True), training=True)
            loss = nt_xent_loss(projections_1, projections_2, self.temperature)
        variables = self.encoder.trainable_variables + self.projector.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.loss_tracker.update_state(loss)
        return {"ntxent_loss": self.loss_tracker.result()}


def classifier_stage(encoder, classifier, augmenter, value_range) -> keras.Model:
    """Stage two: raw images -> rescaling -> augmentation -> frozen encoder -> classifier.

    Compiled with Adam and sparse cross-entropy; `keras.Model.fit` on the labelled
    images trains the classifier alone.
    """
    low, high = value_range
    encoder.trainable = False
    inputs = keras.Input(shape=encoder.input_shape[1:])
    x = keras.layers.Rescaling(1.0 / (high - low), offset=-low / (high - low))(inputs)
    x = augmenter(x, training=True)
    logits = classifier(encoder(x, training=False))
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model
