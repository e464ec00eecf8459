"""Assessing a finished model on labelled data, in an MLflow run of its own.

A search scores every trial on the test split it held out. `assess_model` scores any
logged or registered model again, later and on any labelled data: a dataset's test
split (``--dataset`` of ``scripts/evaluate.py``), or all of an ``.npz`` file or image
folder (``--input``). It reports what the trials report (the ``test_`` metrics, the
per-class report, the confusion matrix, t-SNE and PCA of the embeddings and the raw
inputs beside them), through `contrastive.reporting`, so the numbers line up with the
search's in the MLflow UI.

Three concerns make it a module of its own:

* **Lineage.** The evaluation run is linked to what it scored: the model URI, the
  registered name, version and alias, the logged model (also recorded as the run's
  model input) and the run and search that trained it (`ModelLineage`).
* **Matching.** Data the model cannot take is refused before anything is written to
  the store, with a message that names both sides: an input shape other than the
  model's, an empty set, classes the model does not know, pixel values outside the
  model's range (`match_to_model`).
* **Reference sets.** k-NN and linear-probe accuracy need labelled reference
  embeddings. A dataset's labelled training split is the reference, as in the trials,
  and by default it is the split the model was trained with (seed and label fraction
  come from the training run). A bare ``--input`` has no training split: the two
  scores are then cross-validated on the evaluated set itself (stratified k-fold,
  `cross_validated_embedding_metrics`), or left out with the reason logged.

TensorFlow and MLflow are imported inside the functions that need them, so importing
this module (and ``scripts/evaluate.py --help``) stays fast.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CV_FOLDS",
    "DEFAULT_EXPERIMENT",
    "DEFAULT_MODEL_URI",
    "AssessmentError",
    "AssessmentResult",
    "EvaluationData",
    "ModelLineage",
    "assess_model",
    "cross_validated_embedding_metrics",
    "load_evaluation_data",
    "match_to_model",
    "resolve_lineage",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_URI = "models:/contrastive-classifier@champion"
"""The model `assess_model` scores when none is named: the registered champion."""

DEFAULT_EXPERIMENT = "contrastive-evaluation"
"""The MLflow experiment evaluation runs go to unless another is named."""

CV_FOLDS = 5
"""Folds of the cross-validated embedding metrics (fewer for small classes)."""

# Settings of the training run that decide which samples a dataset's splits hold.
_DATASET_OPTIONS = ("image_size", "color_mode", "unlabeled_dir", "test_path")

_COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}

# Pixel values are compared to the model's range with this slack, so float rounding
# in a rescale does not turn good data into an error.
_RANGE_SLACK = 1e-4


class AssessmentError(ValueError):
    """Data or a model that cannot be assessed; the message names both sides."""


@dataclasses.dataclass(frozen=True)
class ModelLineage:
    """Where a model came from, as far as the store knows.

    Args:
        model_uri: The URI the model was loaded from.
        registered_name: The registered model's name, for a ``models:/NAME...`` URI.
            Defaults to None.
        version: The registered version. Defaults to None.
        alias: The alias the URI named (e.g. ``champion``). Defaults to None.
        stage: The stage the URI named (MLflow's older registry). Defaults to None.
        model_id: MLflow's logged-model id (``m-...``). Defaults to None.
        source_run_id: The run that logged the model (a trial run). Defaults to None.
        search_run_id: The search run that trial belonged to. Defaults to None.
        training: What the source run recorded about its data: ``dataset``,
            ``dataset_source``, ``dataset_digest``, ``seed``, ``label_fraction`` and
            any of image_size, color_mode, unlabeled_dir, test_path. Defaults to
            an empty dict.
    """

    model_uri: str
    registered_name: str | None = None
    version: str | None = None
    alias: str | None = None
    stage: str | None = None
    model_id: str | None = None
    source_run_id: str | None = None
    search_run_id: str | None = None
    training: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def tags(self) -> dict[str, str]:
        """The evaluation run's tags that link it to the model (only known ones)."""
        tags = {
            "model_uri": self.model_uri,
            "model_name": self.registered_name,
            "model_version": self.version,
            "model_alias": self.alias,
            "model_stage": self.stage,
            "model_id": self.model_id,
            "model_source_run_id": self.source_run_id,
            "model_search_run_id": self.search_run_id,
            "model_trained_on": self.training.get("dataset"),
            "model_dataset_digest": self.training.get("dataset_digest"),
        }
        return {key: str(value) for key, value in tags.items() if value is not None}

    def describe(self) -> str:
        """Names the model in messages: its version or URI and its training data."""
        name = self.model_uri
        if self.registered_name and self.version:
            name = f"{self.registered_name} version {self.version} ({self.model_uri})"
        trained_on = self.training.get("dataset")
        return f"{name}, trained on {trained_on!r}," if trained_on else name


@dataclasses.dataclass(frozen=True)
class EvaluationData:
    """Labelled images to evaluate on, before they are matched to a model.

    Args:
        name: The dataset's name, or the file or folder name.
        source: Where the images came from.
        split: ``"test"`` (a dataset's test split) or ``"all"`` (a whole input).
        x: ``(N, H, W, C)`` float32 images in ``value_range``.
        y: ``(N,)`` labels, indices into ``class_names``.
        class_names: The data's own class names.
        value_range: ``(low, high)`` of the pixel values of ``x``.
        digest: sha256 over the images, labels and split settings.
        x_reference: Labelled training images for the embedding metrics, or None
            (cross-validation on ``x`` instead). Defaults to None.
        y_reference: Their labels. Defaults to None.
        has_class_names: Whether the source named its classes; without names
            (an ``.npz`` without ``class_names``) labels are the model's class
            indices. Defaults to True.
        seed: The split seed, for a dataset. Defaults to None.
        label_fraction: The label fraction of the split, for a dataset. Defaults
            to None.
    """

    name: str
    source: str
    split: str
    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    value_range: tuple[float, float]
    digest: str
    x_reference: np.ndarray | None = None
    y_reference: np.ndarray | None = None
    has_class_names: bool = True
    seed: int | None = None
    label_fraction: float | None = None

    def describe(self) -> str:
        """A short name for messages, e.g. ``the test split of dataset 'digits'``."""
        if self.split == "test":
            return f"the test split of dataset {self.name!r}"
        return f"input {self.source}"


@dataclasses.dataclass(frozen=True)
class AssessmentResult:
    """What `assess_model` recorded.

    Args:
        run_id: The evaluation run.
        experiment: Its experiment's name.
        experiment_id: Its experiment's id.
        tracking_uri: The store.
        metrics: The ``test_`` metrics logged.
        lineage: Where the model came from.
        data_name: The evaluated dataset or input.
        split: ``"test"`` or ``"all"``.
        num_samples: Images evaluated.
        embedding_reference: Where the embedding metrics' reference came from, or
            why they were left out.
        warnings: Cautions about the result (e.g. a split other than the model's).
    """

    run_id: str
    experiment: str
    experiment_id: str
    tracking_uri: str
    metrics: dict[str, float]
    lineage: ModelLineage
    data_name: str
    split: str
    num_samples: int
    embedding_reference: str
    warnings: tuple[str, ...] = ()


# Lineage ----------------------------------------------------------------------------


def _registry_reference(model_uri: str) -> tuple[str, str, str] | None:
    """Splits a registry URI into ``(name, kind, value)``; None for other URIs.

    ``kind`` is ``"version"``, ``"alias"``, ``"latest"`` or ``"stage"``. A
    ``models:/m-...`` URI names a logged model, not a registered one: None.
    """
    if not model_uri.startswith("models:/"):
        return None
    rest = model_uri[len("models:/"):].strip("/")
    if "/" in rest:
        name, suffix = rest.split("/", 1)
        if suffix.isdigit():
            return name, "version", suffix
        if suffix.lower() == "latest":
            return name, "latest", suffix
        return name, "stage", suffix
    if "@" in rest:
        name, alias = rest.rsplit("@", 1)
        return name, "alias", alias
    return None


def _model_version(client, model_uri: str, reference: tuple[str, str, str]):
    """Looks up the registered version a registry URI names (None for a stage).

    Raises:
        AssessmentError: When the name, version or alias is not in the store.
    """
    import mlflow

    name, kind, value = reference
    try:
        if kind == "version":
            return client.get_model_version(name, value)
        if kind == "alias":
            return client.get_model_version_by_alias(name, value)
        if kind == "latest":
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                raise mlflow.exceptions.MlflowException(
                    f"Registered model {name!r} has no versions."
                )
            return max(versions, key=lambda version: int(version.version))
        # Stages are deprecated in MLflow 3: MLflow resolves the URI, the version
        # stays unknown here.
        client.get_registered_model(name)
        return None
    except mlflow.exceptions.MlflowException as error:
        known = sorted(model.name for model in client.search_registered_models())
        raise AssessmentError(
            f"Model {model_uri} is not in the store: {error.message} Registered models "
            f"there: {known or 'none'}. Pass --model-uri of a model in this store, or "
            f"the --tracking-uri of the store that holds it."
        ) from None


def _training_record(client, run_id: str) -> tuple[dict[str, str], str | None]:
    """What a trial run recorded about its data, and its search run's id."""
    import mlflow

    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        logger.warning("The model's source run %s is not in the store", run_id)
        return {}, None
    params, tags = run.data.params, run.data.tags
    record = {}
    for key in ("dataset", "seed", "label_fraction", *_DATASET_OPTIONS):
        value = params.get(key, tags.get(key))
        if value not in (None, "None"):
            record[key] = value
    for key in ("dataset_source", "dataset_digest"):
        if key in tags:
            record[key] = tags[key]
    return record, tags.get("mlflow.parentRunId")


def resolve_lineage(model_uri: str, client) -> ModelLineage:
    """Finds the registered version, logged model and runs behind a model URI.

    ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/NAME/latest`` and
    ``models:/NAME/STAGE`` resolve through the registry; ``runs:/RUN/PATH`` and
    ``models:/m-...`` through the logged model. For other URIs (a local folder) only
    what the model's own MLmodel file says is known.

    Args:
        model_uri: Any MLflow model URI.
        client: An `mlflow.tracking.MlflowClient` of the store that holds the model;
            MLflow's global tracking URI must point at the same store.

    Returns:
        The lineage; unknown fields stay None.

    Raises:
        AssessmentError: When the URI names nothing in the store.
    """
    import mlflow

    reference = _registry_reference(model_uri)
    version = None
    if reference is not None:
        version = _model_version(client, model_uri, reference)

    try:
        info = mlflow.models.get_model_info(model_uri)
    except (mlflow.exceptions.MlflowException, OSError) as error:
        raise AssessmentError(
            f"Cannot read model {model_uri}: {error}. Pass --model-uri of a logged or "
            f"registered model (e.g. {DEFAULT_MODEL_URI}, models:/NAME/VERSION or "
            f"runs:/RUN_ID/model)."
        ) from None

    source_run_id = (version.run_id if version is not None else None) or info.run_id
    training, parent = ({}, None)
    if source_run_id:
        training, parent = _training_record(client, source_run_id)
    if "dataset" not in training and (info.metadata or {}).get("dataset"):
        # Without its training run, the model's own metadata still names its dataset.
        training["dataset"] = str(info.metadata["dataset"])
    search_run_id = (version.tags.get("search_run_id") if version else None) or parent

    return ModelLineage(
        model_uri=model_uri,
        registered_name=reference[0] if reference else None,
        version=str(version.version) if version is not None else None,
        alias=reference[2] if reference and reference[1] == "alias" else None,
        stage=reference[2] if reference and reference[1] == "stage" else None,
        model_id=getattr(info, "model_id", None),
        source_run_id=source_run_id,
        search_run_id=search_run_id,
        training=training,
    )


# Data -------------------------------------------------------------------------------


def _default_dataset(lineage: ModelLineage) -> str:
    """The dataset the model was trained on, as `load_dataset` can find it again.

    Raises:
        AssessmentError: When the model records no dataset.
    """
    from contrastive.data import DATASET_NAMES

    recorded = lineage.training.get("dataset")
    if recorded and (recorded in DATASET_NAMES or Path(recorded).exists()):
        return recorded
    source = lineage.training.get("dataset_source")
    if source and Path(source).exists():
        return source
    if recorded:
        return recorded
    raise AssessmentError(
        f"Model {lineage.model_uri} records no dataset it was trained on; pass "
        f"--dataset NAME_OR_PATH or --input FILE_OR_FOLDER to evaluate on."
    )


def _recorded_number(lineage: ModelLineage, key: str, kind: type):
    value = lineage.training.get(key)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        logger.warning("Ignoring the model's recorded %s=%r", key, value)
        return None


def _dataset_options(lineage: ModelLineage, dataset: str) -> dict[str, Any]:
    """The training run's split settings, when ``dataset`` is the one it used."""
    if dataset not in (lineage.training.get("dataset"),
                       lineage.training.get("dataset_source")):
        return {}
    options: dict[str, Any] = {}
    for key in _DATASET_OPTIONS:
        value = lineage.training.get(key)
        if value is None:
            continue
        if key == "image_size":
            value = tuple(int(part) for part in value.strip("()[] ").split(","))
        options[key] = value
    return options


def _load_dataset_split(
    dataset: str, lineage: ModelLineage, *, seed: int, label_fraction: float
) -> EvaluationData:
    """A dataset's test split, with its labelled training split as the reference."""
    from contrastive.data import load_dataset

    loaded = load_dataset(
        dataset, label_fraction=label_fraction, seed=seed,
        **_dataset_options(lineage, dataset),
    )
    return EvaluationData(
        name=loaded.name,
        source=loaded.test_source or loaded.source,
        split="test",
        x=np.asarray(loaded.x_test),
        y=np.asarray(loaded.y_test, dtype=np.int64),
        class_names=tuple(loaded.class_names),
        value_range=tuple(loaded.value_range),
        digest=loaded.digest,
        x_reference=np.asarray(loaded.x_labeled),
        y_reference=np.asarray(loaded.y_labeled, dtype=np.int64),
        seed=seed,
        label_fraction=label_fraction,
    )


def _declared_value_range(path: Path) -> bool:
    """Whether an ``.npz`` file says which range its pixel values are in."""
    with np.load(path, allow_pickle=False) as archive:
        return "value_range" in archive.files


def _declared_class_names(path: Path) -> bool:
    with np.load(path, allow_pickle=False) as archive:
        return "class_names" in archive.files


def _load_input(
    input_path: str | os.PathLike, *, color_mode: str | None,
    model_value_range: tuple[float, float],
) -> EvaluationData:
    """Every labelled sample of an ``.npz`` file, IDX folder or image folder.

    Image files are read in the model's colour mode (a grey digit saved as RGB is
    still that digit); their size is kept, so that a size other than the model's is
    an error rather than a silent resize. Images are mapped from 0-255 to the
    model's range. Arrays are taken in the model's own range, unless the file has
    a ``value_range`` array, from which they are rescaled.
    """
    from contrastive.data.dataset import compute_digest
    from contrastive.data.images import rescale
    from contrastive.data.pool import SourceOptions, check_pool
    from contrastive.data.registry import resolve_source

    pool = resolve_source(
        input_path, SourceOptions(color_mode=color_mode), paths_only=True
    )
    check_pool(pool)
    path = Path(pool.source)

    labelled = pool.y >= 0
    if not labelled.all():
        logger.warning(
            "Input %s: leaving out %d unlabelled samples (label -1)",
            pool.source, int((~labelled).sum()),
        )
    x_parts, y_parts = [pool.x[labelled]], [pool.y[labelled]]
    if pool.x_test is not None:
        x_parts.append(pool.x_test)
        y_parts.append(pool.y_test)
    x = np.concatenate(x_parts).astype(np.float32, copy=False)
    y = np.concatenate(y_parts).astype(np.int64, copy=False)

    is_npz = path.is_file() and path.suffix.lower() == ".npz"
    has_names = not is_npz or _declared_class_names(path)
    if is_npz and not _declared_value_range(path):
        # Plain arrays are the model's own pixels, as `scripts/predict.py` takes them.
        value_range = tuple(model_value_range)
        low, high = value_range
        if x.size and x.max() < low + (high - low) / 8:
            # Values in [0, 1] fit a 0-16 or 0-255 model's range, so only a
            # warning can catch arrays that were normalised before saving.
            logger.warning(
                "Input %s: pixel values reach only %g of the model's range [%g, %g]; "
                "if they were normalised, add value_range=(low, high) to the file",
                pool.source, float(x.max()), low, high,
            )
    else:
        x = rescale(x, pool.value_range, tuple(model_value_range))
        value_range = tuple(model_value_range)

    digest = compute_digest(
        {"x": x, "y": y},
        {"source": pool.source, "class_names": list(pool.class_names),
         "value_range": list(value_range)},
    )
    return EvaluationData(
        name=pool.name,
        source=pool.source,
        split="all",
        x=x,
        y=y,
        class_names=tuple(pool.class_names),
        value_range=value_range,
        digest=digest,
        has_class_names=has_names,
    )


def load_evaluation_data(
    lineage: ModelLineage,
    *,
    dataset: str | None = None,
    input_path: str | os.PathLike | None = None,
    seed: int | None = None,
    label_fraction: float | None = None,
    input_shape: tuple[int, ...] | None = None,
    value_range: tuple[float, float] = (0.0, 255.0),
) -> EvaluationData:
    """Loads what to evaluate on: a dataset's test split or all of an input.

    With neither ``dataset`` nor ``input_path`` the model's own dataset is used (the
    one its training run records).

    Args:
        lineage: The model's lineage; supplies the dataset, seed and label fraction
            it was trained with.
        dataset: A dataset name or path (see `contrastive.data.load_dataset`); its
            test split is evaluated. Defaults to None.
        input_path: An ``.npz`` file (``x``, ``y``), an IDX folder or an image
            folder of class sub-folders, evaluated whole. Defaults to None.
        seed: Split seed for ``dataset``; None means the training run's, else 0.
            Defaults to None.
        label_fraction: Label fraction for ``dataset`` (it decides the reference
            set); None means the training run's, else 0.1. Defaults to None.
        input_shape: The model's ``(H, W, C)``: image files are read in its colour
            mode. Defaults to None (the files' own).
        value_range: The model's pixel range, that inputs are mapped to. Defaults
            to ``(0.0, 255.0)``.

    Returns:
        The labelled images, not yet matched to the model (see `match_to_model`).

    Raises:
        AssessmentError: When both ``dataset`` and ``input_path`` are given, or
            neither is and the model records no dataset.
        contrastive.data.DataError: For a dataset or input that cannot be read.
    """
    if dataset is not None and input_path is not None:
        raise AssessmentError(
            f"Pass either a dataset or an input, not both; received dataset="
            f"{dataset!r} and input={str(input_path)!r}."
        )
    if input_path is not None:
        channels = input_shape[-1] if input_shape else None
        return _load_input(
            input_path, color_mode=_COLOR_MODES.get(channels),
            model_value_range=value_range,
        )

    name = dataset if dataset is not None else _default_dataset(lineage)
    if seed is None:
        seed = _recorded_number(lineage, "seed", int)
    if label_fraction is None:
        label_fraction = _recorded_number(lineage, "label_fraction", float)
    return _load_dataset_split(
        name, lineage,
        seed=0 if seed is None else seed,
        label_fraction=0.1 if label_fraction is None else label_fraction,
    )


# Matching data to the model ---------------------------------------------------------


def _sentence(text: str) -> str:
    """``text`` with a capital first letter, to start a message with it."""
    return text[:1].upper() + text[1:]


def _class_lookup(
    data: EvaluationData, model_names: tuple[str, ...], model: str
) -> dict[int, int]:
    """Maps each data class that occurs to the model's class index.

    By name where the data names its classes; by index where it does not.

    Raises:
        AssessmentError: When a class of the data is not one of the model's.
    """
    present = sorted({int(label) for label in np.unique(data.y)})
    if data.y_reference is not None:
        present = sorted({*present, *(int(v) for v in np.unique(data.y_reference))})

    if data.has_class_names:
        unknown = [data.class_names[i] for i in present
                   if data.class_names[i] not in model_names]
        if not unknown:
            return {i: model_names.index(data.class_names[i]) for i in present}
        raise AssessmentError(
            f"{_sentence(data.describe())} has {len(data.class_names)} classes "
            f"{list(data.class_names)}, but {model} knows {len(model_names)}: "
            f"{list(model_names)}; "
            f"{unknown} are not among them. Evaluate on data of the model's classes, "
            f"or leave those samples out."
        )

    unknown = [i for i in present if i >= len(model_names)]
    if not unknown:
        return {i: i for i in present}
    raise AssessmentError(
        f"{_sentence(data.describe())} has labels "
        f"{present[0]}-{present[-1]} ({len(present)} classes), but {model} outputs "
        f"{len(model_names)} classes {list(model_names)}; "
        f"labels {unknown} have no class in the model. Evaluate on data of the "
        f"model's classes, or add class_names to the file."
    )


def match_to_model(
    data: EvaluationData,
    *,
    input_shape: tuple[int, ...],
    class_names: tuple[str, ...],
    value_range: tuple[float, float],
    model_label: str = "",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Checks that a model can be scored on ``data``, and re-indexes its labels.

    Args:
        data: The labelled images.
        input_shape: The model's ``(H, W, C)``.
        class_names: The model's classes, in output order.
        value_range: The model's pixel range.
        model_label: How messages name the model, e.g. its URI. Defaults to ``""``
            ("the model").

    Returns:
        ``x``, ``y`` as the model's class indices, and the reference images and
        labels (None without a reference set), all in the model's value range.

    Raises:
        AssessmentError: For an empty set, a shape other than the model's, classes
            the model does not know, or pixel values outside the model's range;
            each message names the data's side and the model's.
    """
    where = data.describe()
    model = f"model {model_label}" if model_label else "the model"
    shape = tuple(int(d) for d in input_shape)
    if len(data.y) == 0:
        raise AssessmentError(
            f"{_sentence(where)} holds no labelled images; {model} needs at least "
            f"one of shape {shape} to be scored. Point it at labelled data."
        )

    data_shape = tuple(int(d) for d in data.x.shape[1:])
    if data_shape != shape:
        raise AssessmentError(
            f"{_sentence(model)} takes images of shape {shape}, but {where} has "
            f"images of shape {data_shape}. Evaluate it on data of shape {shape}."
        )

    lookup = _class_lookup(data, tuple(class_names), model)

    def relabel(labels: np.ndarray) -> np.ndarray:
        return np.array([lookup[int(label)] for label in labels], dtype=np.int64)

    x = data.x
    x_reference = data.x_reference
    low, high = (float(v) for v in value_range)
    if tuple(data.value_range) != (low, high):
        from contrastive.data.images import rescale

        # Both ranges are the full range of their pixel format (e.g. 0-255 and 0-16).
        logger.info("Rescaling %s from %s to the model's %s", where, data.value_range,
                    (low, high))
        x = rescale(x, tuple(data.value_range), (low, high))
        if x_reference is not None:
            x_reference = rescale(x_reference, tuple(data.value_range), (low, high))

    slack = _RANGE_SLACK * (high - low)
    if x.min() < low - slack or x.max() > high + slack:
        raise AssessmentError(
            f"Pixel values of {where} lie in [{x.min():g}, {x.max():g}], but {model} "
            f"takes values in [{low:g}, {high:g}] (its training data's range). Save "
            f"the arrays in that range, or add value_range=(low, high) to the .npz "
            f"file so they are rescaled."
        )

    y_reference = None if data.y_reference is None else relabel(data.y_reference)
    return x, relabel(data.y), x_reference, y_reference


# Scoring ----------------------------------------------------------------------------


def cross_validated_embedding_metrics(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    k: int = 5,
    seed: int = 0,
    folds: int = CV_FOLDS,
) -> tuple[dict[str, float] | None, str]:
    """k-NN and linear-probe accuracy by stratified k-fold cross-validation.

    Each fold is scored by references fitted on the other folds; the result is the
    accuracy over all out-of-fold predictions, so every sample counts once. The
    number of folds drops to the size of the smallest class.

    Args:
        embeddings: ``(N, D)`` embeddings of the evaluated images.
        labels: ``(N,)`` their labels.
        k: Neighbours of the k-NN score. Defaults to 5.
        seed: Seeds the fold assignment and the probe. Defaults to 0.
        folds: Most folds. Defaults to `CV_FOLDS`.

    Returns:
        The metrics ``knn_accuracy`` and ``linear_probe_accuracy`` (None when they
        cannot be cross-validated) and a sentence saying how they were obtained, or
        why they were left out.
    """
    from sklearn.model_selection import StratifiedKFold

    from contrastive import evaluation

    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        return None, (
            f"left out: the evaluated set holds one class ({classes.tolist()}); the "
            f"linear probe needs at least 2"
        )
    splits = int(min(folds, counts.min()))
    if splits < 2:
        rare = classes[counts < 2].tolist()
        return None, (
            f"left out: classes {rare} have a single sample; cross-validation needs "
            f"at least 2 per class"
        )

    correct = {name: 0.0 for name in evaluation.EMBEDDING_METRIC_NAMES}
    folder = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    for train, test in folder.split(embeddings, labels):
        scores = evaluation.embedding_metrics(
            embeddings[train], labels[train], embeddings[test], labels[test],
            k=k, seed=seed,
        )
        for name, value in scores.items():
            correct[name] += value * len(test)
    metrics = {name: total / len(labels) for name, total in correct.items()}
    return metrics, f"{splits}-fold stratified cross-validation on the evaluated set"


def _check_settings(k: Any, seed: Any, label_fraction: Any, experiment: str) -> None:
    """Checks the numbers before anything is loaded.

    Raises:
        AssessmentError: Naming the setting, its value and what is allowed.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise AssessmentError(
            f"k must be a whole number >= 1 (neighbours of the k-NN score); received "
            f"k={k!r}."
        )
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0
    ):
        raise AssessmentError(
            f"seed must be a whole number >= 0; received seed={seed!r}."
        )
    if label_fraction is not None and (
        not isinstance(label_fraction, numbers.Real)
        or not math.isfinite(label_fraction) or not 0 < label_fraction <= 1
    ):
        raise AssessmentError(
            f"label_fraction must be in (0, 1]; received label_fraction="
            f"{label_fraction!r}."
        )
    if not str(experiment).strip():
        raise AssessmentError("experiment must not be empty; received experiment=''.")


def _check_store(tracking_uri: str) -> None:
    """Refuses a SQLite store that does not exist yet: it cannot hold the model.

    Raises:
        AssessmentError: Naming the missing file.
    """
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri[len("sqlite:///"):])
        if not database.is_file():
            raise AssessmentError(
                f"No MLflow store at {tracking_uri}: {database} does not exist, so it "
                f"holds no model. Pass the --tracking-uri of the store the model was "
                f"logged to."
            )


def _split_warnings(data: EvaluationData, lineage: ModelLineage) -> list[str]:
    """Cautions when a dataset's test split is not the one the model held out."""
    if data.split != "test" or not lineage.training:
        return []
    recorded = lineage.training.get("dataset_digest")
    if recorded is not None and recorded == data.digest:
        return []
    notes = []
    trained_seed = lineage.training.get("seed")
    if trained_seed is not None and str(data.seed) != trained_seed:
        notes.append(
            f"the split uses seed {data.seed}, but the model was trained with seed "
            f"{trained_seed}: this test split may hold images the model was trained "
            f"on, so its scores may be optimistic"
        )
    elif recorded is not None and data.name == lineage.training.get("dataset"):
        notes.append(
            f"dataset {data.name!r} now has digest {data.digest[:12]}, the model was "
            f"trained on digest {recorded[:12]}: its contents or split settings "
            f"changed since"
        )
    return notes


def _match_tag(data: EvaluationData, lineage: ModelLineage) -> dict[str, str]:
    """``split_matches_training``: whether this is the split the model held out."""
    recorded = lineage.training.get("dataset_digest")
    if data.split != "test" or recorded is None:
        return {}
    return {"split_matches_training": str(data.digest == recorded).lower()}


def _score(model, x, y, x_reference, y_reference, *, class_names, k, seed):
    """The trials' scoring, with cross-validated embedding metrics when needed."""
    from contrastive.reporting import evaluate_model

    result = evaluate_model(
        model, x, y, x_reference, y_reference, class_names=class_names, k=k, seed=seed
    )
    if x_reference is not None:
        return result, "the labelled training split of the dataset"

    scores, how = cross_validated_embedding_metrics(
        result.test_embeddings, y, k=k, seed=seed
    )
    if scores is None:
        logger.warning("Embedding metrics %s", how)
    else:
        result.metrics.update({f"test_{name}": value for name, value in scores.items()})
    return result, how


def assess_model(
    model_uri: str = DEFAULT_MODEL_URI,
    *,
    dataset: str | None = None,
    input_path: str | os.PathLike | None = None,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    seed: int | None = None,
    label_fraction: float | None = None,
    k: int = 5,
) -> AssessmentResult:
    """Scores a logged or registered model and records it in a new MLflow run.

    Bad input (see `match_to_model`, `load_evaluation_data`, `resolve_lineage`) is
    refused before anything is written to the store. The run, in ``experiment``,
    holds the ``test_`` metrics, ``evaluation/per_class_report.json``,
    ``evaluation/confusion_matrix.json``, ``evaluation/summary.json`` and the
    pictures ``plots/confusion_matrix.png``, ``plots/embeddings_tsne.png``,
    ``plots/embeddings_pca.png`` and ``plots/raw_vs_embeddings_tsne.png``; its tags
    link it to the model (`ModelLineage.tags`), and the logged model is recorded as
    its input.

    Args:
        model_uri: Any MLflow model URI of a model logged by this package. Defaults
            to `DEFAULT_MODEL_URI`.
        dataset: A dataset name or path whose test split is evaluated. Defaults to
            None (the model's own dataset, unless ``input_path`` is given).
        input_path: An ``.npz`` file or image folder evaluated whole. Defaults to
            None.
        tracking_uri: The store; None means ``MLFLOW_TRACKING_URI``, else the
            project's SQLite store. Defaults to None.
        experiment: The evaluation run's experiment. Defaults to
            `DEFAULT_EXPERIMENT`.
        seed: Split seed for ``dataset`` (None: the training run's), also seeding the
            probe, the folds and the pictures. Defaults to None.
        label_fraction: Label fraction for ``dataset`` (None: the training run's).
            Defaults to None.
        k: Neighbours of the k-NN score. Defaults to 5.

    Returns:
        Where the run is and what it holds.

    Raises:
        AssessmentError: For settings, a model or data that cannot be assessed.
        contrastive.data.DataError: For a dataset or input that cannot be read.
        contrastive.tracking.TrackingError: For an unusable tracking URI.
    """
    _check_settings(k, seed, label_fraction, experiment)
    if input_path is not None and not Path(input_path).expanduser().exists():
        raise AssessmentError(
            f"Input not found: {str(input_path)!r} ({Path(input_path).absolute()}). "
            f"Pass an .npz file with arrays x and y, or a folder of class "
            f"sub-folders of images."
        )

    import mlflow
    from mlflow.tracking import MlflowClient

    from contrastive.stores import check_tracking_uri, resolve_tracking_uri

    store = resolve_tracking_uri(tracking_uri)
    check_tracking_uri(store)
    _check_store(store)
    mlflow.set_tracking_uri(store)
    client = MlflowClient(store)
    lineage = resolve_lineage(model_uri, client)

    # TensorFlow is imported only now that the model is known to exist.
    from contrastive.serving import load_classifier

    try:
        classifier = load_classifier(model_uri, tracking_uri=store)
    except (mlflow.exceptions.MlflowException, ValueError, OSError) as error:
        raise AssessmentError(
            f"Cannot load {model_uri} as a contrastive classifier (a Keras model from "
            f"images to probabilities with an 'embedding' layer): {error}"
        ) from None
    data = load_evaluation_data(
        lineage, dataset=dataset, input_path=input_path, seed=seed,
        label_fraction=label_fraction, input_shape=classifier.input_shape,
        value_range=classifier.value_range,
    )
    x, y, x_reference, y_reference = match_to_model(
        data, input_shape=classifier.input_shape, class_names=classifier.class_names,
        value_range=classifier.value_range, model_label=lineage.describe(),
    )
    cautions = _split_warnings(data, lineage)
    for caution in cautions:
        logger.warning("Evaluating on %s: %s", data.describe(), caution)

    return _record(
        store, experiment, lineage, classifier, data, x, y, x_reference, y_reference,
        cautions=cautions, k=k, seed=0 if data.seed is None else data.seed,
    )


def _record(
    store, experiment, lineage, classifier, data, x, y, x_reference, y_reference, *,
    cautions, k, seed,
) -> AssessmentResult:
    """Creates the evaluation run, scores the model inside it and logs the results."""
    from mlflow.entities import LoggedModelInput

    from contrastive.reporting import log_evaluation
    from contrastive.tracking import Tracker

    tracker = Tracker(store, experiment)
    model_name = (
        f"{lineage.registered_name}-v{lineage.version}"
        if lineage.registered_name and lineage.version else "model"
    )
    run_id = tracker.create_run(
        f"evaluate-{model_name}-on-{data.name}",
        tags={
            **lineage.tags(),
            "evaluated_dataset": data.name,
            "evaluated_source": data.source,
            "evaluated_split": data.split,
            "evaluated_digest": data.digest,
            **_match_tag(data, lineage),
            **({"caution": "; ".join(cautions)[:4000]} if cautions else {}),
        },
    )
    with tracker.active(run_id):
        if lineage.model_id:
            tracker.client.log_inputs(
                run_id, models=[LoggedModelInput(model_id=lineage.model_id)]
            )
        result, reference = _score(
            classifier.model, x, y, x_reference, y_reference,
            class_names=classifier.class_names, k=k, seed=seed,
        )
        params = {
            "model_uri": lineage.model_uri,
            "dataset": data.name,
            "split": data.split,
            "num_samples": len(y),
            "k": k,
            "seed": seed,
        }
        if data.label_fraction is not None:
            params["label_fraction"] = data.label_fraction
        tracker.log_params(run_id, params)
        tracker.set_tags(run_id, {"embedding_reference": reference})
        log_evaluation(
            tracker, run_id, result, y_test=y, class_names=classifier.class_names,
            x_test=x, seed=seed,
        )
        tracker.log_json(
            run_id,
            {
                "model": dataclasses.asdict(lineage),
                "data": {
                    "name": data.name, "source": data.source, "split": data.split,
                    "digest": data.digest, "num_samples": len(y),
                    "class_counts": np.bincount(
                        y, minlength=len(classifier.class_names)
                    ).tolist(),
                    "seed": data.seed, "label_fraction": data.label_fraction,
                },
                "embedding_reference": reference,
                "cautions": cautions,
                "metrics": result.metrics,
            },
            "evaluation/summary.json",
        )
    logger.debug("Evaluation run %s: %s", run_id, result.metrics)
    return AssessmentResult(
        run_id=run_id,
        experiment=experiment,
        experiment_id=tracker.experiment_id,
        tracking_uri=store,
        metrics=dict(result.metrics),
        lineage=lineage,
        data_name=data.name,
        split=data.split,
        num_samples=len(y),
        embedding_reference=reference,
        warnings=tuple(cautions),
    )
