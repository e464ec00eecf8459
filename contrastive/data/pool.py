"""The intermediate form every source produces before splitting.

A source (sklearn digits, an IDX folder, an image folder, an .npz file, the Keras
cache) only has to turn its files into a `SamplePool`: all samples as one float32
array, labels with -1 for unlabelled samples, and optionally an official test
split. Splitting, de-duplication and hashing then work the same for all of them.
"""

import dataclasses

import numpy as np

from contrastive.data.errors import DataError

__all__ = [
    "COLOR_MODES",
    "SamplePool",
    "SourceOptions",
    "check_pool",
    "is_numeric_names",
    "numeric_names",
]

COLOR_MODES = ("grayscale", "rgb", "rgba")
_CHANNELS_TO_MODE = {1: "grayscale", 3: "rgb", 4: "rgba"}


@dataclasses.dataclass(frozen=True)
class SourceOptions:
    """Settings a source may need while it reads its files.

    Attributes:
        image_size: (height, width) every image is resized to; None keeps the
            source's own size. Defaults to None.
        color_mode: "grayscale", "rgb" or "rgba"; None keeps the source's own.
            Defaults to None.
        strict: if True, unreadable image files are an error instead of being
            skipped with a warning. Defaults to False.
    """

    image_size: tuple[int, int] | None = None
    color_mode: str | None = None
    strict: bool = False


@dataclasses.dataclass(frozen=True)
class SamplePool:
    """All samples of one source, before any split.

    Attributes:
        name: short dataset name (a known name or the folder/file stem).
        source: where the samples came from (absolute path or a library function).
        x: (n, H, W, C) float32 samples in `value_range`.
        y: (n,) int64 labels in [0, num_classes), or -1 for unlabelled samples.
        class_names: one name per class.
        value_range: (low, high) of the pixel values, e.g. (0.0, 255.0).
        x_test: (m, H, W, C) float32 official test samples, or None.
            Defaults to None.
        y_test: (m,) int64 official test labels, or None. Defaults to None.
    """

    name: str
    source: str
    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    value_range: tuple[float, float]
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def color_mode(self) -> str:
        """The color mode matching the channel count of `x`."""
        return _CHANNELS_TO_MODE[self.x.shape[-1]]


def numeric_names(num_classes: int) -> tuple[str, ...]:
    """Default class names "0", "1", ... for sources that carry no names.

    Args:
        num_classes: how many names to make.

    Returns:
        ("0", "1", ..., str(num_classes - 1)).
    """
    return tuple(str(i) for i in range(num_classes))


def is_numeric_names(names: tuple[str, ...]) -> bool:
    """Whether `names` are the default names made by `numeric_names`.

    Args:
        names: class names.

    Returns:
        True if names == numeric_names(len(names)).
    """
    return tuple(names) == numeric_names(len(names))


def _check_x(x: np.ndarray, what: str, where: str) -> None:
    if x.ndim != 4 or x.shape[-1] not in _CHANNELS_TO_MODE:
        raise DataError(
            f"{what} of {where} must have shape (N, H, W, C) with C in 1, 3 or 4; "
            f"received shape {x.shape}. Fix the source so every sample is an image "
            "of the same size."
        )
    if x.dtype != np.float32:
        raise DataError(f"{what} of {where} must be float32; received {x.dtype}.")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum())
        raise DataError(
            f"{what} of {where} contains NaN or infinite values in {bad} samples; "
            "only finite pixel values are allowed. Remove or repair those samples."
        )


def _check_y(y: np.ndarray, n: int, num_classes: int, what: str, where: str,
             allow_unlabeled: bool) -> None:
    if y.ndim != 1 or len(y) != n:
        raise DataError(
            f"{what} of {where} must be one label per sample: expected shape ({n},), "
            f"received shape {y.shape}. Give x and y the same length."
        )
    low = -1 if allow_unlabeled else 0
    bad = (y < low) | (y >= num_classes)
    if bad.any():
        values = sorted({int(v) for v in y[bad]})[:10]
        allowed = "-1 (unlabelled) or " if allow_unlabeled else ""
        raise DataError(
            f"{what} of {where} must be {allowed}a class index in "
            f"[0, {num_classes - 1}] ({num_classes} classes); received {values}. "
            "Fix the labels or the list of class names."
        )


def check_pool(pool: SamplePool) -> SamplePool:
    """Checks that a pool's arrays are consistent.

    Args:
        pool: the pool to check.

    Returns:
        The same pool, for chaining.

    Raises:
        DataError: if shapes, dtypes, value ranges or labels are inconsistent.
    """
    where = pool.source
    if pool.num_classes < 2:
        raise DataError(
            f"{where} has {pool.num_classes} class(es) {list(pool.class_names)}; "
            "classification needs at least 2. Add samples of another class."
        )
    _check_x(pool.x, "x", where)
    _check_y(pool.y, len(pool.x), pool.num_classes, "y", where, allow_unlabeled=True)
    low, high = pool.value_range
    if not low < high:
        raise DataError(
            f"value_range of {where} must be (low, high) with low < high; "
            f"received {pool.value_range}."
        )
    if (pool.x_test is None) != (pool.y_test is None):
        raise DataError(f"{where}: x_test and y_test must be given together.")
    arrays = [pool.x]
    if pool.x_test is not None:
        _check_x(pool.x_test, "x_test", where)
        if pool.x_test.shape[1:] != pool.x.shape[1:]:
            raise DataError(
                f"x_test of {where} has sample shape {pool.x_test.shape[1:]} but x "
                f"has {pool.x.shape[1:]}; both must match."
            )
        _check_y(pool.y_test, len(pool.x_test), pool.num_classes, "y_test", where,
                 allow_unlabeled=False)
        arrays.append(pool.x_test)
    for arr in arrays:
        if arr.size and (arr.min() < low or arr.max() > high):
            raise DataError(
                f"pixel values of {where} lie in [{arr.min()}, {arr.max()}], "
                f"outside its value_range {pool.value_range}. Give the right "
                "value_range or rescale the data."
            )
    return pool
