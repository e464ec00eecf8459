"""Tests for contrastive.assessment: scoring a registered model in a run of its own.

A tiny real Keras model is trained on scikit-learn's digits, logged and registered in a
temporary SQLite store the way a search does it (a trial run recording its dataset,
seed and label fraction), then assessed in-process on the digits test split, on an
.npz file and on an image folder. The metrics are recomputed here with scikit-learn.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
)
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from contrastive.assessment import (  # noqa: E402
    AssessmentError,
    EvaluationData,
    assess_model,
    cross_validated_embedding_metrics,
    match_to_model,
    resolve_lineage,
)
from contrastive.data import load_dataset  # noqa: E402
from contrastive.tracking import Tracker  # noqa: E402

MODEL_NAME = "tiny-classifier"
CHAMPION = f"models:/{MODEL_NAME}@champion"
EXPERIMENT = "assessment-tests"
DIGITS_SHAPE = (8, 8, 1)
DIGIT_NAMES = tuple(str(digit) for digit in range(10))


def _tiny_model(dataset) -> keras.Model:
    """A small classifier with an ``embedding`` layer, trained briefly on digits."""
    keras.utils.set_random_seed(0)
    images = keras.Input(shape=DIGITS_SHAPE, name="images")
    scaled = keras.layers.Rescaling(1 / 16, name="rescale")(images)
    hidden = keras.layers.Dense(24, activation="relu")(keras.layers.Flatten()(scaled))
    embeddings = keras.layers.Identity(name="embedding")(hidden)
    probabilities = keras.layers.Dense(10, activation="softmax")(embeddings)
    model = keras.Model(images, probabilities)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss="sparse_categorical_crossentropy")
    x = np.concatenate([dataset.x_labeled, dataset.x_val])
    y = np.concatenate([dataset.y_labeled, dataset.y_val])
    model.fit(x, y, epochs=15, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store holding one registered model, logged from a mock-free 'trial' run."""
    folder = tmp_path_factory.mktemp("assessment")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    dataset = load_dataset("digits", label_fraction=0.1, seed=0)
    model = _tiny_model(dataset)

    tracker = Tracker(uri, "training")
    run_id = tracker.create_run("trial-0", tags={
        "dataset_digest": dataset.digest, "dataset_source": dataset.source,
    })
    tracker.log_params(run_id, {"dataset": "digits", "seed": 0, "label_fraction": 0.1})
    info = tracker.log_inference_model(run_id, model, metadata={
        "class_names": list(DIGIT_NAMES), "input_shape": list(DIGITS_SHAPE),
        "value_range": [0.0, 16.0], "dataset": "digits",
    })
    tracker.register(
        info.model_uri, MODEL_NAME, tags={"dataset_digest": dataset.digest},
        description="tiny test model", metric="test_accuracy", promote="always",
    )
    return {"uri": uri, "folder": folder, "model": model, "dataset": dataset,
            "trial_run_id": run_id, "client": MlflowClient(uri)}


def _assess(store, **kwargs):
    return assess_model(CHAMPION, tracking_uri=store["uri"], experiment=EXPERIMENT,
                        **kwargs)


def _evaluation_runs(store) -> int:
    experiment = store["client"].get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return 0
    return len(store["client"].search_runs([experiment.experiment_id]))


def _embed(model, x) -> np.ndarray:
    embedder = keras.Model(model.input, model.get_layer("embedding").output)
    return np.asarray(embedder(x, training=False))


@pytest.fixture(scope="module")
def on_digits(store):
    """The registered model assessed on the digits test split it was held out from."""
    return _assess(store)


@pytest.fixture(scope="module")
def npz_file(store) -> Path:
    """The digits test split as an .npz file in the model's own 0-16 range."""
    path = store["folder"] / "digits_test.npz"
    np.savez(path, x=store["dataset"].x_test, y=store["dataset"].y_test)
    return path


@pytest.fixture(scope="module")
def on_npz(store, npz_file):
    return _assess(store, input_path=npz_file)


def _write_folder(root: Path, x: np.ndarray, y: np.ndarray, names) -> Path:
    """Writes images (0-16 digits) as 8-bit PNGs into one sub-folder per class."""
    for index, (image, label) in enumerate(zip(x, y)):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.round(image[..., 0] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{index}.png")
    return root


# Metrics against scikit-learn ---------------------------------------------------------


@pytest.mark.slow
def test_classification_metrics_equal_sklearn_on_the_models_predictions(
    store, on_digits
):
    dataset = store["dataset"]
    predicted = store["model"].predict(dataset.x_test, verbose=0).argmax(axis=1)
    expected = {"test_accuracy": accuracy_score(dataset.y_test, predicted)}
    for average in ("macro", "weighted"):
        for name, score in (("precision", precision_score), ("recall", recall_score),
                            ("f1", f1_score)):
            expected[f"test_{name}_{average}"] = score(
                dataset.y_test, predicted, average=average, zero_division=0
            )

    assert on_digits.metrics["test_accuracy"] > 0.8
    for name, value in expected.items():
        assert on_digits.metrics[name] == pytest.approx(value, abs=1e-6), name


@pytest.mark.slow
def test_embedding_metrics_equal_sklearn_fitted_on_the_labelled_training_split(
    store, on_digits
):
    dataset, model = store["dataset"], store["model"]
    reference = _embed(model, dataset.x_labeled)
    test = _embed(model, dataset.x_test)
    knn = KNeighborsClassifier(n_neighbors=5, metric="cosine").fit(
        reference, dataset.y_labeled
    )
    probe = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=5000, random_state=0)
    ).fit(reference, dataset.y_labeled)

    assert on_digits.metrics["test_knn_accuracy"] == pytest.approx(
        accuracy_score(dataset.y_test, knn.predict(test)), abs=1e-6
    )
    assert on_digits.metrics["test_linear_probe_accuracy"] == pytest.approx(
        accuracy_score(dataset.y_test, probe.predict(test)), abs=1e-6
    )
    assert on_digits.embedding_reference == "the labelled training split of the dataset"


# The run and its links ----------------------------------------------------------------


@pytest.mark.slow
def test_run_is_linked_to_the_model_version_and_its_training_run(store, on_digits):
    run = store["client"].get_run(on_digits.run_id)
    tags = run.data.tags
    version = store["client"].get_model_version_by_alias(MODEL_NAME, "champion")

    assert tags["model_uri"] == CHAMPION
    assert tags["model_name"] == MODEL_NAME
    assert tags["model_version"] == str(version.version) == "1"
    assert tags["model_alias"] == "champion"
    assert tags["model_source_run_id"] == store["trial_run_id"]
    assert tags["model_id"] == version.source.split("/")[-1]
    assert tags["split_matches_training"] == "true"
    assert [model.model_id for model in run.inputs.model_inputs] == [tags["model_id"]]
    assert run.info.status == "FINISHED"


@pytest.mark.slow
def test_run_holds_reports_and_pictures_of_the_evaluated_set(
    store, on_digits, tmp_path
):
    client = store["client"]
    run_id = on_digits.run_id
    plots = {item.path for item in client.list_artifacts(run_id, "plots")}
    assert plots == {
        "plots/confusion_matrix.png", "plots/embeddings_pca.png",
        "plots/embeddings_tsne.png", "plots/raw_vs_embeddings_tsne.png",
    }

    confusion = json.loads(Path(client.download_artifacts(
        run_id, "evaluation/confusion_matrix.json", str(tmp_path))).read_text())
    report = json.loads(Path(client.download_artifacts(
        run_id, "evaluation/per_class_report.json", str(tmp_path))).read_text())
    summary = json.loads(Path(client.download_artifacts(
        run_id, "evaluation/summary.json", str(tmp_path))).read_text())
    test_size = len(store["dataset"].y_test)

    assert confusion["class_names"] == list(DIGIT_NAMES)
    assert np.asarray(confusion["matrix"]).sum() == test_size
    assert report["weighted avg"]["support"] == test_size
    assert summary["data"]["num_samples"] == test_size
    assert summary["metrics"] == pytest.approx(on_digits.metrics)
    assert client.get_run(run_id).data.params["split"] == "test"


@pytest.mark.slow
def test_runs_uri_resolves_to_its_run_without_a_registered_version(store):
    import mlflow

    mlflow.set_tracking_uri(store["uri"])
    lineage = resolve_lineage(f"runs:/{store['trial_run_id']}/model", store["client"])

    assert lineage.source_run_id == store["trial_run_id"]
    assert lineage.registered_name is None and lineage.version is None
    assert lineage.training["seed"] == "0"
    assert "model_version" not in lineage.tags()


@pytest.mark.parametrize("suffix", ["/1", "/latest", "@champion"])
def test_version_latest_and_alias_uris_resolve_to_the_registered_version(
    store, suffix
):
    import mlflow

    mlflow.set_tracking_uri(store["uri"])
    lineage = resolve_lineage(f"models:/{MODEL_NAME}{suffix}", store["client"])

    assert (lineage.registered_name, lineage.version) == (MODEL_NAME, "1")
    assert lineage.alias == ("champion" if suffix == "@champion" else None)
    assert lineage.source_run_id == store["trial_run_id"]


@pytest.mark.slow
def test_split_with_another_seed_is_flagged_as_possibly_overlapping_training(store):
    result = _assess(store, seed=1)
    tags = store["client"].get_run(result.run_id).data.tags

    assert tags["split_matches_training"] == "false"
    assert "may hold images the model was trained on" in result.warnings[0]
    assert "seed 1" in tags["caution"]


# Inputs: files and folders ------------------------------------------------------------


@pytest.mark.slow
def test_npz_input_scores_like_the_same_images_as_a_test_split(on_npz, on_digits):
    for name in ("test_accuracy", "test_f1_macro", "test_precision_weighted"):
        assert on_npz.metrics[name] == pytest.approx(on_digits.metrics[name], abs=1e-9)
    assert on_npz.split == "all"
    assert on_npz.num_samples == on_digits.num_samples


@pytest.mark.slow
def test_npz_input_cross_validates_embedding_metrics_on_itself(store, on_npz):
    test = _embed(store["model"], store["dataset"].x_test)
    expected, how = cross_validated_embedding_metrics(
        test, np.asarray(store["dataset"].y_test, dtype=np.int64), k=5, seed=0
    )

    assert on_npz.embedding_reference == how
    assert how == "5-fold stratified cross-validation on the evaluated set"
    assert on_npz.metrics["test_knn_accuracy"] == pytest.approx(
        expected["knn_accuracy"], abs=1e-6
    )
    assert on_npz.metrics["test_linear_probe_accuracy"] == pytest.approx(
        expected["linear_probe_accuracy"], abs=1e-6
    )


@pytest.mark.slow
def test_image_folder_of_some_classes_is_rescaled_and_mapped_by_name(
    store, tmp_path
):
    dataset = store["dataset"]
    keep = np.isin(dataset.y_test, [3, 7])
    folder = _write_folder(tmp_path / "pngs", dataset.x_test[keep],
                           dataset.y_test[keep], DIGIT_NAMES)
    result = _assess(store, input_path=folder)
    report = json.loads(Path(store["client"].download_artifacts(
        result.run_id, "evaluation/per_class_report.json", str(tmp_path))).read_text())

    # Folder class 0 is "3" and class 1 is "7": they must land on the model's 3 and 7.
    assert report["3"]["support"] == int((dataset.y_test == 3).sum())
    assert report["7"]["support"] == int((dataset.y_test == 7).sum())
    assert report["0"]["support"] == 0
    predicted = store["model"].predict(dataset.x_test[keep], verbose=0).argmax(axis=1)
    expected = accuracy_score(dataset.y_test[keep], predicted)
    assert result.metrics["test_accuracy"] == pytest.approx(expected, abs=0.05)


# Bad input: errors that name both sides, and nothing written --------------------------


def _npz(tmp_path: Path, name: str = "bad.npz", **arrays) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.mark.slow
def test_input_of_another_shape_is_refused_naming_both_shapes(store, tmp_path):
    path = _npz(tmp_path, x=np.zeros((6, 28, 28), np.float32), y=np.arange(6) % 2)
    before = _evaluation_runs(store)

    with pytest.raises(AssessmentError, match=r"takes images of shape \(8, 8, 1\), "
                       r"but input .*bad\.npz has images of shape \(28, 28, 1\)"):
        _assess(store, input_path=path)
    assert _evaluation_runs(store) == before


@pytest.mark.slow
def test_input_with_more_classes_than_the_model_is_refused(store, tmp_path):
    x = np.repeat(store["dataset"].x_test[:1], 24, axis=0)
    path = _npz(tmp_path, x=x, y=np.arange(24) % 12)
    before = _evaluation_runs(store)

    with pytest.raises(AssessmentError, match=r"has labels 0-11 \(12 classes\), but "
                       r"model .* outputs 10 classes .*labels \[10, 11\]"):
        _assess(store, input_path=path)
    assert _evaluation_runs(store) == before


@pytest.mark.slow
def test_folder_with_class_names_the_model_lacks_is_refused(store, tmp_path):
    x = store["dataset"].x_test[:4]
    folder = _write_folder(tmp_path / "pets", x, np.array([0, 1, 0, 1]), ["cat", "dog"])

    with pytest.raises(AssessmentError, match=r"has 2 classes \['cat', 'dog'\], but "
                       r"model .* knows 10: \['0', '1'.*\['cat', 'dog'\] are not"):
        _assess(store, input_path=folder)


@pytest.mark.slow
def test_input_without_labelled_images_is_refused_as_empty(store, tmp_path):
    path = _npz(tmp_path, x=store["dataset"].x_test[:5], y=np.full(5, -1))

    with pytest.raises(AssessmentError, match=r"Input .*bad\.npz holds no labelled "
                       r"images; model .* needs at least one of shape \(8, 8, 1\)"):
        _assess(store, input_path=path)


@pytest.mark.slow
def test_pixels_outside_the_models_range_are_refused_naming_both_ranges(
    store, tmp_path
):
    x = store["dataset"].x_test[:6] * 255 / 16
    path = _npz(tmp_path, x=x, y=np.arange(6) % 3)

    with pytest.raises(AssessmentError, match=r"lie in \[0, 255\], but model .* "
                       r"takes values in \[0, 16\]"):
        _assess(store, input_path=path)


def test_unknown_registered_model_is_refused_listing_the_known_ones(store):
    with pytest.raises(AssessmentError, match=r"models:/no-such-model@champion is not "
                       rf"in the store.*Registered models there: \['{MODEL_NAME}'\]"):
        assess_model("models:/no-such-model@champion", tracking_uri=store["uri"],
                     experiment=EXPERIMENT)


def test_missing_sqlite_store_is_refused_without_creating_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'none.db'}"

    with pytest.raises(AssessmentError, match=r"No MLflow store at .*none\.db"):
        assess_model(CHAMPION, tracking_uri=uri)
    assert not (tmp_path / "none.db").exists()


def test_missing_input_is_refused_before_loading_anything(tmp_path):
    with pytest.raises(AssessmentError, match=r"Input not found: .*nothing\.npz"):
        assess_model(CHAMPION, input_path=tmp_path / "nothing.npz",
                     tracking_uri=f"sqlite:///{tmp_path / 'none.db'}")


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_k_that_is_not_a_positive_whole_number_is_refused(k, tmp_path):
    with pytest.raises(AssessmentError, match=rf"k must be a whole number >= 1.*"
                       rf"k={k!r}"):
        assess_model(CHAMPION, k=k, tracking_uri=f"sqlite:///{tmp_path / 'x.db'}")


def test_dataset_and_input_together_are_refused(tmp_path):
    from contrastive.assessment import ModelLineage, load_evaluation_data

    with pytest.raises(AssessmentError, match=r"either a dataset or an input, not "
                       r"both; received dataset='digits' and input='x.npz'"):
        load_evaluation_data(ModelLineage("runs:/r/model"), dataset="digits",
                             input_path="x.npz")


# Matching and cross-validation on plain arrays ----------------------------------------


def _data(x, y, names, *, has_names=True, value_range=(0.0, 16.0)) -> EvaluationData:
    return EvaluationData(
        name="arrays", source="/tmp/arrays.npz", split="all", x=x, y=y,
        class_names=tuple(names), value_range=value_range, digest="0",
        has_class_names=has_names,
    )


def test_unnamed_labels_are_taken_as_the_models_class_indices():
    data = _data(np.zeros((3, 8, 8, 1), np.float32), np.array([0, 1, 1]), ["0", "1"],
                 has_names=False)
    _, y, _, _ = match_to_model(data, input_shape=DIGITS_SHAPE,
                                class_names=("cat", "dog", "owl"), value_range=(0, 16))

    assert y.tolist() == [0, 1, 1]


def test_named_classes_are_reindexed_to_the_models_order():
    data = _data(np.zeros((3, 8, 8, 1), np.float32), np.array([0, 1, 1]),
                 ["owl", "cat"])
    _, y, _, _ = match_to_model(data, input_shape=DIGITS_SHAPE,
                                class_names=("cat", "dog", "owl"), value_range=(0, 16))

    assert y.tolist() == [2, 0, 0]


def test_data_in_another_full_range_is_rescaled_to_the_models():
    x = np.full((2, 8, 8, 1), 255.0, np.float32)
    data = _data(x, np.array([0, 1]), ["0", "1"], value_range=(0.0, 255.0))
    scaled, _, _, _ = match_to_model(data, input_shape=DIGITS_SHAPE,
                                     class_names=DIGIT_NAMES, value_range=(0, 16))

    assert float(scaled.max()) == pytest.approx(16.0)


def test_cross_validation_is_perfect_on_separated_clusters():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    points = np.eye(6)[labels] * 5 + rng.normal(scale=0.05, size=(60, 6))
    metrics, how = cross_validated_embedding_metrics(points, labels, k=3, seed=0)

    assert metrics == {"knn_accuracy": 1.0, "linear_probe_accuracy": 1.0}
    assert how.startswith("5-fold")


def test_cross_validation_is_near_chance_with_shuffled_labels():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(200, 8))
    labels = rng.permutation(np.repeat(np.arange(4), 50))
    metrics, _ = cross_validated_embedding_metrics(points, labels, seed=0)

    assert metrics["knn_accuracy"] < 0.45
    assert metrics["linear_probe_accuracy"] < 0.45


def test_cross_validation_uses_fewer_folds_for_small_classes():
    labels = np.repeat(np.arange(2), 3)
    points = np.eye(2)[labels] + 0.01 * np.arange(6)[:, None]
    _, how = cross_validated_embedding_metrics(points, labels)

    assert how == "3-fold stratified cross-validation on the evaluated set"


def test_cross_validation_is_left_out_for_a_single_sample_class():
    labels = np.array([0, 0, 0, 1])
    metrics, how = cross_validated_embedding_metrics(np.eye(4), labels)

    assert metrics is None
    assert how == ("left out: classes [1] have a single sample; cross-validation "
                   "needs at least 2 per class")


def test_cross_validation_is_left_out_for_a_single_class():
    metrics, how = cross_validated_embedding_metrics(np.eye(4), np.zeros(4, int))

    assert metrics is None
    assert "one class ([0])" in how


def test_assessment_module_imports_neither_tensorflow_nor_mlflow():
    import subprocess
    import sys

    code = ("import sys, contrastive.assessment; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'mlflow') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
