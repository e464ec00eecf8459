"""The contrastive classifier: one weighted objective, trained in one step.

Each training step takes a batch of labelled images and a batch of unlabelled ones, makes
two augmented views of every image, and optimises

    loss = w * contrastive + (1 - w) * cross_entropy

where ``contrastive`` is SupCon (arXiv 2004.11362) over the labelled views and NT-Xent
(arXiv 2002.05709) over the unlabelled views, averaged with weights proportional to their
numbers of anchors, and ``cross_entropy`` is computed on the labelled views only.

How the classifier learns when ``w`` is large: the cross-entropy gradient reaches the
encoder scaled by ``(1 - w)``, as the objective says, but reaches the linear classifier at
full strength. For ``w = 1`` this is exactly a linear classifier trained on frozen
(stop-gradient) embeddings while the encoder learns from the contrastive loss alone; for
``w = 0`` it is plain cross-entropy training. The reported ``loss`` is the objective above.

Under a `tf.distribute` strategy (``--strategy mirrored``) each replica takes its share
of the labelled and unlabelled batches, so SupCon and NT-Xent compare each anchor only
with the views on its own replica: fewer negatives than on one device, hence somewhat
lower contrastive loss values. The gradient is that of the mean over replicas, and the
metrics are aggregated over all of them.

The model knows nothing of MLflow or Keras Tuner. `ContrastiveModel.inference_model`
exports what is registered: a plain functional model (raw images in, probabilities out,
rescaling inside) that loads with Keras' ``safe_mode`` and without this package.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from contrastive.losses import nt_xent_loss, supcon_loss  # noqa: E402

__all__ = ["ContrastiveModel", "LOSS_TERMS"]

# The names of the loss terms in History and in MLflow (val_ prefixed for validation).
LOSS_TERMS = ("loss", "supcon_loss", "ntxent_loss", "contrastive_loss", "ce_loss")


def _loss_terms(w, supcon, ntxent, contrastive, ce) -> dict:
    """The reported terms under their `LOSS_TERMS` names; ``loss`` is the objective."""
    return dict(zip(LOSS_TERMS, (w * contrastive + (1.0 - w) * ce, supcon, ntxent,
                                 contrastive, ce)))


class ContrastiveModel(keras.Model):
    """Encoder, projection head and classifier trained on one weighted objective.

    Training data are tuples ``(x_labeled, y_labeled, x_unlabeled)`` with images in the
    dataset's own value range; validation data are ``(x, y)``. Calling the model on images
    returns class logits, without augmentation.

    Args:
        encoder: Images in [0, 1] to embeddings (see `contrastive.encoders`).
        projector: Embeddings to projections (see `contrastive.heads`).
        classifier: Embeddings to class logits.
        augmenter: The view pipeline (see `contrastive.augment`).
        value_range: ``(low, high)`` of raw pixel values, e.g. ``(0, 16)`` for digits.
        loss_weight: ``w`` in [0, 1]. Defaults to 0.5.
        temperature: Temperature of both contrastive losses, > 0. Defaults to 0.1.
        **kwargs: Passed to `keras.Model`.

    Example:

    ```python
    model = ContrastiveModel(encoder, projector, classifier, augmenter, (0.0, 16.0))
    model.compile(optimizer="adam")
    model.fit(train_pairs, validation_data=(x_val, y_val), epochs=10)
    probabilities = model.inference_model()(x_test)
    ```
    """

    def __init__(
        self,
        encoder: keras.Model,
        projector: keras.Model,
        classifier: keras.Model,
        augmenter: keras.Model,
        value_range: tuple[float, float],
        loss_weight: float = 0.5,
        temperature: float = 0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= loss_weight <= 1.0:
            raise ValueError(
                f"loss_weight must be in [0, 1]; received loss_weight={loss_weight}."
            )
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0; received temperature={temperature}.")
        low, high = value_range
        if not high > low:
            raise ValueError(
                f"value_range must be (low, high) with high > low; received {value_range}."
            )
        self.encoder = encoder
        self.projector = projector
        self.classifier = classifier
        self.augmenter = augmenter
        self.value_range = (float(low), float(high))
        self.loss_weight = float(loss_weight)
        self.temperature = float(temperature)
        self.normalizer = keras.layers.Rescaling(
            1.0 / (high - low), offset=-low / (high - low), name="rescale"
        )
        self._trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_TERMS}
        self._accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        # Listing the trackers here lets Keras reset them at every epoch, so History holds
        # epoch averages rather than the last batch.
        return [*self._trackers.values(), self._accuracy]

    def call(self, images, training=False):
        embeddings = self.encoder(self.normalizer(images), training=training)
        return self.classifier(embeddings, training=training)

    def _two_views(self, images):
        """Two independent random views of every image, stacked: rows [0, n), [n, 2n)."""
        first = self.augmenter(images, training=True)
        return ops.concatenate([first, self.augmenter(images, training=True)], axis=0)

    def _objective(self, x_labeled, y_labeled, x_unlabeled, training):
        """Loss terms and labelled logits for one batch; shared by train and test steps."""
        n_labeled = ops.shape(x_labeled)[0]
        n_unlabeled = ops.shape(x_unlabeled)[0]
        images = self.normalizer(ops.concatenate([x_labeled, x_unlabeled], axis=0))
        n = n_labeled + n_unlabeled

        views = self._two_views(images)
        embeddings = self.encoder(views, training=training)
        projections = self.projector(embeddings, training=training)
        first, second = projections[:n], projections[n:]

        labels = ops.reshape(ops.cast(y_labeled, "int32"), (-1,))
        supcon = supcon_loss(
            ops.concatenate([first[:n_labeled], second[:n_labeled]], axis=0),
            ops.concatenate([labels, labels], axis=0),
            self.temperature,
        )
        ntxent = nt_xent_loss(first[n_labeled:], second[n_labeled:], self.temperature)
        n_labeled_f = ops.cast(n_labeled, "float32")
        n_unlabeled_f = ops.cast(n_unlabeled, "float32")
        contrastive = (n_labeled_f * supcon + n_unlabeled_f * ntxent) / ops.maximum(
            n_labeled_f + n_unlabeled_f, 1.0
        )

        # Cross-entropy on both views of the labelled images. The blend keeps the forward
        # value and scales the gradient that reaches the encoder by (1 - w).
        labeled = ops.concatenate(
            [embeddings[:n_labeled], embeddings[n:n + n_labeled]], axis=0
        )
        w = self.loss_weight
        blended = w * ops.stop_gradient(labeled) + (1.0 - w) * labeled
        logits = ops.cast(self.classifier(blended, training=training), "float32")
        targets = ops.concatenate([labels, labels], axis=0)
        ce = ops.mean(
            keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        )

        terms = _loss_terms(w, supcon, ntxent, contrastive, ce)
        # What is differentiated: the objective, with the classifier's share at full
        # strength (see the module docstring).
        optimised = w * contrastive + ce
        return terms, optimised, targets, logits

    def _update_metrics(self, terms, targets, logits):
        for name, value in terms.items():
            self._trackers[name].update_state(value)
        self._accuracy.update_state(targets, logits)
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data):
        x_labeled, y_labeled, x_unlabeled = data
        with tf.GradientTape() as tape:
            terms, optimised, targets, logits = self._objective(
                x_labeled, y_labeled, x_unlabeled, training=True
            )
            # Each replica differentiates the loss of its own share of the batch, and
            # the optimizer sums the replicas' gradients: dividing by their number makes
            # the sum the gradient of the mean, as on one device.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            if replicas > 1:
                optimised = optimised / replicas
            scaled = self.optimizer.scale_loss(optimised)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._update_metrics(terms, targets, logits)

    def test_step(self, data):
        # Validation images are labelled. Two random views of them give both
        # contrastive terms: SupCon with the labels, NT-Xent on the same views without
        # them (views are random, so these vary a little between evaluations).
        # Cross-entropy and accuracy are measured on the un-augmented images, as
        # Keras' own validation would. One pair of views serves both terms: passing the
        # images again as unlabelled ones, as the training step's layout would, encoded
        # twice as many views (validation cost 17% of a digits epoch, now about 10%).
        x, y = data[0], data[1]
        labels = ops.reshape(ops.cast(y, "int32"), (-1,))
        images = self.normalizer(x)
        views = self._two_views(images)
        projections = self.projector(self.encoder(views, training=False), training=False)
        n = ops.shape(x)[0]
        supcon = supcon_loss(projections, ops.concatenate([labels, labels], axis=0),
                             self.temperature)
        ntxent = nt_xent_loss(projections[:n], projections[n:], self.temperature)
        contrastive = (supcon + ntxent) / 2.0

        logits = ops.cast(self(x, training=False), "float32")
        ce = ops.mean(
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        )
        terms = _loss_terms(self.loss_weight, supcon, ntxent, contrastive, ce)
        for name, value in terms.items():
            self._trackers[name].update_state(value)
        self._accuracy.update_state(labels, logits)
        return {metric.name: metric.result() for metric in self.metrics}

    def predict_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        return ops.softmax(self(x, training=False), axis=-1)

    def start_stage(
        self, loss_weight: float, *, train_encoder: bool = True, learning_rate: float
    ) -> None:
        """Switches to another training stage: a new objective weight, a new optimizer.

        Two-stage training pre-trains with ``loss_weight=1`` (contrastive only), then
        trains with ``loss_weight=0``, the encoder frozen (a linear probe) or not
        (fine-tuning). Recompiling makes the next ``fit`` trace the step anew.

        Args:
            loss_weight: ``w`` for the stage, in [0, 1].
            train_encoder: Whether the encoder (and projection head) learn. Defaults to
                True.
            learning_rate: Adam's learning rate for the stage.
        """
        if not 0.0 <= loss_weight <= 1.0:
            raise ValueError(
                f"loss_weight must be in [0, 1]; received loss_weight={loss_weight}."
            )
        self.loss_weight = float(loss_weight)
        self.encoder.trainable = train_encoder
        self.projector.trainable = train_encoder
        self.compile(optimizer=keras.optimizers.Adam(learning_rate))
        self.optimizer.build(self.trainable_variables)

    def build_from_shape(self, input_shape: tuple[int, int, int]) -> None:
        """Creates every variable, so that weights can be saved before the first step."""
        images = ops.zeros((2, *input_shape))
        self._objective(images, ops.zeros((2,), "int32"), images, training=False)
        self(images)
        # The optimizer's slots too: a checkpoint then restores into a fresh model
        # without Keras warning that the optimizer's variables are missing.
        self.optimizer.build(self.trainable_variables)

    def inference_model(self, name: str = "contrastive_classifier") -> keras.Model:
        """Exports raw images -> class probabilities as a plain functional model.

        The model shares this model's weights. Its layers are Keras built-ins (rescaling,
        the encoder, an ``embedding`` identity layer, the classifier and a softmax), so it
        saves as ``.keras``, loads with ``safe_mode=True`` anywhere Keras is installed,
        and ``model.get_layer("embedding").output`` gives the embeddings.
        """
        input_shape = tuple(self.encoder.input_shape[1:])
        images = keras.Input(shape=input_shape, dtype="float32", name="images")
        scaled = keras.layers.Rescaling(
            self.normalizer.scale, offset=self.normalizer.offset, name="rescale"
        )(images)
        embeddings = keras.layers.Identity(name="embedding")(self.encoder(scaled))
        logits = self.classifier(embeddings)
        probabilities = keras.layers.Softmax(name="probabilities", dtype="float32")(logits)
        return keras.Model(images, probabilities, name=name)
