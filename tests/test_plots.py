"""Tests for contrastive.plots: every figure renders to a real PNG from real data."""

from __future__ import annotations

import pathlib
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from contrastive import plots
from contrastive.plots import (
    confusion_matrix_figure,
    embedding_comparison_figure,
    embedding_figure,
    history_figure,
    save_png,
    search_figure,
    stratified_subsample_indices,
)

DIGIT_NAMES = [str(digit) for digit in range(10)]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: pathlib.Path) -> tuple[int, int]:
    """Checks the PNG signature and reads width and height from the IHDR chunk."""
    header = path.read_bytes()[:24]

    assert header[:8] == PNG_SIGNATURE
    assert header[12:16] == b"IHDR"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def _points_drawn(axes) -> int:
    """Counts scatter points over every collection of one axes."""
    return sum(len(collection.get_offsets()) for collection in axes.collections)


@pytest.fixture(scope="module")
def digits():
    """The real 8x8 digits: 1,797 images of 64 pixels and their labels."""
    features, labels = load_digits(return_X_y=True)
    return features, labels


@pytest.fixture(scope="module")
def digits_5000(digits):
    """Digits stacked with small pixel noise to 5,000 samples."""
    features, labels = digits
    rng = np.random.default_rng(0)
    copies = int(np.ceil(5000 / len(features)))
    stacked = np.concatenate(
        [features + rng.normal(scale=0.3, size=features.shape) for _ in range(copies)]
    )
    return stacked[:5000], np.tile(labels, copies)[:5000]


def test_tsne_figure_on_12_points_renders_png(digits, tmp_path):
    features, labels = digits

    figure = embedding_figure(features[:12], labels[:12], DIGIT_NAMES, method="tsne")
    path = save_png(figure, tmp_path / "tsne12.png")

    assert _png_size(path) == (700, 600)
    assert _points_drawn(figure.axes[0]) == 12


def test_tsne_figure_subsamples_5000_points_to_max_points(digits_5000, tmp_path):
    features, labels = digits_5000

    figure = embedding_figure(features, labels, DIGIT_NAMES, method="tsne", seed=0)
    path = save_png(figure, tmp_path / "tsne5000.png")

    assert _points_drawn(figure.axes[0]) == 2000
    assert "2,000 of 5,000 points" in figure.axes[0].get_title()
    assert _png_size(path) == (700, 600)


def test_embedding_figure_legend_names_every_class(digits):
    features, labels = digits

    figure = embedding_figure(features, labels, DIGIT_NAMES, method="pca")

    legend = figure.axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == DIGIT_NAMES


def test_pca_figure_labels_axes_with_explained_variance(digits, tmp_path):
    features, labels = digits
    ratios = PCA(n_components=2).fit(features).explained_variance_ratio_

    figure = embedding_figure(
        features, labels, DIGIT_NAMES, method="pca", title="PCA of pixels"
    )
    path = save_png(figure, tmp_path / "pca.png")

    axes = figure.axes[0]
    assert axes.get_xlabel() == f"PC 1 ({ratios[0]:.1%} of variance)"
    assert axes.get_title().startswith("PCA of pixels")
    assert min(_png_size(path)) > 300


def test_embedding_figure_rejects_unknown_method(digits):
    features, labels = digits

    with pytest.raises(ValueError, match=r"method must be one of \['tsne', 'pca'\]"):
        embedding_figure(features, labels, DIGIT_NAMES, method="umap")


def test_embedding_figure_rejects_single_point(digits):
    features, labels = digits

    with pytest.raises(ValueError, match=r"at least 2 points.*received 1"):
        embedding_figure(features[:1], labels[:1], DIGIT_NAMES)


def test_embedding_figure_rejects_label_without_class_name(digits):
    features, labels = digits

    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.4 for 5 class"):
        embedding_figure(features, labels, DIGIT_NAMES[:5], method="pca")


def test_embedding_figure_draws_collapsed_embeddings_without_error(tmp_path):
    collapsed = np.ones((20, 16))
    labels = np.arange(20) % 2

    figure = embedding_figure(collapsed, labels, ["a", "b"], method="tsne")

    assert "all points identical" in figure.axes[0].get_xlabel()
    assert _png_size(save_png(figure, tmp_path / "collapsed.png")) == (700, 600)


def test_stratified_subsample_keeps_class_proportions(digits_5000):
    _, labels = digits_5000

    keep = stratified_subsample_indices(labels, 2000, seed=0)

    assert len(keep) == len(np.unique(keep)) == 2000
    expected = np.bincount(labels) * 2000 / len(labels)
    assert np.all(np.abs(np.bincount(labels[keep]) - expected) <= 1)


def test_stratified_subsample_is_reproducible_per_seed(digits_5000):
    _, labels = digits_5000

    first = stratified_subsample_indices(labels, 500, seed=3)
    again = stratified_subsample_indices(labels, 500, seed=3)
    other = stratified_subsample_indices(labels, 500, seed=4)

    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_stratified_subsample_keeps_rare_class():
    labels = np.array([0] * 990 + [1] * 10)

    keep = stratified_subsample_indices(labels, 50, seed=0)

    assert np.count_nonzero(labels[keep] == 1) >= 1


def test_comparison_figure_shows_same_subsample_in_both_panels(digits, tmp_path):
    features, labels = digits
    images = features.reshape(-1, 8, 8)
    embeddings = PCA(n_components=16, random_state=0).fit_transform(features)

    figure = embedding_comparison_figure(
        images, embeddings, labels, DIGIT_NAMES, method="tsne", max_points=400
    )
    path = save_png(figure, tmp_path / "comparison.png")

    raw_axes, learned_axes = figure.axes[:2]
    assert raw_axes.get_title() == "Raw inputs (64 features)"
    assert learned_axes.get_title() == "Learned embeddings (16 dimensions)"
    raw_counts = [len(c.get_offsets()) for c in raw_axes.collections]
    learned_counts = [len(c.get_offsets()) for c in learned_axes.collections]
    assert raw_counts == learned_counts
    assert sum(raw_counts) == 400
    assert _png_size(path) == (1400, 600)


def test_comparison_figure_rejects_different_sample_counts(digits):
    features, labels = digits

    with pytest.raises(ValueError, match=r"1797 raw inputs and 100 embeddings"):
        embedding_comparison_figure(features, features[:100], labels, DIGIT_NAMES)


def test_confusion_figure_normalises_rows_to_recall(tmp_path):
    matrix = np.array([[2, 1, 0], [0, 3, 1], [0, 0, 0]])

    figure = confusion_matrix_figure(matrix, ["cat", "dog", "owl"])
    path = save_png(figure, tmp_path / "confusion.png")

    shown = np.asarray(figure.axes[0].images[0].get_array())
    np.testing.assert_allclose(shown[0], [2 / 3, 1 / 3, 0.0])
    # A class with no samples stays at zero instead of dividing by zero.
    np.testing.assert_array_equal(shown[2], [0.0, 0.0, 0.0])
    assert "0.67" in [text.get_text() for text in figure.axes[0].texts]
    assert min(_png_size(path)) > 300


def test_confusion_figure_shows_counts_when_not_normalised(tmp_path):
    matrix = np.array([[5, 1], [2, 7]])

    figure = confusion_matrix_figure(matrix, ["no", "yes"], normalize=False)

    texts = sorted(text.get_text() for text in figure.axes[0].texts)
    assert texts == ["1", "2", "5", "7"]
    assert "accuracy 80.0% on 15 samples" in figure.axes[0].get_title()


def test_confusion_figure_rejects_names_not_matching_matrix():
    with pytest.raises(ValueError, match=r"matrix has 2 classes but 3 class names"):
        confusion_matrix_figure(np.eye(2), ["a", "b", "c"])


def test_confusion_figure_rejects_non_square_matrix():
    with pytest.raises(ValueError, match=r"square \(K, K\) array.*\(2, 3\)"):
        confusion_matrix_figure(np.zeros((2, 3)), ["a", "b"])


def test_history_figure_draws_one_panel_per_family_from_partial_keys(tmp_path):
    history = {
        "loss": [1.2, 0.9, 0.7],
        "val_loss": [1.3, 1.0, 0.8],
        "supcon_loss": [4.1, 3.6, 3.3],
        "val_ce_loss": [0.9, 0.6, 0.5],
    }

    figure = history_figure(history)
    path = save_png(figure, tmp_path / "history.png")

    visible = [axes for axes in figure.axes if axes.get_visible()]
    assert [axes.get_title() for axes in visible] == [
        "Total loss",
        "SupCon loss",
        "Cross-entropy loss",
    ]
    assert [len(axes.get_lines()) for axes in visible] == [2, 1, 1]
    assert min(_png_size(path)) > 300


def test_history_figure_puts_loss_first_and_plots_values_by_epoch():
    history = {"val_accuracy": [0.5, 0.75], "loss": [2.0, 1.0]}

    figure = history_figure(history)

    loss_axes = figure.axes[0]
    x_values, y_values = loss_axes.get_lines()[0].get_data()
    assert loss_axes.get_title() == "Total loss"
    np.testing.assert_array_equal(x_values, [1, 2])
    np.testing.assert_array_equal(y_values, [2.0, 1.0])


def test_history_figure_rejects_history_without_values():
    with pytest.raises(ValueError, match=r"no values to plot.*\['loss'\]"):
        history_figure({"loss": []})


def _trials() -> list[dict]:
    """Five search trials with gaps, as a tuner summary would hold them."""
    return [
        {"temperature": 0.05, "encoder_width": 64, "val_accuracy": 0.81},
        {"temperature": 0.1, "encoder_width": 128, "val_accuracy": 0.93},
        {"temperature": 0.5, "val_accuracy": 0.88},
        {"temperature": 1.0, "encoder_width": 256, "val_accuracy": None},
        {"encoder_width": 128, "val_accuracy": 0.9},
    ]


def test_search_figure_skips_trials_missing_values(tmp_path):
    figure = search_figure(_trials())
    path = save_png(figure, tmp_path / "search.png")

    visible = [axes for axes in figure.axes if axes.get_visible()]
    # loss_weight is in no trial, so only two panels are drawn.
    assert [axes.get_xlabel() for axes in visible] == ["temperature", "encoder_width"]
    temperature_points = visible[0].collections[0].get_offsets()
    np.testing.assert_allclose(temperature_points[:, 0], [0.05, 0.1, 0.5])
    np.testing.assert_array_equal(
        visible[1].collections[0].get_offsets()[:, 0], [64, 128, 128]
    )
    assert min(_png_size(path)) > 300


def test_search_figure_uses_log_axis_for_temperature_only():
    figure = search_figure(_trials())

    temperature_axes, width_axes = figure.axes[:2]
    assert temperature_axes.get_xscale() == "log"
    assert width_axes.get_xscale() == "linear"


def test_search_figure_stars_best_trial():
    figure = search_figure(_trials(), params=("temperature",))

    best = figure.axes[0].collections[1].get_offsets()
    np.testing.assert_allclose(best, [[0.1, 0.93]])


def test_search_figure_reads_nested_hyperparameters_and_metrics():
    trials = [
        {"hyperparameters": {"temperature": 0.2}, "metrics": {"val_loss": 0.4}},
        {"hyperparameters": {"temperature": 0.4}, "metrics": {"val_loss": 0.3}},
    ]

    figure = search_figure(trials, objective="val_loss", params=["temperature"])

    # Lower is better for a loss objective.
    best = figure.axes[0].collections[1].get_offsets()
    np.testing.assert_allclose(best, [[0.4, 0.3]])


def test_search_figure_rejects_single_trial_dict_with_wrap_hint():
    with pytest.raises(TypeError, match=r"list of trial dicts.*Wrap a single"):
        search_figure({"temperature": 0.1, "val_accuracy": 0.9})


def test_history_figure_rejects_non_mapping():
    with pytest.raises(TypeError, match=r"dict of metric name.*received list"):
        history_figure([1.0, 0.5])


def test_search_figure_rejects_trials_without_objective():
    trials = [{"temperature": 0.1, "accuracy": 0.9}]

    with pytest.raises(ValueError, match=r"no trial has both the objective"):
        search_figure(trials)


def test_save_png_creates_parent_folders_and_returns_path(tmp_path):
    figure = history_figure({"loss": [1.0, 0.5]})
    target = tmp_path / "nested" / "deeper" / "history.png"

    written = save_png(figure, str(target))

    assert written == target
    assert _png_size(written) == (700, 600)


def test_save_png_honours_dpi(tmp_path):
    figure = history_figure({"loss": [1.0, 0.5]})

    path = save_png(figure, tmp_path / "small.png", dpi=50)

    assert _png_size(path) == (350, 300)


def test_save_png_rejects_non_figure(tmp_path):
    with pytest.raises(TypeError, match=r"matplotlib\.figure\.Figure.*dict"):
        save_png({"loss": [1.0]}, tmp_path / "x.png")


def test_figures_render_concurrently_from_threads(tmp_path):
    def render(index: int) -> tuple[int, int]:
        history = {"loss": list(np.linspace(2.0, 0.5, 10) + index)}
        return _png_size(save_png(history_figure(history), tmp_path / f"{index}.png"))

    with ThreadPoolExecutor(max_workers=4) as pool:
        sizes = list(pool.map(render, range(8)))

    assert sizes == [(700, 600)] * 8


def test_figures_stay_out_of_pyplot_registry():
    import matplotlib.pyplot as pyplot

    before = pyplot.get_fignums()
    figure = history_figure({"loss": [1.0, 0.5]})

    assert isinstance(figure, Figure)
    assert pyplot.get_fignums() == before


def test_plots_module_imports_neither_tensorflow_nor_keras():
    code = (
        "import sys, contrastive.plots; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'matplotlib.pyplot') "
        "if m in sys.modules))"
    )

    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=pathlib.Path(__file__).resolve().parents[1],
    )

    assert result.stdout.strip() == "[]"
    assert "save_png" in plots.__all__


def test_tsne_of_the_same_points_is_computed_once_per_input_and_seed(digits):
    from contrastive.plots import _project

    points = np.asarray(digits[0][:60], dtype=np.float32).reshape(60, -1)
    first, _ = _project(points, "tsne", seed=3)
    again, _ = _project(points.copy(), "tsne", seed=3)
    assert again is first  # the cached result, for an equal copy of the input
    assert not first.flags.writeable  # no caller can change what others receive

    moved = points.copy()
    moved[0, 0] += 1.0
    assert _project(moved, "tsne", seed=3)[0] is not first
    other_seed, _ = _project(points, "tsne", seed=4)
    assert other_seed is not first and other_seed.shape == first.shape
