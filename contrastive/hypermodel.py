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
from contrastive.pipeline import evaluation_stream, training_stream  # noqa: E402
from contrastive.search_space import SearchSpace  # noqa: E402

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

    def fit(self, hp, model, dataset, *, epochs=1, callbacks=None, verbose=1, **kwargs):
        """Trains ``model`` on a `contrastive.data.Dataset` and returns the History."""
        stream, steps = training_stream(
            dataset.x_labeled,
            dataset.y_labeled,
            dataset.x_unlabeled,
            labeled_batch_size=self.settings.labeled_batch_size,
            unlabeled_batch_size=self.settings.unlabeled_batch_size,
            seed=self.seed,
        )
        return model.fit(
            stream,
            steps_per_epoch=steps,
            epochs=epochs,
            validation_data=evaluation_stream(dataset.x_val, dataset.y_val),
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the stream shuffles itself, seeded
            **kwargs,
        )
