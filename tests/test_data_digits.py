"""Tests of the digits source (sklearn.datasets.load_digits)."""

import numpy as np

from contrastive.data import load_dataset
from contrastive.data.digits import load_digits_pool
from contrastive.data.pool import SourceOptions


def test_digits_pool_has_all_1797_images_in_0_16():
    pool = load_digits_pool(SourceOptions())

    assert pool.x.shape == (1797, 8, 8, 1)
    assert pool.x.max() == 16.0
    assert np.bincount(pool.y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179,
                                            174, 180]


def test_digits_dataset_uses_every_sample_once():
    ds = load_dataset("digits")

    total = len(ds.x_labeled) + len(ds.x_unlabeled) + len(ds.x_val) + len(ds.x_test)
    assert total == 1797
    assert ds.value_range == (0.0, 16.0)
    assert ds.source == "sklearn.datasets.load_digits"


def test_digits_can_be_resized_and_made_rgb():
    ds = load_dataset("digits", image_size=(16, 16), color_mode="rgb")

    assert ds.input_shape == (16, 16, 3)
    assert ds.x_labeled.max() <= 16.0
    np.testing.assert_array_equal(ds.x_labeled[..., 0], ds.x_labeled[..., 2])


def test_same_seed_same_digest_other_seed_other_digest():
    first = load_dataset("digits", seed=3)
    again = load_dataset("digits", seed=3)
    other = load_dataset("digits", seed=4)

    assert first.digest == again.digest
    assert first.digest != other.digest
    np.testing.assert_array_equal(first.x_val, again.x_val)
