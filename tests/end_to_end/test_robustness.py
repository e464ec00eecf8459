"""Searches under real use: killed and resumed, failing trials, a wrapper, two searches.

Every search is ``scripts/tune.py`` run as a subprocess into a real SQLite store in a
temporary folder, on digits, with small search spaces written next to it:

- a search killed with SIGKILL in the middle of its second trial, then resumed with a
  larger ``--max-trials``; then a worse search with ``--overwrite`` into the same store
  and under the same model name, which must not take the champion alias;
- a Bayesian search launched under a wrapper's ``MLFLOW_RUN_ID``, where one trial
  diverges (temperature 1e-25 makes the contrastive loss NaN within the first steps)
  and one raises (a folder blocks its checkpoint path, so Keras cannot write the
  weights: the error a full or read-only disk gives);
- searches whose every trial diverges (ended by "no trial completed", and by Keras
  Tuner's limit of failures in a row).

Bad configurations (a bad search space, a dataset no model can be built for, a resume
with other settings or into another store) are run in this process: they must stop
before any training, so they cost no more than loading the data.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
MODEL = "contrastive-classifier"

pytestmark = pytest.mark.slow

# Learns fast enough in two epochs to beat chance clearly (test accuracy ~0.4-0.5).
FAST_SPACE = """
[encoder_width]
kind = "choice"
values = [8, 16]

[projection_dim]
kind = "fixed"
value = 32

[projection_depth]
kind = "fixed"
value = 1

[temperature]
kind = "fixed"
value = 0.1

[loss_weight]
kind = "float"
min = 0.3
max = 0.7

[learning_rate]
kind = "fixed"
value = 0.03
"""

# A learning rate this small leaves the model at chance (test accuracy ~0.1).
STALLED_SPACE = FAST_SPACE.replace('values = [8, 16]', 'values = [8]').replace(
    "value = 0.03", "value = 1e-7"
)

# One temperature of the two makes the loss NaN within the first steps.
DIVERGING_SPACE = FAST_SPACE.replace(
    '[temperature]\nkind = "fixed"\nvalue = 0.1',
    '[temperature]\nkind = "choice"\nvalues = [0.1, 1e-25]',
)

# Every trial diverges.
ALWAYS_DIVERGING_SPACE = FAST_SPACE.replace("value = 0.1", "value = 1e-25")

DIVERGED = r"TrialDiverged: Training diverged at step \d+ of epoch 0: loss=nan"


def _uri(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'mlflow.db'}"


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        if name not in extra:
            env.pop(name, None)
    return env


def _command(tmp: Path, *args: str) -> list[str]:
    return [
        sys.executable, str(REPO / "scripts" / "tune.py"),
        "--tracking-uri", _uri(tmp),
        "--tuner-dir", str(tmp / "tuner"),
        "--verbose", "0",
        # The cross-entropy baseline is another feature's; it only costs time here.
        "--no-baseline",
        *args,
    ]


def tune(
    tmp: Path, *args: str, env: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    done = subprocess.run(
        _command(tmp, *args), cwd=tmp, env=env or _env(), capture_output=True,
        text=True, timeout=600,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"tune.py failed ({done.returncode}):\n{done.stderr[-4000:]}"
        )
    return done


def _space(tmp: Path, name: str, text: str) -> str:
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return str(path)


def _runs(tmp: Path) -> list:
    client = MlflowClient(_uri(tmp))
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, order_by=["attributes.start_time ASC"])


def _trial_status(database: Path, trial_id: str) -> str | None:
    """The status of a trial's run, read straight from SQLite while tune.py writes it.

    Read-only and without MLflow: an MlflowClient would try to create or upgrade the
    database that the running search is creating.
    """
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)
        ) as connection:
            row = connection.execute(
                "SELECT runs.status FROM runs "
                "JOIN tags ON tags.run_uuid = runs.run_uuid "
                "WHERE tags.key = 'trial_id' AND tags.value = ?",
                (trial_id,),
            ).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _children(runs: list, parent_id: str) -> list:
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]


def _trials(runs: list, parent_id: str) -> list:
    return [r for r in _children(runs, parent_id) if "trial_id" in r.data.tags]


def _artifact(client: MlflowClient, run_id: str, path: str, folder: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(folder))).read_text()


def _leaderboard(client: MlflowClient, run_id: str, folder: Path) -> list[dict]:
    text = _artifact(client, run_id, "leaderboard.csv", folder)
    return list(csv.DictReader(io.StringIO(text)))


# Killed with SIGKILL, then resumed ----------------------------------------------------


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    space = _space(tmp, "fast", FAST_SPACE)
    args = ("--search-space", space, "--epochs", "2")

    log_path = tmp / "killed.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            _command(tmp, *args, "--max-trials", "2"), cwd=tmp, env=_env(),
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 300
            while _trial_status(tmp / "mlflow.db", "1") != "RUNNING":
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"tune.py never reached trial 1 ({process.poll()}):\n"
                        f"{log_path.read_text()[-4000:]}"
                    )
                time.sleep(0.2)
            time.sleep(1.0)  # well into the trial
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    before = _runs(tmp)

    done = tune(tmp, *args, "--max-trials", "3")
    after = _runs(tmp)
    client = MlflowClient(_uri(tmp))
    parents = [r for r in after if "mlflow.parentRunId" not in r.data.tags]
    return {
        "tmp": tmp, "space": space, "client": client, "out": done.stdout + done.stderr,
        "before": before, "after": after, "parents": parents,
        "children": _trials(after, parents[0].info.run_id),
    }


def _by_trial(runs: list) -> dict[str, list]:
    found: dict[str, list] = {}
    for run in runs:
        found.setdefault(run.data.tags["trial_id"], []).append(run)
    return found


def _trial(runs: list, trial_id: str):
    (run,) = [r for r in runs if r.data.tags.get("trial_id") == trial_id]
    return run


def test_kill_leaves_the_trial_and_search_runs_running(resumed):
    statuses = {
        r.data.tags.get("trial_id", "search"): r.info.status for r in resumed["before"]
    }

    assert statuses == {"search": "RUNNING", "0": "FINISHED", "1": "RUNNING"}


def test_resume_records_under_the_same_search_run_and_finishes_it(resumed):
    (before_parent,) = [r for r in resumed["before"] if "trial_id" not in r.data.tags]

    assert [p.info.run_id for p in resumed["parents"]] == [before_parent.info.run_id]
    assert resumed["parents"][0].info.status == "FINISHED"
    assert "Resuming the search recorded in run" in resumed["out"]


def test_resume_does_not_repeat_finished_trials(resumed):
    trial_0_before = _trial(resumed["before"], "0")

    runs = _by_trial(resumed["children"])["0"]

    assert [r.info.run_id for r in runs] == [trial_0_before.info.run_id]
    assert runs[0].info.status == "FINISHED"


def test_the_interrupted_trial_is_closed_killed_and_rerun_in_a_new_run(resumed):
    killed_before = _trial(resumed["before"], "1")

    killed, rerun = _by_trial(resumed["children"])["1"]

    assert killed.info.run_id == killed_before.info.run_id
    assert killed.info.status == "KILLED"
    assert rerun.info.status == "FINISHED"
    assert rerun.data.tags["retry_of"] == killed.info.run_id
    assert rerun.data.params["trial_seed"] == killed.data.params["trial_seed"]


def test_trial_numbering_continues_after_resume(resumed):
    assert sorted(_by_trial(resumed["children"])) == ["0", "1", "2"]
    assert _by_trial(resumed["children"])["2"][0].info.status == "FINISHED"


def test_no_run_is_left_running_after_resume(resumed):
    assert [r.info.status for r in resumed["after"] if r.info.status == "RUNNING"] == []


def test_leaderboard_lists_each_trial_once_with_its_metrics(resumed, tmp_path):
    parent = resumed["parents"][0]

    client, run_id = resumed["client"], parent.info.run_id

    rows = _leaderboard(client, run_id, tmp_path)
    markdown = _artifact(client, run_id, "leaderboard.md", tmp_path)

    assert sorted(row["trial"] for row in rows) == ["0", "1", "2"]
    assert {row["status"] for row in rows} == {"COMPLETED"}
    for row in rows:
        assert row["encoder_width"] in ("8", "16")
        assert 0.0 <= float(row["val_accuracy"]) <= 1.0
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0
    assert rows[0]["run_id"] == parent.data.tags["best_run_id"]
    header = "| trial | status | run_id | val_accuracy |"
    assert markdown.splitlines()[0].startswith(header)
    assert len(markdown.splitlines()) == 2 + 3
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(
        float(rows[0]["val_accuracy"])
    )


def test_resuming_with_other_settings_is_refused_before_training(resumed, tmp_path):
    from contrastive.config import ConfigError, SearchConfig
    from contrastive.search import run_search

    tmp = resumed["tmp"]
    config = SearchConfig(
        search_space=resumed["space"], seed=7, epochs=2, max_trials=3,
        tracking_uri=_uri(tmp), tuner_dir=str(tmp / "tuner"), verbose=0,
    )

    refused = r"Cannot resume the search of run \w+ .*seed '0' -> '7'"
    with pytest.raises(ConfigError, match=refused):
        run_search(config)

    assert len(_runs(tmp)) == len(resumed["after"])


def test_resuming_into_another_store_is_refused_before_training(resumed, tmp_path):
    from contrastive.config import ConfigError, SearchConfig
    from contrastive.search import run_search

    config = SearchConfig(
        search_space=resumed["space"], epochs=2, max_trials=3,
        tracking_uri=_uri(tmp_path), tuner_dir=str(resumed["tmp"] / "tuner"), verbose=0,
    )

    refused = "holds a search whose run .* is not in experiment"
    with pytest.raises(ConfigError, match=refused):
        run_search(config)

    assert _runs(tmp_path) == []


# A worse search into the same store ---------------------------------------------------


@pytest.fixture(scope="module")
def overwritten(resumed):
    tmp = resumed["tmp"]
    client = resumed["client"]
    space = _space(tmp, "stalled", STALLED_SPACE)
    # What a SIGKILL leaves (see test_kill_leaves_the_trial_and_search_runs_running),
    # made by hand: a RUNNING search run with a RUNNING trial, named by the state file.
    experiment = resumed["parents"][0].info.experiment_id
    stale = client.create_run(experiment, run_name="stale-search").info.run_id
    stale_trial = client.create_run(
        experiment, tags={"mlflow.parentRunId": stale, "trial_id": "0"}
    ).info.run_id
    state = tmp / "tuner" / "contrastive" / "mlflow_search.json"
    state.write_text(json.dumps({"parent_run_id": stale}))

    done = tune(tmp, "--search-space", space, "--epochs", "1", "--max-trials", "1",
                "--overwrite")
    runs = _runs(tmp)
    known = {resumed["parents"][0].info.run_id, stale}
    (new_parent,) = [
        r for r in runs
        if "mlflow.parentRunId" not in r.data.tags and r.info.run_id not in known
    ]
    return {"out": done.stdout + done.stderr, "parent": new_parent, "runs": runs,
            "client": client, "stale": (stale, stale_trial), "state": state,
            "first_parent": client.get_run(resumed["parents"][0].info.run_id)}


def test_overwrite_starts_a_new_search_run_from_trial_zero(overwritten):
    children = _trials(overwritten["runs"], overwritten["parent"].info.run_id)

    assert [c.data.tags["trial_id"] for c in children] == ["0"]
    assert overwritten["parent"].info.status == "FINISHED"
    assert json.loads(overwritten["state"].read_text()) == {
        "parent_run_id": overwritten["parent"].info.run_id
    }
    assert overwritten["first_parent"].info.status == "FINISHED"


def test_overwrite_closes_the_runs_a_killed_search_left_running(overwritten):
    client = overwritten["client"]

    statuses = [client.get_run(run_id).info.status for run_id in overwritten["stale"]]

    assert statuses == ["KILLED", "KILLED"]
    assert "--overwrite: closing the previous search run" in overwritten["out"]


def test_a_worse_second_search_is_registered_without_the_alias(overwritten):
    client = overwritten["client"]
    first = client.get_model_version(MODEL, "1")
    second = client.get_model_version(MODEL, "2")
    old, new = float(first.tags["test_accuracy"]), float(second.tags["test_accuracy"])

    champion = client.get_model_version_by_alias(MODEL, "champion")

    assert new < old
    assert str(champion.version) == "1"
    assert second.tags["promoted"] == "False"
    reason = (
        f"test_accuracy {new:.4f} does not beat the champion's {old:.4f} (version 1)"
    )
    assert f"Version 2 does not take the champion alias: {reason}" in overwritten["out"]
    assert second.tags["promotion"] == reason
    assert overwritten["parent"].data.tags["promoted"] == "False"


def test_each_version_carries_what_is_needed_to_trust_it(overwritten):
    client = overwritten["client"]

    version = client.get_model_version(MODEL, "2")

    tags = version.tags
    assert tags["dataset"] == "digits" and len(tags["dataset_digest"]) == 64
    assert tags["label_fraction"] == "0.1"
    assert tags["hp_learning_rate"] == "1e-07" and tags["hp_encoder_width"] == "8"
    assert 0.0 <= float(tags["test_f1_macro"]) <= 1.0
    assert tags["source_run_id"] == overwritten["parent"].data.tags["best_run_id"]
    assert tags["search_run_id"] == overwritten["parent"].info.run_id
    assert len(tags["git_commit"]) == 40 or tags["git_commit"] == "unknown"
    assert tags["version_keras"] and tags["version_mlflow"]
    assert "digits" in version.description
    assert "label fraction 0.1" in version.description


# Failing trials under a wrapper's MLFLOW_RUN_ID ---------------------------------------

# Keras Tuner writes a trial's best weights here; a folder in the way makes it raise.
BLOCKED_TRIAL = "0"


@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("failing")
    client = MlflowClient(_uri(tmp))
    experiment = client.create_experiment(
        "contrastive", artifact_location=(tmp / "artifacts").as_uri()
    )
    wrapper = client.create_run(
        experiment, tags={"mlflow.runName": "wrapper", "by": "test"}
    )
    wrapper_id = wrapper.info.run_id
    client.log_param(wrapper_id, "entry_point", "main")
    wrapper_before = client.get_run(wrapper_id)
    trial_folder = tmp / "tuner" / "contrastive" / f"trial_{BLOCKED_TRIAL}"
    (trial_folder / "checkpoint.weights.h5").mkdir(parents=True)

    space = _space(tmp, "diverging", DIVERGING_SPACE)
    done = tune(
        tmp, "--search-space", space, "--tuner", "bayesian", "--epochs", "1",
        "--max-trials", "3", env=_env(MLFLOW_RUN_ID=wrapper_id),
    )
    runs = _runs(tmp)
    (search,) = _children(runs, wrapper_id)
    trials = {r.data.tags["trial_id"]: r for r in _trials(runs, search.info.run_id)}
    diverged = [
        t for t in trials.values() if float(t.data.params["temperature"]) < 1e-20
    ]
    return {"tmp": tmp, "client": client, "out": done.stdout + done.stderr,
            "runs": runs, "wrapper_before": wrapper_before, "search": search,
            "trials": trials, "diverged": diverged}


def test_the_setup_has_one_diverging_one_raising_and_one_good_trial(failing):
    # The Bayesian oracle's first trials are seeded random draws; this pins them.
    trials = failing["trials"]

    assert sorted(trials) == ["0", "1", "2"]
    assert len(failing["diverged"]) == 1
    assert float(trials[BLOCKED_TRIAL].data.params["temperature"]) == 0.1
    assert [t.info.status for t in trials.values()].count("FINISHED") == 1


def test_a_diverging_trial_is_failed_with_its_reason(failing, tmp_path):
    (run,) = failing["diverged"]

    traceback = _artifact(
        failing["client"], run.info.run_id, "failure/traceback.txt", tmp_path
    )

    assert run.info.status == "FAILED"
    assert re.match(DIVERGED, run.data.tags["failure"])
    assert "raise TrialDiverged(" in traceback


def test_a_raising_trial_is_failed_with_its_traceback_and_the_search_goes_on(
    failing, tmp_path
):
    run = failing["trials"][BLOCKED_TRIAL]

    traceback = _artifact(
        failing["client"], run.info.run_id, "failure/traceback.txt", tmp_path
    )

    assert run.info.status == "FAILED"
    assert "checkpoint.weights.h5" in traceback and "Traceback" in traceback
    later = [t for i, t in failing["trials"].items() if int(i) > int(BLOCKED_TRIAL)]
    assert "FINISHED" in [t.info.status for t in later]


def test_failed_trials_are_never_best_nor_registered(failing):
    client = failing["client"]
    trials = failing["trials"].values()
    failed = {t.info.run_id for t in trials if t.info.status == "FAILED"}
    (good,) = [t for t in failing["trials"].values() if t.info.status == "FINISHED"]

    version = client.get_model_version_by_alias(MODEL, "champion")

    assert failing["search"].data.tags["best_run_id"] == good.info.run_id
    assert version.tags["source_run_id"] == good.info.run_id
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 1
    assert not failed & {failing["search"].data.tags["best_run_id"]}


def test_leaderboard_marks_the_failed_trials(failing, tmp_path):
    rows = _leaderboard(failing["client"], failing["search"].info.run_id, tmp_path)

    statuses = {row["trial"]: row["status"] for row in rows}
    assert sorted(statuses.values()) == ["COMPLETED", "FAILED", "FAILED"]
    assert rows[0]["status"] == "COMPLETED"
    assert statuses[BLOCKED_TRIAL] == "FAILED"


def test_the_search_run_is_nested_under_the_wrapper_run(failing):
    wrapper_id = failing["wrapper_before"].info.run_id

    assert failing["search"].data.tags["mlflow.parentRunId"] == wrapper_id
    assert failing["search"].info.status == "FINISHED"
    assert all(
        t.data.tags["mlflow.parentRunId"] == failing["search"].info.run_id
        for t in failing["trials"].values()
    )


def test_the_wrapper_run_is_not_overwritten(failing):
    before = failing["wrapper_before"]

    after = failing["client"].get_run(before.info.run_id)

    assert after.info.status == "RUNNING"
    assert after.data.params == before.data.params == {"entry_point": "main"}
    assert after.data.tags == before.data.tags
    assert after.data.metrics == {}
    assert failing["client"].list_artifacts(before.info.run_id) == []


def test_no_run_but_the_wrapper_is_left_running(failing):
    running = [r.info.run_id for r in failing["runs"] if r.info.status == "RUNNING"]

    assert running == [failing["wrapper_before"].info.run_id]


# Every trial fails --------------------------------------------------------------------


@pytest.fixture(scope="module")
def all_failed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("all-failed")
    space = _space(tmp, "always-diverging", ALWAYS_DIVERGING_SPACE)

    done = tune(tmp, "--search-space", space, "--epochs", "1", "--max-trials", "2",
                check=False)
    return {"done": done, "runs": _runs(tmp), "client": MlflowClient(_uri(tmp))}


def test_a_search_where_every_trial_fails_ends_with_a_clear_error(all_failed):
    done = all_failed["done"]

    assert done.returncode == 1
    assert re.search("No trial completed, so no model was registered. Last failure: "
                     + DIVERGED, done.stderr)
    assert "(tag 'failure', artifact failure/traceback.txt)" in done.stderr


def test_a_search_where_every_trial_fails_leaves_no_run_running(all_failed):
    statuses = sorted(
        (r.data.tags.get("trial_id", "search"), r.info.status)
        for r in all_failed["runs"]
    )

    assert statuses == [("0", "FAILED"), ("1", "FAILED"), ("search", "FAILED")]
    assert all_failed["client"].search_registered_models() == []


def test_failures_in_a_row_stop_the_search_with_a_clear_error(tmp_path):
    from contrastive.config import SearchConfig
    from contrastive.search import SearchFailedError, run_search

    space = _space(tmp_path, "always-diverging", ALWAYS_DIVERGING_SPACE)
    config = SearchConfig(
        search_space=space, epochs=1, max_trials=5, tracking_uri=_uri(tmp_path),
        tuner_dir=str(tmp_path / "tuner"), verbose=0, baseline=False,
    )

    stopped = "The search stopped: 3 trials failed in a row. Last failure: " + DIVERGED
    with pytest.raises(SearchFailedError, match=stopped):
        run_search(config)

    statuses = sorted(
        (r.data.tags.get("trial_id", "search"), r.info.status) for r in _runs(tmp_path)
    )
    assert statuses == [
        ("0", "FAILED"), ("1", "FAILED"), ("2", "FAILED"), ("search", "FAILED")
    ]


# Bad configuration --------------------------------------------------------------------


def test_a_bad_search_space_stops_the_search_before_anything_is_written(tmp_path):
    from contrastive.config import SearchConfig
    from contrastive.search import run_search
    from contrastive.search_space import SearchSpaceError

    space = _space(tmp_path, "bad", FAST_SPACE.replace("value = 0.1", "value = 0.0"))
    config = SearchConfig(
        search_space=space, tracking_uri=_uri(tmp_path),
        tuner_dir=str(tmp_path / "tuner"),
    )

    with pytest.raises(SearchSpaceError, match="temperature"):
        run_search(config)

    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "tuner").exists()


def test_a_dataset_no_model_can_be_built_for_stops_the_search_at_once(tmp_path):
    import numpy as np

    from contrastive.config import ConfigError, SearchConfig
    from contrastive.search import run_search

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(300, 2, 2)).astype("uint8")
    np.savez(tmp_path / "tiny.npz", x=images, y=np.repeat([0, 1, 2], 100))
    config = SearchConfig(
        dataset=str(tmp_path / "tiny.npz"), search_space="quick",
        tracking_uri=_uri(tmp_path), tuner_dir=str(tmp_path / "tuner"),
    )

    with pytest.raises(
        ConfigError,
        match=r"No model can be built for dataset 'tiny' \(images \(2, 2, 1\)\) "
              r"with search space quick.toml: images must be at least 4x4 pixels",
    ):
        run_search(config)

    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "tuner").exists()


# A finished search run again ----------------------------------------------------------


def test_a_finished_search_run_again_registers_nothing_new(tmp_path, tune_script):
    args = ("--max-trials", "1", "--epochs", "1", "--search-space", "quick", "--no-baseline")
    first = tune_script(tmp_path, *args)
    assert first.returncode == 0, first.stderr[-3000:]

    again = tune_script(tmp_path, *args)

    assert again.returncode == 0, again.stderr[-3000:]
    client = MlflowClient(_uri(tmp_path))
    versions = client.search_model_versions("name='contrastive-classifier'")
    assert [str(v.version) for v in versions] == ["1"]
    champion = client.get_model_version_by_alias("contrastive-classifier", "champion")
    assert str(champion.version) == "1"
    assert "Registered contrastive-classifier version 1, now champion (version 1 of this " \
           "search's champion was registered already)" in again.stdout
    runs = client.search_runs([client.get_experiment_by_name("contrastive").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.tags["model_version"] == "1"
    assert parent.info.status == "FINISHED"
