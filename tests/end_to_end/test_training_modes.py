"""Two-stage training inside a tracked search, and the cross-entropy baseline's uplift."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 3
pytestmark = pytest.mark.slow

SPACE = """
[encoder_width]
kind = "fixed"
value = 8
[projection_dim]
kind = "fixed"
value = 16
[projection_depth]
kind = "fixed"
value = 1
[temperature]
kind = "fixed"
value = 0.2
[loss_weight]
kind = "fixed"
value = 0.5
[learning_rate]
kind = "fixed"
value = 0.003
[training_mode]
kind = "choice"
values = ["pretrain_probe", "pretrain_finetune"]
[pretrain_fraction]
kind = "fixed"
value = 0.34
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("modes")
    (tmp / "two_stage.toml").write_text(SPACE)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "tune.py"),
         "--search-space", str(tmp / "two_stage.toml"), "--max-trials", "2",
         "--epochs", str(EPOCHS), "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}",
         "--tuner-dir", str(tmp / "tuner"), "--verbose", "0"],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    # Each trial is scored on the model it trained, its best epoch's weights reloaded;
    # a two-stage trial's optimizer changed shape, which must not be warned about.
    assert "Skipping variable loading for optimizer" not in done.stderr
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("contrastive")
    return client, client.search_runs([experiment.experiment_id]), tmp


def trial_runs(runs):
    return [r for r in runs if "trial_id" in r.data.tags]


def test_both_modes_ran_as_finished_trials(store):
    _, runs, _ = store
    modes = sorted(r.data.params["training_mode"] for r in trial_runs(runs))
    assert modes == ["pretrain_finetune", "pretrain_probe"]
    assert all(r.info.status == "FINISHED" for r in trial_runs(runs))


def test_both_stages_share_one_metric_history(store):
    client, runs, _ = store
    for run in trial_runs(runs):
        for name in ("loss", "val_accuracy", "ce_loss"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, name)]
            assert steps == list(range(EPOCHS)), (name, steps)
        # Stage one is contrastive only (loss == contrastive_loss), stage two is
        # cross-entropy only (loss == ce_loss).
        loss = [m.value for m in client.get_metric_history(run.info.run_id, "loss")]
        contrastive = [m.value for m in
                       client.get_metric_history(run.info.run_id, "contrastive_loss")]
        ce = [m.value for m in client.get_metric_history(run.info.run_id, "ce_loss")]
        assert loss[0] == pytest.approx(contrastive[0], rel=1e-5)
        assert loss[-1] == pytest.approx(ce[-1], rel=1e-5)


def test_baseline_is_cross_entropy_with_the_champions_encoder(store):
    _, runs, _ = store
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    baseline = next(r for r in runs if r.data.tags.get("baseline") == "cross-entropy")
    champion = next(r for r in runs if r.info.run_id == parent.data.tags["best_run_id"])
    assert baseline.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert baseline.data.params["loss_weight"] == "0.0"
    assert baseline.data.params["training_mode"] == "joint"
    assert baseline.data.params["encoder_width"] == champion.data.params["encoder_width"]
    assert baseline.info.status == "FINISHED"
    metrics = parent.data.metrics
    assert metrics["baseline_test_accuracy"] == pytest.approx(
        baseline.data.metrics["test_accuracy"]
    )
    assert metrics["uplift_test_accuracy"] == pytest.approx(
        metrics["test_accuracy"] - metrics["baseline_test_accuracy"], abs=1e-9
    )


# A fresh model's optimizer has another shape than a probe stage's: Keras says so.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_trials_are_scored_on_their_best_epoch_checkpoint(store):
    # Rebuild each trial from Keras Tuner's own files (its hyperparameters and the
    # checkpoint of its best epoch), as `Tuner.load_model` would, and score it again.
    import json

    import keras_tuner
    import numpy as np

    from contrastive.data import load_dataset
    from contrastive.hypermodel import ContrastiveHyperModel
    from contrastive.search_space import load_search_space

    _, runs, tmp = store
    dataset = load_dataset("digits", label_fraction=0.1, seed=0)
    space = load_search_space(str(tmp / "two_stage.toml"))
    hypermodel = ContrastiveHyperModel(
        space, dataset.input_shape, dataset.num_classes, dataset.value_range
    )
    for run in trial_runs(runs):
        (folder,) = (tmp / "tuner").glob(f"*/trial_{run.data.tags['trial_id']}")
        config = json.loads((folder / "trial.json").read_text())["hyperparameters"]
        model = hypermodel.build(keras_tuner.HyperParameters.from_config(config))
        model.load_weights(folder / "checkpoint.weights.h5")
        probabilities = model.inference_model().predict(dataset.x_test, verbose=0)
        accuracy = float(np.mean(probabilities.argmax(axis=1) == dataset.y_test))
        assert accuracy == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-9)
