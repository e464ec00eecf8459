"""Tests for contrastive.tracking against a real SQLite MLflow store.

Runs, their end states, the epoch callback, the ``MLFLOW_RUN_ID`` launcher, the logged
inference model and the promotion rule of the registry, all in-process: one store per
module, a new experiment or registered-model name per test.
"""

from __future__ import annotations

import http.server
import os
import threading
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from contrastive.tracking import (  # noqa: E402
    CHAMPION_ALIAS,
    EpochMetricsLogger,
    Tracker,
    TrackingError,
    check_tracking_uri,
    resolve_tracking_uri,
)

DIGEST = "d" * 64


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("store")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def tracker(store, request, monkeypatch) -> Tracker:
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return Tracker(store, f"exp-{request.node.name}")


def _tiny_classifier(seed: int = 0) -> keras.Model:
    """8x8 grey images -> 10 probabilities, with an ``embedding`` layer like ours."""
    keras.utils.set_random_seed(seed)
    images = keras.Input(shape=(8, 8, 1), name="images")
    flat = keras.layers.Flatten()(images)
    embedding = keras.layers.Identity(name="embedding")(keras.layers.Dense(4)(flat))
    probabilities = keras.layers.Softmax(name="probabilities")(
        keras.layers.Dense(10)(embedding)
    )
    return keras.Model(images, probabilities)


# Tracking URIs ------------------------------------------------------------------------


def test_resolve_prefers_the_argument_then_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")

    assert resolve_tracking_uri("sqlite:///given.db") == "sqlite:///given.db"
    assert resolve_tracking_uri() == "sqlite:///from-env.db"


def test_default_uri_is_sqlite_when_nothing_is_set(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    assert resolve_tracking_uri().startswith("sqlite:///")


def test_missing_sqlite_folder_is_refused(tmp_path):
    uri = f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}"

    with pytest.raises(TrackingError, match="does not exist. Create it first"):
        check_tracking_uri(uri)


def test_a_file_is_refused_as_a_folder_store(tmp_path):
    (tmp_path / "store").write_text("not a folder")

    with pytest.raises(TrackingError, match="is a file, not a folder"):
        check_tracking_uri(str(tmp_path / "store"))


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 - the name http.server calls
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    """A loopback HTTP server of our own; yields (uri, handler class)."""

    class Handler(_Health):
        pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Handler
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_answering_health_is_accepted(health_server):
    uri, _ = health_server

    check_tracking_uri(uri)  # no exception: the server answered 200


def test_a_server_failing_health_is_refused(health_server):
    uri, handler = health_server
    handler.status = 503

    with pytest.raises(TrackingError, match="no MLflow server answered .*503"):
        check_tracking_uri(uri)


# Runs and their end states ------------------------------------------------------------


def test_child_runs_are_nested_under_their_parent_oldest_first(tracker):
    parent = tracker.create_run("search")
    first = tracker.create_run("trial-0", parent_run_id=parent, tags={"trial_id": "0"})
    second = tracker.create_run("trial-1", parent_run_id=parent, tags={"trial_id": "1"})
    tracker.create_run("elsewhere")

    children = tracker.child_runs(parent)

    assert [run.info.run_id for run in children] == [first, second]
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {parent}


def test_active_run_ends_finished_on_success(tracker):
    run_id = tracker.create_run("ok")

    with tracker.active(run_id):
        mlflow.log_metric("fluent", 1.5)

    run = tracker.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"fluent": 1.5}
    assert mlflow.active_run() is None


@pytest.mark.parametrize(
    "error, status", [(ValueError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")]
)
def test_active_run_ends_failed_or_killed_on_an_exception(tracker, error, status):
    run_id = tracker.create_run("broken")

    with pytest.raises(type(error)):
        with tracker.active(run_id):
            raise error

    assert tracker.run_status(run_id) == status
    assert mlflow.active_run() is None


def test_a_second_active_run_is_refused(tracker):
    first, second = tracker.create_run("a"), tracker.create_run("b")

    with tracker.active(first):
        with pytest.raises(RuntimeError, match=f"Run {first} is still active"):
            with tracker.active(second):
                pass

    assert tracker.run_status(first) == "FINISHED"
    assert tracker.run_status(second) == "RUNNING"


def test_run_exists_only_in_its_own_experiment(store, tracker):
    other = Tracker(store, "exp-someone-else")
    foreign = other.create_run("theirs")
    own = tracker.create_run("ours")

    assert tracker.run_exists(own)
    assert not tracker.run_exists(foreign)
    assert not tracker.run_exists("0" * 32)


def test_a_param_may_be_logged_again_only_with_the_same_value(tracker):
    run_id = tracker.create_run("params")
    tracker.log_params(run_id, {"epochs": 2, "seed": 0})

    tracker.log_params(run_id, {"epochs": 2})
    with pytest.raises(mlflow.exceptions.MlflowException, match="epochs"):
        tracker.log_params(run_id, {"epochs": 3})

    assert tracker.client.get_run(run_id).data.params == {"epochs": "2", "seed": "0"}


def test_non_finite_metrics_are_skipped(tracker):
    run_id = tracker.create_run("metrics")

    tracker.log_metrics(run_id, {"good": 0.5, "nan": float("nan"), "inf": float("inf")})

    assert tracker.client.get_run(run_id).data.metrics == {"good": 0.5}


def test_a_figure_that_fails_is_a_tag_not_an_error(tracker):
    run_id = tracker.create_run("plots")

    def broken_figure():
        raise ValueError("no data to draw")

    logged = tracker.log_figure(run_id, broken_figure, "plots/broken.png")

    assert logged is False
    tags = tracker.client.get_run(run_id).data.tags
    assert tags["plot_errors"] == "plots/broken.png: ValueError: no data to draw"


# A wrapper's MLFLOW_RUN_ID ------------------------------------------------------------


def test_launcher_run_is_none_without_mlflow_run_id(tracker):
    assert tracker.launcher_run_id is None


def test_launcher_run_is_read_from_mlflow_run_id(store, monkeypatch):
    client = MlflowClient(store)
    experiment = client.create_experiment("exp-launcher")
    wrapper = client.create_run(experiment, tags={"wrapper": "yes"}).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", wrapper)

    tracker = Tracker(store, "exp-launcher")

    assert tracker.launcher_run_id == wrapper


def test_an_unknown_mlflow_run_id_is_refused(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", "f" * 32)

    with pytest.raises(TrackingError, match=f"MLFLOW_RUN_ID='{'f' * 32}' names no run"):
        Tracker(store, "exp-unknown-launcher")


def test_active_runs_leave_the_wrapper_run_untouched(store, monkeypatch):
    client = MlflowClient(store)
    experiment = client.create_experiment("exp-wrapped")
    wrapper = client.create_run(experiment, tags={"wrapper": "yes"}).info.run_id
    client.log_param(wrapper, "entry_point", "tune")
    monkeypatch.setenv("MLFLOW_RUN_ID", wrapper)
    tracker = Tracker(store, "exp-wrapped")
    trial = tracker.create_run("trial-0", parent_run_id=wrapper)

    with tracker.active(trial):
        mlflow.log_metric("loss", 0.25)
        mlflow.log_param("learning_rate", 0.01)

    wrapped = client.get_run(wrapper)
    assert wrapped.info.status == "RUNNING"
    assert wrapped.data.params == {"entry_point": "tune"}
    assert wrapped.data.metrics == {}
    assert client.get_run(trial).data.metrics == {"loss": 0.25}


# The epoch callback -------------------------------------------------------------------


def _fit(model, logger, learning_rate: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, size=32)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        x, y, validation_data=(x[:8], y[:8]), epochs=2, batch_size=16, verbose=0,
        callbacks=[logger],
    )


def test_epoch_metrics_have_one_point_per_epoch_and_no_validation_twins(tracker):
    run_id = tracker.create_run("callback")

    with tracker.active(run_id):
        _fit(_tiny_classifier(), EpochMetricsLogger(), learning_rate=0.01)

    run = tracker.client.get_run(run_id)
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        history = tracker.client.get_metric_history(run_id, name)
        assert [m.step for m in history] == [0, 1], name
    assert not [name for name in run.data.metrics if name.startswith("validation_")]
    assert run.data.params == {}


def test_two_training_stages_in_one_run_log_apart_without_params(tracker, tmp_path):
    run_id = tracker.create_run("two-stages")
    model = _tiny_classifier()

    with tracker.active(run_id):
        _fit(model, EpochMetricsLogger(), learning_rate=0.01)
        # A second stage with another optimizer: autolog's callback would log the
        # new learning rate under the same param name, which MLflow refuses.
        _fit(model, EpochMetricsLogger(prefix="finetune_"), learning_rate=0.001)

    run = tracker.client.get_run(run_id)
    assert tracker.run_status(run_id) == "FINISHED"
    assert run.data.params == {}
    assert len(tracker.client.get_metric_history(run_id, "loss")) == 2
    assert len(tracker.client.get_metric_history(run_id, "finetune_val_loss")) == 2
    artifacts = {a.path for a in tracker.client.list_artifacts(run_id)}
    assert {"model_summary.txt", "finetune_model_summary.txt"} <= artifacts


# The logged model ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def logged(store):
    """One tiny classifier logged as an inference model; (tracker, info, model)."""
    tracker = Tracker(store, "exp-registry")
    run_id = tracker.create_run("best-trial")
    model = _tiny_classifier()
    info = tracker.log_inference_model(
        run_id, model, metadata={"class_names": [str(i) for i in range(10)]}
    )
    return tracker, info, model


def _download(info, folder: Path) -> Path:
    local = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(folder))
    return Path(local)


def test_logged_model_has_a_float32_signature_and_pinned_requirements(logged, tmp_path):
    _, info, _ = logged

    folder = _download(info, tmp_path)

    inputs = info.signature.inputs.to_dict()[0]
    assert inputs["type"] == "tensor"
    assert list(inputs["tensor-spec"]["shape"]) == [-1, 8, 8, 1]
    assert inputs["tensor-spec"]["dtype"] == "float32"
    requirements = (folder / "requirements.txt").read_text().split()
    assert f"keras=={keras.__version__}" in requirements
    assert any(line.startswith("tensorflow==") for line in requirements)


def test_logged_model_loads_with_safe_mode_and_holds_no_pickle(logged, tmp_path):
    _, info, model = logged
    folder = _download(info, tmp_path)
    flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["keras"]
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 16, size=(5, 8, 8, 1)).astype("float32")

    (saved,) = folder.rglob("*.keras")
    loaded = keras.saving.load_model(saved, safe_mode=True)

    assert not flavor.get("save_exported_model")
    pickles = [p for p in folder.rglob("*") if p.suffix in (".pkl", ".pickle")]
    assert pickles == []
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )


# The registry and the promotion rule --------------------------------------------------


def _register(logged, name, accuracy, *, promote="better", digest=DIGEST):
    tracker, info, _ = logged
    tags = {"dataset": "digits", "dataset_digest": digest, "test_accuracy": accuracy}
    return tracker.register(
        info.model_uri, name, tags=tags, description=f"accuracy {accuracy}",
        metric="test_accuracy", promote=promote,
    )


def _champion(logged, name) -> str:
    tracker = logged[0]
    return str(tracker.client.get_model_version_by_alias(name, CHAMPION_ALIAS).version)


def test_first_version_takes_the_alias(logged):
    version, promoted, reason = _register(logged, "first", 0.5)

    assert (str(version.version), promoted) == ("1", True)
    assert reason == "there was no champion yet"
    assert _champion(logged, "first") == "1"


def test_a_worse_version_is_registered_without_the_alias(logged):
    _register(logged, "worse", 0.8)

    version, promoted, reason = _register(logged, "worse", 0.6)

    assert str(version.version) == "2" and promoted is False
    assert reason == (
        "test_accuracy 0.6000 does not beat the champion's 0.8000 (version 1)"
    )
    assert _champion(logged, "worse") == "1"


def test_a_tie_keeps_the_champion(logged):
    _register(logged, "tie", 0.7)

    _, promoted, _ = _register(logged, "tie", 0.7)

    assert promoted is False
    assert _champion(logged, "tie") == "1"


def test_a_better_version_takes_the_alias(logged):
    _register(logged, "better", 0.6)

    _, promoted, reason = _register(logged, "better", 0.9)

    assert promoted is True
    assert reason == "test_accuracy 0.9000 beats the champion's 0.6000 (version 1)"
    assert _champion(logged, "better") == "2"


def test_a_version_scored_on_another_dataset_does_not_take_the_alias(logged):
    _register(logged, "other-data", 0.5)

    _, promoted, reason = _register(logged, "other-data", 0.99, digest="e" * 64)

    assert promoted is False
    assert reason.startswith("the champion (version 1) was scored on another dataset")
    assert _champion(logged, "other-data") == "1"


@pytest.mark.parametrize("promote, champion", [("always", "2"), ("never", "1")])
def test_promote_always_and_never_ignore_the_scores(logged, promote, champion):
    name = f"promote-{promote}"
    _register(logged, name, 0.9)

    _, promoted, reason = _register(logged, name, 0.1, promote=promote)

    assert promoted is (promote == "always")
    assert reason == f"--promote {promote}"
    assert _champion(logged, name) == champion


def test_a_champion_without_the_metric_keeps_the_alias(logged):
    tracker, info, _ = logged
    tracker.register(
        info.model_uri, "no-metric", tags={"dataset_digest": DIGEST}, description="",
        metric="test_accuracy", promote="always",
    )

    _, promoted, reason = _register(logged, "no-metric", 0.9)

    assert promoted is False
    assert reason.startswith("the champion (version 1) has no test_accuracy tag")
    assert _champion(logged, "no-metric") == "1"


def test_an_unknown_promote_rule_is_refused_before_registering(logged):
    tracker = logged[0]

    allowed = "one of better, always, never; received promote='sometimes'"
    with pytest.raises(ValueError, match=allowed):
        _register(logged, "bad-rule", 0.5, promote="sometimes")

    found = tracker.client.search_registered_models(filter_string="name = 'bad-rule'")
    assert found == []


def test_better_needs_a_finite_metric_tag(logged):
    with pytest.raises(ValueError, match="received test_accuracy=nan"):
        _register(logged, "nan-metric", float("nan"))


def test_each_version_records_its_tags_description_and_promotion(logged):
    tracker = logged[0]
    _register(logged, "recorded", 0.8)
    _register(logged, "recorded", 0.4)

    first = tracker.client.get_model_version("recorded", "1")
    second = tracker.client.get_model_version("recorded", "2")

    assert (first.tags["promoted"], second.tags["promoted"]) == ("True", "False")
    assert second.tags["promotion"].endswith(
        "does not beat the champion's 0.8000 (version 1)"
    )
    assert second.tags["dataset_digest"] == DIGEST
    assert second.tags["test_accuracy"] == "0.4"
    assert second.description == "accuracy 0.4"
