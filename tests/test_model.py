"""ContrastiveModel: the joint objective, its metrics, gradients and exported model."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from contrastive.augment import augmenter  # noqa: E402
from contrastive.encoders import conv_encoder  # noqa: E402
from contrastive.heads import classification_head, projection_head  # noqa: E402
from contrastive.model import LOSS_TERMS, ContrastiveModel  # noqa: E402
from contrastive.pipeline import evaluation_stream, training_stream  # noqa: E402

SHAPE = (8, 8, 1)


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.images.astype("float32")[..., None], data.target.astype("int32")


def make_model(loss_weight=0.5, seed=0, width=8):
    keras.utils.set_random_seed(seed)
    encoder = conv_encoder(SHAPE, width=width)
    dim = encoder.output_shape[-1]
    model = ContrastiveModel(
        encoder, projection_head(dim, 16, 1), classification_head(dim, 10),
        augmenter(SHAPE, 1.0, seed=seed), (0.0, 16.0), loss_weight=loss_weight,
        temperature=0.2,
    )
    model.compile(optimizer=keras.optimizers.Adam(0.003))
    model.build_from_shape(SHAPE)
    return model


def test_history_holds_accuracy_and_every_loss_term_per_epoch(digits):
    x, y = digits
    model = make_model()
    stream, steps = training_stream(x[:40], y[:40], x[40:200], labeled_batch_size=16,
                                    unlabeled_batch_size=64)
    history = model.fit(stream, steps_per_epoch=steps, epochs=2, verbose=0,
                        validation_data=evaluation_stream(x[200:300], y[200:300]))
    expected = {*LOSS_TERMS, "accuracy"}
    assert set(history.history) == expected | {f"val_{name}" for name in expected}
    assert all(len(values) == 2 for values in history.history.values())
    assert all(np.isfinite(v).all() for v in history.history.values())


def test_epoch_metrics_are_averages_not_the_last_batch(digits):
    x, y = digits
    model = make_model()
    model.evaluate(evaluation_stream(x[:300], y[:300], batch_size=100), verbose=0)
    per_batch = []
    for start in range(0, 300, 100):
        model.reset_metrics()
        model.evaluate(evaluation_stream(x[start:start + 100], y[start:start + 100]),
                       verbose=0)
        per_batch.append(model.get_metrics_result()["accuracy"])
    model.reset_metrics()
    whole = model.evaluate(evaluation_stream(x[:300], y[:300], batch_size=100),
                           verbose=0, return_dict=True)
    assert whole["accuracy"] == pytest.approx(np.mean(per_batch), abs=1e-6)


def _encoder_and_classifier_gradients(model, x, y):
    with tf.GradientTape(persistent=True) as tape:
        terms, _, _, _ = model._objective(x[:16], y[:16], x[16:48], training=True)
    encoder = tape.gradient(terms["ce_loss"], model.encoder.trainable_variables)
    classifier = tape.gradient(terms["ce_loss"], model.classifier.trainable_variables)
    return encoder, classifier


def test_at_w1_cross_entropy_trains_only_the_classifier(digits):
    x, y = digits
    encoder, classifier = _encoder_and_classifier_gradients(make_model(1.0), x, y)
    assert all(g is None or float(tf.reduce_max(tf.abs(g))) == 0.0 for g in encoder)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in classifier) > 0


def test_below_w1_cross_entropy_reaches_the_encoder_scaled_by_one_minus_w(digits):
    x, y = digits
    full, _ = _encoder_and_classifier_gradients(make_model(0.0, seed=3), x, y)
    scaled, _ = _encoder_and_classifier_gradients(make_model(0.75, seed=3), x, y)
    for g_full, g_scaled in zip(full, scaled):
        np.testing.assert_allclose(g_scaled.numpy(), 0.25 * g_full.numpy(), atol=1e-6)


def test_reported_loss_is_the_weighted_objective(digits):
    x, y = digits
    model = make_model(0.3)
    terms, _, _, _ = model._objective(x[:16], y[:16], x[16:48], training=False)
    expected = 0.3 * terms["contrastive_loss"] + 0.7 * terms["ce_loss"]
    assert float(terms["loss"]) == pytest.approx(float(expected), rel=1e-6)


def test_two_views_of_a_step_and_of_later_epochs_differ(digits):
    x, _ = digits
    keras.utils.set_random_seed(0)
    views = augmenter(SHAPE, 1.0, seed=0)
    images = x[:32] / 16.0

    @tf.function
    def step(batch):
        return views(batch, training=True), views(batch, training=True)

    epoch_one = [v.numpy() for v in step(images)]
    epoch_two = [v.numpy() for v in step(images)]
    assert not np.allclose(epoch_one[0], epoch_one[1])
    assert not np.allclose(epoch_one[0], epoch_two[0])
    assert not np.allclose(epoch_one[0], images)


def test_same_seed_draws_the_same_views(digits):
    x, _ = digits
    first = augmenter(SHAPE, 1.0, seed=5)(x[:8] / 16.0, training=True).numpy()
    second = augmenter(SHAPE, 1.0, seed=5)(x[:8] / 16.0, training=True).numpy()
    np.testing.assert_array_equal(first, second)


def test_color_pipeline_keeps_shape_and_range():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (4, 32, 32, 3)).astype("float32")
    out = augmenter((32, 32, 3), 1.0, seed=1)(images, training=True).numpy()
    assert out.shape == images.shape
    assert not np.allclose(out, images)


def test_strength_zero_is_the_identity_on_batches_of_any_size(digits):
    x = digits[0] / 16.0
    views = augmenter(SHAPE, 0.0, seed=0)
    for size in (2, 7):
        np.testing.assert_array_equal(views(x[:size], training=True).numpy(), x[:size])
    encoder = conv_encoder(SHAPE, width=8)
    dim = encoder.output_shape[-1]
    model = ContrastiveModel(
        encoder, projection_head(dim, 16, 1), classification_head(dim, 10),
        views, (0.0, 16.0), loss_weight=0.8,
    )
    model.compile(optimizer=keras.optimizers.Adam(0.003))
    model.build_from_shape(SHAPE)  # a batch of 4: neither 2 nor 7


def test_prediction_and_embeddings_are_deterministic(digits):
    x, _ = digits
    inference = make_model().inference_model()
    embedder = keras.Model(inference.input, inference.get_layer("embedding").output)
    np.testing.assert_array_equal(inference.predict(x[:64], verbose=0),
                                  inference.predict(x[:64], verbose=0))
    np.testing.assert_array_equal(embedder(x[:64]).numpy(), embedder(x[:64]).numpy())


def test_inference_model_takes_raw_values_and_reloads_in_safe_mode(digits, tmp_path):
    x, _ = digits
    model = make_model()
    inference = model.inference_model()
    np.testing.assert_allclose(
        inference.predict(x[:16], verbose=0),
        keras.ops.softmax(model(x[:16])).numpy(), atol=1e-6,
    )
    path = tmp_path / "model.keras"
    inference.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x[:16], verbose=0),
                               inference.predict(x[:16], verbose=0), atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"loss_weight": 1.5}, r"loss_weight must be in \[0, 1\]; received loss_weight=1.5"),
    ({"temperature": 0.0}, r"temperature must be > 0; received temperature=0.0"),
])
def test_invalid_settings_are_refused(kwargs, message):
    encoder = conv_encoder(SHAPE, width=4)
    dim = encoder.output_shape[-1]
    args = dict(loss_weight=0.5, temperature=0.1) | kwargs
    with pytest.raises(ValueError, match=message):
        ContrastiveModel(encoder, projection_head(dim), classification_head(dim, 10),
                         augmenter(SHAPE), (0.0, 16.0), **args)
