"""scripts/tune.py on every kind of dataset a user points it at: short real searches."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
FASHION = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.slow


def short_search(tmp: Path, *args: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "tune.py"), "--search-space", "quick",
         "--max-trials", "1", "--epochs", "1", "--no-baseline", "--verbose", "0",
         "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--tuner-dir",
         str(tmp / "tuner"), *args],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("contrastive")
    parent = next(r for r in client.search_runs([experiment.experiment_id])
                  if "mlflow.parentRunId" not in r.data.tags)
    version = client.get_model_version_by_alias("contrastive-classifier", "champion")
    return {"parent": parent, "version": version, "client": client}


def check(result: dict, name: str, num_classes: int) -> None:
    parent = result["parent"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["dataset"] == name
    assert 0.0 <= parent.data.metrics["test_accuracy"] <= 1.0
    assert result["version"].tags["dataset"] == name
    report = result["client"].download_artifacts(
        parent.info.run_id, "evaluation/confusion_matrix.json"
    )
    import json

    matrix = json.loads(Path(report).read_text())["matrix"]
    assert len(matrix) == num_classes


def test_mnist_5k_scored_on_the_official_test_set(tmp_path):
    if not (SHARED / "mnist").is_dir():
        pytest.skip(f"official MNIST test set not found at {SHARED / 'mnist'}")
    result = short_search(tmp_path, "--dataset", "mnist-5k", "--test-path",
                          str(SHARED / "mnist"), "--limit", "800")
    check(result, "mnist-5k", 10)
    summary = result["client"].download_artifacts(
        result["parent"].info.run_id, "dataset/summary.json"
    )
    assert str(SHARED / "mnist") in Path(summary).read_text()


def test_mnist_5k_alone(tmp_path):
    if (SHARED / "mnist").is_dir():
        pytest.skip("covered by the search scored on the official test set")
    check(short_search(tmp_path, "--dataset", "mnist-5k", "--limit", "600"), "mnist-5k", 10)


def test_fashion_mnist_from_the_debian_package(tmp_path):
    if not FASHION.is_dir():
        pytest.skip(f"{FASHION} missing: apt-get install dataset-fashion-mnist")
    check(short_search(tmp_path, "--dataset", "fashion-mnist", "--limit", "600"),
          "fashion-mnist", 10)


def test_folder_of_class_subfolders_with_unlabeled_images(tmp_path):
    archive = SHARED / "cifar10-jpeg" / "test.tar.gz"
    if not archive.is_file():
        pytest.skip(f"CIFAR-10 JPEGs not found at {archive}")
    folder = tmp_path / "pets"
    wanted = {"cat": 30, "dog": 30, "horse": 30}
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if len(parts) != 3 or not member.isfile():
                continue
            kind = parts[1]
            if wanted.get(kind, 0) > 0:
                target = folder / kind / parts[2]
                wanted[kind] -= 1
            elif kind == "frog" and len(list((folder / "unlabeled").glob("*"))
                                        if (folder / "unlabeled").is_dir() else []) < 40:
                target = folder / "unlabeled" / parts[2]
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
            if not any(wanted.values()) and len(list((folder / "unlabeled").glob("*"))) >= 40:
                break
    result = short_search(tmp_path, "--dataset", str(folder), "--label-fraction", "0.5")
    check(result, "pets", 3)
    assert result["version"].tags["dataset"] == "pets"
    classifier_tags = result["client"].get_run(result["parent"].info.run_id).data.tags
    assert classifier_tags["dataset_source"] == str(folder)
