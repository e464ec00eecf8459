"""The .npz source: arrays `x` and `y` in one NumPy file.

Keys (all others are ignored):

- `x` (required): (N, H, W) or (N, H, W, C) images, C in 1, 3, 4; any real dtype.
- `y` (required): (N,) integer labels; -1 marks an unlabelled sample, which goes
  to the unlabelled pool only.
- `value_range` (optional): (low, high) of the pixel values. Without it the range
  is (0, 1) if max(x) <= 1, else (0, 255); values outside it are an error.
- `class_names` (optional): one name per class; default "0", "1", ...
- `x_test`, `y_test` (optional): an official test split (labels >= 0).
"""

import zipfile
from pathlib import Path

import numpy as np

from contrastive.data.errors import DataError
from contrastive.data.pool import SamplePool, SourceOptions, numeric_names

__all__ = ["load_npz_pool"]


def _images(arr: np.ndarray, key: str, path: Path) -> np.ndarray:
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype,
                                                                 np.complexfloating):
        raise DataError(f"{key} in {path} must hold real numbers; received dtype "
                        f"{arr.dtype}.")
    if arr.ndim == 3:
        arr = arr[..., np.newaxis]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4):
        raise DataError(f"{key} in {path} must have shape (N, H, W) or (N, H, W, C) "
                        f"with C in 1, 3, 4; received shape {arr.shape}.")
    x = arr.astype(np.float32)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum())
        raise DataError(f"{key} in {path} contains NaN or infinite values in {bad} "
                        "samples; remove or repair them.")
    return x


def _labels(arr: np.ndarray, key: str, n: int, path: Path) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or len(arr) != n:
        raise DataError(f"{key} in {path} must have one label per sample, shape "
                        f"({n},); received shape {arr.shape}. Make x and y the same "
                        "length.")
    if not np.issubdtype(arr.dtype, np.number) or (
            np.issubdtype(arr.dtype, np.floating)
            and not (np.isfinite(arr).all() and (arr == np.round(arr)).all())):
        raise DataError(f"{key} in {path} must hold integer labels (-1 for "
                        f"unlabelled); received dtype {arr.dtype}.")
    return arr.astype(np.int64)


def load_npz_pool(path: Path, options: SourceOptions) -> SamplePool:
    """Reads an .npz file with arrays x and y (see the module docstring).

    Args:
        path: the .npz file.
        options: source options; image_size/color_mode are applied by the caller.

    Returns:
        The pool, with an official test split if the file has x_test/y_test.

    Raises:
        DataError: if the file cannot be read or its arrays are inconsistent.
    """
    del options  # nothing to configure while reading
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read {path} as an .npz file: {err}. Save it with "
                        "numpy.savez(path, x=..., y=...).") from err
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise DataError(f"{path} lacks the array(s) {missing}; it has "
                        f"{sorted(arrays)}. Save it with numpy.savez(path, x=..., "
                        "y=...) where y == -1 marks unlabelled samples.")

    x = _images(arrays["x"], "x", path)
    y = _labels(arrays["y"], "y", len(x), path)
    x_test = y_test = None
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path} must have both x_test and y_test, or neither.")
    if "x_test" in arrays:
        x_test = _images(arrays["x_test"], "x_test", path)
        y_test = _labels(arrays["y_test"], "y_test", len(x_test), path)
        if (y_test < 0).any():
            raise DataError(f"y_test in {path} must be labelled (>= 0); it has "
                            f"{int((y_test < 0).sum())} labels -1.")

    if "value_range" in arrays:
        value_range = tuple(float(v) for v in np.ravel(arrays["value_range"]))
        if len(value_range) != 2:
            raise DataError(f"value_range in {path} must be two numbers (low, "
                            f"high); received {arrays['value_range']!r}.")
    else:
        top = max(float(x.max(initial=0)),
                  float(x_test.max(initial=0)) if x_test is not None else 0.0)
        value_range = (0.0, 1.0) if top <= 1 else (0.0, 255.0)
    for key, arr in (("x", x), ("x_test", x_test)):
        if arr is not None and arr.size and (arr.min() < value_range[0]
                                             or arr.max() > value_range[1]):
            raise DataError(
                f"{key} in {path} has values in [{arr.min()}, {arr.max()}], outside "
                f"the value range {value_range}; add a 'value_range' array "
                "(low, high) to the file, or rescale x."
            )

    if "class_names" in arrays:
        class_names = tuple(str(n) for n in np.ravel(arrays["class_names"]))
    else:
        top = max(int(y.max(initial=-1)),
                  int(y_test.max(initial=-1)) if y_test is not None else -1)
        class_names = numeric_names(max(top + 1, 2))
    return SamplePool(name=path.stem, source=str(path), x=x, y=y,
                      class_names=class_names, value_range=value_range,
                      x_test=x_test, y_test=y_test)
