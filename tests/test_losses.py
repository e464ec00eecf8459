"""Tests for contrastive.losses: SupCon (L^sup_out) and NT-Xent.

The losses are checked against a float64 NumPy reference written here with plain
loops (so it shares no code or vectorisation trick with the implementation),
against hand-derived values, and for the numerical and Keras behaviours the
training code relies on: masking, mixed precision, dynamic batch sizes and
serialisation.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from contrastive.losses import (  # noqa: E402
    NTXentLoss,
    SupConLoss,
    nt_xent_loss,
    supcon_loss,
)

RELATIVE_TOLERANCE = 1e-5


# --------------------------------------------------------------------------- #
# Float64 references (loops on purpose: easy to read against the papers).
# --------------------------------------------------------------------------- #
def _unit_rows(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def reference_supcon(
    features: np.ndarray,
    labels: np.ndarray,
    temperature: float,
    include_self: bool = False,
) -> float:
    """Khosla et al. eq. 2; anchors without positives are skipped.

    `include_self=True` computes the *wrong* variant where a row is its own
    positive and is in its own denominator, to show the masking matters.
    """
    unit = _unit_rows(features)
    labels = np.asarray(labels).reshape(-1)
    n = len(unit)
    anchor_losses = []
    for i in range(n):
        others = [a for a in range(n) if include_self or a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(unit[i] @ unit[a] / temperature) for a in others)
        terms = [
            -math.log(math.exp(unit[i] @ unit[p] / temperature) / denominator)
            for p in positives
        ]
        anchor_losses.append(sum(terms) / len(terms))
    return sum(anchor_losses) / len(anchor_losses) if anchor_losses else 0.0


def reference_nt_xent(view_a: np.ndarray, view_b: np.ndarray, temperature: float):
    """SimCLR NT-Xent: anchor k's positive is row (k + B) mod 2B."""
    unit = _unit_rows(np.concatenate([view_a, view_b], axis=0))
    n = len(unit)
    batch = n // 2
    total = 0.0
    for k in range(n):
        positive = (k + batch) % n
        denominator = sum(
            math.exp(unit[k] @ unit[a] / temperature) for a in range(n) if a != k
        )
        numerator = math.exp(unit[k] @ unit[positive] / temperature)
        total += -math.log(numerator / denominator)
    return total / n


def _assert_relative_close(got, want: float, tolerance=RELATIVE_TOLERANCE):
    got = float(got)
    if want == 0.0:
        assert got == 0.0
    else:
        assert abs(got - want) / abs(want) < tolerance, (got, want)


def _unit_vector(index: int, dim: int = 3) -> np.ndarray:
    vector = np.zeros(dim, dtype=np.float32)
    vector[index] = 1.0
    return vector


def _gradient(loss_fn, features: np.ndarray) -> np.ndarray:
    variable = tf.Variable(features)
    with tf.GradientTape() as tape:
        loss = loss_fn(variable)
    return tape.gradient(loss, variable).numpy()


@pytest.fixture
def mixed_float16_policy():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


# --------------------------------------------------------------------------- #
# Agreement with the reference.
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [2, 7, 16])
@pytest.mark.parametrize("dim", [3, 32])
@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_supcon_matches_reference_on_random_inputs(seed, n, dim, temperature):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, dim)).astype(np.float32)
    labels = rng.integers(0, 3, size=n)

    got = supcon_loss(features, labels, temperature=temperature)

    _assert_relative_close(got, reference_supcon(features, labels, temperature))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("batch", [2, 7, 16])
@pytest.mark.parametrize("dim", [3, 32])
@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_nt_xent_matches_reference_on_random_inputs(seed, batch, dim, temperature):
    rng = np.random.default_rng(seed)
    view_a = rng.normal(size=(batch, dim)).astype(np.float32)
    view_b = rng.normal(size=(batch, dim)).astype(np.float32)

    got = nt_xent_loss(view_a, view_b, temperature=temperature)

    _assert_relative_close(got, reference_nt_xent(view_a, view_b, temperature))


# --------------------------------------------------------------------------- #
# Hand-worked values.
# --------------------------------------------------------------------------- #
def test_supcon_identical_positives_with_orthogonal_negative():
    # Rows e1, e1, e2 with labels 0, 0, 1 and t = 0.5. Anchors 0 and 1 each have
    # the other e1 as positive (s = 1) and e2 as the only negative (s = 0):
    #   -log(e^(1/t) / (e^(1/t) + e^0)) = log(1 + e^(-1/t)) = log(1 + e^-2).
    # Anchor 2 has no positive and is excluded, so that is the whole loss.
    features = np.stack([_unit_vector(0), _unit_vector(0), _unit_vector(1)])

    got = supcon_loss(features, np.array([0, 0, 1]), temperature=0.5)

    _assert_relative_close(got, math.log(1.0 + math.exp(-2.0)))


@pytest.mark.parametrize("temperature", [0.05, 0.1, 1.0])
def test_supcon_orthogonal_positive_gives_log_two_at_any_temperature(temperature):
    # Rows e1, e2, e3 with labels 0, 0, 1: every off-diagonal similarity is 0,
    # so anchors 0 and 1 score -log(e^0 / (e^0 + e^0)) = log 2 whatever t is;
    # anchor 2 has no positive and is excluded.
    features = np.stack([_unit_vector(0), _unit_vector(1), _unit_vector(2)])

    got = supcon_loss(features, np.array([0, 0, 1]), temperature=temperature)

    _assert_relative_close(got, math.log(2.0))


def test_nt_xent_identical_views_of_orthogonal_samples():
    # a = b = [e1, e2], t = 0.5. Each of the 4 anchors has its copy as positive
    # (s = 1) and two orthogonal rows as negatives (s = 0):
    #   -log(e^2 / (e^2 + 2)) = log(1 + 2 e^-2).
    views = np.stack([_unit_vector(0), _unit_vector(1)])

    got = nt_xent_loss(views, views, temperature=0.5)

    _assert_relative_close(got, math.log(1.0 + 2.0 * math.exp(-2.0)))


def test_nt_xent_opposite_views_are_penalised():
    # a = [e1, e2], b = -a, t = 0.5. Each positive has s = -1 and both negatives
    # s = 0: -log(e^-2 / (e^-2 + 2)) = log(1 + 2 e^2).
    view_a = np.stack([_unit_vector(0), _unit_vector(1)])

    got = nt_xent_loss(view_a, -view_a, temperature=0.5)

    _assert_relative_close(got, math.log(1.0 + 2.0 * math.exp(2.0)))


def test_supcon_ignores_row_norms():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(6, 8)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2])
    scales = np.array([[1e-3], [1.0], [7.0], [50.0], [1e3], [0.2]], np.float32)

    plain = supcon_loss(features, labels, temperature=0.2)
    scaled = supcon_loss(features * scales, labels, temperature=0.2)

    np.testing.assert_allclose(float(scaled), float(plain), rtol=1e-6)


# --------------------------------------------------------------------------- #
# Masking: anchors without positives, the diagonal.
# --------------------------------------------------------------------------- #
def test_anchors_without_positive_are_excluded_not_counted_as_zero():
    rng = np.random.default_rng(4)
    features = rng.normal(size=(4, 5)).astype(np.float32)
    labels = np.array([0, 1, 1, 3])
    want = reference_supcon(features, labels, temperature=0.2)

    got = float(supcon_loss(features, labels, temperature=0.2))

    # Only anchors 1 and 2 count; averaging zeros for anchors 0 and 3 over all
    # four anchors would halve the value.
    _assert_relative_close(got, want)
    assert abs(got - want / 2.0) > 0.1


def test_anchors_without_positive_give_finite_gradients():
    rng = np.random.default_rng(5)
    features = rng.normal(size=(4, 5)).astype(np.float32)
    labels = np.array([0, 1, 1, 3])

    gradient = _gradient(lambda f: supcon_loss(f, labels, 0.2), features)

    assert np.all(np.isfinite(gradient))
    # Rows 1 and 2 are anchors with a positive, so they must get a gradient.
    assert np.abs(gradient[1:3]).sum() > 0.0


def test_all_unique_labels_give_exactly_zero_loss():
    rng = np.random.default_rng(6)
    features = rng.normal(size=(5, 4)).astype(np.float32)

    got = supcon_loss(features, np.arange(5), temperature=0.1)

    assert float(got) == 0.0


def test_all_unique_labels_give_finite_zero_gradients():
    rng = np.random.default_rng(7)
    features = rng.normal(size=(5, 4)).astype(np.float32)

    gradient = _gradient(lambda f: supcon_loss(f, np.arange(5), 0.1), features)

    assert np.all(np.isfinite(gradient))
    assert np.all(gradient == 0.0)


def test_self_is_neither_positive_nor_in_denominator():
    # Same rows as the log-2 case: counting the diagonal would add e^(1/t) to
    # each denominator and a -log(e^(1/t)/den) positive term.
    features = np.stack([_unit_vector(0), _unit_vector(1), _unit_vector(2)])
    labels = np.array([0, 0, 1])
    with_diagonal = reference_supcon(features, labels, 0.1, include_self=True)

    got = float(supcon_loss(features, labels, temperature=0.1))

    _assert_relative_close(got, reference_supcon(features, labels, 0.1))
    assert abs(got - with_diagonal) > 1.0


def test_supcon_with_distinct_labels_over_two_views_equals_nt_xent():
    rng = np.random.default_rng(8)
    view_a = rng.normal(size=(6, 16)).astype(np.float32)
    view_b = rng.normal(size=(6, 16)).astype(np.float32)
    labels = rng.permutation(100)[:6]

    supcon = supcon_loss(
        np.concatenate([view_a, view_b]), np.concatenate([labels, labels]), 0.3
    )
    nt_xent = nt_xent_loss(view_a, view_b, 0.3)

    np.testing.assert_allclose(float(supcon), float(nt_xent), rtol=1e-6)


def test_column_labels_give_the_same_loss_as_flat_labels():
    rng = np.random.default_rng(9)
    features = rng.normal(size=(8, 4)).astype(np.float32)
    labels = rng.integers(0, 3, size=8)

    flat = supcon_loss(features, labels, 0.2)
    column = supcon_loss(features, labels.reshape(-1, 1), 0.2)
    class_column = SupConLoss(temperature=0.2)(labels.reshape(-1, 1), features)

    assert float(flat) == float(column)
    np.testing.assert_allclose(float(class_column), float(flat), rtol=1e-6)


# --------------------------------------------------------------------------- #
# Numerics: large norms, small temperatures, mixed precision.
# --------------------------------------------------------------------------- #
def _near_duplicate_pairs(rng: np.random.Generator, pairs: int, dim: int):
    """Rows 2k and 2k+1 are two close "views" of norm 1000 of one sample.

    All samples lie near a common direction, so every logit at t = 0.01 is
    ~100 (exp() overflows float32 unless the row max is subtracted first)
    while the loss stays of order 1 (~1.7), a value worth comparing.
    """
    common = rng.normal(size=(1, 1, dim))
    centres = common + 0.05 * rng.normal(size=(pairs, 1, dim))
    views = centres + 0.02 * rng.normal(size=(pairs, 2, dim))
    return 1000.0 * _unit_rows(views.reshape(2 * pairs, dim))


def test_large_norms_at_small_temperature_stay_finite_and_correct():
    rng = np.random.default_rng(10)
    features = _near_duplicate_pairs(rng, pairs=4, dim=32).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])

    got = supcon_loss(features, labels, temperature=0.01)
    gradient = _gradient(lambda f: supcon_loss(f, labels, 0.01), features)

    assert np.isfinite(float(got))
    assert np.all(np.isfinite(gradient))
    # Logits of ~100 carry float32 rounding of ~1e-5 each, hence 1e-4.
    np.testing.assert_allclose(
        float(got), reference_supcon(features, labels, 0.01), rtol=1e-4
    )


def test_mixed_float16_inputs_give_finite_float32_losses(mixed_float16_policy):
    rng = np.random.default_rng(11)
    features = tf.constant(_near_duplicate_pairs(rng, 4, 32), dtype=tf.float16)
    labels = tf.constant([0, 0, 1, 1, 2, 2, 3, 3])
    want = reference_supcon(features.numpy(), labels.numpy(), 0.01)

    results = [
        supcon_loss(features, labels, temperature=0.01),
        SupConLoss(temperature=0.01)(labels, features),
        nt_xent_loss(features[0::2], features[1::2], temperature=0.01),
        NTXentLoss(temperature=0.01)(
            None, tf.concat([features[0::2], features[1::2]], axis=0)
        ),
    ]

    for result in results:
        assert result.dtype == tf.float32
        assert np.isfinite(float(result))
    np.testing.assert_allclose(float(results[0]), want, rtol=1e-4)


# --------------------------------------------------------------------------- #
# Batch sizes: dynamic inside tf.function, and a batch of one.
# --------------------------------------------------------------------------- #
def test_supcon_traces_once_for_a_dynamic_batch_size():
    dim = 6
    traced = tf.function(
        lambda f, y: supcon_loss(f, y, 0.2),
        input_signature=[tf.TensorSpec([None, dim]), tf.TensorSpec([None])],
    )
    rng = np.random.default_rng(12)

    for n in (8, 5):
        features = rng.normal(size=(n, dim)).astype(np.float32)
        labels = rng.integers(0, 2, size=n).astype(np.float32)
        _assert_relative_close(
            traced(features, labels), reference_supcon(features, labels, 0.2)
        )
    assert traced.experimental_get_tracing_count() == 1


def test_nt_xent_loss_class_handles_a_dynamic_batch_size():
    dim = 6
    loss = NTXentLoss(temperature=0.2)
    traced = tf.function(
        lambda y: loss(None, y), input_signature=[tf.TensorSpec([None, dim])]
    )
    rng = np.random.default_rng(13)

    for batch in (4, 3):
        view_a = rng.normal(size=(batch, dim)).astype(np.float32)
        view_b = rng.normal(size=(batch, dim)).astype(np.float32)
        _assert_relative_close(
            traced(np.concatenate([view_a, view_b])),
            reference_nt_xent(view_a, view_b, 0.2),
        )
    assert traced.experimental_get_tracing_count() == 1


def test_batch_of_one_gives_zero_and_finite_gradients():
    features = np.array([[3.0, -1.0, 2.0]], np.float32)

    got = supcon_loss(features, np.array([4]), 0.1)
    gradient = _gradient(lambda f: supcon_loss(f, np.array([4]), 0.1), features)

    assert float(got) == 0.0
    assert np.all(np.isfinite(gradient))


def test_nt_xent_of_one_pair_gives_zero_and_finite_gradients():
    # With B = 1 the only other row is the positive: -log(1) = 0.
    pair = np.array([[1.0, 2.0], [-3.0, 0.5]], np.float32)

    got = NTXentLoss()(None, pair)
    gradient = _gradient(lambda f: nt_xent_loss(f[:1], f[1:], 0.1), pair)

    assert abs(float(got)) < 1e-7
    assert np.all(np.isfinite(gradient))


# --------------------------------------------------------------------------- #
# Loss classes: reductions, Keras integration, serialisation, validation.
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean", None])
def test_every_reduction_returns_the_batch_scalar(reduction):
    rng = np.random.default_rng(14)
    features = rng.normal(size=(8, 4)).astype(np.float32)
    labels = rng.integers(0, 3, size=8)

    got = SupConLoss(temperature=0.2, reduction=reduction)(labels, features)

    assert tuple(got.shape) == ()
    _assert_relative_close(got, reference_supcon(features, labels, 0.2))


def test_nt_xent_loss_class_ignores_y_true():
    rng = np.random.default_rng(15)
    views = rng.normal(size=(6, 4)).astype(np.float32)
    loss = NTXentLoss(temperature=0.3)

    from_none = float(loss(None, views))
    from_zeros = float(loss(np.zeros(6), views))

    assert from_none == from_zeros
    _assert_relative_close(from_none, reference_nt_xent(views[:3], views[3:], 0.3))


def test_compiled_model_evaluates_to_the_supcon_loss():
    keras.utils.set_random_seed(16)
    rng = np.random.default_rng(16)
    inputs = rng.normal(size=(10, 5)).astype(np.float32)
    labels = rng.integers(0, 3, size=10)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss=SupConLoss(temperature=0.4))

    evaluated = model.evaluate(inputs, labels, batch_size=10, verbose=0)

    want = reference_supcon(model.predict(inputs, verbose=0), labels, 0.4)
    np.testing.assert_allclose(evaluated, want, rtol=1e-5)


def test_sample_weight_is_refused():
    features = np.ones((4, 2), np.float32)

    with pytest.raises(ValueError, match="takes no sample_weight"):
        SupConLoss()(np.array([0, 0, 1, 1]), features, sample_weight=np.ones(4))


def test_nt_xent_loss_class_rejects_an_odd_number_of_rows():
    with pytest.raises(ValueError, match=r"shape \(2B, D\); received .*\(5, 3\)"):
        NTXentLoss()(None, np.ones((5, 3), np.float32))


@pytest.mark.parametrize("loss_class", [SupConLoss, NTXentLoss])
def test_from_config_keeps_temperature_and_name(loss_class):
    original = loss_class(temperature=0.25, name="tuned")

    config = original.get_config()
    restored = loss_class.from_config(config)

    assert config["temperature"] == 0.25
    assert restored.temperature == 0.25
    assert restored.name == "tuned"
    assert restored.reduction == original.reduction


@pytest.mark.parametrize("loss_class", [SupConLoss, NTXentLoss])
def test_keras_serialize_round_trip_gives_the_same_value(loss_class):
    rng = np.random.default_rng(17)
    features = rng.normal(size=(8, 4)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    original = loss_class(temperature=0.07)

    restored = keras.losses.deserialize(keras.losses.serialize(original))

    assert type(restored) is loss_class
    assert restored.temperature == 0.07
    assert float(restored(labels, features)) == float(original(labels, features))


def test_saved_model_reloads_with_the_tuned_temperature(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=SupConLoss(temperature=0.33))
    path = tmp_path / "model.keras"
    model.save(path)

    reloaded = keras.saving.load_model(path)

    assert isinstance(reloaded.loss, SupConLoss)
    assert reloaded.loss.temperature == 0.33


@pytest.mark.parametrize("loss_class", [SupConLoss, NTXentLoss])
@pytest.mark.parametrize("bad", [0, -0.5])
def test_non_positive_temperature_is_rejected(loss_class, bad):
    with pytest.raises(
        ValueError, match=rf"temperature must be > 0; received temperature={bad}"
    ):
        loss_class(temperature=bad)


def test_nan_temperature_is_rejected():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        SupConLoss(temperature=float("nan"))


def test_infinite_temperature_is_rejected():
    with pytest.raises(ValueError, match="temperature must be finite"):
        NTXentLoss(temperature=float("inf"))


@pytest.mark.parametrize("bad", ["0.1", True, None])
def test_non_numeric_temperature_is_rejected(bad):
    with pytest.raises(TypeError, match="temperature must be a real number"):
        SupConLoss(temperature=bad)


def test_pure_function_rejects_a_zero_python_temperature():
    with pytest.raises(ValueError, match="received temperature=0"):
        supcon_loss(np.ones((2, 2), np.float32), np.array([0, 0]), temperature=0)


def test_numpy_temperature_is_accepted_and_stored_as_float():
    loss = SupConLoss(temperature=np.float32(0.5))

    assert type(loss.temperature) is float
    assert loss.temperature == 0.5


def test_tensor_temperature_equals_float_temperature():
    rng = np.random.default_rng(18)
    features = rng.normal(size=(6, 4)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2])

    from_tensor = supcon_loss(features, labels, tf.constant(0.5))
    from_float = supcon_loss(features, labels, 0.5)

    assert float(from_tensor) == float(from_float)


# --------------------------------------------------------------------------- #
# Shape errors.
# --------------------------------------------------------------------------- #
def test_label_count_must_match_feature_rows():
    with pytest.raises(ValueError, match="received 3 labels for 4 feature rows"):
        supcon_loss(np.ones((4, 2), np.float32), np.array([0, 1, 2]))


def test_features_must_be_rank_two():
    with pytest.raises(ValueError, match=r"features must have shape \(N, D\)"):
        supcon_loss(np.ones((4, 2, 2), np.float32), np.array([0, 1, 2, 3]))


def test_labels_must_be_flat_or_a_column():
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) or \(N, 1\)"):
        supcon_loss(np.ones((4, 2), np.float32), np.zeros((4, 2)))


def test_views_must_have_the_same_shape():
    with pytest.raises(ValueError, match="view_a and view_b must have the same"):
        nt_xent_loss(np.ones((3, 2), np.float32), np.ones((4, 2), np.float32))
