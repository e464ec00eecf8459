"""Every recorded artifact of a real 2-trial search exists and is well formed.

One search (``scripts/tune.py``, 2 trials of 2 epochs in the ``quick`` space) runs in a
subprocess into a temporary SQLite store; its artifacts are downloaded once. Each
picture must be a real PNG (signature, IHDR header, decodable by Pillow) of a readable
size, and each JSON report must parse with the keys the README documents.
"""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contrastive.evaluation import METRIC_NAMES
from contrastive.tuning import TIMING_METRICS

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_SIDE_PX = 300
MIN_BYTES = 5_000
DIGIT_NAMES = [str(digit) for digit in range(10)]

TRIAL_PNGS = (
    "plots/embeddings_tsne.png",
    "plots/embeddings_pca.png",
    "plots/confusion_matrix.png",
    "plots/training_curves.png",
)
PARENT_PNGS = (
    "plots/embeddings_tsne.png",
    "plots/embeddings_pca.png",
    "plots/confusion_matrix.png",
    "plots/raw_vs_embeddings_tsne.png",
    "plots/search.png",
)
REPORTS = ("evaluation/per_class_report.json", "evaluation/confusion_matrix.json")
TEST_METRICS = tuple(f"test_{name}" for name in METRIC_NAMES)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def search(quick_search):
    """The shared 2-trial search, with every run's artifacts downloaded."""
    tmp = quick_search["tmp"]
    client = quick_search["client"]
    parent = quick_search["parent"]
    # Trial runs carry Keras Tuner's trial id; other nested runs (a baseline) do not.
    trials = quick_search["trials"]
    folders = {}
    for run in [parent, *trials]:
        folder = tmp / "artifact-downloads" / run.info.run_id
        folder.mkdir(parents=True)
        client.download_artifacts(run.info.run_id, "", str(folder))
        folders[run.info.run_id] = folder
    summary = json.loads((folders[parent.info.run_id] / "dataset" / "summary.json")
                         .read_text())
    return {"parent": parent, "trials": trials, "folders": folders,
            "test_size": summary["sizes"]["test"], "summary": summary}


def _check_png(path: Path) -> tuple[int, int]:
    """Asserts a real, decodable PNG of a readable size; returns (width, height)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR", f"{path} has no IHDR chunk first"
    width, height = struct.unpack(">II", data[16:24])
    assert width > MIN_SIDE_PX and height > MIN_SIDE_PX, (path, width, height)
    assert len(data) > MIN_BYTES, (path, len(data))
    with Image.open(path) as image:
        image.verify()
    return width, height


def _trial_files(search, relative: str) -> list[Path]:
    return [search["folders"][run.info.run_id] / relative for run in search["trials"]]


def test_search_has_two_finished_trials_without_plot_errors(search):
    runs = [search["parent"], *search["trials"]]

    assert len(search["trials"]) == 2
    assert [run.info.status for run in runs] == ["FINISHED"] * 3
    assert not [run.info.run_id for run in runs if "plot_errors" in run.data.tags]


@pytest.mark.parametrize("relative", TRIAL_PNGS)
def test_each_trial_run_has_a_valid_png(search, relative):
    for path in _trial_files(search, relative):
        _check_png(path)


@pytest.mark.parametrize("relative", PARENT_PNGS)
def test_search_run_has_a_valid_png(search, relative):
    _check_png(search["folders"][search["parent"].info.run_id] / relative)


def test_raw_vs_embeddings_picture_is_two_panels_wide(search):
    width, height = _check_png(
        search["folders"][search["parent"].info.run_id]
        / "plots/raw_vs_embeddings_tsne.png"
    )

    assert width > 1.8 * height


@pytest.mark.parametrize("relative", REPORTS)
def test_every_run_has_each_json_report(search, relative):
    for run in [search["parent"], *search["trials"]]:
        assert (search["folders"][run.info.run_id] / relative).is_file(), (
            run.info.run_id, relative
        )


def test_per_class_report_lists_each_digit_with_its_scores(search):
    for path in [*_trial_files(search, REPORTS[0]),
                 search["folders"][search["parent"].info.run_id] / REPORTS[0]]:
        report = json.loads(path.read_text())

        assert set(report) == {*DIGIT_NAMES, "accuracy", "macro avg", "weighted avg"}
        for name in [*DIGIT_NAMES, "macro avg", "weighted avg"]:
            assert set(report[name]) == {"precision", "recall", "f1-score", "support"}
            assert 0.0 <= report[name]["f1-score"] <= 1.0
        assert sum(report[name]["support"] for name in DIGIT_NAMES) == (
            search["test_size"]
        )


def test_confusion_matrix_json_counts_every_test_image(search):
    for path in _trial_files(search, REPORTS[1]):
        confusion = json.loads(path.read_text())
        matrix = np.asarray(confusion["matrix"])

        assert confusion["class_names"] == DIGIT_NAMES
        assert matrix.shape == (10, 10)
        assert matrix.sum() == search["test_size"]
        assert matrix.sum(axis=1).tolist() == search["summary"]["class_counts"]["test"]


def test_trial_accuracy_matches_its_confusion_matrix(search):
    for run in search["trials"]:
        folder = search["folders"][run.info.run_id]
        matrix = np.asarray(json.loads((folder / REPORTS[1]).read_text())["matrix"])

        assert run.data.metrics["test_accuracy"] == pytest.approx(
            np.trace(matrix) / matrix.sum()
        )


def test_every_run_has_every_test_metric(search):
    for run in [search["parent"], *search["trials"]]:
        missing = [name for name in (*TEST_METRICS, "best_val_accuracy")
                   if name not in run.data.metrics]

        assert not missing, (run.info.run_id, missing)


def test_each_trial_records_what_its_parts_cost(search):
    for run in search["trials"]:
        metrics = run.data.metrics
        parts = [metrics[name] for name in TIMING_METRICS]
        duration = (run.info.end_time - run.info.start_time) / 1000

        assert all(part > 0 for part in parts), parts
        # The parts are disjoint spans of the run: together at most its duration.
        assert sum(parts) <= duration + 0.01, (parts, duration)


def test_each_trial_run_has_its_model_summary(search):
    for path in _trial_files(search, "model_summary.txt"):
        assert "Total params" in path.read_text()


def test_search_run_has_leaderboard_dataset_summary_and_search_space(search):
    folder = search["folders"][search["parent"].info.run_id]
    with open(folder / "leaderboard.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))

    assert {r.info.run_id for r in search["trials"]} <= {row["run_id"] for row in rows}
    assert (folder / "leaderboard.md").read_text().startswith("| trial |")
    assert search["summary"]["class_names"] == DIGIT_NAMES
    assert set(search["summary"]["sizes"]) == {"labeled", "unlabeled", "val", "test"}
    assert (folder / "search_space" / "quick.toml").is_file()
