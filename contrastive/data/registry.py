"""Resolving a dataset name or path to its source, and `load_dataset`.

A dataset is a name resolved by one function, `resolve_source`: a known name maps
to a loader in `_NAMED_SOURCES`, anything else is a path matched against
`_PATH_SOURCES`. Adding a source is adding one entry. Source modules are imported
only when used, so `import contrastive.data` stays fast.
"""

import dataclasses
import importlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from contrastive.data.dataset import Dataset, compute_digest
from contrastive.data.errors import DataError
from contrastive.data.images import (
    check_color_mode,
    check_image_size,
    convert_array,
    rescale,
)
from contrastive.data.pool import (
    SamplePool,
    SourceOptions,
    check_pool,
    is_numeric_names,
)
from contrastive.data.splits import check_fractions, split_pool

__all__ = ["DATASET_NAMES", "PATH_FORMS", "load_dataset", "resolve_source"]

logger = logging.getLogger(__name__)


def _lazy(module: str, function: str, *args) -> Callable:
    """A loader that imports `contrastive.data.<module>` only when called."""

    def load(*call_args):
        loader = getattr(importlib.import_module(f"contrastive.data.{module}"),
                         function)
        return loader(*args, *call_args)

    return load


# name -> loader(options) -> SamplePool
_NAMED_SOURCES: dict[str, Callable[[SourceOptions], SamplePool]] = {
    "digits": _lazy("digits", "load_digits_pool"),
    "mnist-5k": _lazy("mnist_5k", "load_mnist_5k_pool"),
    "fashion-mnist": _lazy("idx", "load_fashion_mnist_pool"),
    "mnist": _lazy("keras_cache", "load_keras_pool", "mnist"),
    "cifar10": _lazy("keras_cache", "load_keras_pool", "cifar10"),
    "cifar100": _lazy("keras_cache", "load_keras_pool", "cifar100"),
}
DATASET_NAMES: tuple[str, ...] = tuple(_NAMED_SOURCES)


def _is_npz(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".npz"


def _is_idx_folder(path: Path) -> bool:
    from contrastive.data.idx import is_idx_folder

    return is_idx_folder(path)


# (description, matches(path), loader(path, options)); the first match wins.
_PATH_SOURCES: list[tuple[str, Callable[[Path], bool], Callable]] = [
    ("a .npz file with arrays x and y (y == -1: unlabelled)", _is_npz,
     _lazy("arrays", "load_npz_pool")),
    ("a folder of IDX files (train-images-idx3-ubyte[.gz], "
     "train-labels-idx1-ubyte[.gz], t10k-...)", _is_idx_folder,
     _lazy("idx", "load_idx_folder_pool")),
    ("a folder of class sub-folders of images (PNG, JPEG, BMP, GIF), optionally "
     "with an unlabeled/ sub-folder", Path.is_dir,
     _lazy("folder", "load_folder_pool")),
]
PATH_FORMS: tuple[str, ...] = tuple(desc for desc, _, _ in _PATH_SOURCES)


def _known_forms() -> str:
    forms = "; ".join(PATH_FORMS)
    return f"known names: {', '.join(DATASET_NAMES)}; or a path to {forms}"


def resolve_source(name: str | os.PathLike, options: SourceOptions,
                   *, paths_only: bool = False) -> SamplePool:
    """Turns a dataset name or path into the pool of its samples.

    Args:
        name: a known name (see DATASET_NAMES) or a path (see PATH_FORMS).
        options: image size, color mode and strictness for the source.
        paths_only: if True, known names are not accepted (for test_path).
            Defaults to False.

    Returns:
        The source's samples.

    Raises:
        DataError: for an unknown name, a missing path, or a path of no known form.
    """
    if not paths_only and isinstance(name, str) and name in _NAMED_SOURCES:
        return _NAMED_SOURCES[name](options)
    if not isinstance(name, (str, os.PathLike)):
        raise DataError(f"dataset must be a name or a path; received {name!r}. "
                        f"{_known_forms()}.")
    path = Path(name).expanduser()
    if not path.exists():
        what = "path" if paths_only or len(path.parts) > 1 or path.suffix else "name"
        raise DataError(
            f"unknown dataset {what} {str(name)!r}: no such file or folder "
            f"({path.absolute()}). {_known_forms()}."
        )
    for _, matches, loader in _PATH_SOURCES:
        if matches(path):
            return loader(path.resolve(), options)
    raise DataError(f"{path.resolve()} is not a dataset of a known form; "
                    f"{_known_forms()}.")


def _adapt(pool: SamplePool, image_size, color_mode) -> SamplePool:
    """Applies image_size/color_mode to array sources (no-op if already so)."""

    def convert(x):
        if x is None:
            return None
        return convert_array(x, image_size=image_size, color_mode=color_mode,
                             value_range=pool.value_range)

    return dataclasses.replace(pool, x=convert(pool.x), x_test=convert(pool.x_test))


def _with_unlabeled_dir(pool: SamplePool, unlabeled_dir, strict: bool) -> SamplePool:
    from contrastive.data.folder import read_image_tree

    path = Path(unlabeled_dir).expanduser()
    if not path.is_dir():
        raise DataError(
            f"unlabeled_dir {str(unlabeled_dir)!r} is not a folder "
            f"({path.absolute()}); pass a folder of images, or None."
        )
    x_u = read_image_tree(path.resolve(), image_size=pool.x.shape[1:3],
                          color_mode=pool.color_mode, strict=strict)
    if len(x_u) == 0:
        raise DataError(f"unlabeled_dir {path.resolve()} holds no readable images "
                        "(PNG, JPEG, BMP, GIF); add images or drop the option.")
    # Image files are 0-255; bring them to the labelled samples' range.
    x_u = rescale(x_u, (0.0, 255.0), pool.value_range)
    logger.info("added %d unlabelled images from %s", len(x_u), path.resolve())
    return dataclasses.replace(
        pool,
        x=np.concatenate([pool.x, x_u]),
        y=np.concatenate([pool.y, np.full(len(x_u), -1, np.int64)]),
    )


def _map_test_labels(test: SamplePool, y: np.ndarray, pool: SamplePool) -> np.ndarray:
    """Re-indexes test labels to the pool's classes, by name where names exist."""
    if all(name in pool.class_names for name in test.class_names):
        lookup = np.array([pool.class_names.index(n) for n in test.class_names])
        return lookup[y]
    if is_numeric_names(test.class_names) and test.num_classes <= pool.num_classes:
        return y
    raise DataError(
        f"the classes of test_path {test.source} {list(test.class_names)} do not "
        f"match those of {pool.source} {list(pool.class_names)}; give the test "
        "folder the same class sub-folder names."
    )


def _with_test_path(pool: SamplePool, test_path, strict: bool
                    ) -> tuple[SamplePool, str]:
    options = SourceOptions(image_size=tuple(pool.x.shape[1:3]),
                            color_mode=pool.color_mode, strict=strict)
    test = resolve_source(test_path, options, paths_only=True)
    test = _adapt(test, options.image_size, options.color_mode)
    if test.x_test is not None:
        x_t, y_t = test.x_test, test.y_test
    else:
        labelled = test.y >= 0
        if not labelled.all():
            logger.warning("test_path %s: ignoring %d unlabelled samples",
                           test.source, int((~labelled).sum()))
        x_t, y_t = test.x[labelled], test.y[labelled]
    if len(x_t) == 0:
        raise DataError(f"test_path {test.source} holds no labelled samples; "
                        "point it at labelled test data.")
    if pool.x_test is not None:
        logger.info("test_path %s replaces the official test split of %s",
                    test.source, pool.source)
    return dataclasses.replace(
        pool,
        x_test=rescale(x_t, test.value_range, pool.value_range),
        y_test=_map_test_labels(test, y_t, pool).astype(np.int64),
    ), test.source


def load_dataset(name: str, *, label_fraction: float = 0.1, seed: int = 0,
                 val_fraction: float = 0.15, test_fraction: float = 0.15,
                 image_size: tuple[int, int] | None = None,
                 color_mode: str | None = None,
                 unlabeled_dir: str | None = None,
                 test_path: str | None = None,
                 strict: bool = False) -> Dataset:
    """Loads a dataset by name or path and splits it without leakage.

    Args:
        name: a known name (DATASET_NAMES) or a path: a folder of IDX files, a
            folder of class sub-folders of images, or a .npz file.
        label_fraction: share of each training class that keeps its labels,
            max(1, round(f * n_class)) per class, in (0, 1]. Defaults to 0.1.
        seed: seed of the splits. Defaults to 0.
        val_fraction: share of the samples used for validation. Defaults to 0.15.
        test_fraction: share used for testing when the source has no official
            test split. Defaults to 0.15.
        image_size: (height, width) to resize to; None keeps the source's size.
            Defaults to None.
        color_mode: "grayscale", "rgb" or "rgba"; None keeps the source's own.
            Defaults to None.
        unlabeled_dir: a folder of extra unlabelled images, resized and recolored
            to the dataset's shape and scaled to its value range. Defaults to None.
        test_path: an IDX folder, .npz file or image folder used as the whole test
            split (its t10k/x_test part if it has one); the source is then split
            into train/val only. Defaults to None.
        strict: refuse unreadable or misnamed image files instead of skipping
            them with a warning. Defaults to False.

    Returns:
        The split dataset.

    Raises:
        DataError: for any bad name, path, file or setting.
    """
    check_fractions(label_fraction, val_fraction, test_fraction)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer; received seed={seed!r}.")
    image_size = check_image_size(image_size)
    check_color_mode(color_mode)

    options = SourceOptions(image_size=image_size, color_mode=color_mode,
                            strict=bool(strict))
    pool = _adapt(resolve_source(name, options), image_size, color_mode)
    check_pool(pool)
    if unlabeled_dir is not None:
        pool = _with_unlabeled_dir(pool, unlabeled_dir, bool(strict))
    test_source = None
    if test_path is not None:
        pool, test_source = _with_test_path(pool, test_path, bool(strict))
    check_pool(pool)

    split = split_pool(pool, label_fraction=label_fraction, seed=int(seed),
                       val_fraction=val_fraction, test_fraction=test_fraction)
    settings = {
        "label_fraction": label_fraction, "seed": int(seed),
        "val_fraction": val_fraction, "test_fraction": test_fraction,
        "official_test": pool.x_test is not None,
        "class_names": list(pool.class_names), "value_range": list(pool.value_range),
    }
    arrays = dataclasses.asdict(split)
    dataset = Dataset(
        name=pool.name, source=pool.source, **arrays,
        class_names=pool.class_names, value_range=pool.value_range,
        digest=compute_digest(arrays, settings),
        label_fraction=label_fraction, seed=int(seed), test_source=test_source,
    )
    logger.info("loaded %s: %s", dataset.name, dataset.summary()["sizes"])
    return dataset
