"""Tests of contrastive.data.splits: fractions, de-duplication, leakage, seeds."""

import logging

import numpy as np
import pytest
from sklearn.datasets import load_digits

from contrastive.data.errors import DataError
from contrastive.data.pool import SamplePool, numeric_names
from contrastive.data.splits import check_fractions, content_hashes, split_pool

SETTINGS = dict(label_fraction=0.1, seed=0, val_fraction=0.15, test_fraction=0.15)


@pytest.fixture(scope="module")
def digits_pool() -> SamplePool:
    bunch = load_digits()
    return SamplePool(name="digits", source="sklearn", class_names=numeric_names(10),
                      x=bunch.images.astype(np.float32)[..., None],
                      y=bunch.target.astype(np.int64), value_range=(0.0, 16.0))


def _hash_sets(split):
    return [set(content_hashes(getattr(split, f"x_{s}")))
            for s in ("labeled", "unlabeled", "val", "test")]


def _assert_disjoint(split):
    sets = _hash_sets(split)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not sets[i] & sets[j], (i, j)


def test_split_sizes_add_up_to_all_samples(digits_pool):
    split = split_pool(digits_pool, **SETTINGS)

    sizes = [len(split.x_labeled), len(split.x_unlabeled), len(split.x_val),
             len(split.x_test)]

    assert sum(sizes) == 1797
    assert len(split.x_test) == 270
    assert len(split.x_val) == 270


def test_four_sets_share_no_sample(digits_pool):
    split = split_pool(digits_pool, **SETTINGS)

    _assert_disjoint(split)


def test_label_fraction_is_applied_per_class(digits_pool):
    split = split_pool(digits_pool, **{**SETTINGS, "label_fraction": 0.25})
    label_of = dict(zip(content_hashes(digits_pool.x), digits_pool.y, strict=True))
    unlabelled_y = [label_of[h] for h in content_hashes(split.x_unlabeled)]

    labelled = np.bincount(split.y_labeled, minlength=10)
    train = labelled + np.bincount(unlabelled_y, minlength=10)

    expected = [max(1, round(0.25 * n)) for n in train]
    assert labelled.tolist() == expected


def test_tiny_label_fraction_keeps_one_label_per_class(digits_pool):
    split = split_pool(digits_pool, **{**SETTINGS, "label_fraction": 0.001})

    assert np.bincount(split.y_labeled, minlength=10).tolist() == [1] * 10


def test_label_fraction_one_leaves_no_unlabelled(digits_pool):
    split = split_pool(digits_pool, **{**SETTINGS, "label_fraction": 1.0})

    assert split.x_unlabeled.shape == (0, 8, 8, 1)
    assert len(split.x_labeled) == 1797 - 540


def test_same_seed_gives_identical_arrays(digits_pool):
    first = split_pool(digits_pool, **SETTINGS)
    second = split_pool(digits_pool, **SETTINGS)

    for name in ("x_labeled", "y_labeled", "x_unlabeled", "x_val", "x_test"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


def test_other_seed_gives_other_split(digits_pool):
    first = split_pool(digits_pool, **SETTINGS)
    second = split_pool(digits_pool, **{**SETTINGS, "seed": 1})

    assert set(content_hashes(first.x_test)) != set(content_hashes(second.x_test))


def test_split_does_not_depend_on_sample_order(digits_pool):
    order = np.random.default_rng(7).permutation(len(digits_pool.x))
    shuffled = SamplePool(name="d", source="s", x=digits_pool.x[order],
                          y=digits_pool.y[order], class_names=numeric_names(10),
                          value_range=(0.0, 16.0))

    first = split_pool(digits_pool, **SETTINGS)
    second = split_pool(shuffled, **SETTINGS)

    assert _hash_sets(first) == _hash_sets(second)


def test_duplicates_are_dropped_before_splitting(digits_pool, caplog):
    # Repeat 300 samples so copies would straddle splits if not removed.
    x = np.concatenate([digits_pool.x, digits_pool.x[:300]])
    y = np.concatenate([digits_pool.y, digits_pool.y[:300]])
    pool = SamplePool(name="d", source="dup", x=x, y=y,
                      class_names=numeric_names(10), value_range=(0.0, 16.0))

    with caplog.at_level(logging.INFO, logger="contrastive.data.splits"):
        split = split_pool(pool, **SETTINGS)

    total = sum(len(getattr(split, f"x_{s}"))
                for s in ("labeled", "unlabeled", "val", "test"))
    assert total == 1797
    assert "dropped 300 exact duplicate" in caplog.text
    _assert_disjoint(split)


def test_copies_with_conflicting_labels_are_dropped(digits_pool, caplog):
    x = np.concatenate([digits_pool.x, digits_pool.x[:5]])
    y = np.concatenate([digits_pool.y, (digits_pool.y[:5] + 1) % 10])
    pool = SamplePool(name="d", source="conflict", x=x, y=y,
                      class_names=numeric_names(10), value_range=(0.0, 16.0))

    with caplog.at_level(logging.WARNING, logger="contrastive.data.splits"):
        split = split_pool(pool, **SETTINGS)

    total = len(split.x_labeled) + len(split.x_unlabeled) + len(split.x_val) + len(
        split.x_test)
    assert total == 1797 - 5
    assert "different labels" in caplog.text


def test_unlabelled_samples_go_only_to_the_unlabelled_set(digits_pool):
    y = digits_pool.y.copy()
    y[:200] = -1
    pool = SamplePool(name="d", source="u", x=digits_pool.x, y=y,
                      class_names=numeric_names(10), value_range=(0.0, 16.0))

    split = split_pool(pool, **SETTINGS)

    unlabelled = set(content_hashes(digits_pool.x[:200]))
    assert unlabelled <= set(content_hashes(split.x_unlabeled))
    for s in ("labeled", "val", "test"):
        assert not unlabelled & set(content_hashes(getattr(split, f"x_{s}")))


def test_official_test_split_is_kept_and_val_comes_from_train(digits_pool):
    pool = SamplePool(name="d", source="t", x=digits_pool.x[:1500],
                      y=digits_pool.y[:1500], class_names=numeric_names(10),
                      value_range=(0.0, 16.0), x_test=digits_pool.x[1500:],
                      y_test=digits_pool.y[1500:])

    split = split_pool(pool, **SETTINGS)

    np.testing.assert_array_equal(split.y_test, digits_pool.y[1500:])
    assert len(split.x_val) == 225
    assert len(split.x_labeled) + len(split.x_unlabeled) == 1500 - 225


def test_pool_copies_of_test_samples_are_removed(digits_pool):
    pool = SamplePool(name="d", source="t", x=digits_pool.x, y=digits_pool.y,
                      class_names=numeric_names(10), value_range=(0.0, 16.0),
                      x_test=digits_pool.x[1500:], y_test=digits_pool.y[1500:])

    split = split_pool(pool, **SETTINGS)

    assert len(split.x_labeled) + len(split.x_unlabeled) + len(split.x_val) == 1500
    _assert_disjoint(split)


def test_class_too_small_names_the_class_and_count(digits_pool):
    keep = (digits_pool.y != 3) | (np.cumsum(digits_pool.y == 3) <= 2)
    pool = SamplePool(name="d", source="small", x=digits_pool.x[keep],
                      y=digits_pool.y[keep], class_names=numeric_names(10),
                      value_range=(0.0, 16.0))

    with pytest.raises(DataError, match=r"at least 3 .*'3' has 2"):
        split_pool(pool, **SETTINGS)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"label_fraction": 0}, r"label_fraction must be in \(0, 1\]; received "
                                r"label_fraction=0"),
        ({"label_fraction": 1.5}, r"label_fraction must be in \(0, 1\]"),
        ({"val_fraction": 0.0}, r"val_fraction must be in \(0, 1\)"),
        ({"test_fraction": 1.0}, r"test_fraction must be in \(0, 1\)"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, r"val_fraction \+ "
                                                       r"test_fraction must be"),
        ({"label_fraction": "0.1"}, r"label_fraction must be a number"),
        ({"label_fraction": float("nan")}, r"label_fraction must be in"),
    ],
)
def test_invalid_fractions_are_refused(kwargs, pattern):
    settings = {"label_fraction": 0.1, "val_fraction": 0.15, "test_fraction": 0.15}

    with pytest.raises(DataError, match=pattern):
        check_fractions(**{**settings, **kwargs})


def test_content_hashes_are_equal_only_for_equal_samples(digits_pool):
    hashes = content_hashes(np.stack([digits_pool.x[0], digits_pool.x[0],
                                      digits_pool.x[1]]))

    assert hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]
