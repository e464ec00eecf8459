"""The registered champion behind ``mlflow models serve``, asked over loopback HTTP.

A classifier is built from the ``quick`` search space, trained for one epoch on digits,
logged and registered with the tracker's own calls (as a search does), so that it holds
the ``champion`` alias in a SQLite store in a temporary folder. Then

    mlflow models serve -m models:/NAME@champion --env-manager local \\
        --host 127.0.0.1 --port PORT

runs as a subprocess on a free loopback port; the tests post images in MLflow's REST
scoring protocol (``{"inputs": ...}`` to ``/invocations``) and compare the answers with
the same model loaded in this process. The server's process group is always stopped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytestmark = pytest.mark.slow

MODEL = "served-classifier"
MODEL_URI = f"models:/{MODEL}@champion"


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """Registers a one-epoch classifier as champion; returns the store and images."""
    import keras_tuner

    from contrastive.data import load_dataset
    from contrastive.hypermodel import ContrastiveHyperModel
    from contrastive.search_space import load_search_space
    from contrastive.tracking import Tracker

    tmp = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    dataset = load_dataset("digits", label_fraction=0.1, seed=0)
    hypermodel = ContrastiveHyperModel(
        load_search_space("quick"), dataset.input_shape, dataset.num_classes,
        dataset.value_range, seed=0,
    )
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    hypermodel.fit(hp, model, dataset, epochs=1, verbose=0)
    inference = model.inference_model()

    tracker = Tracker(uri, "serving")
    run_id = tracker.create_run("best-trial")
    info = tracker.log_inference_model(
        run_id, inference,
        metadata={"class_names": list(dataset.class_names),
                  "value_range": list(dataset.value_range)},
    )
    tags = {"dataset_digest": dataset.digest, "test_accuracy": 0.5}
    _, promoted, _ = tracker.register(
        info.model_uri, MODEL, tags=tags, description="served in a test",
        metric="test_accuracy",
    )
    assert promoted
    images = dataset.x_test[:16]
    return {"tmp": tmp, "uri": uri, "images": images,
            "expected": inference.predict(images, verbose=0)}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def server(champion):
    """``mlflow models serve`` of the champion on 127.0.0.1; yields its base URL."""
    tmp = champion["tmp"]
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": champion["uri"],
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # The server starts uvicorn by name: it must be this environment's.
        "PATH": os.pathsep.join(
            [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
        ),
    }
    env.pop("MLFLOW_RUN_ID", None)
    log_path = tmp / "serve.log"
    base = f"http://127.0.0.1:{port}"

    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", MODEL_URI,
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: uvicorn is a grandchild
        )
        try:
            deadline = time.monotonic() + 240
            while not _answers(f"{base}/ping"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"mlflow models serve did not come up ({process.poll()}):\n"
                        f"{log_path.read_text()[-4000:]}"
                    )
                time.sleep(0.5)
            yield base
        finally:
            _stop(process)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Nothing of the group may outlive the test, whatever the leader did.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_served_champion_answers_like_the_model_in_process(champion, server):
    import mlflow

    from contrastive.serving import load_classifier

    images = champion["images"]

    status, answer = _post(f"{server}/invocations", {"inputs": images.tolist()})

    assert status == 200
    served = np.asarray(answer["predictions"], dtype="float32")
    assert served.shape == (16, 10)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(served, champion["expected"], atol=1e-5)
    mlflow.set_tracking_uri(champion["uri"])
    pyfunc = mlflow.pyfunc.load_model(MODEL_URI)
    np.testing.assert_allclose(served, pyfunc.predict(images), atol=1e-5)
    classifier = load_classifier(MODEL_URI, tracking_uri=champion["uri"])
    assert served.argmax(axis=1).tolist() == classifier.predict(images).tolist()


def test_served_champion_refuses_images_of_another_shape(server):
    wrong = np.zeros((2, 4, 4, 1), dtype="float32")

    status, answer = _post(f"{server}/invocations", {"inputs": wrong.tolist()})

    assert status == 400
    assert "shape" in answer["message"]
