"""Leak-free, seeded splits of a sample pool into labelled/unlabelled/val/test.

Why this is its own module: the split is where leakage happens. Samples are
identified by a hash of their content, exact duplicates are dropped before any
split, and the pool is put into hash order first, so a sample's split depends only
on the set of contents and the seed, never on file names or listing order.
"""

import dataclasses
import hashlib
import logging
import math
import numbers

import numpy as np

from contrastive.data.errors import DataError
from contrastive.data.pool import SamplePool

__all__ = ["Split", "check_fractions", "content_hashes", "split_pool"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Split:
    """The arrays of the four sets a pool is split into.

    Attributes:
        x_labeled: (n_l, H, W, C) labelled training samples.
        y_labeled: (n_l,) their labels.
        x_unlabeled: (n_u, H, W, C) training samples without labels.
        x_val: (n_v, H, W, C) validation samples.
        y_val: (n_v,) their labels.
        x_test: (n_t, H, W, C) test samples.
        y_test: (n_t,) their labels.
    """

    x_labeled: np.ndarray
    y_labeled: np.ndarray
    x_unlabeled: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def check_fractions(label_fraction: float, val_fraction: float,
                    test_fraction: float) -> None:
    """Checks the split fractions.

    Args:
        label_fraction: share of each training class that keeps its labels, in (0, 1].
        val_fraction: share of the samples used for validation, in (0, 1).
        test_fraction: share of the samples used for testing, in (0, 1).

    Raises:
        DataError: if a fraction is not a number in its range, or val + test >= 1.
    """
    for name, value, upper_ok in (("label_fraction", label_fraction, True),
                                  ("val_fraction", val_fraction, False),
                                  ("test_fraction", test_fraction, False)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise DataError(f"{name} must be a number; received {name}={value!r}.")
        inside = 0 < value <= 1 if upper_ok else 0 < value < 1
        if not inside:
            interval = "(0, 1]" if upper_ok else "(0, 1)"
            raise DataError(
                f"{name} must be in {interval}; received {name}={value}. "
                f"Pass a value in {interval}, e.g. {name}=0.1."
            )
    if val_fraction + test_fraction >= 1:
        raise DataError(
            "val_fraction + test_fraction must be below 1 so that training samples "
            f"remain; received val_fraction={val_fraction}, "
            f"test_fraction={test_fraction}. Lower one of them."
        )


def content_hashes(x: np.ndarray) -> np.ndarray:
    """Hashes each sample's pixel content.

    Args:
        x: (n, ...) array of samples.

    Returns:
        (n,) array of hex sha256 digests (str), equal for exactly equal samples.
    """
    flat = np.ascontiguousarray(x).reshape(len(x), -1)
    return np.array([hashlib.sha256(row.tobytes()).hexdigest() for row in flat],
                    dtype=object)


def _dedupe_test(x: np.ndarray, y: np.ndarray, where: str):
    hashes = content_hashes(x)
    _, first = np.unique(hashes, return_index=True)
    keep = np.sort(first)
    if len(keep) < len(x):
        logger.info("dropped %d exact duplicate samples from the test set of %s",
                    len(x) - len(keep), where)
    return x[keep], y[keep], set(hashes[keep])


def _dedupe_pool(x: np.ndarray, y: np.ndarray, test_hashes: set, where: str):
    """Keeps one copy per content hash, in hash order; returns x, y, hashes."""
    hashes = content_hashes(x)
    groups: dict[str, list[int]] = {}
    for i, h in enumerate(hashes):
        groups.setdefault(h, []).append(i)

    keep, conflicting, in_test = [], 0, 0
    for h in sorted(groups):
        members = groups[h]
        if h in test_hashes:
            in_test += len(members)
            continue
        labels = {int(y[i]) for i in members if y[i] >= 0}
        if len(labels) > 1:
            # The same image under two labels cannot be trusted in either split.
            conflicting += len(members)
            continue
        labelled = [i for i in members if y[i] >= 0]
        keep.append(labelled[0] if labelled else members[0])

    duplicates = len(x) - len(keep) - conflicting - in_test
    if duplicates:
        logger.info("dropped %d exact duplicate samples of %s before splitting",
                    duplicates, where)
    if in_test:
        logger.info("dropped %d samples of %s that also appear in the test set",
                    in_test, where)
    if conflicting:
        logger.warning("dropped %d samples of %s whose identical copies carry "
                       "different labels", conflicting, where)
    keep = np.array(keep, dtype=np.int64)
    return x[keep], y[keep], hashes[keep]


def _check_class_sizes(y: np.ndarray, class_names: tuple[str, ...], needed: int,
                       where: str) -> None:
    counts = np.bincount(y, minlength=len(class_names))
    small = [(class_names[c], int(counts[c])) for c in range(len(class_names))
             if counts[c] < needed]
    if small:
        listed = ", ".join(f"{name!r} has {count}" for name, count in small)
        raise DataError(
            f"every class of {where} needs at least {needed} distinct labelled "
            f"samples (one each for the labelled training set, validation"
            f"{' and test' if needed > 2 else ''}); {listed}. Add samples to "
            "those classes or remove them."
        )


def _stratified(indices: np.ndarray, y: np.ndarray, size: float, seed: int,
                what: str, where: str, class_names: tuple[str, ...]):
    # Imported here: scikit-learn is slow to import and `--help` must stay fast.
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(indices, test_size=size, stratify=y,
                                random_state=seed, shuffle=True)
    except ValueError as err:
        counts = np.bincount(y)
        smallest = int(np.argmin(np.where(counts > 0, counts, counts.max() + 1)))
        raise DataError(
            f"cannot carve a stratified {what} split of {size:.3g} from "
            f"{len(indices)} samples of {where} ({int((counts > 0).sum())} "
            f"classes): {err}. For this fraction each class needs about "
            f"{math.ceil(1 / size)} samples; the smallest, {class_names[smallest]!r}, "
            f"has {int(counts[smallest])}. Add samples or raise the fraction."
        ) from err


def _take_labels(train: np.ndarray, y: np.ndarray, label_fraction: float,
                 seed: int, num_classes: int):
    """Picks max(1, round(f * n_class)) labelled samples per class."""
    rng = np.random.default_rng(seed)
    train = np.sort(train)
    labelled = []
    for c in range(num_classes):
        members = train[y[train] == c]
        count = max(1, round(label_fraction * len(members)))
        labelled.append(rng.permutation(members)[:count])
    labelled = np.sort(np.concatenate(labelled))
    rest = np.setdiff1d(train, labelled, assume_unique=True)
    return labelled, rest


def split_pool(pool: SamplePool, *, label_fraction: float, seed: int,
               val_fraction: float, test_fraction: float) -> Split:
    """Splits a pool into labelled, unlabelled, validation and test sets.

    Exact duplicates (same content hash) are dropped first, so no sample can end
    up in two sets. Without an official test split, `test_fraction` of the labelled
    samples is held out for testing, stratified by class; `val_fraction` (of the
    whole) is then carved from the rest, stratified. With an official test split,
    validation is carved from the pool and `test_fraction` is unused. Of the
    remaining training samples, `max(1, round(label_fraction * n_class))` per class
    keep their labels; the others, and the pool's unlabelled samples, form the
    unlabelled set.

    Args:
        pool: the samples to split.
        label_fraction: share of each training class that keeps labels, in (0, 1].
        seed: seed of the splits; the same seed gives identical sets.
        val_fraction: share for validation, in (0, 1).
        test_fraction: share for testing, in (0, 1); ignored with an official test.

    Returns:
        The split arrays.

    Raises:
        DataError: if a fraction is invalid or a class is too small to split.
    """
    check_fractions(label_fraction, val_fraction, test_fraction)
    where = pool.source

    test_hashes: set = set()
    x_test = y_test = None
    if pool.x_test is not None:
        x_test, y_test, test_hashes = _dedupe_test(pool.x_test, pool.y_test, where)
    x, y, _ = _dedupe_pool(pool.x, pool.y, test_hashes, where)

    labelled = np.flatnonzero(y >= 0)
    unlabelled = np.flatnonzero(y < 0)
    needed = 2 if x_test is not None else 3
    _check_class_sizes(y[labelled], pool.class_names, needed, where)

    if x_test is None:
        rest, test = _stratified(labelled, y[labelled], test_fraction, seed,
                                 "test", where, pool.class_names)
        test = np.sort(test)
        x_test, y_test = x[test], y[test]
        val_share = val_fraction / (1 - test_fraction)
    else:
        rest, val_share = labelled, val_fraction
    train, val = _stratified(rest, y[rest], val_share, seed, "validation", where,
                             pool.class_names)
    val = np.sort(val)

    missing = [pool.class_names[c] for c in range(pool.num_classes)
               if not (y[train] == c).any()]
    if missing:
        raise DataError(
            f"after the test and validation splits, classes {missing} of {where} "
            f"have no training sample (val_fraction={val_fraction}, "
            f"test_fraction={test_fraction}). Lower the fractions or add samples."
        )
    with_labels, without_labels = _take_labels(train, y, label_fraction, seed,
                                               pool.num_classes)
    unlabelled_all = np.sort(np.concatenate([without_labels, unlabelled]))

    return Split(
        x_labeled=x[with_labels],
        y_labeled=y[with_labels].astype(np.int32),
        x_unlabeled=x[unlabelled_all],
        x_val=x[val],
        y_val=y[val].astype(np.int32),
        x_test=x_test,
        y_test=y_test.astype(np.int32),
    )
