"""The main job, end to end: scripts/tune.py into a real SQLite store, then a fresh load.

One 2-trial, 2-epoch search runs as a subprocess of its own (as a user runs it, from
another working directory); the tests then read what the store holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 2
TEST_METRICS = ("test_accuracy", "test_precision_macro", "test_recall_macro", "test_f1_macro")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def search(quick_search):
    return {**quick_search, "parents": [quick_search["parent"]],
            "children": quick_search["trials"]}


def test_one_parent_run_with_search_tags(search):
    assert len(search["parents"]) == 1
    parent = search["parents"][0]
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert tags["dataset"] == "digits"
    assert tags["tuner"] == "random"
    assert tags["seed"] == "0"
    assert tags["label_fraction"] == "0.1"
    assert tags["search_space"].endswith("quick.toml")
    assert len(tags["git_commit"]) == 40 or tags["git_commit"] == "unknown"
    assert tags["best_run_id"] in {r.info.run_id for r in search["children"]}
    for name in TEST_METRICS:
        assert 0.0 <= parent.data.metrics[name] <= 1.0


def test_two_nested_trial_runs_with_their_hyperparameters(search):
    parent_id = search["parents"][0].info.run_id
    assert len(search["children"]) == 2
    for child in search["children"]:
        assert child.data.tags["mlflow.parentRunId"] == parent_id
        assert child.info.status == "FINISHED"
        params = child.data.params
        assert params["encoder_width"] in ("8", "16")
        assert float(params["temperature"]) == 0.1
        assert 0.3 <= float(params["loss_weight"]) <= 0.7
        assert params["epochs"] == str(EPOCHS)


def test_metric_history_has_one_point_per_epoch(search):
    client = search["client"]
    for child in search["children"]:
        for name in ("loss", "accuracy", "val_accuracy", "supcon_loss", "val_ntxent_loss"):
            history = client.get_metric_history(child.info.run_id, name)
            assert [m.step for m in history] == list(range(EPOCHS)), name
        assert not any(k.startswith("validation_") for k in child.data.metrics)


def test_each_trial_has_test_metrics_and_a_png_embedding_plot(search, tmp_path):
    client = search["client"]
    for child in search["children"]:
        for name in TEST_METRICS:
            assert 0.0 <= child.data.metrics[name] <= 1.0
        local = client.download_artifacts(child.info.run_id, "plots/embeddings_tsne.png", str(tmp_path))
        data = Path(local).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 10_000


def test_champion_is_registered_with_alias(search):
    client = search["client"]
    version = client.get_model_version_by_alias("contrastive-classifier", "champion")
    assert str(version.version) == "1"
    assert version.tags["source_run_id"] == search["parents"][0].data.tags["best_run_id"]
    assert version.tags["dataset"] == "digits"
    assert float(version.tags["test_accuracy"]) == pytest.approx(
        search["parents"][0].data.metrics["test_accuracy"]
    )
    assert "Registered contrastive-classifier version 1, now champion" in search["out"]
    assert "mlflow ui --backend-store-uri sqlite:///" in search["out"]


def test_fresh_process_loads_the_champion_with_keras_and_pyfunc(search):
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        import mlflow
        from sklearn.datasets import load_digits

        images = load_digits().images[:7].astype("float32")[..., None]
        uri = "models:/contrastive-classifier@champion"
        keras_model = mlflow.keras.load_model(uri)
        pyfunc_model = mlflow.pyfunc.load_model(uri)
        from contrastive import load_classifier
        classifier = load_classifier(uri)
        print(json.dumps({
            "keras": np.asarray(keras_model.predict(images, verbose=0)).tolist(),
            "pyfunc": np.asarray(pyfunc_model.predict(images)).tolist(),
            "labels": classifier.predict(images).tolist(),
            "embedding_shape": list(classifier.embed(images).shape),
            "modules": sorted(m for m in sys.modules if m.startswith("contrastive")),
        }))
        """
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{search['tmp'] / 'mlflow.db'}",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", script], cwd=search["tmp"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    keras_probs = result["keras"]
    assert len(keras_probs) == 7 and len(keras_probs[0]) == 10
    assert all(abs(sum(row) - 1.0) < 1e-4 for row in keras_probs)
    np.testing.assert_allclose(result["pyfunc"], keras_probs, atol=1e-6)
    assert result["labels"] == [max(range(10), key=row.__getitem__) for row in keras_probs]
    assert result["embedding_shape"][0] == 7


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "no-such-data"], "no-such-data"),
        (["--label-fraction", "1.5"], "label_fraction must be in (0, 1]; received label_fraction=1.5"),
        (["--max-trials", "0"], "max_trials must be a positive whole number; received max_trials=0"),
        (["--epochs", "-1"], "epochs must be a positive whole number; received epochs=-1"),
        (["--search-space", "missing.toml"], "Search-space file not found: 'missing.toml'"),
    ],
)
def test_bad_input_fails_fast_and_writes_nothing(tmp_path, tune_script, args, message):
    done = tune_script(tmp_path, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "tuner").exists()


def test_unusable_tracking_uri_fails_fast(tmp_path):
    # -X importtime lists every module imported: the URI is refused before MLflow and
    # TensorFlow (seconds of imports) are loaded.
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(REPO / "scripts" / "tune.py"),
         "--tracking-uri", f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "--tracking-uri" in done.stderr
    assert not (tmp_path / "missing").exists()
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "json" in imported  # the listing is there
    assert not imported & {"tensorflow", "keras", "mlflow"}
