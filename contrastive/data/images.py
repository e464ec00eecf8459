"""Decoding image files with PIL and converting image arrays.

Every image in the platform is decoded here, by one decoder (PIL), so pixels are
the same whichever source a file comes from. The module also checks that a file's
content matches its extension and converts arrays between sizes and color modes.
"""

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from contrastive.data.errors import DataError
from contrastive.data.pool import COLOR_MODES

__all__ = [
    "IMAGE_EXTENSIONS",
    "GRAY_MODES",
    "check_color_mode",
    "check_image_size",
    "convert_array",
    "decode_image",
    "open_image",
    "read_image",
    "rescale",
]

# The extensions keras.utils.image_dataset_from_directory accepts, with the PIL
# formats their content may have (cameras write multi-picture JPEGs, "MPO").
IMAGE_EXTENSIONS: dict[str, tuple[str, ...]] = {
    ".png": ("PNG",),
    ".jpg": ("JPEG", "MPO"),
    ".jpeg": ("JPEG", "MPO"),
    ".bmp": ("BMP",),
    ".gif": ("GIF",),
}
# PIL modes without color; an image folder of only these loads as grayscale.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"})
_PIL_MODE = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}


def check_color_mode(color_mode: str | None) -> None:
    """Checks a color mode setting.

    Args:
        color_mode: "grayscale", "rgb", "rgba" or None.

    Raises:
        DataError: for any other value.
    """
    if color_mode is not None and color_mode not in COLOR_MODES:
        raise DataError(
            f"color_mode must be one of {COLOR_MODES} or None (the source's own); "
            f"received color_mode={color_mode!r}."
        )


def check_image_size(image_size) -> tuple[int, int] | None:
    """Checks an image size setting.

    Args:
        image_size: (height, width) of positive ints, or None.

    Returns:
        The size as a tuple of two ints, or None.

    Raises:
        DataError: if it is not two positive integers.
    """
    if image_size is None:
        return None
    try:
        height, width = image_size
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                 and v > 0 for v in (height, width))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(
            "image_size must be (height, width) with two positive integers, or "
            f"None; received image_size={image_size!r}. E.g. image_size=(32, 32)."
        )
    return int(height), int(width)


def open_image(path: str | os.PathLike, *, check_extension: bool = True) -> Image.Image:
    """Opens and fully decodes an image file, checking it is what it claims.

    Args:
        path: the image file.
        check_extension: if True, the decoded format must match the file's
            extension (a PNG saved as .jpg is refused). Defaults to True.

    Returns:
        The decoded PIL image (the first frame of an animation).

    Raises:
        DataError: if the file is missing, empty, truncated, not an image, or
            (with check_extension) its content does not match its extension.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file {path} does not exist or is not a file.")
    if path.stat().st_size == 0:
        raise DataError(f"image file {path} is empty (0 bytes).")
    # Decoding a truncated file must fail, not yield a half-grey image, whatever
    # the rest of the process set this PIL-wide switch to.
    lenient = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as img:
            img.load()
            image = img.copy()
            fmt = img.format
    except UnidentifiedImageError as err:
        raise DataError(f"image file {path} is not a readable image.") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"image file {path} is damaged or truncated: {err}.") from err
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient
    expected = IMAGE_EXTENSIONS.get(path.suffix.lower())
    if check_extension and expected is not None and fmt not in expected:
        raise DataError(
            f"image file {path} holds {fmt} data but its extension "
            f"{path.suffix!r} says {expected[0]}; rename it to the right extension."
        )
    return image


def decode_image(image: Image.Image, *, image_size: tuple[int, int] | None,
                 color_mode: str) -> np.ndarray:
    """Converts a PIL image to an (H, W, C) float32 array in 0-255.

    Args:
        image: the decoded image, in any PIL mode.
        image_size: (height, width) to resize to, or None for its own size.
        color_mode: "grayscale", "rgb" or "rgba".

    Returns:
        (H, W, C) float32 array, C = 1, 3 or 4.
    """
    if image.mode == "P" and "transparency" in image.info:
        # Converting a palette with transparency straight to RGB loses the mask
        # PIL warns about; going through RGBA keeps it well-defined.
        image = image.convert("RGBA")
    target = _PIL_MODE[color_mode]
    if image.mode != target:
        image = image.convert(target)
    if image_size is not None and image.size != (image_size[1], image_size[0]):
        image = image.resize((image_size[1], image_size[0]),
                             Image.Resampling.BILINEAR)
    arr = np.asarray(image, dtype=np.float32)
    return arr[..., np.newaxis] if arr.ndim == 2 else arr


def read_image(path: str | os.PathLike, *, image_size: tuple[int, int] | None = None,
               color_mode: str = "rgb") -> np.ndarray:
    """Reads one image file into an array.

    Args:
        path: a PNG, JPEG, BMP or GIF file (the extension is not checked here).
        image_size: (height, width) to resize to with bilinear interpolation, or
            None to keep the file's size. Defaults to None.
        color_mode: "grayscale", "rgb" or "rgba". Defaults to "rgb".

    Returns:
        (H, W, C) float32 array with values in 0-255.

    Raises:
        DataError: if the file cannot be decoded or a setting is invalid.
    """
    check_color_mode(color_mode)
    if color_mode is None:
        raise DataError("read_image needs a color_mode: 'grayscale', 'rgb' or 'rgba'.")
    image_size = check_image_size(image_size)
    image = open_image(path, check_extension=False)
    return decode_image(image, image_size=image_size, color_mode=color_mode)


def rescale(x: np.ndarray, old: tuple[float, float],
            new: tuple[float, float]) -> np.ndarray:
    """Maps values linearly from one value range to another.

    Args:
        x: the array.
        old: its current (low, high).
        new: the wanted (low, high).

    Returns:
        float32 array in `new` (the same array if the ranges are equal).
    """
    if tuple(old) == tuple(new):
        return x
    scale = (new[1] - new[0]) / (old[1] - old[0])
    return ((x - old[0]) * scale + new[0]).astype(np.float32)


def convert_array(x: np.ndarray, *, image_size: tuple[int, int] | None,
                  color_mode: str | None, value_range: tuple[float, float]
                  ) -> np.ndarray:
    """Resizes and re-colors a batch of images given as an array.

    Grayscale becomes RGB by repeating the channel; RGB becomes grayscale with
    PIL's ITU-R 601-2 luma weights; an added alpha channel is opaque (the top of
    `value_range`); a dropped one is discarded.

    Args:
        x: (N, H, W, C) float32 images.
        image_size: (height, width) wanted, or None to keep H, W.
        color_mode: "grayscale", "rgb", "rgba", or None to keep C.
        value_range: (low, high) of x, for the alpha value.

    Returns:
        (N, H', W', C') float32 images.
    """
    channels = x.shape[-1]
    if color_mode is not None:
        want = {"grayscale": 1, "rgb": 3, "rgba": 4}[color_mode]
        color = x[..., :1] if channels == 1 else x[..., :3]
        if want == 1 and color.shape[-1] == 3:
            weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
            color = (color @ weights)[..., np.newaxis]
        elif want >= 3 and color.shape[-1] == 1:
            color = np.repeat(color, 3, axis=-1)
        if want == 4:
            alpha = np.full(color.shape[:-1] + (1,), value_range[1], np.float32)
            color = np.concatenate([color, alpha], axis=-1)
        x = color.astype(np.float32)

    if image_size is not None and x.shape[1:3] != tuple(image_size):
        height, width = image_size
        out = np.empty((len(x), height, width, x.shape[-1]), np.float32)
        for i, sample in enumerate(x):
            for c in range(x.shape[-1]):
                # A float32 2-D array becomes a PIL "F" image: no 8-bit rounding.
                channel = Image.fromarray(np.ascontiguousarray(sample[..., c]))
                out[i, ..., c] = np.asarray(
                    channel.resize((width, height), Image.Resampling.BILINEAR))
        x = np.clip(out, value_range[0], value_range[1])
    return x
