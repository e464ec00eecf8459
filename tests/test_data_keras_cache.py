"""Tests of the Keras-cache sources (mnist, cifar10, cifar100).

Keras checks the sha256 of a cached file and re-downloads it when the hash is
wrong, so a hand-made file can never pass; these tests cover the clear-error
paths (missing file, wrong hash) and that nothing is downloaded or imported.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contrastive.data import DataError, load_dataset
from contrastive.data.keras_cache import KERAS_FILES, keras_home
from contrastive.data.mnist_5k import find_mnist_5k, read_mnist_5k

REPO = Path(__file__).resolve().parents[1]


def test_keras_home_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    assert keras_home() == tmp_path


def test_keras_home_defaults_to_dot_keras(monkeypatch):
    monkeypatch.delenv("KERAS_HOME", raising=False)

    assert keras_home().name == ".keras"


def test_missing_mnist_says_which_file_goes_where(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    with pytest.raises(DataError, match=(
            r"'mnist' is not in the Keras cache .* never downloaded.*named "
            r"'mnist.npz', sha256 731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc"
            r"48468fc17b673d1\) in the folder .*datasets, or use a folder of MNIST "
            r"IDX files")):
        load_dataset("mnist")


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_missing_cifar_names_the_archive_and_the_image_folder_option(
        tmp_path, monkeypatch, name):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    spec = KERAS_FILES[name]

    with pytest.raises(DataError, match=rf"named '{spec.file_name}', sha256 "
                                        rf"{spec.sha256}\).*class sub-folders"):
        load_dataset(name)


def test_hand_made_mnist_npz_is_refused_and_left_alone(tmp_path, monkeypatch):
    x, y = read_mnist_5k(find_mnist_5k())
    cache = tmp_path / "datasets"
    cache.mkdir()
    path = cache / "mnist.npz"
    np.savez(path, x_train=x[:4000, ..., 0].astype(np.uint8), y_train=y[:4000],
             x_test=x[4000:, ..., 0].astype(np.uint8), y_test=y[4000:])
    before = path.read_bytes()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    with pytest.raises(DataError, match=r"mnist.npz has sha256 [0-9a-f]{64}, not the "
                                        r"731c5ac6\w+ Keras requires"):
        load_dataset("mnist")

    assert path.read_bytes() == before


def test_error_path_imports_neither_keras_nor_tensorflow(tmp_path):
    code = ("import sys\nfrom contrastive.data import load_dataset, DataError\n"
            "try:\n    load_dataset('cifar10')\nexcept DataError:\n    pass\n"
            "print([m for m in ('keras', 'tensorflow') if m in sys.modules])")
    env = {**os.environ, "KERAS_HOME": str(tmp_path)}

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO, env=env)

    assert out.stdout.strip() == "[]"
    assert not (tmp_path / "datasets").exists()
