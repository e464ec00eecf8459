"""Reproducible searches: same seed, same trials and metrics; a recorded trial repeats.

Three 2-trial searches with --deterministic: two with seed 0 (into separate stores and
tuner folders, as on two machines) and one with seed 1. Then one trial of the first
search is repeated from its run alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from contrastive.tuning import TIMING_METRICS

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def tune(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_RUN_ID", None)
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "tune.py"),
         "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--tuner-dir", str(folder / "tuner"), "--verbose", "0", *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def trials(folder: Path) -> dict[str, dict]:
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("contrastive")
    found = {}
    for run in client.search_runs([experiment.experiment_id]):
        if "trial_id" in run.data.tags and "repeat_of" not in run.data.tags:
            losses = [m.value for m in client.get_metric_history(run.info.run_id, "loss")]
            found[run.data.tags["trial_id"]] = {
                "run_id": run.info.run_id,
                "params": run.data.params,
                "metrics": run.data.metrics,
                "losses": losses,
            }
    return found


def champion_tags(folder: Path) -> dict:
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    return client.get_model_version_by_alias("contrastive-classifier", "champion").tags


SEARCH = ("--search-space", "quick", "--max-trials", "2", "--epochs", "1", "--deterministic",
          "--no-baseline")


@pytest.fixture(scope="module")
def searches(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro")
    for name, seed in (("first", "0"), ("second", "0"), ("other", "1")):
        tune(root / name, *SEARCH, "--seed", seed)
    return root


def test_same_seed_gives_same_hyperparameters_per_trial(searches):
    first, second = trials(searches / "first"), trials(searches / "second")
    assert sorted(first) == sorted(second) == ["0", "1"]
    for trial_id in first:
        assert first[trial_id]["params"] == second[trial_id]["params"]


def test_same_seed_gives_same_metrics(searches):
    first, second = trials(searches / "first"), trials(searches / "second")
    for trial_id in first:
        a, b = first[trial_id]["metrics"], second[trial_id]["metrics"]
        assert sorted(a) == sorted(b)
        for name in set(a) - set(TIMING_METRICS):  # wall-clock seconds differ
            assert abs(a[name] - b[name]) < 1e-6, (trial_id, name, a[name], b[name])
        assert first[trial_id]["losses"] == pytest.approx(second[trial_id]["losses"], abs=1e-6)


def test_same_seed_gives_same_champion(searches):
    a, b = champion_tags(searches / "first"), champion_tags(searches / "second")
    for key in ("test_accuracy", "hp_loss_weight", "hp_encoder_width", "dataset_digest"):
        assert a[key] == b[key]
    assert a["source_run_id"] != b["source_run_id"]


def test_another_seed_gives_other_trials(searches):
    first, other = trials(searches / "first"), trials(searches / "other")
    assert first["0"]["params"]["trial_seed"] != other["0"]["params"]["trial_seed"]
    assert first["0"]["params"]["loss_weight"] != other["0"]["params"]["loss_weight"]
    assert first["0"]["losses"] != pytest.approx(other["0"]["losses"], abs=1e-6)


def test_trial_runs_record_what_repeats_them(searches):
    client = MlflowClient(f"sqlite:///{searches / 'first' / 'mlflow.db'}")
    for trial in trials(searches / "first").values():
        run = client.get_run(trial["run_id"])
        for tag in ("dataset_digest", "search_space_digest", "git_commit", "version_keras",
                    "version_tensorflow", "version_keras_tuner", "version_mlflow",
                    "version_contrastive"):
            assert run.data.tags[tag], tag
        assert run.data.params["seed"] == "0"
        assert int(run.data.params["trial_seed"]) > 0
        names = [a.path for a in client.list_artifacts(trial["run_id"])]
        assert "search_space.toml" in names


def test_repeating_a_recorded_trial_gives_its_test_metrics(searches):
    folder = searches / "first"
    recorded = trials(folder)["1"]
    done = tune(folder, "--repeat-run", recorded["run_id"])
    assert f"Repeated run {recorded['run_id']}" in done.stdout

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("contrastive")
    repeats = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.repeat_of = '{recorded['run_id']}'"
    )
    assert len(repeats) == 1
    repeated = repeats[0].data.metrics
    for name, value in recorded["metrics"].items():
        if name.startswith("test_"):
            assert abs(repeated[name] - value) < 1e-6, name
