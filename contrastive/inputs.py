"""Reading images to predict on: ``.npy`` / ``.npz`` arrays and image files.

Used by ``scripts/predict.py`` and ``scripts/evaluate.py``. Arrays are taken as they are
(they are expected in the model's own value range); image files are decoded with PIL to
the model's size and channels and mapped from 0-255 to the model's value range, so a PNG
of a digit can be fed to a model trained on scikit-learn's 0-16 digits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contrastive.data import read_image

__all__ = ["IMAGE_SUFFIXES", "read_inputs"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}


def read_inputs(
    paths: list[str | Path],
    input_shape: tuple[int, int, int],
    value_range: tuple[float, float],
) -> tuple[np.ndarray, list[str]]:
    """Reads every input into one float32 batch shaped for the model.

    Args:
        paths: ``.npy`` files (one image or a stack), ``.npz`` files (array ``x``, else
            the only array), and image files.
        input_shape: The model's ``(height, width, channels)``.
        value_range: The model's ``(low, high)`` pixel range.

    Returns:
        The images and one name per image (``file`` or ``file[i]`` for stacks).

    Raises:
        ValueError: For a missing file, an unknown suffix, or arrays of the wrong shape;
            the message names the file and the shape the model takes.
    """
    images, names = [], []
    for path in map(Path, paths):
        if not path.is_file():
            raise ValueError(f"Input not found: {path}.")
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            images.append(_read_image_file(path, input_shape, value_range)[None])
            names.append(str(path))
        elif suffix in (".npy", ".npz"):
            batch = _shaped(_read_array(path), input_shape, path)
            images.append(batch)
            names += [f"{path}[{i}]" for i in range(len(batch))]
        else:
            raise ValueError(
                f"Cannot read {path}: expected .npy, .npz or an image "
                f"({', '.join(IMAGE_SUFFIXES)})."
            )
    if not images:
        raise ValueError("No inputs given.")
    return np.concatenate(images).astype("float32"), names


def _read_image_file(path: Path, input_shape, value_range) -> np.ndarray:
    height, width, channels = input_shape
    mode = _COLOR_MODES.get(channels)
    if mode is None:
        raise ValueError(f"Models with {channels} channels cannot read image files.")
    pixels = read_image(path, image_size=(height, width), color_mode=mode)
    low, high = value_range
    return pixels / 255.0 * (high - low) + low


def _read_array(path: Path) -> np.ndarray:
    # allow_pickle=False: an array file never runs code.
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    with np.load(path, allow_pickle=False) as archive:
        if "x" in archive:
            return archive["x"]
        if len(archive.files) == 1:
            return archive[archive.files[0]]
        raise ValueError(
            f"{path} holds {archive.files}; name the images array 'x'."
        )


def _shaped(array: np.ndarray, input_shape, path: Path) -> np.ndarray:
    shape = tuple(input_shape)
    if array.shape == shape or (shape[-1] == 1 and array.shape == shape[:-1]):
        array = array[None]
    if array.ndim == len(shape) and shape[-1] == 1:
        array = array[..., None]
    if array.shape[1:] != shape:
        raise ValueError(
            f"{path}: arrays of shape {array.shape} do not fit this model, which takes "
            f"(N, {', '.join(map(str, shape))}) or one image of {shape}."
        )
    return array
