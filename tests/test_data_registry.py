"""Tests of contrastive.data.registry: name resolution, options and load_dataset."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from contrastive.data import DATASET_NAMES, DataError, load_dataset
from contrastive.data.splits import content_hashes

REPO = Path(__file__).resolve().parents[1]


def test_dataset_names_are_the_documented_ones():
    assert DATASET_NAMES == ("digits", "mnist-5k", "fashion-mnist", "mnist",
                             "cifar10", "cifar100")


def test_import_does_not_load_tensorflow_keras_or_sklearn():
    code = ("import sys, contrastive.data; "
            "print([m for m in ('tensorflow', 'keras', 'sklearn', 'mlxtend') "
            "if m in sys.modules])")

    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True, cwd=REPO)

    assert out.stdout.strip() == "[]"


def test_unknown_name_lists_known_names_and_path_forms():
    with pytest.raises(DataError, match=r"unknown dataset name 'digitz'.*known "
                                        r"names: digits, mnist-5k.*\.npz file.*IDX"):
        load_dataset("digitz")


def test_missing_path_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "data.npz"

    with pytest.raises(DataError, match=r"unknown dataset path .*nowhere"):
        load_dataset(str(missing))


def test_unknown_file_kind_is_refused(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,3\n")

    with pytest.raises(DataError, match=r"data.csv is not a dataset of a known form"):
        load_dataset(str(path))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"label_fraction": 0}, r"label_fraction must be in \(0, 1\]; received "
                                r"label_fraction=0\."),
        ({"seed": -1}, r"seed must be a non-negative integer; received seed=-1"),
        ({"seed": 1.5}, r"seed must be a non-negative integer"),
        ({"image_size": (0, 8)}, r"image_size must be \(height, width\)"),
        ({"image_size": 8}, r"image_size must be \(height, width\)"),
        ({"color_mode": "cmyk"}, r"color_mode must be one of .*'cmyk'"),
    ],
)
def test_bad_settings_are_refused_before_loading(kwargs, pattern):
    with pytest.raises(DataError, match=pattern):
        load_dataset("digits", **kwargs)


def _write_digit_pngs(folder: Path, images: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray((image * 16).clip(0, 255).astype(np.uint8)).save(
            folder / f"{i}.png")


def test_unlabeled_dir_images_join_only_the_unlabelled_set(tmp_path):
    extra = load_digits().images[::-1][:30] + 0.5  # shifted: not the same content
    _write_digit_pngs(tmp_path / "extra", extra)

    ds = load_dataset("digits", unlabeled_dir=str(tmp_path / "extra"))

    plain = load_dataset("digits")
    assert len(ds.x_unlabeled) == len(plain.x_unlabeled) + 30
    # 8-bit files are brought to the digits range 0-16.
    assert ds.x_unlabeled.max() <= 16.0
    assert len(ds.x_labeled) == len(plain.x_labeled)


def test_unlabeled_dir_that_is_missing_is_named(tmp_path):
    with pytest.raises(DataError, match=r"unlabeled_dir '.*absent' is not a folder"):
        load_dataset("digits", unlabeled_dir=str(tmp_path / "absent"))


def test_unlabeled_dir_without_images_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()

    with pytest.raises(DataError, match=r"holds no readable images"):
        load_dataset("digits", unlabeled_dir=str(tmp_path / "empty"))


def test_test_path_npz_becomes_the_test_split(tmp_path):
    bunch = load_digits()
    np.savez(tmp_path / "test.npz", x=bunch.images[:300], y=bunch.target[:300],
             value_range=np.array([0.0, 16.0]))

    ds = load_dataset("digits", test_path=str(tmp_path / "test.npz"))

    assert len(ds.x_test) == 300
    np.testing.assert_array_equal(ds.y_test, bunch.target[:300])
    # The copies of those 300 digits in the source are removed from training.
    assert len(ds.x_labeled) + len(ds.x_unlabeled) + len(ds.x_val) == 1797 - 300
    assert not set(content_hashes(ds.x_test)) & set(content_hashes(ds.x_val))


def test_test_path_with_other_class_names_is_refused(tmp_path):
    bunch = load_digits()
    for name in ("cat", "dog"):
        _write_digit_pngs(tmp_path / "t" / name, bunch.images[:3])

    with pytest.raises(DataError, match=r"classes of test_path .*\['cat', 'dog'\] "
                                        r"do not match"):
        load_dataset("digits", test_path=str(tmp_path / "t"))


def test_test_path_must_be_a_path_not_a_name():
    with pytest.raises(DataError, match=r"unknown dataset path 'digits'"):
        load_dataset("mnist-5k", test_path="digits")
