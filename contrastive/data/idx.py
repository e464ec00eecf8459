"""The IDX sources: any folder of MNIST-format files, and `fashion-mnist`.

IDX is the big-endian format of MNIST and Fashion-MNIST: a magic number
(0x00000803 for images, 0x00000801 for labels), the dimension sizes as uint32,
then uint8 data. Files are named `train-images-idx3-ubyte` etc., optionally
gzipped. Headers and sizes are checked so a damaged file is reported by name
instead of producing garbage arrays.
"""

import gzip
import logging
import re
import zlib
from pathlib import Path

import numpy as np

from contrastive.data.errors import DataError
from contrastive.data.keras_cache import keras_home
from contrastive.data.pool import SamplePool, SourceOptions, numeric_names

__all__ = [
    "FASHION_MNIST_CLASSES",
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "fashion_mnist_folders",
    "find_idx_files",
    "is_idx_folder",
    "load_fashion_mnist_pool",
    "load_idx_folder_pool",
    "read_idx",
]

logger = logging.getLogger(__name__)

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FASHION_FOLDER_NAMES = ("fashion-mnist", "fashion_mnist")
# train-images-idx3-ubyte(.gz); LeCun's unpacked copies use a dot: train-images.idx3
_IDX_NAME = re.compile(r"^(train|t10k)-(images|labels)[-.]idx([13])-ubyte(\.gz)?$")
_NEEDED = ("train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz and/or "
           "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (gzipped or not)")


def find_idx_files(folder: Path) -> dict[tuple[str, str], Path]:
    """Lists the IDX files of a folder by part and kind.

    Args:
        folder: the folder to look in (not recursively).

    Returns:
        {("train" | "t10k", "images" | "labels"): path}; an uncompressed file wins
        over a gzipped one of the same name.
    """
    found: dict[tuple[str, str], Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir(), key=lambda p: (p.suffix == ".gz", p.name)):
        match = _IDX_NAME.match(path.name)
        if match and path.is_file():
            found.setdefault((match.group(1), match.group(2)), path)
    return found


def is_idx_folder(path: Path) -> bool:
    """Whether `path` is a folder holding at least one IDX file.

    Args:
        path: any path.

    Returns:
        True for a folder with a file named like train-images-idx3-ubyte(.gz).
    """
    return bool(find_idx_files(path))


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Reads one IDX file of uint8 data.

    Args:
        path: the file, gzipped if its name ends in .gz.
        magic: the expected magic number, IMAGES_MAGIC or LABELS_MAGIC.

    Returns:
        The uint8 array with the shape given in the header.

    Raises:
        DataError: naming the file, if it cannot be decompressed, has another magic
            number, or is shorter or longer than its header says.
    """
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"IDX file {path} cannot be read: {err}. Replace it with "
                        "an intact copy.") from err
    if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
        found = f"0x{int.from_bytes(data[:4], 'big'):08x}" if len(data) >= 4 else (
            f"only {len(data)} bytes")
        raise DataError(
            f"IDX file {path} has magic number {found}; expected 0x{magic:08x} "
            f"({'images' if magic == IMAGES_MAGIC else 'labels'}). Check that it is "
            "the right file and not damaged."
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"IDX file {path} is truncated: {len(data)} bytes, shorter "
                        f"than its {header}-byte header. Replace it.")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big")
                  for i in range(ndim))
    expected = int(np.prod(shape)) + header
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(
            f"IDX file {path} is {problem}: {len(data)} bytes, expected {expected} "
            f"for shape {shape}. Replace it with an intact copy."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images, IMAGES_MAGIC)
    y = read_idx(labels, LABELS_MAGIC)
    if len(x) != len(y):
        raise DataError(f"{images} holds {len(x)} images but {labels} holds "
                        f"{len(y)} labels; the two files must belong together.")
    return x.astype(np.float32)[..., np.newaxis], y.astype(np.int64)


def load_idx_folder_pool(folder: Path, options: SourceOptions, *,
                         name: str | None = None,
                         class_names: tuple[str, ...] | None = None) -> SamplePool:
    """Reads a folder of IDX files.

    The train-* pair is the pool and the t10k-* pair the official test split.
    A folder with only the t10k-* pair uses it as the pool (or, as test_path, as
    the test set). A file without its partner is ignored with a warning.

    Args:
        folder: the folder.
        options: source options; image_size/color_mode are applied by the caller.
        name: the dataset name; None uses the folder name. Defaults to None.
        class_names: class names; None uses the Fashion-MNIST names for a folder
            named fashion-mnist, else "0", "1", .... Defaults to None.

    Returns:
        The pool, (28, 28, 1) images in (0, 255) for MNIST-like files.

    Raises:
        DataError: if no complete images/labels pair exists or a file is damaged.
    """
    del options  # nothing to configure while reading
    files = find_idx_files(folder)
    pairs = {}
    for part in ("train", "t10k"):
        images, labels = files.get((part, "images")), files.get((part, "labels"))
        if images and labels:
            pairs[part] = _read_pair(images, labels)
        elif images or labels:
            logger.warning("ignoring %s: its %s file is missing from %s",
                           (images or labels).name,
                           "labels" if images else "images", folder)
    if not pairs:
        raise DataError(f"IDX folder {folder} has no complete images/labels pair; "
                        f"it needs {_NEEDED}.")

    if "train" in pairs:
        (x, y), test = pairs["train"], pairs.get("t10k")
    else:
        logger.info("%s has no train-* files; using its t10k-* files as samples",
                    folder)
        (x, y), test = pairs["t10k"], None
    if class_names is None:
        if folder.name.lower() in _FASHION_FOLDER_NAMES:
            class_names = FASHION_MNIST_CLASSES
        else:
            top = max(int(y.max()), int(test[1].max()) if test else 0)
            class_names = numeric_names(max(top + 1, 2))
    return SamplePool(
        name=name or folder.name, source=str(folder), x=x, y=y,
        class_names=tuple(class_names), value_range=(0.0, 255.0),
        x_test=test[0] if test else None, y_test=test[1] if test else None,
    )


def fashion_mnist_folders() -> list[Path]:
    """The folders searched for Fashion-MNIST, in order.

    Returns:
        [$KERAS_HOME/datasets/fashion-mnist, /usr/share/datasets/fashion-mnist]
        (the second is where Debian's dataset-fashion-mnist package installs it).
    """
    return [keras_home() / "datasets" / "fashion-mnist",
            Path("/usr/share/datasets/fashion-mnist")]


def load_fashion_mnist_pool(options: SourceOptions) -> SamplePool:
    """Reads Fashion-MNIST from the first folder that holds its IDX files.

    Args:
        options: source options; image_size/color_mode are applied by the caller.

    Returns:
        60,000 training images with the official 10,000-image test split.

    Raises:
        DataError: if no searched folder holds the files.
    """
    for folder in fashion_mnist_folders():
        if is_idx_folder(folder):
            return load_idx_folder_pool(folder.resolve(), options,
                                        name="fashion-mnist",
                                        class_names=FASHION_MNIST_CLASSES)
    searched = ", ".join(str(f) for f in fashion_mnist_folders())
    raise DataError(
        f"fashion-mnist was not found in {searched}. Put {_NEEDED} in one of them "
        "(on Debian/Ubuntu: `apt-get install dataset-fashion-mnist`), or pass the "
        "folder holding them as the dataset path."
    )
