"""The `Dataset` value every model, tuner and report in the platform consumes.

A `Dataset` is the finished, immutable result of loading: four disjoint sets
(labelled, unlabelled, validation, test) plus what is needed to describe and
reproduce them (class names, value range, a digest over content and settings).
Its arrays are made read-only so the digest keeps describing them.
"""

import dataclasses
import hashlib
import json

import numpy as np

from contrastive.data.errors import DataError

__all__ = ["Dataset", "compute_digest"]

_SPLITS = ("labeled", "unlabeled", "val", "test")


def compute_digest(arrays: dict[str, np.ndarray], settings: dict) -> str:
    """Hashes arrays and settings into one hex sha256 digest.

    Args:
        arrays: named arrays (content and split); hashed in key order with their
            shapes and dtypes.
        settings: JSON-serialisable settings (split fractions, seed, class names).

    Returns:
        The hex sha256 digest.
    """
    hasher = hashlib.sha256()
    hasher.update(json.dumps(settings, sort_keys=True).encode())
    for key in sorted(arrays):
        arr = np.ascontiguousarray(arrays[key])
        hasher.update(f"{key}:{arr.dtype.str}:{arr.shape}".encode())
        hasher.update(arr.tobytes())
    return hasher.hexdigest()


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded, split dataset.

    Datasets are compared by `digest`, not by `==` (arrays have no single truth
    value), so `eq` is off and instances hash by identity.

    Attributes:
        name: "digits", "mnist-5k", "fashion-mnist", ... or the folder/file stem.
        source: where it came from (absolute path, or e.g.
            "sklearn.datasets.load_digits").
        x_labeled: (n_l, H, W, C) float32 labelled training samples, in
            `value_range`.
        y_labeled: (n_l,) int32 labels in [0, num_classes).
        x_unlabeled: (n_u, H, W, C) float32 training samples without labels
            (may be empty: shape (0, H, W, C)).
        x_val: (n_v, H, W, C) float32 validation samples.
        y_val: (n_v,) int32 validation labels.
        x_test: (n_t, H, W, C) float32 test samples.
        y_test: (n_t,) int32 test labels.
        class_names: one name per class.
        value_range: (low, high) of pixel values: (0.0, 16.0) for digits,
            (0.0, 255.0) for 8-bit images.
        digest: hex sha256 over the content and the split settings.
        label_fraction: the label fraction used for the split, if known.
            Defaults to None.
        seed: the split seed, if known. Defaults to None.
        test_source: where the test split came from when it is not `source`.
            Defaults to None.
    """

    name: str
    source: str
    x_labeled: np.ndarray
    y_labeled: np.ndarray
    x_unlabeled: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    value_range: tuple[float, float]
    digest: str
    label_fraction: float | None = None
    seed: int | None = None
    test_source: str | None = None

    def __post_init__(self) -> None:
        """Checks shapes and dtypes and freezes the arrays.

        Raises:
            DataError: if the arrays are inconsistent with each other.
        """
        shape = self.x_labeled.shape[1:]
        for split in _SPLITS:
            x = getattr(self, f"x_{split}")
            if x.ndim != 4 or x.shape[1:] != shape or x.dtype != np.float32:
                raise DataError(
                    f"x_{split} of dataset {self.name!r} must be float32 with shape "
                    f"(N, *{shape}); received {x.dtype} {x.shape}."
                )
            if split == "unlabeled":
                continue
            y = getattr(self, f"y_{split}")
            if y.shape != (len(x),) or y.dtype != np.int32:
                raise DataError(
                    f"y_{split} of dataset {self.name!r} must be int32 with shape "
                    f"({len(x)},); received {y.dtype} {y.shape}."
                )
            if len(y) and (y.min() < 0 or y.max() >= len(self.class_names)):
                raise DataError(
                    f"y_{split} of dataset {self.name!r} must lie in "
                    f"[0, {len(self.class_names) - 1}]; received values in "
                    f"[{y.min()}, {y.max()}]."
                )
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "value_range",
                           (float(self.value_range[0]), float(self.value_range[1])))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray):
                value.flags.writeable = False

    def limited(self, max_samples: int, seed: int = 0) -> "Dataset":
        """A copy with at most ``max_samples`` samples in each split.

        For quick runs on large datasets (``scripts/tune.py --limit``). Labelled,
        validation and test splits keep their class proportions, with at least one
        sample per class where the split had one; the unlabelled pool is sampled
        uniformly. The digest changes with the limit, so a limited run is never
        mistaken for a full one.

        Args:
            max_samples: Most samples kept per split, at least the number of classes.
            seed: Seeds the choice. Defaults to 0.

        Raises:
            DataError: For a limit below the number of classes.
        """
        if max_samples < self.num_classes:
            raise DataError(
                f"max_samples must be at least the number of classes ("
                f"{self.num_classes}); received max_samples={max_samples}."
            )
        rng = np.random.default_rng(seed)
        arrays = {}
        for split in ("labeled", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            keep = _stratified_keep(y, max_samples, rng)
            arrays[f"x_{split}"], arrays[f"y_{split}"] = x[keep], y[keep]
        unlabeled = self.x_unlabeled
        if len(unlabeled) > max_samples:
            unlabeled = unlabeled[np.sort(rng.choice(len(unlabeled), max_samples, False))]
        arrays["x_unlabeled"] = unlabeled
        digest = compute_digest(
            arrays, {"limited_from": self.digest, "max_samples": max_samples, "seed": seed}
        )
        return dataclasses.replace(self, **arrays, digest=digest)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one sample."""
        return tuple(int(d) for d in self.x_labeled.shape[1:])

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def class_counts(self) -> dict[str, list[int]]:
        """Counts samples per class in each labelled set.

        Returns:
            {"labeled": [...], "val": [...], "test": [...]}, one count per class.
        """
        return {
            split: np.bincount(getattr(self, f"y_{split}"),
                               minlength=self.num_classes).astype(int).tolist()
            for split in ("labeled", "val", "test")
        }

    def summary(self) -> dict:
        """Describes the dataset in a JSON-ready dict.

        Returns:
            name, source, test_source, digest, sizes per split, class_names,
            class_counts, input_shape, value_range, label_fraction and seed.
        """
        return {
            "name": self.name,
            "source": self.source,
            "test_source": self.test_source,
            "digest": self.digest,
            "sizes": {split: int(len(getattr(self, f"x_{split}")))
                      for split in _SPLITS},
            "class_names": list(self.class_names),
            "class_counts": self.class_counts(),
            "input_shape": list(self.input_shape),
            "value_range": list(self.value_range),
            "label_fraction": self.label_fraction,
            "seed": self.seed,
        }


def _stratified_keep(labels: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``limit`` labels, in proportion to the classes, in order."""
    if len(labels) <= limit:
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts * limit / len(labels))).astype(int)
    keep = [
        rng.choice(np.flatnonzero(labels == c), min(q, n), replace=False)
        for c, q, n in zip(classes, quota, counts)
    ]
    return np.sort(np.concatenate(keep))
