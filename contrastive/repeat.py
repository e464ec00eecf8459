"""Repeat one recorded trial from what its MLflow run holds.

A trial run records everything its training depended on: the tuned hyperparameters and
fixed settings (params), the trial's derived seed (``trial_seed``), the search-space
file (artifact ``search_space.toml``) and the digests of that file and of the dataset
(tags). `repeat_trial` rebuilds the same model from those, trains it the way the tuner
did (same seed, same order of random draws, best epoch by validation accuracy), scores
it, and logs the result as a new run tagged ``repeat_of``. With ``--deterministic`` on
both sides the test metrics come out the same.

Known limit: a Hyperband trial that continued from an earlier trial's checkpoint
(``tuner/trial_id``) cannot be repeated alone; it is refused with that reason.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__all__ = ["RepeatResult", "repeat_trial"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RepeatResult:
    """The repeated trial's run and its metrics beside the recorded ones."""

    run_id: str
    repeated_run_id: str
    metrics: dict
    recorded_metrics: dict


def repeat_trial(
    run_id: str, tracking_uri: str | None = None, verbose: int = 0
) -> RepeatResult:
    """Retrains and rescores the trial recorded in ``run_id``.

    Args:
        run_id: A trial run of a search (it has the param ``trial_seed``).
        tracking_uri: The store; None means ``MLFLOW_TRACKING_URI``, else ``mlruns/``.
            Defaults to None.
        verbose: Keras progress output. Defaults to 0.

    Raises:
        ValueError: For a run that is not a trial run, a Hyperband continuation, or a
            dataset whose digest differs from the recorded one.
    """
    import keras_tuner
    from mlflow.tracking import MlflowClient

    from contrastive.config import SearchConfig
    from contrastive.data import load_dataset
    from contrastive.hypermodel import ContrastiveHyperModel, TrainingSettings
    from contrastive.search_space import load_search_space
    from contrastive.standalone import train_standalone
    from contrastive.tracking import Tracker, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    params, tags = run.data.params, run.data.tags
    if "trial_seed" not in params:
        raise ValueError(
            f"Run {run_id} is not a trial run (it has no 'trial_seed' param); pass the id "
            f"of a trial run nested under a search run."
        )
    if "tuner/trial_id" in params:
        raise ValueError(
            f"Run {run_id} is a Hyperband trial that continued from trial "
            f"{params['tuner/trial_id']}'s checkpoint; it cannot be repeated alone."
        )

    config = _config_from_params(SearchConfig, params)
    if config.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    dataset = load_dataset(config.dataset, **config.dataset_options())
    if config.limit is not None:
        dataset = dataset.limited(config.limit, seed=config.seed)
    if dataset.digest != tags.get("dataset_digest"):
        raise ValueError(
            f"The dataset {config.dataset!r} no longer matches run {run_id}: digest "
            f"{dataset.digest[:12]} now, {tags.get('dataset_digest', '?')[:12]} recorded."
        )
    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(run_id, "search_space.toml", folder)
        space = load_search_space(path)

    hp = keras_tuner.HyperParameters()
    for spec in space.specs:
        hp.Fixed(spec.name, _typed(spec, params[spec.name]))
    seed = int(params["trial_seed"])
    hypermodel = ContrastiveHyperModel(
        space, dataset.input_shape, dataset.num_classes, dataset.value_range,
        settings=TrainingSettings(config.labeled_batch_size, config.unlabeled_batch_size),
        seed=seed,
    )

    tracker = Tracker(uri, client.get_experiment(run.info.experiment_id).name)
    new_run = tracker.create_run(
        f"repeat-of-{run.info.run_name}",
        parent_run_id=tags.get("mlflow.parentRunId"),
        tags={**{k: v for k, v in tags.items() if not k.startswith("mlflow.")},
              "repeat_of": run_id},
    )
    tracker.log_params(new_run, params)
    result, _ = train_standalone(
        hypermodel, hp, dataset, seed=seed, epochs=config.epochs, tracker=tracker,
        run_id=new_run, evaluation_seed=config.seed, verbose=verbose,
    )
    recorded = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
    for name, value in result.metrics.items():
        logger.info("%s: %.6f repeated, %s recorded", name, value, recorded.get(name))
    return RepeatResult(run_id, new_run, result.metrics, recorded)


def _typed(spec, text: str):
    """A param's string back as the value the search space declares."""
    if spec.kind == "int":
        return int(text)
    if spec.kind == "float":
        return float(text)
    for value in spec.values:
        if str(value) == text:
            return value
    raise ValueError(
        f"{spec.name}={text!r} is not among the values of the recorded search space "
        f"{list(spec.values)}."
    )


def _config_from_params(config_class, params: dict):
    def optional(name):
        value = params.get(name)
        return None if value in (None, "None") else value

    size = optional("image_size")
    return config_class(
        dataset=params["dataset"],
        epochs=int(params["epochs"]),
        label_fraction=float(params["label_fraction"]),
        seed=int(params["seed"]),
        labeled_batch_size=int(params["labeled_batch_size"]),
        unlabeled_batch_size=int(params["unlabeled_batch_size"]),
        deterministic=params.get("deterministic") == "True",
        image_size=None if size is None else tuple(
            int(v) for v in size.strip("()").split(",")
        ),
        color_mode=optional("color_mode"),
        unlabeled_dir=optional("unlabeled_dir"),
        test_path=optional("test_path"),
        limit=None if optional("limit") is None else int(params["limit"]),
    ).validate()
