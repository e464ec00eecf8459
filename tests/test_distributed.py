"""Tests for contrastive.distributed: roles, joining a search, the mirrored strategy.

Keras Tuner's variables are read from dictionaries, never from this process's
environment. Joining a search runs against a real SQLite store and a real gRPC server
on 127.0.0.1 started here. The mirrored strategy needs two logical CPU devices, which
TensorFlow only accepts before it starts: those checks share one subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from contrastive.config import ConfigError, SearchConfig
from contrastive.distributed import (
    Cluster,
    ClusterError,
    check_oracle_port,
    check_store,
    cluster_environment,
    join_search,
    make_strategy,
    parse_oracle_address,
    read_cluster,
    set_cluster_environment,
    stop_on_sigterm,
    wait_for_chief,
    worker_result,
)

REPO = Path(__file__).resolve().parents[1]
DIGESTS = {"dataset_digest": "d" * 64, "search_space_digest": "s" * 64}
WORKER = Cluster("worker", "worker0", "127.0.0.1", 9)


def variables(tuner_id=None, host=None, port=None) -> dict[str, str]:
    found = {
        "KERASTUNER_TUNER_ID": tuner_id,
        "KERASTUNER_ORACLE_IP": host,
        "KERASTUNER_ORACLE_PORT": port,
    }
    return {name: value for name, value in found.items() if value is not None}


# Reading Keras Tuner's variables ------------------------------------------------------


def test_no_variables_mean_a_single_process():
    cluster = read_cluster({"PATH": "/bin"})

    assert cluster == Cluster()
    assert not cluster.is_chief and not cluster.is_worker
    assert cluster.oracle_address is None


def test_chief_variables_make_the_chief():
    cluster = read_cluster(variables("chief", "0.0.0.0", "8000"))

    assert cluster.is_chief
    assert cluster.oracle_address == "0.0.0.0:8000"


def test_worker_variables_make_a_worker_with_its_id():
    cluster = read_cluster(variables("worker3", "10.0.0.5", "8000"))

    assert cluster.is_worker
    assert (cluster.tuner_id, cluster.oracle_host, cluster.oracle_port) == (
        "worker3", "10.0.0.5", 8000,
    )


@pytest.mark.parametrize(
    "given, missing",
    [
        (variables("worker0", "127.0.0.1"), "KERASTUNER_ORACLE_PORT is not set"),
        (variables(host="127.0.0.1", port="8000"), "KERASTUNER_TUNER_ID is not set"),
        (variables("chief"), "KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT are not"),
    ],
)
def test_some_variables_without_the_others_are_refused(given, missing):
    with pytest.raises(ClusterError, match=missing):
        read_cluster(given)


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_port_outside_1_to_65535_is_refused(port):
    expected = f"port in 1-65535.*received '127.0.0.1:{port}'"
    with pytest.raises(ClusterError, match=expected):
        read_cluster(variables("worker0", "127.0.0.1", port))


def test_worker_id_that_keras_tuner_would_take_for_the_chief_is_refused():
    # Keras Tuner makes any tuner whose id contains "chief" a chief.
    with pytest.raises(ClusterError, match="Unusable worker id 'mischief'"):
        read_cluster(variables("mischief", "127.0.0.1", "8000"))


@pytest.mark.parametrize("worker_id", ["oracle", "mlflow_search", "../up", "a b"])
def test_worker_id_that_would_overwrite_files_is_refused(worker_id):
    with pytest.raises(ClusterError, match=f"Unusable worker id {worker_id!r}"):
        read_cluster(variables(worker_id, "127.0.0.1", "8000"))


# Options that set the variables -------------------------------------------------------


def test_worker_options_give_keras_tuners_variables():
    assert cluster_environment("worker", "worker1", "10.0.0.5:8000") == {
        "KERASTUNER_TUNER_ID": "worker1",
        "KERASTUNER_ORACLE_IP": "10.0.0.5",
        "KERASTUNER_ORACLE_PORT": "8000",
    }


def test_chief_options_give_the_chief_id():
    found = cluster_environment("chief", oracle_address="0.0.0.0:8000")

    assert found["KERASTUNER_TUNER_ID"] == "chief"


def test_ipv6_address_is_split_at_its_last_colon():
    assert parse_oracle_address("[::1]:8000") == ("[::1]", 8000)


@pytest.mark.parametrize("text", ["localhost", ":8000", "host:port", "host:0"])
def test_address_without_host_and_port_is_refused(text):
    with pytest.raises(ClusterError, match=f"HOST:PORT.*received {text!r}"):
        parse_oracle_address(text)


def test_worker_without_worker_id_is_refused():
    with pytest.raises(ClusterError, match="--role worker needs --worker-id"):
        cluster_environment("worker", None, "127.0.0.1:8000")


def test_chief_with_a_worker_id_is_refused():
    with pytest.raises(ClusterError, match="--worker-id is for workers"):
        cluster_environment("chief", "worker0", "127.0.0.1:8000")


def test_role_without_oracle_address_is_refused():
    with pytest.raises(ClusterError, match="--role chief needs --oracle-address"):
        cluster_environment("chief")


def test_options_set_the_variables_and_return_the_cluster():
    environ: dict[str, str] = {}

    cluster = set_cluster_environment("worker", "worker0", "127.0.0.1:8000", environ)

    assert environ["KERASTUNER_TUNER_ID"] == "worker0"
    assert cluster.is_worker and cluster.oracle_port == 8000


def test_options_never_override_other_values_already_set():
    environ = variables("worker0", "10.0.0.5", "8000")

    with pytest.raises(ClusterError, match="KERASTUNER_ORACLE_IP='10.0.0.5'"):
        set_cluster_environment("worker", "worker0", "127.0.0.1:8000", environ)


def test_no_role_leaves_variables_set_by_hand():
    environ = variables("chief", "127.0.0.1", "8000")

    assert set_cluster_environment(None, environ=environ).is_chief


def test_worker_options_without_role_are_refused():
    with pytest.raises(ClusterError, match="need --role chief or --role worker"):
        set_cluster_environment(None, "worker0", None, {})


def test_tune_script_passes_the_cluster_options_and_keeps_the_rest_in_the_config():
    script = REPO / "scripts" / "tune.py"
    spec = importlib.util.spec_from_file_location("tune_script", script)
    tune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tune)

    config, repeat_run, cluster = tune.parse_args([
        "--role", "worker", "--worker-id", "w0", "--oracle-address", "127.0.0.1:8000",
        "--parent-run-id", "abc", "--chief-timeout", "30", "--strategy", "mirrored",
    ])

    assert cluster == {
        "role": "worker", "worker_id": "w0", "oracle_address": "127.0.0.1:8000"
    }
    assert (config.parent_run_id, config.chief_timeout, config.strategy) == (
        "abc", 30.0, "mirrored",
    )
    assert repeat_run is None


# What each role may be given ----------------------------------------------------------


CHIEF = Cluster("chief", "chief", "127.0.0.1", 9)


@pytest.mark.parametrize("cluster", [Cluster(), CHIEF])
def test_parent_run_id_is_refused_outside_a_worker(cluster):
    with pytest.raises(ClusterError, match="--parent-run-id is for workers"):
        cluster.check(SearchConfig(parent_run_id="abc"))


def test_overwrite_is_refused_on_a_worker():
    with pytest.raises(ClusterError, match="would delete the chief's tuner folder"):
        WORKER.check(SearchConfig(overwrite=True))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"strategy": "horovod"}, "Unknown strategy 'horovod'; allowed: none, mirr"),
        ({"chief_timeout": 0}, "chief_timeout must be a number of seconds > 0"),
        ({"chief_timeout": float("nan")}, "chief_timeout must be a number of seconds"),
        ({"parent_run_id": " "}, "parent_run_id must be a run id"),
    ],
)
def test_config_refuses_bad_distributed_settings(settings, message):
    with pytest.raises(ConfigError, match=message):
        SearchConfig(**settings).validate()


def test_chief_refuses_a_port_that_is_taken():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(ClusterError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_oracle_port(Cluster("chief", "chief", "127.0.0.1", port))


def test_sqlite_store_shared_by_processes_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="contrastive.distributed"):
        check_store(WORKER, "sqlite:////tmp/mlflow.db")
        check_store(WORKER, "http://127.0.0.1:5000")
        check_store(Cluster(), "sqlite:////tmp/mlflow.db")

    assert len(caplog.records) == 1
    assert "database is locked" in caplog.records[0].getMessage()


# Waiting for the chief ----------------------------------------------------------------


@pytest.fixture
def grpc_server():
    """A bare gRPC server on 127.0.0.1: what a worker waits for is a connection."""
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(None)


def test_worker_gives_up_on_a_chief_that_never_answers(sqlite_uri):
    # A port held here, never listened on: connections to it are refused.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        cluster = Cluster("worker", "worker0", "127.0.0.1", held.getsockname()[1])
        started = time.monotonic()

        with pytest.raises(ClusterError, match="no chief answered at 127.0.0.1:.* 1 s"):
            wait_for_chief(cluster, sqlite_uri, "exp", timeout=1)

    assert time.monotonic() - started < 10


def test_worker_refuses_a_store_without_the_chiefs_experiment(grpc_server, sqlite_uri):
    cluster = Cluster("worker", "worker0", "127.0.0.1", grpc_server)

    with pytest.raises(ClusterError, match="experiment 'exp' is not in the store"):
        wait_for_chief(cluster, sqlite_uri, "exp", timeout=30)


def test_worker_goes_on_as_soon_as_the_chief_answers(grpc_server, sqlite_uri):
    from mlflow.tracking import MlflowClient

    MlflowClient(sqlite_uri).create_experiment("exp")
    cluster = Cluster("worker", "worker0", "127.0.0.1", grpc_server)
    started = time.monotonic()

    wait_for_chief(cluster, sqlite_uri, "exp", timeout=30)

    assert time.monotonic() - started < 10


# Joining the chief's search run -------------------------------------------------------


@pytest.fixture
def chief_search(tmp_path, sqlite_uri):
    """A search run as the chief leaves it: params, digests and files in the folder."""
    from contrastive.tracking import Tracker

    tracker = Tracker(sqlite_uri, "exp")
    config = SearchConfig(
        tracking_uri=sqlite_uri, tuner_dir=str(tmp_path), experiment="exp"
    )
    run_id = tracker.create_run("search", tags=DIGESTS)
    tracker.log_params(run_id, {**config.fixed_params(), "max_trials": 4})
    folder = tmp_path / "exp"
    folder.mkdir()
    state_file = folder / "mlflow_search.json"
    state_file.write_text(json.dumps({"parent_run_id": run_id}))
    (folder / "oracle.json").write_text("{}")
    return {
        "tracker": tracker, "config": config, "run_id": run_id, "state_file": state_file
    }


def join(chief_search, *, tags=DIGESTS, timeout=5.0, **settings) -> str:
    import dataclasses

    config = dataclasses.replace(chief_search["config"], **settings)
    return join_search(
        chief_search["tracker"], config, WORKER, chief_search["state_file"], dict(tags),
        timeout=timeout,
    )


def test_worker_joins_the_run_named_in_the_chiefs_state_file(chief_search):
    assert join(chief_search) == chief_search["run_id"]


def test_worker_given_the_chiefs_run_id_joins_it(chief_search):
    run_id = chief_search["run_id"]

    assert join(chief_search, parent_run_id=run_id) == run_id


def test_worker_given_another_run_id_than_the_chiefs_is_refused(chief_search):
    with pytest.raises(ClusterError, match="--parent-run-id 0123.*but the chief's"):
        join(chief_search, parent_run_id="0123" * 8)


def test_worker_with_other_settings_is_refused_naming_them(chief_search):
    with pytest.raises(ClusterError, match=r"the chief's \(epochs '40' -> '3'"):
        join(chief_search, epochs=3)


def test_worker_with_other_data_is_refused(chief_search):
    other = {**DIGESTS, "dataset_digest": "e" * 64}

    with pytest.raises(ClusterError, match="dataset_digest 'd{12}' -> 'e{12}'"):
        join(chief_search, tags=other)


def test_worker_may_read_the_same_data_from_another_path(chief_search):
    # Machines mount data in different places: the digest, not the path, must match.
    assert join(chief_search, dataset="/mnt/elsewhere/digits") == chief_search["run_id"]


def test_worker_does_not_join_a_finished_search(chief_search):
    chief_search["tracker"].set_terminated(chief_search["run_id"], "FINISHED")

    with pytest.raises(ClusterError, match="is FINISHED; that search is over"):
        join(chief_search)


def test_worker_without_the_chiefs_files_is_refused(chief_search):
    (chief_search["state_file"].parent / "oracle.json").unlink()

    with pytest.raises(ClusterError, match="need the same tuner folder"):
        join(chief_search, timeout=0.5)


def test_worker_refuses_a_run_that_is_not_in_its_store(chief_search):
    chief_search["state_file"].write_text(json.dumps({"parent_run_id": "f" * 32}))

    with pytest.raises(ClusterError, match="run 'f{32}' is not in experiment 'exp'"):
        join(chief_search)


def test_worker_result_lists_the_trials_run_under_its_id(chief_search):
    tracker, parent = chief_search["tracker"], chief_search["run_id"]
    for trial_id, tuner_id in (("0", "worker0"), ("1", "worker1"), ("2", "worker0")):
        tracker.create_run(
            f"trial-{trial_id}", parent_run_id=parent,
            tags={"trial_id": trial_id, "tuner_id": tuner_id},
        )

    result = worker_result(tracker, WORKER, parent)

    assert result.trial_ids == ["0", "2"]
    assert (result.parent_run_id, result.tuner_id) == (parent, "worker0")


# Stopping -----------------------------------------------------------------------------


def test_sigterm_unwinds_like_ctrl_c():
    previous = signal.getsignal(signal.SIGTERM)
    try:
        stop_on_sigterm()
        with pytest.raises(KeyboardInterrupt, match="stopped by signal 15"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    finally:
        signal.signal(signal.SIGTERM, previous)


# The strategy -------------------------------------------------------------------------


def test_no_strategy_is_none():
    assert make_strategy("none") is None


def test_unknown_strategy_is_refused():
    with pytest.raises(ConfigError, match="Unknown strategy 'tpu'; allowed: none, mi"):
        make_strategy("tpu")


# What runs with two logical CPU devices, in one subprocess: the strategy's replicas,
# one optimiser step on each side, and a few epochs of a real hypermodel on digits.
TWO_CPUS = textwrap.dedent(
    """
    import json, os, sys
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras
    import keras_tuner
    from contrastive.data import load_dataset
    from contrastive.distributed import make_strategy
    from contrastive.hypermodel import ContrastiveHyperModel, TrainingSettings
    from contrastive.model import ContrastiveModel
    from contrastive.search_space import load_search_space

    out = {}
    strategy = make_strategy("mirrored")
    out["replicas"] = strategy.num_replicas_in_sync
    out["one_per_process"] = make_strategy("mirrored") is strategy


    def tiny(shape=(4, 4, 1)):
        # Dense layers only: no batch statistics, so the two sides may agree exactly.
        keras.utils.set_random_seed(0)
        x = keras.Input(shape)
        encoder = keras.Model(x, keras.layers.Dense(5)(keras.layers.Flatten()(x)))
        e = keras.Input((5,))
        projector = keras.Model(e, keras.layers.Dense(3)(e))
        c = keras.Input((5,))
        classifier = keras.Model(c, keras.layers.Dense(3)(c))
        a = keras.Input(shape)
        augmenter = keras.Model(a, keras.layers.Identity()(a))
        model = ContrastiveModel(
            encoder, projector, classifier, augmenter, (0.0, 1.0), loss_weight=0.0
        )
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        model.build_from_shape(shape)
        return model


    rng = np.random.default_rng(0)
    batch = (
        rng.random((8, 4, 4, 1), dtype="float32"),
        rng.integers(0, 3, 8).astype("int32"),
        rng.random((8, 4, 4, 1), dtype="float32"),
    )
    data = tf.data.Dataset.from_tensors(batch)
    single = tiny()
    start = single.get_weights()
    single.fit(data, epochs=1, verbose=0)
    with strategy.scope():
        mirrored = tiny()
    mirrored.set_weights(start)
    mirrored.fit(data, epochs=1, verbose=0)
    steps = [
        (np.asarray(a) - s, np.asarray(b) - s)
        for a, b, s in zip(single.get_weights(), mirrored.get_weights(), start)
    ]
    out["step_difference"] = max(float(np.abs(a - b).max()) for a, b in steps)
    out["step_size"] = max(float(np.abs(a).max()) for a, _ in steps)

    dataset = load_dataset("digits", label_fraction=0.5, seed=0)
    space = load_search_space("quick")
    for name in ("none", "mirrored"):
        hypermodel = ContrastiveHyperModel(
            space, dataset.input_shape, dataset.num_classes, dataset.value_range,
            settings=TrainingSettings(32, 96), seed=0,
        )
        strategy = make_strategy(name)
        keras.utils.set_random_seed(0)
        hp = keras_tuner.HyperParameters()
        if strategy is None:
            model = hypermodel.build(hp)
        else:
            with strategy.scope():
                model = hypermodel.build(hp)
        history = hypermodel.fit(hp, model, dataset, epochs=6, verbose=0)
        inference = model.inference_model()
        probabilities = np.asarray(inference.predict(dataset.x_test, verbose=0))
        out[name] = {
            "class": type(model).__name__,
            "shapes": [list(w.shape) for w in model.get_weights()],
            "inference_output": list(probabilities.shape),
            "probability_sums": [float(probabilities.sum(axis=1).min()),
                                 float(probabilities.sum(axis=1).max())],
            "history": history.history,
        }
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def two_cpus() -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", TWO_CPUS], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise AssertionError(f"the two-CPU script failed:\n{done.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
def test_mirrored_strategy_replicates_over_the_logical_cpus(two_cpus):
    assert two_cpus["replicas"] == 2


@pytest.mark.slow
def test_a_process_makes_one_mirrored_strategy(two_cpus):
    # A second one over the same devices would break TensorFlow's collective ops.
    assert two_cpus["one_per_process"] is True


@pytest.mark.slow
def test_mirrored_step_is_the_one_device_step(two_cpus):
    # Without dividing each replica's loss by the number of replicas the mirrored
    # step would be twice as long.
    assert two_cpus["step_size"] > 1e-3
    assert two_cpus["step_difference"] < 1e-5 * max(1.0, two_cpus["step_size"])


@pytest.mark.slow
def test_mirrored_training_builds_the_same_kind_of_model(two_cpus):
    single, mirrored = two_cpus["none"], two_cpus["mirrored"]

    assert mirrored["class"] == single["class"] == "ContrastiveModel"
    assert mirrored["shapes"] == single["shapes"]
    assert mirrored["inference_output"] == single["inference_output"] == [270, 10]
    assert mirrored["probability_sums"] == pytest.approx([1.0, 1.0], abs=1e-4)


@pytest.mark.slow
def test_mirrored_training_logs_the_same_finite_metrics(two_cpus):
    import math

    single, mirrored = two_cpus["none"]["history"], two_cpus["mirrored"]["history"]

    assert sorted(mirrored) == sorted(single)
    for name, values in mirrored.items():
        assert len(values) == 6 and all(math.isfinite(v) for v in values), name
        if name.endswith("accuracy"):
            assert all(0.0 <= v <= 1.0 for v in values), name


@pytest.mark.slow
def test_mirrored_training_reaches_a_similar_accuracy(two_cpus):
    single = max(two_cpus["none"]["history"]["val_accuracy"])
    mirrored = max(two_cpus["mirrored"]["history"]["val_accuracy"])

    assert single > 0.6 and mirrored > 0.6
    assert abs(single - mirrored) < 0.15
