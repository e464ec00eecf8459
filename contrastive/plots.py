"""Headless matplotlib figures for embeddings, confusion matrices, training and search.

Every function here builds a fresh :class:`matplotlib.figure.Figure` with its own
Agg canvas instead of going through ``pyplot``. ``pyplot`` keeps global state (a
current figure, a registry of open figures, an interactive backend); figures made
directly never enter that registry, are garbage-collected like any object and can be
drawn from worker threads, which matters in long hyperparameter searches that render
hundreds of plots. No display is needed.

The figures take plain NumPy arrays, dicts and lists, so this module knows nothing
about training or tracking; callers save them with :func:`save_png` or hand them to
whatever logger they use.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import math
import numbers
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

__all__ = [
    "EMBEDDING_METHODS",
    "LOG_SCALE_PARAMS",
    "confusion_matrix_figure",
    "embedding_comparison_figure",
    "embedding_figure",
    "history_figure",
    "save_png",
    "search_figure",
    "stratified_subsample_indices",
]

logger = logging.getLogger(__name__)

EMBEDDING_METHODS: tuple[str, ...] = ("tsne", "pca")
"""Projection methods accepted by :func:`embedding_figure`."""

LOG_SCALE_PARAMS: frozenset[str] = frozenset(
    {"temperature", "learning_rate", "lr", "weight_decay"}
)
"""Hyperparameters that :func:`search_figure` draws on a logarithmic x-axis."""

_METHOD_LABELS = {"tsne": "t-SNE", "pca": "PCA"}

# t-SNE's usual default; small sets get less (see _tsne_perplexity).
_MAX_PERPLEXITY = 30.0

# 250 early-exaggeration steps plus 250 refinement steps already give well-formed
# clusters on digit-sized data, at roughly a quarter of the time of 1,000 steps.
_TSNE_MAX_ITER = 500

# t-SNE's cost depends on the input width only through the neighbour search; a PCA to
# 50 dimensions first is the standard speed-up and removes pixel-level noise.
_TSNE_PCA_DIMS = 50

# See _project: one OpenMP thread is robust when cores are shared.
_TSNE_OPENMP_THREADS = 1

# The last t-SNE results, by the digest of their input and seed. A search draws the
# same test embeddings three times (the best trial's picture, then the champion's and
# its raw-versus-embeddings picture on the search run); t-SNE is the dearest part of
# a picture (about 0.45 s for 360 points), so each is computed once.
_TSNE_CACHE: collections.OrderedDict[tuple, np.ndarray] = collections.OrderedDict()
_TSNE_CACHE_SIZE = 8

# Readable sizes in inches: one square-ish panel, and per-panel sizes for grids.
_SINGLE_PANEL_SIZE = (7.0, 6.0)
_PANEL_WIDTH = 5.5
_PANEL_HEIGHT = 4.2
_MAX_GRID_COLUMNS = 3

# Cells get their value written in when the matrix is small enough to read.
_MAX_ANNOTATED_CLASSES = 20

_DEFAULT_DPI = 100

_HISTORY_TITLES = {
    "loss": "Total loss",
    "supcon_loss": "SupCon loss",
    "ntxent_loss": "NT-Xent loss",
    "ce_loss": "Cross-entropy loss",
    "accuracy": "Accuracy",
    "sparse_categorical_accuracy": "Accuracy",
    "learning_rate": "Learning rate",
}


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """Creates a pyplot-free figure attached to its own Agg canvas.

    Args:
        figsize: Width and height in inches.

    Returns:
        A figure using constrained layout, which keeps titles, colour bars and
        outside legends from overlapping.
    """
    figure = Figure(figsize=figsize, dpi=_DEFAULT_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _class_colours(num_classes: int) -> list[tuple[float, float, float, float]]:
    """Picks one distinguishable colour per class.

    Args:
        num_classes: Number of classes to colour.

    Returns:
        A list of RGBA tuples, one per class index.
    """
    if num_classes <= 10:
        palette = colormaps["tab10"]
        return [palette(index) for index in range(num_classes)]
    if num_classes <= 20:
        palette = colormaps["tab20"]
        return [palette(index) for index in range(num_classes)]

    # Beyond 20 classes no qualitative palette is enough; spread a perceptual
    # colour map evenly instead.
    palette = colormaps["turbo"]
    return [palette(value) for value in np.linspace(0.05, 0.95, num_classes)]


def _check_class_names(class_names: Sequence[str]) -> list[str]:
    """Validates display names for the class indices.

    Args:
        class_names: One name per class index.

    Returns:
        The names as strings.

    Raises:
        ValueError: If a bare string or an empty sequence is given.
    """
    if isinstance(class_names, str):
        raise ValueError(
            "class_names must be a sequence of names, one per class, received the "
            f"single string {class_names!r}. Wrap it in a list."
        )

    names = [str(name) for name in class_names]
    if not names:
        raise ValueError("class_names is empty; give one name per class index.")
    return names


def _check_class_labels(labels: Any, num_classes: int, num_points: int) -> np.ndarray:
    """Validates integer class labels for a set of points.

    Args:
        labels: Array-like of class indices.
        num_classes: Number of named classes; labels must lie in 0..num_classes-1.
        num_points: Number of points the labels belong to.

    Returns:
        The labels as a 1-D int64 array.

    Raises:
        ValueError: If the labels are not 1-D integers in range, or their count
            does not match the points.
    """
    array = np.asarray(labels)

    if array.ndim != 1:
        raise ValueError(
            f"labels must be a 1-D array of class indices, received shape "
            f"{array.shape}. For one-hot labels pass labels.argmax(axis=1)."
        )
    if len(array) != num_points:
        raise ValueError(
            f"labels and embeddings must have the same length, received "
            f"{len(array)} labels and {num_points} points."
        )

    integral = array.dtype.kind in "iu" or (
        array.dtype.kind == "f"
        and bool(np.all(np.isfinite(array)) and np.all(array == np.round(array)))
    )
    if not integral:
        raise ValueError(
            f"labels must be integer class indices, received dtype {array.dtype}. "
            "Encode class names as indices into class_names."
        )

    array = array.astype(np.int64)
    if array.min() < 0 or array.max() >= num_classes:
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1} for {num_classes} class names, "
            f"received values from {array.min()} to {array.max()}. Pass one class "
            "name per label index."
        )
    return array


def _check_points(values: Any, name: str) -> np.ndarray:
    """Validates a set of points and flattens each one to a vector.

    Args:
        values: Array-like of shape (n, ...); everything after the first axis is
            flattened, so images of shape (n, h, w, c) are accepted.
        name: Argument name used in error messages.

    Returns:
        A float64 array of shape (n, features).

    Raises:
        ValueError: If there are fewer than 2 points, no features, or non-finite
            values.
    """
    array = np.asarray(values)

    if array.ndim < 2:
        raise ValueError(
            f"{name} must have shape (n_points, n_features, ...), received shape "
            f"{array.shape}. Reshape a single feature to (n, 1)."
        )
    if array.shape[0] < 2:
        raise ValueError(
            f"{name} needs at least 2 points to project, received {array.shape[0]}."
        )

    matrix = array.reshape(array.shape[0], -1).astype(np.float64, copy=False)
    if matrix.shape[1] == 0:
        raise ValueError(f"{name} has no features, received shape {array.shape}.")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(
            f"{name} contains NaN or infinite values; the encoder probably diverged. "
            "Only finite points can be projected."
        )
    return matrix


def _check_method(method: str) -> str:
    """Validates a projection method name.

    Args:
        method: Requested method.

    Returns:
        The method, unchanged.

    Raises:
        ValueError: If the method is not one of ``EMBEDDING_METHODS``.
    """
    if method not in EMBEDDING_METHODS:
        raise ValueError(
            f"method must be one of {list(EMBEDDING_METHODS)}, received {method!r}."
        )
    return method


def stratified_subsample_indices(
    labels: Any, max_points: int, seed: int = 0
) -> np.ndarray:
    """Chooses at most ``max_points`` indices, keeping each class's share.

    Each class receives a number of points proportional to its frequency (largest
    remainders break ties) and at least one point while the budget allows, so rare
    classes do not vanish from the picture.

    Args:
        labels: 1-D array of class labels.
        max_points: Largest number of indices to return, >= 2.
        seed: Seed of the random choice within each class. Defaults to 0.

    Returns:
        Sorted int64 indices into ``labels``; all of them when there are at most
        ``max_points`` labels.

    Raises:
        ValueError: If ``max_points`` is not an integer >= 2 or labels are not 1-D.
    """
    if (
        isinstance(max_points, bool)
        or not isinstance(max_points, numbers.Integral)
        or max_points < 2
    ):
        raise ValueError(
            f"max_points must be an integer >= 2, received {max_points!r}."
        )

    label_array = np.asarray(labels)
    if label_array.ndim != 1:
        raise ValueError(
            f"labels must be 1-D, received shape {label_array.shape}."
        )

    total = len(label_array)
    if total <= max_points:
        return np.arange(total, dtype=np.int64)

    classes, inverse, counts = np.unique(
        label_array, return_inverse=True, return_counts=True
    )

    # Proportional quotas, floored, then topped up by largest remainder so the
    # total is exactly max_points.
    exact = counts * (max_points / total)
    quotas = np.floor(exact).astype(np.int64)
    if max_points >= len(classes):
        quotas = np.maximum(quotas, 1)
    shortfall = max_points - int(quotas.sum())
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    for class_index in order:
        if shortfall <= 0:
            break
        if quotas[class_index] < counts[class_index]:
            quotas[class_index] += 1
            shortfall -= 1

    # Guaranteeing every class one point can overshoot; trim the largest classes.
    while quotas.sum() > max_points:
        quotas[int(np.argmax(quotas))] -= 1

    rng = np.random.default_rng(seed)
    chosen = []
    for class_index in range(len(classes)):
        members = np.flatnonzero(inverse == class_index)
        chosen.append(rng.choice(members, size=int(quotas[class_index]), replace=False))

    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _tsne_perplexity(num_points: int) -> float:
    """Picks a t-SNE perplexity that suits the number of points.

    Perplexity is roughly the number of effective neighbours; scikit-learn requires
    it to be below the number of points, and a third of the points keeps enough
    neighbours outside each point's kernel for small sets (4 for 12 points).

    Args:
        num_points: Number of points to embed, >= 2.

    Returns:
        A perplexity in [1, 30] strictly below ``num_points``.
    """
    return float(min(_MAX_PERPLEXITY, max(1.0, (num_points - 1) / 3.0)))


def _project(
    points: np.ndarray, method: str, seed: int
) -> tuple[np.ndarray, tuple[str, str]]:
    """Projects points to two dimensions.

    Args:
        points: Float array of shape (n, features), n >= 2.
        method: ``"tsne"`` or ``"pca"``.
        seed: Random state of the projection.

    Returns:
        The (n, 2) projection and the labels of its two axes.
    """
    # A collapsed encoder maps every input to one point; both projections would
    # divide by zero variance, and the honest picture is a single dot.
    if not np.any(np.ptp(points, axis=0) > 0):
        logger.warning(
            "All %d points are identical (collapsed embeddings); drawing them at "
            "the origin.",
            points.shape[0],
        )
        collapsed = "all points identical"
        return np.zeros((points.shape[0], 2)), (
            f"{_METHOD_LABELS[method]} 1 ({collapsed})",
            f"{_METHOD_LABELS[method]} 2 ({collapsed})",
        )

    # Both methods need two input columns to produce two output columns.
    if points.shape[1] < 2:
        points = np.hstack([points, np.zeros((points.shape[0], 1))])

    if method == "pca":
        pca = PCA(n_components=2, random_state=seed)
        projected = pca.fit_transform(points)
        ratios = np.nan_to_num(pca.explained_variance_ratio_)
        axis_labels = (
            f"PC 1 ({ratios[0]:.1%} of variance)",
            f"PC 2 ({ratios[1]:.1%} of variance)",
        )
        return projected, axis_labels

    key = (hashlib.blake2b(np.ascontiguousarray(points).tobytes()).hexdigest(),
           points.shape, points.dtype.str, seed)
    if key in _TSNE_CACHE:
        _TSNE_CACHE.move_to_end(key)
        return _TSNE_CACHE[key], ("t-SNE 1", "t-SNE 2")

    if points.shape[1] > _TSNE_PCA_DIMS and points.shape[0] > _TSNE_PCA_DIMS:
        points = PCA(n_components=_TSNE_PCA_DIMS, random_state=seed).fit_transform(
            points
        )

    perplexity = _tsne_perplexity(points.shape[0])
    logger.debug("t-SNE of %d points, perplexity %.1f", points.shape[0], perplexity)

    # Barnes-Hut t-SNE synchronises its OpenMP threads on every iteration; when
    # cores are shared (parallel trials, TensorFlow thread pools) descheduled
    # threads made it 3-10x slower in measurements, while one thread stays at a
    # few seconds for 2,000 points. The limit applies only inside this block.
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        max_iter=_TSNE_MAX_ITER,
        init="pca",
        learning_rate="auto",
        random_state=seed,
    )
    with threadpool_limits(limits=_TSNE_OPENMP_THREADS, user_api="openmp"):
        projected = tsne.fit_transform(points)
    projected.flags.writeable = False  # shared by every later caller
    _TSNE_CACHE[key] = projected
    if len(_TSNE_CACHE) > _TSNE_CACHE_SIZE:
        _TSNE_CACHE.popitem(last=False)
    return projected, ("t-SNE 1", "t-SNE 2")


def _scatter_classes(
    axes: Axes,
    projected: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    axis_labels: tuple[str, str],
    title: str,
    *,
    legend: bool = True,
) -> None:
    """Draws a 2-D projection coloured by class.

    Args:
        axes: Axes to draw on.
        projected: (n, 2) coordinates.
        labels: Class index of each point.
        class_names: Display name of each class index.
        axis_labels: x and y axis labels.
        title: Panel title.
        legend: Whether to draw the class legend beside the panel. Defaults to
            True.
    """
    colours = _class_colours(len(class_names))

    # Dense clouds need small, translucent markers; a dozen points can be large.
    size = float(np.clip(9000.0 / len(projected), 8.0, 60.0))

    for class_index, name in enumerate(class_names):
        mask = labels == class_index
        if not np.any(mask):
            continue
        axes.scatter(
            projected[mask, 0],
            projected[mask, 1],
            s=size,
            color=colours[class_index],
            alpha=0.75,
            linewidths=0,
            label=name,
        )

    axes.set_title(title)
    axes.set_xlabel(axis_labels[0])
    axes.set_ylabel(axis_labels[1])
    axes.grid(True, alpha=0.25)

    if legend:
        axes.legend(
            title="Class",
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            markerscale=max(1.0, 40.0 / size) ** 0.5,
            frameon=False,
            fontsize="small" if len(class_names) > 12 else "medium",
        )


def _subsample_note(shown: int, total: int) -> str:
    """Describes how many points a panel shows.

    Args:
        shown: Points drawn.
        total: Points given.

    Returns:
        For example ``"2,000 of 5,000 points (stratified sample)"``.
    """
    if shown == total:
        return f"{total:,} points"
    return f"{shown:,} of {total:,} points (stratified sample)"


def embedding_figure(
    embeddings: Any,
    labels: Any,
    class_names: Sequence[str],
    *,
    method: str = "tsne",
    seed: int = 0,
    max_points: int = 2000,
    title: str | None = None,
) -> Figure:
    """Projects embeddings to 2-D and draws them coloured by class.

    Args:
        embeddings: Array of shape (n, d), n >= 2; trailing axes are flattened.
        labels: Class index of each embedding, shape (n,).
        class_names: Display name of each class index (the legend).
        method: ``"tsne"`` or ``"pca"``. Defaults to ``"tsne"``.
        seed: Seed of the subsample and the projection. Defaults to 0.
        max_points: Larger inputs are reduced to this many points by a seeded
            stratified sample, which keeps t-SNE to seconds. Defaults to 2000.
        title: Figure title. Defaults to None, which names the method and the
            number of points shown.

    Returns:
        A 7x6-inch figure with one scatter panel and a class legend.

    Raises:
        ValueError: For an unknown method, fewer than 2 points, non-finite values,
            labels that do not match the points or class names, or
            ``max_points`` < 2.
    """
    _check_method(method)
    names = _check_class_names(class_names)
    points = _check_points(embeddings, "embeddings")
    label_array = _check_class_labels(labels, len(names), len(points))

    keep = stratified_subsample_indices(label_array, max_points, seed=seed)
    projected, axis_labels = _project(points[keep], method, seed)

    if title is None:
        title = f"{_METHOD_LABELS[method]} of embeddings"
    figure = _new_figure(_SINGLE_PANEL_SIZE)
    axes = figure.add_subplot()
    _scatter_classes(
        axes,
        projected,
        label_array[keep],
        names,
        axis_labels,
        f"{title}\n{_subsample_note(len(keep), len(points))}",
    )
    return figure


def embedding_comparison_figure(
    raw_inputs: Any,
    embeddings: Any,
    labels: Any,
    class_names: Sequence[str],
    *,
    method: str = "tsne",
    seed: int = 0,
    max_points: int = 2000,
) -> Figure:
    """Draws raw inputs and learned embeddings side by side, projected the same way.

    Both panels use the same stratified subsample and the same projection settings,
    so the picture shows what the encoder changed about class structure.

    Args:
        raw_inputs: Inputs of shape (n, ...); each is flattened to a vector.
        embeddings: Learned embeddings of the same n samples, shape (n, d).
        labels: Class index of each sample, shape (n,).
        class_names: Display name of each class index.
        method: ``"tsne"`` or ``"pca"``. Defaults to ``"tsne"``.
        seed: Seed of the subsample and both projections. Defaults to 0.
        max_points: Larger inputs are reduced to this many points by a seeded
            stratified sample. Defaults to 2000.

    Returns:
        A 14x6-inch figure with the raw-input panel on the left, the embedding
        panel on the right and one shared class legend.

    Raises:
        ValueError: For an unknown method, fewer than 2 points, non-finite values,
            inputs and embeddings of different lengths, or labels that do not match.
    """
    _check_method(method)
    names = _check_class_names(class_names)
    raw = _check_points(raw_inputs, "raw_inputs")
    learned = _check_points(embeddings, "embeddings")

    if len(raw) != len(learned):
        raise ValueError(
            "raw_inputs and embeddings must describe the same samples, received "
            f"{len(raw)} raw inputs and {len(learned)} embeddings."
        )
    label_array = _check_class_labels(labels, len(names), len(learned))

    keep = stratified_subsample_indices(label_array, max_points, seed=seed)
    raw_projected, raw_axes = _project(raw[keep], method, seed)
    learned_projected, learned_axes = _project(learned[keep], method, seed)

    method_label = _METHOD_LABELS[method]
    figure = _new_figure((2 * _SINGLE_PANEL_SIZE[0], _SINGLE_PANEL_SIZE[1]))
    left, right = figure.subplots(1, 2)
    _scatter_classes(
        left,
        raw_projected,
        label_array[keep],
        names,
        raw_axes,
        f"Raw inputs ({raw.shape[1]:,} features)",
        legend=False,
    )
    _scatter_classes(
        right,
        learned_projected,
        label_array[keep],
        names,
        learned_axes,
        f"Learned embeddings ({learned.shape[1]:,} dimensions)",
    )
    figure.suptitle(
        f"{method_label}: raw inputs vs learned embeddings — "
        f"{_subsample_note(len(keep), len(learned))}"
    )
    return figure


def confusion_matrix_figure(
    matrix: Any, class_names: Sequence[str], *, normalize: bool = True
) -> Figure:
    """Draws a confusion matrix as an annotated heat map.

    Args:
        matrix: Square (K, K) array of counts; rows are true classes, columns
            predicted classes, as returned by ``evaluation.confusion``.
        class_names: Display name of each of the K classes.
        normalize: Whether to divide each row by its total, so cells show recall
            per true class and rare classes are as readable as common ones. Rows
            with no samples stay zero. Defaults to True.

    Returns:
        A figure sized to the number of classes (at least 7x6 inches) with a colour
        bar; cells are annotated when K <= 20.

    Raises:
        ValueError: If the matrix is not square, is empty, holds negative or
            non-finite values, or does not match the number of class names.
    """
    names = _check_class_names(class_names)
    counts = np.asarray(matrix, dtype=np.float64)

    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.size == 0:
        raise ValueError(
            f"matrix must be a non-empty square (K, K) array, received shape "
            f"{counts.shape}."
        )
    if counts.shape[0] != len(names):
        raise ValueError(
            f"matrix has {counts.shape[0]} classes but {len(names)} class names "
            "were given; pass one name per row."
        )
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(
            "matrix must hold finite, non-negative counts, received minimum "
            f"{np.nanmin(counts)}."
        )

    if normalize:
        row_totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(
            counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0
        )
        colour_label = "Fraction of true class"
        colour_max = 1.0
    else:
        values = counts
        colour_label = "Samples"
        colour_max = max(float(counts.max()), 1.0)

    num_classes = len(names)
    side = max(_SINGLE_PANEL_SIZE[1], 0.45 * num_classes + 2.5)
    figure = _new_figure((side + 1.0, side))
    axes = figure.add_subplot()

    image = axes.imshow(values, cmap="Blues", vmin=0.0, vmax=colour_max)
    colour_bar = figure.colorbar(image, ax=axes, shrink=0.85)
    colour_bar.set_label(colour_label)

    axes.set_xticks(range(num_classes), labels=names)
    axes.set_yticks(range(num_classes), labels=names)
    if max(len(name) for name in names) > 3 or num_classes > 12:
        axes.tick_params(axis="x", labelrotation=45)
        for tick in axes.get_xticklabels():
            tick.set_horizontalalignment("right")
            tick.set_rotation_mode("anchor")
    axes.set_xlabel("Predicted class")
    axes.set_ylabel("True class")

    total = int(round(counts.sum()))
    correct = int(round(np.trace(counts)))
    accuracy = correct / total if total else 0.0
    kind = "normalised by true class" if normalize else "counts"
    axes.set_title(
        f"Confusion matrix ({kind})\naccuracy {accuracy:.1%} on {total:,} samples"
    )

    if num_classes <= _MAX_ANNOTATED_CLASSES:
        _annotate_cells(axes, values, counts, normalize, colour_max)
    return figure


def _annotate_cells(
    axes: Axes,
    values: np.ndarray,
    counts: np.ndarray,
    normalize: bool,
    colour_max: float,
) -> None:
    """Writes each cell's value onto a confusion-matrix heat map.

    Args:
        axes: Axes holding the heat map.
        values: Plotted values (fractions or counts).
        counts: Raw counts, used to leave empty cells blank.
        normalize: Whether ``values`` are fractions.
        colour_max: Top of the colour scale, to choose a readable text colour.
    """
    num_classes = len(values)
    font_size = 10 if num_classes <= 10 else 7

    for row in range(num_classes):
        for column in range(num_classes):
            if counts[row, column] == 0:
                # Blank zeros keep the eye on the mistakes that do happen.
                continue
            value = values[row, column]
            text = f"{value:.2f}" if normalize else f"{int(round(value)):d}"
            dark_cell = value > 0.55 * colour_max
            axes.text(
                column,
                row,
                text,
                ha="center",
                va="center",
                fontsize=font_size,
                color="white" if dark_cell else "black",
            )


def _history_families(history: Mapping[str, Any]) -> dict[str, dict[str, list[float]]]:
    """Groups Keras history keys into metric families.

    Args:
        history: Mapping of metric name to per-epoch values.

    Returns:
        Family name -> {"train": values, "val": values}, with only the halves that
        have values; ``loss`` comes first, then families in first-seen order.
    """
    families: dict[str, dict[str, list[float]]] = {}

    for key, raw_values in history.items():
        values = np.asarray(raw_values, dtype=np.float64).ravel().tolist()
        if not values:
            continue
        name = str(key)
        split = "train"
        if name.startswith("val_"):
            name, split = name[len("val_") :], "val"
        families.setdefault(name, {})[split] = values

    if "loss" in families:
        families = {"loss": families.pop("loss"), **families}
    return families


def _pretty_metric(name: str) -> str:
    """Turns a metric key into a human-readable title.

    Args:
        name: Metric key such as ``"supcon_loss"``.

    Returns:
        A title such as ``"SupCon loss"``.
    """
    if name in _HISTORY_TITLES:
        return _HISTORY_TITLES[name]
    text = name.replace("_", " ")
    return text[:1].upper() + text[1:]


def _grid(figure: Figure, panels: int) -> list[Axes]:
    """Adds a grid of axes for ``panels`` panels and hides the unused cells.

    Args:
        figure: Figure to add the axes to.
        panels: Number of panels needed, >= 1.

    Returns:
        The axes to draw on, in reading order.
    """
    columns = min(panels, _MAX_GRID_COLUMNS)
    rows = math.ceil(panels / columns)
    axes_grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()

    for unused in axes_grid[panels:]:
        unused.set_visible(False)
    return list(axes_grid[:panels])


def _grid_size(panels: int) -> tuple[float, float]:
    """Chooses a figure size for a grid of panels.

    Args:
        panels: Number of panels, >= 1.

    Returns:
        Width and height in inches; a single panel gets the 7x6 default.
    """
    if panels == 1:
        return _SINGLE_PANEL_SIZE
    columns = min(panels, _MAX_GRID_COLUMNS)
    rows = math.ceil(panels / columns)
    return (_PANEL_WIDTH * columns, _PANEL_HEIGHT * rows + 0.5)


def _epoch_ticks(axes: Axes, epochs: int) -> None:
    """Puts whole-number epoch ticks on the x-axis.

    Args:
        axes: Axes whose x-axis counts epochs from 1.
        epochs: Longest series length in the panel.
    """
    if epochs <= 10:
        # The default locator would invent fractional epochs around short runs.
        axes.set_xticks(range(1, epochs + 1))
        axes.set_xlim(0.5, epochs + 0.5)
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def history_figure(history: Mapping[str, Sequence[float]]) -> Figure:
    """Draws training curves, one panel per metric family.

    ``loss`` and ``val_loss`` share a panel, as do ``supcon_loss`` and
    ``val_supcon_loss`` and so on; any subset of keys works, including validation
    keys without their training twin.

    Args:
        history: A Keras ``History.history``-style dict mapping metric names to
            per-epoch values. A ``keras.callbacks.History`` object is accepted too
            and its ``history`` attribute used. Empty series are skipped.

    Returns:
        A figure with one panel per family, at most three panels per row.

    Raises:
        TypeError: If the history is not a mapping.
        ValueError: If the history holds no values at all.
    """
    inner = getattr(history, "history", None)
    if not isinstance(history, Mapping) and isinstance(inner, Mapping):
        history = inner
    if not isinstance(history, Mapping):
        raise TypeError(
            "history must be a dict of metric name -> per-epoch values (Keras "
            f"History.history), received {type(history).__name__}."
        )

    families = _history_families(history)
    if not families:
        raise ValueError(
            "history holds no values to plot, received keys "
            f"{sorted(map(str, history))}; train for at least one epoch first."
        )

    figure = _new_figure(_grid_size(len(families)))
    for axes, (name, splits) in zip(_grid(figure, len(families)), families.items()):
        # Fixed colours per split keep train / validation recognisable across
        # panels even when a panel has only one of them.
        for split, style, colour in (("train", "-", "C0"), ("val", "--", "C1")):
            values = splits.get(split)
            if values is None:
                continue
            epochs = np.arange(1, len(values) + 1)

            # A single epoch draws no line, so short runs get visible markers.
            marker = "o" if len(values) <= 20 else None
            axes.plot(
                epochs,
                values,
                style,
                color=colour,
                marker=marker,
                markersize=4,
                linewidth=1.8,
                label="validation" if split == "val" else "train",
            )

        pretty = _pretty_metric(name)
        axes.set_title(pretty)
        axes.set_xlabel("Epoch")
        axes.set_ylabel(pretty)
        axes.grid(True, alpha=0.3)
        _epoch_ticks(axes, max(len(values) for values in splits.values()))
        axes.legend()

    figure.suptitle("Training history")
    return figure


def _lookup(trial: Mapping[str, Any], key: str, nested: tuple[str, ...]) -> Any:
    """Finds a value in a trial record, at top level or in a nested mapping.

    Args:
        trial: One trial record.
        key: Name to look up.
        nested: Names of nested mappings to search after the top level.

    Returns:
        The value, or None when absent.
    """
    if key in trial:
        return trial[key]
    for section in nested:
        inner = trial.get(section)
        if isinstance(inner, Mapping) and key in inner:
            return inner[key]
    return None


def _finite_number(value: Any) -> float | None:
    """Returns a value as a finite float, or None if it is not one.

    Args:
        value: Candidate value.

    Returns:
        The float, or None for missing, boolean, non-numeric or non-finite values.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _plottable_param(value: Any) -> bool:
    """Says whether a hyperparameter value can be placed on an axis.

    Args:
        value: Candidate value.

    Returns:
        False for missing values and non-finite numbers, True for finite numbers,
        booleans and other categorical choices such as strings.
    """
    if value is None:
        return False
    if isinstance(value, (bool, np.bool_)):
        return True
    if isinstance(value, numbers.Real):
        return math.isfinite(float(value))
    return True


def search_figure(
    trials: Sequence[Mapping[str, Any]],
    *,
    objective: str = "val_accuracy",
    params: Sequence[str] = ("temperature", "loss_weight", "encoder_width"),
) -> Figure:
    """Plots the search objective of every trial against each hyperparameter.

    A trial record is a mapping; the objective and each parameter are looked up at
    its top level first, then inside nested ``"metrics"`` / ``"hyperparameters"``
    (or ``"params"``) mappings. Trials whose objective or parameter is missing,
    None or non-finite are left out of that panel. The best trial (highest
    objective, or lowest when the objective name contains "loss") is starred.

    Args:
        trials: Trial records, one per trial.
        objective: Key of the value to plot on the y-axis. Defaults to
            ``"val_accuracy"``.
        params: Hyperparameters to plot, one panel each when present in at least
            one trial with an objective. ``LOG_SCALE_PARAMS`` (temperature,
            learning rate) get a log x-axis. Defaults to ``("temperature",
            "loss_weight", "encoder_width")``.

    Returns:
        A figure with one panel per present parameter.

    Raises:
        TypeError: If ``trials`` is not a list of mappings.
        ValueError: If there are no trials, or no trial has both the objective
            and any of the parameters.
    """
    if isinstance(params, str):
        params = (params,)
    if isinstance(trials, (Mapping, str)) or not isinstance(trials, Sequence):
        raise TypeError(
            "trials must be a list of trial dicts, received "
            f"{type(trials).__name__}. Wrap a single trial in a list."
        )
    if not trials:
        raise ValueError("trials is empty; run at least one trial before plotting.")
    for position, trial in enumerate(trials):
        if not isinstance(trial, Mapping):
            raise TypeError(
                f"trials[{position}] must be a dict, received "
                f"{type(trial).__name__}."
            )

    minimise = "loss" in objective
    panels: list[tuple[str, list[Any], list[float]]] = []
    for param in params:
        xs: list[Any] = []
        ys: list[float] = []
        for trial in trials:
            score = _finite_number(_lookup(trial, objective, ("metrics",)))
            value = _lookup(trial, param, ("hyperparameters", "params"))
            if score is None or not _plottable_param(value):
                continue
            xs.append(value)
            ys.append(score)
        if xs:
            panels.append((param, xs, ys))
        else:
            logger.debug(
                "No trial has both %s and %s; panel skipped.", objective, param
            )

    if not panels:
        raise ValueError(
            f"no trial has both the objective {objective!r} and any of the params "
            f"{list(params)}; first trial keys are {sorted(map(str, trials[0]))}. "
            "Check the objective name and the trial records."
        )

    figure = _new_figure(_grid_size(len(panels)))
    for axes, (param, xs, ys) in zip(_grid(figure, len(panels)), panels):
        _draw_search_panel(axes, param, xs, ys, objective, minimise)

    figure.suptitle(
        f"Hyperparameter search: {objective} over {len(trials):,} trials"
    )
    return figure


def _draw_search_panel(
    axes: Axes,
    param: str,
    xs: list[Any],
    ys: list[float],
    objective: str,
    minimise: bool,
) -> None:
    """Draws one objective-against-hyperparameter panel.

    Args:
        axes: Axes to draw on.
        param: Hyperparameter name.
        xs: Hyperparameter value of each plotted trial.
        ys: Objective value of each plotted trial.
        objective: Objective name for the y label.
        minimise: Whether lower objective values are better.
    """
    numeric = all(
        isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
        for value in xs
    )

    if numeric:
        positions = np.asarray(xs, dtype=np.float64)
    else:
        # Categorical choices (activations, booleans, ...) get one slot per value.
        categories = sorted({str(value) for value in xs})
        slot = {category: index for index, category in enumerate(categories)}
        positions = np.asarray([slot[str(value)] for value in xs], dtype=np.float64)
        axes.set_xticks(range(len(categories)), labels=categories)

    scores = np.asarray(ys)
    best = int(np.argmin(scores) if minimise else np.argmax(scores))

    axes.scatter(
        positions, scores, s=45, alpha=0.75, color="tab:blue", label="trial"
    )
    axes.scatter(
        positions[best],
        scores[best],
        s=220,
        marker="*",
        color="tab:orange",
        edgecolors="black",
        linewidths=0.6,
        zorder=3,
        label=f"best ({scores[best]:.4g})",
    )

    if numeric and param in LOG_SCALE_PARAMS:
        if np.all(positions > 0):
            axes.set_xscale("log")
            if positions.max() < 10 * positions.min():
                # Within one decade every label is a minor tick, which the log
                # formatter writes as overlapping "2.2x10^-1"; plain numbers fit.
                plain = FuncFormatter(lambda value, _: f"{value:.3g}")
                axes.xaxis.set_major_formatter(plain)
                axes.xaxis.set_minor_formatter(plain)
        else:
            logger.warning(
                "%s has non-positive values; drawing it on a linear axis.", param
            )
    elif numeric:
        unique = np.unique(positions)
        # A handful of discrete choices (layer widths) read best as exact ticks.
        if len(unique) <= 8 and np.all(unique == np.round(unique)):
            axes.set_xticks(unique, labels=[f"{int(value):d}" for value in unique])

    # The best trial's large star must not be cut by the frame.
    axes.margins(0.12)
    axes.set_title(f"{objective} vs {param} ({len(xs)} trials)")
    axes.set_xlabel(param)
    axes.set_ylabel(objective)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize="small")


def save_png(
    figure: Figure, path: str | pathlib.Path, *, dpi: int = _DEFAULT_DPI
) -> pathlib.Path:
    """Writes a figure to a PNG file through the Agg renderer.

    Parent folders are created. The figure is not closed and no pyplot state is
    touched, so the caller can save it again or let it be garbage-collected.

    Args:
        figure: Figure to save.
        path: Destination file; a ``.png`` suffix is conventional but not added.
        dpi: Resolution in dots per inch. Defaults to 100, which makes a 7x6-inch
            figure 700x600 pixels.

    Returns:
        The path written, as a :class:`pathlib.Path`.

    Raises:
        TypeError: If ``figure`` is not a matplotlib Figure.
        ValueError: If ``dpi`` is not a positive number.
    """
    if not isinstance(figure, Figure):
        raise TypeError(
            "figure must be a matplotlib.figure.Figure, received "
            f"{type(figure).__name__}."
        )
    if isinstance(dpi, bool) or not isinstance(dpi, numbers.Real) or dpi <= 0:
        raise ValueError(f"dpi must be a positive number, received {dpi!r}.")

    destination = pathlib.Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)

    # Figures built elsewhere may carry an interactive or base canvas; Agg renders
    # PNG without a display.
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    figure.savefig(destination, format="png", dpi=dpi)
    return destination
