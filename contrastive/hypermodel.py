"""The Keras Tuner `HyperModel`: hyperparameters in, a built and compiled model out.

The search space (a file in ``search_spaces/``) says which hyperparameters are tuned and
over what ranges; this module says what each one means for the model. ``build`` declares
them on ``hp`` under the file's names, builds a `ContrastiveModel` and creates its
variables (Keras Tuner saves weights at the end of the first epoch, which fails on a
subclassed model that was never built). ``fit`` builds the input pipelines and trains.
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import keras_tuner  # noqa: E402

from contrastive.augment import augmenter  # noqa: E402
from contrastive.encoders import conv_encoder  # noqa: E402
from contrastive.heads import classification_head, projection_head  # noqa: E402
from contrastive.model import ContrastiveModel  # noqa: E402
from contrastive.pipeline import (  # noqa: E402
    evaluation_stream,
    steps_per_epoch,
    training_stream,
)
from contrastive.search_space import HYPERPARAMETERS, SearchSpace  # noqa: E402

__all__ = ["ContrastiveHyperModel", "TrainingSettings"]


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """Fixed settings of every trial (not tuned; logged as params).

    Args:
        labeled_batch_size: Labelled images per step. Defaults to 64.
        unlabeled_batch_size: Unlabelled images per step. Defaults to 192.
    """

    labeled_batch_size: int = 64
    unlabeled_batch_size: int = 192


class ContrastiveHyperModel(keras_tuner.HyperModel):
    """Builds contrastive classifiers for one dataset from a search space.

    Args:
        search_space: The validated `SearchSpace`.
        input_shape: ``(height, width, channels)`` of the raw images.
        num_classes: Number of classes.
        value_range: ``(low, high)`` of raw pixel values.
        settings: The fixed `TrainingSettings`. Defaults to `TrainingSettings()`.
        seed: Seeds augmentation and shuffling; the tuner sets a new one per trial.
            Defaults to 0.
    """

    def __init__(
        self,
        search_space: SearchSpace,
        input_shape: tuple[int, int, int],
        num_classes: int,
        value_range: tuple[float, float],
        settings: TrainingSettings = TrainingSettings(),
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.search_space = search_space
        self.input_shape = tuple(input_shape)
        self.num_classes = int(num_classes)
        self.value_range = tuple(value_range)
        self.settings = settings
        self.seed = seed

    def build(self, hp: keras_tuner.HyperParameters) -> ContrastiveModel:
        values = self.search_space.declare(hp)
        encoder = conv_encoder(self.input_shape, width=int(values["encoder_width"]))
        embedding_dim = encoder.output_shape[-1]
        model = ContrastiveModel(
            encoder=encoder,
            projector=projection_head(
                embedding_dim,
                output_dim=int(values["projection_dim"]),
                depth=int(values["projection_depth"]),
            ),
            classifier=classification_head(embedding_dim, self.num_classes),
            augmenter=augmenter(
                self.input_shape, strength=float(values["augment_strength"]), seed=self.seed
            ),
            value_range=self.value_range,
            loss_weight=float(values["loss_weight"]),
            temperature=float(values["temperature"]),
        )
        model.compile(optimizer=keras.optimizers.Adam(float(values["learning_rate"])))
        model.build_from_shape(self.input_shape)
        return model

    def fit(
        self, hp, model, dataset, *, epochs=1, initial_epoch=0, callbacks=None,
        verbose=1, **kwargs,
    ):
        """Trains ``model`` on a `contrastive.data.Dataset`; returns one History.

        ``training_mode`` decides the stages. ``joint``: one stage on the weighted
        objective. ``pretrain_probe`` and ``pretrain_finetune``: the first
        ``pretrain_fraction`` of the epochs on the contrastive loss alone, then the
        rest on cross-entropy alone, with the encoder frozen (probe) or trained at a
        third of the learning rate (fine-tuning). Epochs are numbered on across the
        stages, so each metric has one history and the best epoch may fall in either.
        """
        values = {**self._defaults(), **hp.values}
        mode = values["training_mode"]
        learning_rate = float(values["learning_rate"])
        validation = evaluation_stream(dataset.x_val, dataset.y_val)

        def run(first_epoch: int, last_epoch: int):
            stream, steps = self._stream(dataset, model.loss_weight)
            return model.fit(
                stream,
                steps_per_epoch=steps,
                initial_epoch=first_epoch,
                epochs=last_epoch,
                validation_data=validation,
                callbacks=callbacks,
                verbose=verbose,
                shuffle=False,  # the stream shuffles itself, seeded
                **kwargs,
            )

        if mode == "joint":
            return run(initial_epoch, epochs)

        switch = min(max(round(epochs * float(values["pretrain_fraction"])), 1), epochs - 1)
        histories = []
        if initial_epoch < switch:
            model.start_stage(1.0, learning_rate=learning_rate)
            histories.append(run(initial_epoch, switch))
        finetune = mode == "pretrain_finetune"
        model.start_stage(
            0.0,
            train_encoder=finetune,
            learning_rate=learning_rate / 3 if finetune else learning_rate,
        )
        histories.append(run(max(initial_epoch, switch), epochs))
        return _joined(histories)

    def _stream(self, dataset, loss_weight: float):
        """The training stream; without the unlabelled images when nothing uses them.

        At ``w = 0`` no loss reads unlabelled images, and leaving them out also keeps
        them out of batch-normalisation statistics. The epoch keeps its number of
        steps, so a cross-entropy run gets as many optimiser steps as a contrastive one.
        """
        unlabeled = dataset.x_unlabeled if loss_weight > 0 else dataset.x_unlabeled[:0]
        stream, _ = training_stream(
            dataset.x_labeled, dataset.y_labeled, unlabeled,
            labeled_batch_size=self.settings.labeled_batch_size,
            unlabeled_batch_size=self.settings.unlabeled_batch_size,
            seed=self.seed,
        )
        steps = steps_per_epoch(
            len(dataset.x_labeled), len(dataset.x_unlabeled),
            self.settings.labeled_batch_size, self.settings.unlabeled_batch_size,
        )
        return stream, steps

    @staticmethod
    def _defaults() -> dict:
        return {name: allowed.default for name, allowed in HYPERPARAMETERS.items()}


def _joined(histories: list) -> keras.callbacks.History:
    """One History of consecutive stages, as Keras Tuner and the plots expect."""
    joined = keras.callbacks.History()
    joined.epoch = [epoch for history in histories for epoch in history.epoch]
    joined.history = {}
    for history in histories:
        for name, values in history.history.items():
            joined.history.setdefault(name, []).extend(values)
    return joined
