"""Everything MLflow: the store, the search and trial runs, artifacts and the registry.

One search is one parent run; each Keras Tuner trial is a child run nested under it
(the ``mlflow.parentRunId`` tag is set explicitly, so a trial run by another process
still lands under the right parent). Per-epoch metrics come from MLflow's Keras autolog
callback, adapted so that each metric has one name (`EpochMetricsLogger`). The best
model is logged once, as the inference model, and registered; the ``champion`` alias
moves to it only by the promotion rule (`Tracker.register`).

Launched by a wrapper that sets ``MLFLOW_RUN_ID`` (as ``mlflow run`` does), the
wrapper's run is never written to: it is read once (`Tracker.launcher_run_id`) so that
the search run can be nested under it, and every run here is started by its own id.

This module knows nothing of how the model trains: it takes params, metrics, figures and
finished Keras models.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from contrastive.config import PROMOTE_CHOICES
from contrastive.stores import TrackingError, check_tracking_uri, resolve_tracking_uri

__all__ = [
    "CHAMPION_ALIAS",
    "TrackingError",
    "EpochMetricsLogger",
    "Tracker",
    "check_tracking_uri",
    "resolve_tracking_uri",
]

logger = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"
_PARENT_TAG = "mlflow.parentRunId"
# Entries per `MlflowClient.log_batch` call: MLflow's limit for params and tags.
_BATCH = 100


class EpochMetricsLogger(mlflow.keras.MlflowCallback):
    """MLflow's Keras autolog callback, with one name per metric.

    Autolog's callback logs the optimizer's config as params and, after each validation
    pass, a ``validation_*`` twin of every ``val_*`` metric (without a step). Here the
    hyperparameters are logged once by the tracker under their search-space names, and
    the ``val_*`` metrics of each epoch are the only validation family, so the trial
    runs line up in the MLflow UI. A ``prefix`` keeps a second training stage's metrics
    apart from the first's.

    Args:
        prefix: Prepended to every metric name. Defaults to ``""``.
    """

    def __init__(self, prefix: str = ""):
        super().__init__(log_every_epoch=True)
        self.prefix = prefix

    def on_train_begin(self, logs=None):
        lines: list[str] = []
        self.model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
        mlflow.log_text("\n".join(lines), f"{self.prefix}model_summary.txt")

    def on_epoch_end(self, epoch, logs=None):
        if logs:
            metrics = {f"{self.prefix}{k}": float(v) for k, v in logs.items()}
            mlflow.log_metrics(metrics, step=epoch, synchronous=True)

    def on_test_end(self, logs=None):
        pass


class Tracker:
    """Opens runs in one experiment of one store and logs into them.

    Args:
        tracking_uri: A checked tracking URI (see `check_tracking_uri`).
        experiment: The experiment's name; created on first use.

    Attributes:
        launcher_run_id: The run named by ``MLFLOW_RUN_ID`` when a wrapper (``mlflow
            run``, a scheduler) launched this process, else None. It is only read.

    Raises:
        TrackingError: When ``MLFLOW_RUN_ID`` names a run that is not in this store.
    """

    def __init__(self, tracking_uri: str, experiment: str):
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment
        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        self.experiment_id = self._experiment_id(experiment)
        mlflow.set_experiment(experiment_id=self.experiment_id)
        self.launcher_run_id = self._launcher_run()

    def _make_current(self) -> None:
        """Points MLflow's fluent API at this tracker's store and experiment.

        Another `Tracker` in the same process (another store or experiment) may have
        moved them since this one was made.
        """
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_experiment(experiment_id=self.experiment_id)

    def _launcher_run(self) -> str | None:
        """Checks the run named by ``MLFLOW_RUN_ID``, if any; returns its id."""
        run_id = os.environ.get("MLFLOW_RUN_ID", "").strip()
        if not run_id:
            return None

        try:
            run = self.client.get_run(run_id)
        except mlflow.exceptions.MlflowException:
            raise TrackingError(
                f"MLFLOW_RUN_ID={run_id!r} names no run in the store "
                f"{self.tracking_uri}. Unset MLFLOW_RUN_ID, or pass the wrapper's "
                f"store as --tracking-uri."
            ) from None

        if run.info.experiment_id != self.experiment_id:
            # The tag still links the runs; the UI only draws nesting inside one
            # experiment.
            logger.warning(
                "The launching run %s is in experiment %s, not %r: the search run is "
                "tagged as its child but is not drawn nested in the MLflow UI",
                run_id, run.info.experiment_id, self.experiment_name,
            )
        return run_id

    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        artifact_location = None
        if self.tracking_uri.startswith("sqlite:///"):
            # A SQLite store keeps its artifacts beside the database, whatever the
            # working directory (MLflow's own default is ./mlruns of the cwd).
            database = Path(self.tracking_uri[len("sqlite:///"):]).resolve()
            artifact_location = (database.parent / "artifacts").as_uri()
        return self.client.create_experiment(name, artifact_location=artifact_location)

    # Runs ---------------------------------------------------------------------------

    def create_run(
        self, name: str, *, parent_run_id: str | None = None, tags: dict | None = None
    ) -> str:
        """Creates a run (nested under ``parent_run_id`` when given); returns its id."""
        all_tags = {"mlflow.runName": name, **(tags or {})}
        if parent_run_id:
            all_tags[_PARENT_TAG] = parent_run_id
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        return run.info.run_id

    @contextlib.contextmanager
    def active(self, run_id: str, *, end_status: str = "FINISHED") -> Iterator[str]:
        """Makes ``run_id`` MLflow's active run in this process, for fluent logging.

        Fluent logging (the epoch callback, ``mlflow.keras.log_model``) needs an active
        run; every other call names its run explicitly, so at most one run is active at
        a time. On success the run ends with ``end_status``; on an exception it is
        marked FAILED (KILLED for Ctrl-C) and the exception propagates.

        Args:
            run_id: The run to activate.
            end_status: Its status on success. Defaults to ``"FINISHED"``.

        Raises:
            RuntimeError: When another run is active in this process.
        """
        if mlflow.active_run() is not None:
            raise RuntimeError(
                f"Run {mlflow.active_run().info.run_id} is still active in this "
                f"process; end it before activating run {run_id}."
            )
        self._make_current()
        # An explicit id wins over MLFLOW_RUN_ID, so a wrapper's run is never resumed.
        mlflow.start_run(run_id=run_id)
        try:
            yield run_id
        except KeyboardInterrupt:
            mlflow.end_run(status="KILLED")
            raise
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        mlflow.end_run(status=end_status)

    def run_status(self, run_id: str) -> str:
        """``RUNNING``, ``FINISHED``, ``FAILED`` or ``KILLED``."""
        return self.client.get_run(run_id).info.status

    def set_terminated(self, run_id: str, status: str) -> None:
        """Ends a run that no process has active, with ``status``."""
        self.client.set_terminated(run_id, status=status)

    def child_runs(self, parent_run_id: str) -> list:
        """Every run nested directly under ``parent_run_id``, oldest first."""
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{_PARENT_TAG}` = '{parent_run_id}'",
            order_by=["attributes.start_time ASC"],
            max_results=10_000,
        )

    def run_exists(self, run_id: str) -> bool:
        """Whether ``run_id`` is a run of this tracker's experiment."""
        try:
            run = self.client.get_run(run_id)
        except mlflow.exceptions.MlflowException:
            return False
        return run.info.experiment_id == self.experiment_id

    # Logging into a run ---------------------------------------------------------------

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Logs params in batches.

        MLflow refuses a second, different value for a param; the same value again is
        accepted.
        """
        entries = [Param(key, str(value)) for key, value in params.items()]
        for start in range(0, len(entries), _BATCH):
            self.client.log_batch(run_id, params=entries[start:start + _BATCH])

    def log_metrics(
        self, run_id: str, metrics: dict[str, float], step: int = 0
    ) -> None:
        """Logs ``metrics`` at ``step``; None, NaN and inf values are skipped."""
        now = int(time.time() * 1000)
        entries = [
            Metric(key, float(value), now, step)
            for key, value in metrics.items()
            if value is not None and math.isfinite(float(value))
        ]
        for start in range(0, len(entries), _BATCH):
            self.client.log_batch(run_id, metrics=entries[start:start + _BATCH])

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        """Sets tags (values as strings), replacing earlier values."""
        entries = [RunTag(key, str(value)) for key, value in tags.items()]
        for start in range(0, len(entries), _BATCH):
            self.client.log_batch(run_id, tags=entries[start:start + _BATCH])

    def log_json(self, run_id: str, data: Any, path: str) -> None:
        """Logs ``data`` as an indented JSON artifact at ``path``."""
        text = json.dumps(data, indent=2, default=_jsonable)
        self.client.log_text(run_id, text, path)

    def log_text(self, run_id: str, text: str, path: str) -> None:
        """Logs ``text`` as an artifact at ``path``."""
        self.client.log_text(run_id, text, path)

    def log_figure(self, run_id: str, make_figure, path: str) -> bool:
        """Renders ``make_figure()`` to a PNG artifact; a failure is only a warning.

        A picture must never fail a trial: errors are logged here and recorded on the
        run as the tag ``plot_errors``.

        Returns:
            Whether the PNG was logged.
        """
        from contrastive.plots import save_png

        try:
            with tempfile.TemporaryDirectory() as folder:
                file = save_png(make_figure(), Path(folder) / Path(path).name)
                artifact_folder = str(Path(path).parent or "")
                self.client.log_artifact(run_id, str(file), artifact_folder)
            return True
        except Exception as error:  # noqa: BLE001 - no plotting bug may end a trial
            logger.warning("Could not draw %s for run %s: %s", path, run_id, error)
            previous = self.client.get_run(run_id).data.tags.get("plot_errors", "")
            note = f"{path}: {type(error).__name__}: {error}"
            errors = f"{previous}\n{note}".strip()[:4000]
            self.client.set_tag(run_id, "plot_errors", errors)
            return False

    def log_dataset(self, run_id: str, dataset) -> None:
        """Logs the dataset as an MLflow dataset input, with class counts per split."""
        import numpy as np

        summary = dataset.summary()
        with warnings.catch_warnings():
            # A source like "sklearn.datasets.load_digits" matches several of MLflow's
            # source kinds; which one it picks changes nothing that is shown.
            warnings.simplefilter("ignore", UserWarning)
            mlflow_dataset = mlflow.data.from_numpy(
                np.zeros((0, *dataset.input_shape), "float32"),
                source=dataset.source,
                name=dataset.name,
                digest=dataset.digest[:36],
            )
        self.client.log_inputs(
            run_id,
            datasets=[
                mlflow.entities.DatasetInput(
                    mlflow_dataset._to_mlflow_entity(),
                    tags=[
                        mlflow.entities.InputTag("mlflow.data.context", "train"),
                        *(
                            mlflow.entities.InputTag(
                                f"class_counts_{split}", json.dumps(counts)
                            )
                            for split, counts in dataset.class_counts().items()
                        ),
                    ],
                )
            ],
        )
        self.log_json(run_id, summary, "dataset/summary.json")

    # Models and the registry ----------------------------------------------------------

    def log_inference_model(
        self, run_id: str, model, *, metadata: dict[str, Any], name: str = "model"
    ):
        """Logs a Keras inference model with an explicit signature and requirements.

        The signature is a float32 tensor of shape ``(-1, *input_shape)`` in and
        probabilities ``(-1, num_classes)`` out. Requirements are pinned explicitly
        (MLflow's inference finds keras but not tensorflow).

        The model is saved in Keras' own ``.keras`` format (no pickle, no exported
        TensorFlow graph), so it loads with ``safe_mode`` on.

        Args:
            run_id: The run that holds the model (the best trial's).
            model: A functional Keras model, images in, probabilities out.
            metadata: Stored in the MLmodel file (class names, value range, ...).
            name: The model's name in the run. Defaults to ``"model"``.

        Returns:
            The `mlflow.models.model.ModelInfo`.
        """
        import keras
        import numpy as np
        import tensorflow as tf
        from mlflow.models import ModelSignature
        from mlflow.types.schema import Schema, TensorSpec

        float32 = np.dtype("float32")
        input_shape = tuple(model.input_shape[1:])
        num_classes = model.output_shape[-1]
        signature = ModelSignature(
            # Unnamed: pyfunc then passes one array, which the functional model takes
            # without warning that its input structure differs.
            inputs=Schema([TensorSpec(float32, (-1, *input_shape))]),
            outputs=Schema([TensorSpec(float32, (-1, num_classes), "probabilities")]),
        )
        requirements = [
            f"keras=={keras.__version__}",
            f"tensorflow=={tf.__version__}",
            f"mlflow=={mlflow.__version__}",
        ]
        with self.active(run_id):
            return mlflow.keras.log_model(
                model,
                name=name,
                signature=signature,
                pip_requirements=requirements,
                metadata=metadata,
            )

    def registered_version(self, model_name: str, source_run_id: str, search_run_id: str):
        """The newest version of ``model_name`` registered from these two runs, or None.

        A finished search run again (same tuner folder) finds its trials done and its
        champion unchanged: its version is then reused rather than registered twice.
        """
        versions = self.client.search_model_versions(
            f"name='{model_name}' and tags.source_run_id='{source_run_id}' "
            f"and tags.search_run_id='{search_run_id}'"
        )
        return max(versions, key=lambda v: int(v.version)) if versions else None

    def champion(self, model_name: str):
        """The version of ``model_name`` holding the champion alias, or None."""
        try:
            return self.client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
        except mlflow.exceptions.MlflowException:
            return None

    def register(
        self,
        model_uri: str,
        model_name: str,
        *,
        tags: dict[str, Any],
        description: str,
        metric: str,
        promote: str = "better",
    ) -> tuple[Any, bool, str]:
        """Registers a model version and moves the champion alias by the promotion rule.

        The rule, ``promote``:

        - ``"better"``: the alias moves only when the new version's ``metric`` tag is
          higher than the current champion's and both were scored on the same dataset
          (equal ``dataset_digest`` tags); a tie keeps the champion. With no champion
          yet, the new version takes the alias.
        - ``"always"``: the alias always moves to the new version.
        - ``"never"``: the alias never moves.

        The new version is registered whatever the rule decides. Besides ``tags`` and
        ``description`` it gets the tags ``promoted`` (``True``/``False``) and
        ``promotion`` (the reason).

        Args:
            model_uri: A logged model, e.g. ``ModelInfo.model_uri``.
            model_name: The registered model; created on first use.
            tags: Version tags (dataset, digest, hyperparameters, test metrics, source
                run, versions). For ``"better"`` they must hold ``dataset_digest`` and
                a finite ``metric``.
            description: The version's description.
            metric: The tag compared by ``"better"``; higher is better.
            promote: ``"better"``, ``"always"`` or ``"never"``. Defaults to
                ``"better"``.

        Returns:
            The new `ModelVersion`, whether it became champion, and why (one sentence).

        Raises:
            ValueError: For an unknown ``promote``, or for ``"better"`` without a finite
                ``metric`` in ``tags``; nothing is registered then.
        """
        if promote not in PROMOTE_CHOICES:
            raise ValueError(
                f"promote must be one of {', '.join(PROMOTE_CHOICES)}; received "
                f"promote={promote!r}."
            )
        if promote == "better" and _as_float(tags.get(metric)) is None:
            raise ValueError(
                f"promote='better' compares the version tag {metric!r}, which must be "
                f"a finite number; received {metric}={tags.get(metric)!r}. Pass the "
                f"metric in tags, or promote='always' or 'never'."
            )

        self._make_current()
        version = mlflow.register_model(
            model_uri, model_name, tags={k: str(v) for k, v in tags.items()}
        )
        number = version.version
        self.client.update_model_version(model_name, number, description=description)
        promoted, reason = self._should_promote(model_name, tags, metric, promote)
        if promoted:
            self.client.set_registered_model_alias(model_name, CHAMPION_ALIAS, number)
        self.client.set_model_version_tag(model_name, number, "promoted", str(promoted))
        self.client.set_model_version_tag(model_name, number, "promotion", reason)
        return version, promoted, reason

    def _should_promote(self, model_name, tags, metric, promote) -> tuple[bool, str]:
        if promote == "always":
            return True, "--promote always"
        if promote == "never":
            return False, "--promote never"

        current = self.champion(model_name)
        if current is None:
            return True, "there was no champion yet"

        if current.tags.get("dataset_digest") != str(tags.get("dataset_digest")):
            return False, (
                f"the champion (version {current.version}) was scored on another "
                f"dataset ({current.tags.get('dataset')}, digest "
                f"{current.tags.get('dataset_digest', '?')[:12]}); use --promote "
                f"always or another --model-name"
            )
        old = _as_float(current.tags.get(metric))
        if old is None:
            # Nothing to compare with: keeping the champion is the safe choice.
            return False, (
                f"the champion (version {current.version}) has no {metric} tag to "
                f"compare with; use --promote always to replace it"
            )
        new = _as_float(tags[metric])
        if new > old:
            return True, (
                f"{metric} {new:.4f} beats the champion's {old:.4f} "
                f"(version {current.version})"
            )
        return False, (
            f"{metric} {new:.4f} does not beat the champion's {old:.4f} "
            f"(version {current.version})"
        )


def _as_float(value: Any) -> float | None:
    """``value`` as a finite float; None when it is missing or not a finite number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
