"""scripts/evaluate.py on the champion of a real short search, as a user runs it.

A 2-trial, 2-epoch search (``quick`` space) registers a champion in a temporary SQLite
store; ``evaluate.py`` then scores it in a subprocess with its defaults (the champion,
on the test split of the dataset it was trained on). The tests recompute the metrics
in-process from the same model and data, and check the run's links, its artifacts and
the refusals of bad input (each refusal is also tested in-process, case by case, in
tests/test_assessment.py).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
CHAMPION = "models:/contrastive-classifier@champion"
EVALUATION_EXPERIMENT = "contrastive-evaluation"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EVALUATION_PNGS = (
    "plots/embeddings_tsne.png",
    "plots/embeddings_pca.png",
    "plots/confusion_matrix.png",
    "plots/raw_vs_embeddings_tsne.png",
)

pytestmark = pytest.mark.slow


def _script(name: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_RUN_ID", None)
    command = [sys.executable, str(REPO / "scripts" / name),
               "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}", *args]
    return subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=600)


def _evaluation_runs(client) -> list:
    experiment = client.get_experiment_by_name(EVALUATION_EXPERIMENT)
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id])


@pytest.fixture(scope="module")
def evaluated(quick_search):
    """The shared short search, then evaluate.py with its defaults on the champion."""
    tmp = quick_search["tmp"]
    done = _script("evaluate.py", tmp)
    assert done.returncode == 0, done.stderr[-4000:]

    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("contrastive").experiment_id]
    )
    (search,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    (run,) = _evaluation_runs(client)
    return {"tmp": tmp, "out": done.stdout, "client": client, "run": run,
            "search": search}


def test_evaluate_prints_the_version_the_split_and_the_run(evaluated):
    out = evaluated["out"]

    assert ("Evaluated contrastive-classifier version 1 (models:/contrastive-classifier"
            "@champion) on the test split of digits (270 images)") in out
    assert f"Run {evaluated['run'].info.run_id} in experiment " in out
    assert "accuracy=" in out and "knn_accuracy=" in out


def test_run_metrics_equal_an_in_process_recomputation(evaluated):
    from contrastive.data import load_dataset
    from contrastive.reporting import evaluate_model
    from contrastive.serving import load_classifier

    classifier = load_classifier(
        CHAMPION, tracking_uri=f"sqlite:///{evaluated['tmp'] / 'mlflow.db'}"
    )
    dataset = load_dataset("digits", label_fraction=0.1, seed=0)
    expected = evaluate_model(
        classifier.model, dataset.x_test, dataset.y_test, dataset.x_labeled,
        dataset.y_labeled, class_names=dataset.class_names, k=5, seed=0,
    ).metrics
    logged = evaluated["run"].data.metrics

    assert set(expected) <= set(logged)
    for name, value in expected.items():
        assert logged[name] == pytest.approx(value, abs=1e-6), name


def test_run_metrics_equal_the_searchs_own_scores_of_the_champion(evaluated):
    champion = evaluated["search"].data.metrics
    logged = evaluated["run"].data.metrics
    names = [name for name in logged if name.startswith("test_")]

    assert len(names) == 9
    for name in names:
        assert logged[name] == pytest.approx(champion[name], abs=1e-6), name


def test_run_is_linked_to_the_champion_version_and_its_trial(evaluated):
    client = evaluated["client"]
    # get_run, not search_runs: only it returns the run's model inputs.
    run = client.get_run(evaluated["run"].info.run_id)
    tags = run.data.tags
    version = client.get_model_version_by_alias("contrastive-classifier", "champion")

    assert tags["model_uri"] == CHAMPION
    assert tags["model_name"] == "contrastive-classifier"
    assert tags["model_version"] == str(version.version)
    assert tags["model_alias"] == "champion"
    assert tags["model_source_run_id"] == evaluated["search"].data.tags["best_run_id"]
    assert tags["model_search_run_id"] == evaluated["search"].info.run_id
    assert tags["split_matches_training"] == "true"
    assert [m.model_id for m in run.inputs.model_inputs] == [tags["model_id"]]
    assert run.data.params["split"] == "test"
    assert run.info.status == "FINISHED"


@pytest.mark.parametrize("relative", EVALUATION_PNGS)
def test_run_has_a_valid_png(evaluated, relative, tmp_path):
    path = Path(evaluated["client"].download_artifacts(
        evaluated["run"].info.run_id, relative, str(tmp_path)))
    data = path.read_bytes()
    width, height = struct.unpack(">II", data[16:24])

    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    assert width > 300 and height > 300
    assert len(data) > 5_000


def test_run_has_reports_that_count_the_test_split(evaluated, tmp_path):
    client, run_id = evaluated["client"], evaluated["run"].info.run_id
    files = {}
    for name in ("per_class_report", "confusion_matrix", "summary"):
        files[name] = json.loads(Path(client.download_artifacts(
            run_id, f"evaluation/{name}.json", str(tmp_path))).read_text())

    assert np.asarray(files["confusion_matrix"]["matrix"]).sum() == 270
    assert files["per_class_report"]["weighted avg"]["support"] == 270
    assert files["summary"]["model"]["version"] == "1"
    assert files["summary"]["embedding_reference"] == (
        "the labelled training split of the dataset"
    )


@pytest.mark.parametrize(
    "case, message",
    [
        ("shape", "takes images of shape (8, 8, 1), but the test split of dataset "
                  "'mnist-5k' has images of shape (28, 28, 1)"),
        ("model", "models:/no-such-model@champion is not in the store"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_no_run(evaluated, case, message):
    args = {
        "shape": ["--dataset", "mnist-5k"],
        "model": ["--model-uri", "models:/no-such-model@champion"],
    }[case]
    done = _script("evaluate.py", evaluated["tmp"], *args)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]

    assert done.returncode == 2
    assert len(errors) == 1 and message in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert len(_evaluation_runs(evaluated["client"])) == 1


def test_help_imports_neither_tensorflow_nor_mlflow():
    code = (
        "import runpy, sys\n"
        "sys.argv = ['evaluate.py', '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(REPO / 'scripts' / 'evaluate.py')!r}, "
        "run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('tensorflow', 'keras', 'mlflow')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)

    assert done.returncode == 0, done.stderr
    assert "--model-uri" in done.stdout and "--input FILE_OR_FOLDER" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"
