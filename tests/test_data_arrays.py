"""Tests of the .npz source: keys, value ranges, unlabelled samples, bad arrays."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from contrastive.data import DataError, load_dataset
from contrastive.data.splits import content_hashes


@pytest.fixture(scope="module")
def digits():
    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target


def _save(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return str(path)


def test_values_above_one_default_to_the_0_255_range(tmp_path, digits):
    x, y = digits

    ds = load_dataset(_save(tmp_path, x=x * 15, y=y))

    assert ds.value_range == (0.0, 255.0)
    assert ds.input_shape == (8, 8, 1)
    assert ds.name == "data"


def test_values_up_to_one_default_to_the_0_1_range(tmp_path, digits):
    x, y = digits

    ds = load_dataset(_save(tmp_path, x=x / 16, y=y))

    assert ds.value_range == (0.0, 1.0)


def test_value_range_key_overrides_the_guess(tmp_path, digits):
    x, y = digits

    ds = load_dataset(_save(tmp_path, x=x, y=y, value_range=np.array([0.0, 16.0])))

    assert ds.value_range == (0.0, 16.0)


def test_values_outside_the_range_are_refused(tmp_path, digits):
    x, y = digits

    with pytest.raises(DataError, match=r"outside the value range \(0.0, 255.0\); "
                                        r"add a 'value_range' array"):
        load_dataset(_save(tmp_path, x=x * 20, y=y))


def test_minus_one_labels_go_to_the_unlabelled_pool_only(tmp_path, digits):
    x, y = digits
    y = y.copy()
    y[:400] = -1

    ds = load_dataset(_save(tmp_path, x=x, y=y), label_fraction=1.0)

    unlabelled = set(content_hashes(x[:400, ..., None]))
    assert set(content_hashes(ds.x_unlabeled)) == unlabelled
    assert len(ds.x_labeled) + len(ds.x_val) + len(ds.x_test) == 1797 - 400


def test_channels_last_color_arrays_are_kept(tmp_path, digits):
    x, y = digits
    rgb = np.stack([x, x / 2, 16 - x], -1) * 15

    ds = load_dataset(_save(tmp_path, x=rgb, y=y))

    assert ds.input_shape == (8, 8, 3)


def test_class_names_and_official_test_keys_are_used(tmp_path, digits):
    x, y = digits
    names = np.array([f"digit {i}" for i in range(10)])

    ds = load_dataset(_save(tmp_path, x=x[:1500], y=y[:1500], x_test=x[1500:],
                            y_test=y[1500:], class_names=names))

    assert ds.class_names[3] == "digit 3"
    np.testing.assert_array_equal(ds.y_test, y[1500:])


def _nan_at_7(x, y):
    x = x.copy()
    x[7, 3, 3] = np.nan
    return x, y


def _minus_two_at_5(x, y):
    y = y.copy()
    y[5] = -2
    return x, y


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda x, y: (x, y[:-1]), r"y in .* must have one label per sample, shape "
                                   r"\(1797,\); received shape \(1796,\)"),
        (_nan_at_7, r"x in .* contains NaN or infinite values in 1 samples"),
        (_minus_two_at_5, r"y of .* must be -1 \(unlabelled\) or a class index in "
                          r"\[0, 9\] \(10 classes\); received \[-2\]"),
        (lambda x, y: (x, y + 0.5), r"y in .* must hold integer labels"),
        (lambda x, y: (x.reshape(len(x), -1), y), r"x in .* must have shape "
                                                  r"\(N, H, W\) or \(N, H, W, C\)"),
    ],
    ids=["short_y", "nan_x", "label_minus_two", "float_y", "flat_x"],
)
def test_bad_arrays_are_refused(tmp_path, digits, change, pattern):
    x, y = change(*digits)

    with pytest.raises(DataError, match=pattern):
        load_dataset(_save(tmp_path, x=x, y=y, value_range=np.array([0.0, 16.0])))


def test_missing_keys_are_named(tmp_path, digits):
    with pytest.raises(DataError, match=r"lacks the array\(s\) \['y'\]; it has "
                                        r"\['images', 'x'\]"):
        load_dataset(_save(tmp_path, x=digits[0], images=digits[0]))


def test_a_file_that_is_not_npz_is_refused(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip archive")

    with pytest.raises(DataError, match=r"cannot read .*broken.npz as an .npz file"):
        load_dataset(str(path))
