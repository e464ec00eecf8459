"""Tests of the image-folder source: layout, broken files, modes, leak-free splits."""

import logging
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contrastive.data import DataError, load_dataset
from contrastive.data.mnist_5k import find_mnist_5k, read_mnist_5k
from contrastive.data.splits import content_hashes

REPO = Path(__file__).resolve().parents[1]
CIFAR_DIR = REPO.parent / "shared" / "data" / "cifar10-jpeg"
CIFAR_CLASSES = ("airplane", "automobile", "bird")
FOLDER_LOGGER = "contrastive.data.folder"
PER_CLASS = 14


@pytest.fixture(scope="module")
def digit_images():
    """Real 28x28 MNIST digits as uint8, PER_CLASS per class for classes 0-2."""
    x, y = read_mnist_5k(find_mnist_5k())
    picked = np.concatenate([np.flatnonzero(y == c)[:PER_CLASS] for c in range(3)])
    return x[picked, ..., 0].astype(np.uint8), y[picked]


def _digit_folder(root: Path, digit_images, fmt="png") -> Path:
    x, y = digit_images
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:03d}.{fmt}")
    return root


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    """20 CIFAR-10 JPEGs of each of 3 classes from train and 10 from test."""
    if not (CIFAR_DIR / "train.tar.gz").is_file():
        pytest.skip(f"shared CIFAR-10 JPEGs not found at {CIFAR_DIR}")
    root = tmp_path_factory.mktemp("cifar")
    for part, per_class in (("train", 20), ("test", 10)):
        counts = dict.fromkeys(CIFAR_CLASSES, 0)
        with tarfile.open(CIFAR_DIR / f"{part}.tar.gz") as archive:
            for member in archive:
                parts = member.name.split("/")
                if not member.isfile() or len(parts) != 3:
                    continue
                if parts[1] not in counts:
                    if all(n == per_class for n in counts.values()):
                        break  # members are sorted by name: nothing more to take
                    continue
                if counts[parts[1]] < per_class:
                    counts[parts[1]] += 1
                    archive.extract(member, root, filter="data")
    return root


def test_cifar_folder_loads_classes_in_sorted_order(cifar_root):
    ds = load_dataset(str(cifar_root / "train"), seed=0)

    assert ds.class_names == CIFAR_CLASSES
    assert ds.input_shape == (32, 32, 3)
    assert sum(len(getattr(ds, f"x_{s}")) for s in
               ("labeled", "unlabeled", "val", "test")) == 60


def test_cifar_pixels_are_decoded_with_pil(cifar_root):
    ds = load_dataset(str(cifar_root / "train"), label_fraction=1.0, seed=0)
    first = sorted((cifar_root / "train" / "airplane").iterdir())[0]
    expected = np.asarray(Image.open(first).convert("RGB"), np.float32)

    all_x = np.concatenate([ds.x_labeled, ds.x_val, ds.x_test])
    assert content_hashes(expected[None])[0] in set(content_hashes(all_x))


def test_train_and_test_subfolders_give_the_official_test_split(cifar_root):
    ds = load_dataset(str(cifar_root), seed=0)

    assert ds.class_counts()["test"] == [10, 10, 10]
    assert len(ds.x_labeled) + len(ds.x_unlabeled) + len(ds.x_val) == 60


def _hash_sets(ds):
    return [set(content_hashes(getattr(ds, f"x_{s}")))
            for s in ("labeled", "unlabeled", "val", "test")]


def test_cifar_four_sets_share_no_sample(cifar_root):
    sets = _hash_sets(load_dataset(str(cifar_root), label_fraction=0.3, seed=2))

    for i in range(4):
        for j in range(i + 1, 4):
            assert not sets[i] & sets[j]


def test_folder_loaded_twice_gives_the_same_split(cifar_root):
    first = load_dataset(str(cifar_root / "train"), seed=5)
    second = load_dataset(str(cifar_root / "train"), seed=5)

    assert first.digest == second.digest
    np.testing.assert_array_equal(first.x_labeled, second.x_labeled)


def test_split_depends_on_content_not_file_names(cifar_root, tmp_path):
    # Same images under reversed names: the listing order flips.
    for class_dir in (cifar_root / "train").iterdir():
        files = sorted(class_dir.iterdir())
        (tmp_path / class_dir.name).mkdir()
        for i, path in enumerate(reversed(files)):
            shutil.copy(path, tmp_path / class_dir.name / f"img_{i:02d}.jpg")

    original = load_dataset(str(cifar_root / "train"), seed=5)
    renamed = load_dataset(str(tmp_path), seed=5)

    assert _hash_sets(original) == _hash_sets(renamed)


def test_other_seed_moves_samples(cifar_root):
    first = load_dataset(str(cifar_root / "train"), seed=0)
    other = load_dataset(str(cifar_root / "train"), seed=1)

    assert _hash_sets(first)[3] != _hash_sets(other)[3]


def test_each_class_keeps_at_least_one_label(digit_images, tmp_path):
    root = _digit_folder(tmp_path / "d", digit_images)

    ds = load_dataset(str(root), label_fraction=0.01)

    assert ds.class_counts()["labeled"] == [1, 1, 1]


def test_all_grayscale_folder_loads_with_one_channel(digit_images, tmp_path):
    ds = load_dataset(str(_digit_folder(tmp_path / "d", digit_images)))

    assert ds.input_shape == (28, 28, 1)
    assert ds.class_names == ("class_0", "class_1", "class_2")


def _break_some(root: Path, digit_images) -> list[Path]:
    """Adds a zero-byte file, a truncated JPEG and a PNG named .jpg to class_0."""
    folder = root / "class_0"
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    truncated = folder / "truncated.jpg"
    Image.fromarray(digit_images[0][1]).save(truncated, "JPEG")
    truncated.write_bytes(truncated.read_bytes()[:300])
    misnamed = folder / "misnamed.jpg"
    Image.fromarray(digit_images[0][2]).save(misnamed, "PNG")
    return [empty, truncated, misnamed]


def test_broken_files_are_skipped_with_one_warning(digit_images, tmp_path, caplog):
    root = _digit_folder(tmp_path / "d", digit_images)
    broken = _break_some(root, digit_images)

    with caplog.at_level(logging.WARNING, logger=FOLDER_LOGGER):
        ds = load_dataset(str(root))

    records = [r for r in caplog.records if r.name == FOLDER_LOGGER]
    assert len(records) == 1
    assert all(path.name in records[0].getMessage() for path in broken)
    assert f"skipped 3 of {3 * PER_CLASS + 3}" in records[0].getMessage()
    assert sum(len(getattr(ds, f"x_{s}")) for s in
               ("labeled", "unlabeled", "val", "test")) == 3 * PER_CLASS


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("empty.png", r"empty.png is empty \(0 bytes\)"),
        ("truncated.jpg", r"truncated.jpg is damaged or truncated"),
        ("misnamed.jpg", r"misnamed.jpg holds PNG data but its extension '.jpg' "
                         r"says JPEG"),
    ],
)
def test_strict_refuses_each_broken_file(digit_images, tmp_path, name, pattern):
    root = _digit_folder(tmp_path / "d", digit_images)
    for path in _break_some(root, digit_images):
        if path.name != name:
            path.unlink()

    with pytest.raises(DataError, match=r"strict=True.*" + pattern):
        load_dataset(str(root), strict=True)


def _mixed_mode_folder(root: Path, digit_images) -> dict[str, Path]:
    """One class per PIL mode, each image from a real digit."""
    x, _ = digit_images
    paths = {}
    makers = {
        "gray_png": lambda a: Image.fromarray(a),
        "rgb_png": lambda a: Image.fromarray(np.stack([a, a // 2, 255 - a], -1)),
        "rgba_png": lambda a: Image.fromarray(np.stack([a, a, a, np.full_like(a, 200)],
                                                       -1)),
        "palette_gif": lambda a: Image.fromarray(np.stack([a, a // 2, a], -1))
        .quantize(64),
        "palette_bmp": lambda a: Image.fromarray(np.stack([a // 2, a, a], -1))
        .quantize(256),
    }
    for k, (cls, make) in enumerate(makers.items()):
        (root / cls).mkdir(parents=True)
        ext = cls.split("_")[1]
        for i in range(8):
            path = root / cls / f"{i}.{ext}"
            make(x[k * 8 + i]).save(path)
            paths.setdefault(cls, path)
    return paths


def test_mixed_modes_default_to_rgb(digit_images, tmp_path):
    root = tmp_path / "mixed"
    _mixed_mode_folder(root, digit_images)

    ds = load_dataset(str(root), label_fraction=1.0)

    assert ds.input_shape == (28, 28, 3)
    assert ds.num_classes == 5


@pytest.mark.parametrize(("color_mode", "channels"),
                         [("grayscale", 1), ("rgb", 3), ("rgba", 4)])
def test_mixed_modes_follow_the_configured_channels(digit_images, tmp_path,
                                                    color_mode, channels):
    root = tmp_path / "mixed"
    _mixed_mode_folder(root, digit_images)

    ds = load_dataset(str(root), color_mode=color_mode, image_size=(14, 14))

    assert ds.input_shape == (14, 14, channels)
    assert ds.x_labeled.max() <= 255.0


def test_bmp_and_gif_files_are_read_as_palette_images(digit_images, tmp_path):
    paths = _mixed_mode_folder(tmp_path / "mixed", digit_images)

    assert Image.open(paths["palette_bmp"]).mode == "P"
    assert Image.open(paths["palette_gif"]).mode == "P"


def test_image_size_defaults_to_the_first_image(digit_images, tmp_path):
    root = _digit_folder(tmp_path / "d", digit_images)
    big = Image.fromarray(digit_images[0][20]).resize((40, 40))
    big.save(root / "class_1" / "zzz_big.png")

    ds = load_dataset(str(root))

    assert ds.input_shape == (28, 28, 1)
    assert sum(len(getattr(ds, f"x_{s}")) for s in
               ("labeled", "unlabeled", "val", "test")) == 3 * PER_CLASS + 1


def test_unlabeled_subfolder_is_not_a_class(digit_images, tmp_path):
    root = _digit_folder(tmp_path / "d", digit_images)
    (root / "unlabeled").mkdir()
    x, _ = digit_images
    for i in range(5):
        Image.fromarray(255 - x[i]).save(root / "unlabeled" / f"u{i}.png")

    ds = load_dataset(str(root), label_fraction=1.0)

    assert ds.class_names == ("class_0", "class_1", "class_2")
    assert len(ds.x_unlabeled) == 5


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"dataset folder .* is empty"):
        load_dataset(str(tmp_path))


def test_loose_images_without_class_folders_are_refused(digit_images, tmp_path):
    Image.fromarray(digit_images[0][0]).save(tmp_path / "a.png")

    with pytest.raises(DataError, match=r"has no class sub-folders.*1 images are "
                                        r"not in class sub-folders"):
        load_dataset(str(tmp_path))


def test_class_folders_without_images_are_refused(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("not an image")

    with pytest.raises(DataError, match=r"holds no image files"):
        load_dataset(str(tmp_path))


def test_folder_where_nothing_is_readable_is_refused(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "a.png").write_bytes(b"")

    with pytest.raises(DataError, match=r"no image in the class sub-folders .* is "
                                        r"readable"):
        load_dataset(str(tmp_path))


def test_class_with_too_few_images_is_named(digit_images, tmp_path):
    root = _digit_folder(tmp_path / "d", digit_images)
    for path in sorted((root / "class_2").iterdir())[2:]:
        path.unlink()

    with pytest.raises(DataError, match=r"at least 3 .*'class_2' has 2"):
        load_dataset(str(root))


def test_too_small_fraction_for_the_classes_names_the_need(digit_images, tmp_path):
    root = _digit_folder(tmp_path / "d", digit_images)

    with pytest.raises(DataError, match=r"each class needs about 50 samples; the "
                                        r"smallest, 'class_0', has 14"):
        load_dataset(str(root), test_fraction=0.02)


def test_duplicate_files_never_straddle_splits(digit_images, tmp_path, caplog):
    root = _digit_folder(tmp_path / "d", digit_images)
    for path in sorted((root / "class_0").iterdir()):
        shutil.copy(path, path.with_name("copy_" + path.name))

    with caplog.at_level(logging.INFO, logger="contrastive.data.splits"):
        ds = load_dataset(str(root))

    sets = _hash_sets(ds)
    assert sum(len(s) for s in sets) == 3 * PER_CLASS
    assert f"dropped {PER_CLASS} exact duplicate" in caplog.text
