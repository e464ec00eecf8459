"""The image-folder source: class sub-folders of PNG, JPEG, BMP or GIF files.

The layout is the one `keras.utils.image_dataset_from_directory` expects: one
sub-folder per class (class names are the sorted sub-folder names; files are
found recursively). Two additions: an `unlabeled/` sub-folder holds images of no
class, and a folder with `train/` and `test/` sub-folders, each of class
sub-folders, supplies its own official test split. Files are decoded with PIL and
checked while indexing, so broken files are reported before any training.
"""

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from contrastive.data.errors import DataError
from contrastive.data.images import (
    GRAY_MODES,
    IMAGE_EXTENSIONS,
    decode_image,
    open_image,
)
from contrastive.data.pool import SamplePool, SourceOptions

__all__ = ["UNLABELED_DIR", "list_image_files", "load_folder_pool",
           "read_image_tree"]

logger = logging.getLogger(__name__)

UNLABELED_DIR = "unlabeled"
_MAX_LISTED = 20


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def list_image_files(folder: Path) -> list[Path]:
    """Lists image files under a folder, recursively, in sorted order.

    Args:
        folder: the folder.

    Returns:
        Files with an image extension (.png, .jpg, .jpeg, .bmp, .gif, any case),
        hidden files and folders excluded.
    """
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).parts
        if (path.is_file() and all(not part.startswith(".") for part in relative)
                and path.suffix.lower() in IMAGE_EXTENSIONS):
            files.append(path)
    return files


def _decode_all(paths: list[Path], strict: bool, where: Path
                ) -> list[tuple[Path, Image.Image]]:
    """Decodes every file; reports all unreadable ones at once."""
    decoded, problems = [], []
    for path in paths:
        try:
            decoded.append((path, open_image(path, check_extension=True)))
        except DataError as err:
            problems.append(str(err))
    if problems:
        listed = "; ".join(problems[:_MAX_LISTED])
        more = (f"; and {len(problems) - _MAX_LISTED} more"
                if len(problems) > _MAX_LISTED else "")
        if strict:
            raise DataError(
                f"{len(problems)} of {len(paths)} image files in {where} cannot be "
                f"used (strict=True): {listed}{more}. Repair, rename or remove them, "
                "or load with strict=False to skip them."
            )
        logger.warning("skipped %d of %d unreadable image files in %s: %s%s. "
                       "Repair, rename or remove them (strict=True refuses them).",
                       len(problems), len(paths), where, listed, more)
    return decoded


def _to_array(images: list[Image.Image], image_size: tuple[int, int],
              color_mode: str) -> np.ndarray:
    channels = {"grayscale": 1, "rgb": 3, "rgba": 4}[color_mode]
    out = np.empty((len(images), *image_size, channels), np.float32)
    for i, image in enumerate(images):
        out[i] = decode_image(image, image_size=image_size, color_mode=color_mode)
    return out


def read_image_tree(folder: Path, *, image_size: tuple[int, int], color_mode: str,
                    strict: bool = False) -> np.ndarray:
    """Reads all images under a folder (no classes), e.g. an unlabelled pool.

    Args:
        folder: the folder, searched recursively.
        image_size: (height, width) every image is resized to.
        color_mode: "grayscale", "rgb" or "rgba".
        strict: refuse unreadable files instead of skipping them. Defaults to False.

    Returns:
        (n, H, W, C) float32 in 0-255 (n may be 0).

    Raises:
        DataError: with strict=True, if any file is unreadable.
    """
    decoded = _decode_all(list_image_files(folder), strict, folder)
    return _to_array([image for _, image in decoded], image_size, color_mode)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and _visible(p) and p.name != UNLABELED_DIR)


def _has_split_layout(folder: Path) -> bool:
    train, test = folder / "train", folder / "test"
    return (train.is_dir() and test.is_dir() and bool(_class_dirs(train))
            and bool(_class_dirs(test)))


def _check_not_empty(folder: Path, classes: list[Path]) -> None:
    if not any(_visible(p) for p in folder.iterdir()):
        raise DataError(f"dataset folder {folder} is empty; put one sub-folder of "
                        "images per class in it (e.g. cat/1.png, dog/2.png).")
    if not classes:
        loose = len(list_image_files(folder))
        hint = (f" Its {loose} images are not in class sub-folders; move them into "
                "one sub-folder per class, or pass the folder as unlabeled_dir."
                if loose else "")
        raise DataError(
            f"dataset folder {folder} has no class sub-folders; it needs one "
            f"sub-folder of images per class (e.g. cat/1.png, dog/2.png).{hint}"
        )


def load_folder_pool(folder: Path, options: SourceOptions) -> SamplePool:
    """Reads a folder of class sub-folders of images.

    Args:
        folder: the dataset folder.
        options: image_size (None: the size of the first readable image; every
            image is resized to it), color_mode (None: "grayscale" if all images
            are grayscale, else "rgb") and strict (refuse unreadable, truncated or
            misnamed files instead of skipping them with one warning).

    Returns:
        The pool in (0, 255): class images labelled, unlabeled/ images with -1,
        and test/ images as the official test split for a train/ + test/ layout.

    Raises:
        DataError: for an empty folder, no class sub-folders, nothing readable,
            test classes unknown to train, or (strict) any unreadable file.
    """
    split_layout = _has_split_layout(folder)
    train_root = folder / "train" if split_layout else folder
    classes = _class_dirs(train_root)
    _check_not_empty(folder, classes)
    class_names = tuple(p.name for p in classes)

    # (path, label, is_test); the label -1 marks unlabelled images.
    entries = [(f, c, False) for c, d in enumerate(classes)
               for f in list_image_files(d)]
    for root in dict.fromkeys([folder, train_root]):
        if (root / UNLABELED_DIR).is_dir():
            entries += [(f, -1, False) for f in list_image_files(root / UNLABELED_DIR)]
    if split_layout:
        test_classes = _class_dirs(folder / "test")
        unknown = [p.name for p in test_classes if p.name not in class_names]
        if unknown:
            raise DataError(f"test classes {unknown} of {folder / 'test'} have no "
                            f"train folder; train has {list(class_names)}. Use the "
                            "same class sub-folder names in train/ and test/.")
        entries += [(f, class_names.index(d.name), True) for d in test_classes
                    for f in list_image_files(d)]
    if not entries:
        raise DataError(f"dataset folder {folder} holds no image files (PNG, JPEG, "
                        "BMP, GIF) in its class sub-folders; add images.")

    decoded = _decode_all([path for path, _, _ in entries], options.strict, folder)
    readable = {path: image for path, image in decoded}
    kept = [(readable[p], label, is_test) for p, label, is_test in entries
            if p in readable]
    if not any(label >= 0 for _, label, is_test in kept if not is_test):
        raise DataError(f"no image in the class sub-folders of {folder} is "
                        "readable; see the files listed above and replace them.")

    color_mode = options.color_mode or (
        "grayscale" if all(image.mode in GRAY_MODES for image, _, _ in kept)
        else "rgb")
    first = next(image for image, label, _ in kept if label >= 0)
    image_size = options.image_size or (first.height, first.width)
    x = _to_array([image for image, _, _ in kept], image_size, color_mode)
    y = np.array([label for _, label, _ in kept], np.int64)
    is_test = np.array([t for _, _, t in kept], bool)
    logger.info("read %d images of %d classes from %s as %s %s", len(kept),
                len(class_names), folder, color_mode, image_size)
    return SamplePool(
        name=folder.name, source=str(folder), x=x[~is_test], y=y[~is_test],
        class_names=class_names, value_range=(0.0, 255.0),
        x_test=x[is_test] if split_layout else None,
        y_test=y[is_test] if split_layout else None,
    )
