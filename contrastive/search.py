"""`run_search`: one whole search, from a `SearchConfig` to a registered champion.

The flow runs one way:

1. validate the settings, read the search space and load the dataset (bad input stops
   here, before anything is written to the store);
2. open, or on resume reopen, the search's parent run, and record the dataset, the
   search space and the versions that are needed to repeat it;
3. let Keras Tuner run the trials (`contrastive.tuning`), each a nested run;
4. pick the best completed trial from the oracle, score it again as the champion, log the
   leaderboard, and register its inference model, moving the ``champion`` alias only by
   the promotion rule.

Rerunning with the same tuner folder resumes the search under the same parent run
(its id is kept in ``<tuner_dir>/<experiment>/mlflow_search.json``): finished trials
are kept, the trial a killed process left unfinished is rerun under its trial id in a
new run (the old one is closed as KILLED), and numbering continues. ``overwrite``
starts afresh. However a search ends, no run of it is left RUNNING.

In Keras Tuner's distributed mode (`contrastive.distributed`) the chief does steps 1, 2
and 4 and serves the oracle during step 3; each worker does step 1, joins the chief's
search run and runs trials under it, and leaves step 4 to the chief.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import subprocess
import time
from pathlib import Path

from contrastive.config import ConfigError, SearchConfig
from contrastive.distributed import WorkerResult
from contrastive.paths import default_tuner_dir, project_root

__all__ = ["SearchFailedError", "SearchResult", "run_search"]

logger = logging.getLogger(__name__)

_STATE_FILE = "mlflow_search.json"


class SearchFailedError(RuntimeError):
    """A search that ended without a model: every trial failed, or too many in a row.

    The search run and its trial runs are closed (FAILED) before this is raised; the
    message names the last failure and where the tracebacks are.
    """


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Where a finished search left its results.

    Args:
        tracking_uri: The MLflow store.
        experiment: The experiment's name.
        experiment_id: Its id.
        parent_run_id: The search's run.
        best_trial_id: Keras Tuner's id of the best trial.
        best_run_id: The best trial's run.
        metrics: The champion's ``test_`` metrics.
        model_name: The registered model.
        model_version: The version registered by this search.
        promoted: Whether that version took the ``champion`` alias.
        promotion_reason: Why it did or did not.
        trials: Leaderboard rows, best first.
    """

    tracking_uri: str
    experiment: str
    experiment_id: str
    parent_run_id: str
    best_trial_id: str
    best_run_id: str
    metrics: dict
    model_name: str
    model_version: str
    promoted: bool
    promotion_reason: str
    trials: list


def run_search(config: SearchConfig) -> SearchResult | WorkerResult:
    """Runs the search that ``config`` describes; see the module docstring.

    Returns:
        The `SearchResult`; on a worker in distributed mode, the `WorkerResult` (the
        chief alone registers the champion).

    Raises:
        contrastive.config.ConfigError, contrastive.search_space.SearchSpaceError,
        contrastive.data.DataError, contrastive.tracking.TrackingError: For bad input,
            before any training and before anything is written to the store.
        ConfigError: Also when no model can be built for the dataset, and when the tuner
            folder holds a search that cannot be resumed with these settings or this
            store (before any training).
        SearchFailedError: When no trial completed, or too many failed in a row.
        contrastive.distributed.ClusterError: When this chief or worker cannot take
            part (see `contrastive.distributed`), before any training.
    """
    config.validate()

    from contrastive import distributed

    cluster = distributed.read_cluster()
    cluster.check(config)
    distributed.check_oracle_port(cluster)

    from contrastive.search_space import load_search_space
    from contrastive.stores import check_tracking_uri, resolve_tracking_uri

    space = load_search_space(config.search_space)
    tracking_uri = resolve_tracking_uri(config.tracking_uri)
    check_tracking_uri(tracking_uri)
    distributed.check_store(cluster, tracking_uri)

    from contrastive.data import load_dataset

    dataset = load_dataset(config.dataset, **config.dataset_options())
    if config.limit is not None:
        dataset = dataset.limited(config.limit, seed=config.seed)
    logger.info(
        "Dataset %s: %d labelled, %d unlabelled, %d validation, %d test images of %s",
        dataset.name, len(dataset.y_labeled), len(dataset.x_unlabeled), len(dataset.y_val),
        len(dataset.y_test), dataset.input_shape,
    )

    # TensorFlow is imported only now that the input is known to be good.
    if config.deterministic:
        import tensorflow as tf

        # Same seed, same numbers, at the price of slower kernels (measured in
        # benchmarks/); without it, float reductions may differ in the last digits.
        tf.config.experimental.enable_op_determinism()

    from contrastive.hypermodel import ContrastiveHyperModel, TrainingSettings
    from contrastive.tracking import Tracker
    from contrastive.tuning import make_tuner

    hypermodel = ContrastiveHyperModel(
        space,
        dataset.input_shape,
        dataset.num_classes,
        dataset.value_range,
        settings=TrainingSettings(config.labeled_batch_size, config.unlabeled_batch_size),
        seed=config.seed,
    )
    _check_buildable(hypermodel, dataset, space)

    if cluster.is_worker:
        # The chief creates the experiment and the search run; a worker only joins.
        distributed.wait_for_chief(
            cluster, tracking_uri, config.experiment, config.chief_timeout
        )
    tracker = Tracker(tracking_uri, config.experiment)
    tuner_dir = Path(config.tuner_dir) if config.tuner_dir else default_tuner_dir()
    project = config.experiment
    state_file = tuner_dir / project / _STATE_FILE
    run_tags = _run_tags(config, dataset, space)
    if cluster.is_worker:
        parent_run_id = distributed.join_search(
            tracker, config, cluster, state_file, run_tags
        )
    else:
        parent_run_id = _parent_run(
            tracker, config, state_file, run_tags, space, dataset
        )

    tuner = make_tuner(
        config.tuner,
        hypermodel,
        tracker=tracker,
        parent_run_id=parent_run_id,
        fixed_params=config.fixed_params(),
        run_tags=run_tags,
        search_space_text=space.text,
        max_trials=config.max_trials,
        epochs=config.epochs,
        seed=config.seed,
        directory=str(tuner_dir),
        project_name=project,
        overwrite=config.overwrite,
        distribution_strategy=distributed.make_strategy(config.strategy),
    )
    if not cluster.is_worker:
        # Written before the chief starts its oracle: a worker that reaches the oracle
        # finds this search's run id, never a previous one's.
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps({"parent_run_id": parent_run_id}))

    started = time.monotonic()
    try:
        # On the chief this serves the oracle until every worker is done.
        tuner.search(dataset, epochs=config.epochs, verbose=config.verbose)
        logger.info("Search took %.0f s", time.monotonic() - started)
        if cluster.is_worker:
            return distributed.worker_result(tracker, cluster, parent_run_id)
        result = _finish(tracker, tuner, config, dataset, parent_run_id, tracking_uri)
    except KeyboardInterrupt:
        # A worker's own trial run is closed already; the search is the chief's.
        if not cluster.is_worker:
            _close_open_trials(tracker, parent_run_id)
            tracker.set_terminated(parent_run_id, "KILLED")
        raise
    except Exception as error:
        if cluster.is_worker and "Number of consecutive failures" in str(error):
            # The chief's oracle refused the trial's end over gRPC; it keeps waiting.
            raise SearchFailedError(
                f"The search stopped: the chief counts too many trials failed in a "
                f"row. {_failures(tracker, parent_run_id)} The chief keeps waiting for "
                f"trials: stop it (Ctrl-C) once the other workers have stopped."
            ) from error
        if cluster.is_worker:
            raise
        # Whatever stopped the search, no run of it is left RUNNING.
        _close_open_trials(tracker, parent_run_id)
        tracker.set_terminated(parent_run_id, "FAILED")
        if str(error).startswith("Number of consecutive failures"):
            # Keras Tuner's own message ends with a whole traceback; the traceback is
            # already an artifact of the failed trial's run.
            raise SearchFailedError(
                f"The search stopped: {tuner.oracle.max_consecutive_failed_trials} "
                f"trials failed in a row. {_failures(tracker, parent_run_id)}"
            ) from error
        raise
    tracker.set_terminated(parent_run_id, "FINISHED")
    return result


def _check_buildable(hypermodel, dataset, space) -> None:
    """Builds one model (the search space's first values) before any run is written.

    A model that cannot be built for the data, such as images too small for the
    encoder, would fail every trial alike: that is a bad configuration, refused at once.

    Raises:
        ConfigError: Naming the dataset, the search space and the builder's reason.
    """
    import keras_tuner

    try:
        hypermodel.build(keras_tuner.HyperParameters())
    except ValueError as error:
        raise ConfigError(
            f"No model can be built for dataset {dataset.name!r} (images "
            f"{dataset.input_shape}) with search space {space.path.name}: {error}"
        ) from None


def _run_tags(config: SearchConfig, dataset, space) -> dict[str, str]:
    """Tags of the search run and of every trial run: what is needed to repeat them."""
    tags = {
        "dataset": dataset.name,
        "dataset_source": dataset.source,
        "dataset_digest": dataset.digest,
        "tuner": config.tuner,
        "search_space": str(space.path),
        "search_space_digest": space.digest,
        "seed": config.seed,
        "label_fraction": config.label_fraction,
        "deterministic": config.deterministic,
        **_versions(),
    }
    return {key: str(value) for key, value in tags.items()}


def _parent_run(tracker, config: SearchConfig, state_file: Path, tags, space, dataset) -> str:
    """Reopens the parent run of the search in ``state_file``, or creates a new one.

    Resuming needs the same store, dataset, search space, tuner and seed as the search
    that the tuner folder holds; anything else is refused before any training. With
    ``--overwrite`` a new run starts, and the old one, if a killed process left it
    RUNNING, is closed as KILLED. Under a wrapper's ``MLFLOW_RUN_ID`` a new search run
    is nested under the wrapper's run.

    Raises:
        ConfigError: When the tuner folder holds a search that cannot be resumed here.
    """
    previous = None
    if state_file.is_file():
        previous = json.loads(state_file.read_text()).get("parent_run_id")
    known = bool(previous) and tracker.run_exists(previous)

    if not config.overwrite:
        if known:
            _check_resumable(tracker, previous, tags, state_file.parent)
            logger.info("Resuming the search recorded in run %s", previous)
            # Trials that a killed process left RUNNING can never finish now.
            _close_open_trials(tracker, previous)
            tracker.client.update_run(previous, status="RUNNING")
            return previous
        if (state_file.parent / "oracle.json").is_file():
            # Keras Tuner would resume trials whose runs are not in this store.
            raise ConfigError(
                f"The tuner folder {state_file.parent} holds a search whose run "
                f"{previous or '(unknown)'} is not in experiment {config.experiment!r} "
                f"of {tracker.tracking_uri}. Pass the store it was recorded in as "
                f"--tracking-uri to resume it, --overwrite to start afresh, or another "
                f"--tuner-dir."
            )
    elif known and tracker.run_status(previous) == "RUNNING":
        logger.warning("--overwrite: closing the previous search run %s", previous)
        _close_open_trials(tracker, previous)
        tracker.set_terminated(previous, "KILLED")

    name = f"search-{time.strftime('%Y%m%d-%H%M%S')}"
    run_id = tracker.create_run(name, parent_run_id=tracker.launcher_run_id, tags=tags)
    tracker.log_params(run_id, {**config.fixed_params(), "max_trials": config.max_trials})
    tracker.log_text(run_id, space.text, f"search_space/{space.path.name}")
    tracker.log_dataset(run_id, dataset)
    return run_id


# What a resumed search must share with the search it continues.
_RESUME_KEYS = (
    "dataset_digest", "search_space_digest", "tuner", "seed", "label_fraction"
)


def _check_resumable(tracker, run_id: str, tags: dict, folder: Path) -> None:
    recorded = tracker.client.get_run(run_id).data.tags
    changed = [
        f"{key} {recorded[key][:16]!r} -> {tags[key][:16]!r}"
        for key in _RESUME_KEYS
        if key in recorded and key in tags and recorded[key] != tags[key]
    ]
    if changed:
        raise ConfigError(
            f"Cannot resume the search of run {run_id} in {folder}: it was started "
            f"with other settings ({'; '.join(changed)}). Rerun with the same settings "
            f"to resume it, --overwrite to start afresh, or another --tuner-dir."
        )


def _close_open_trials(tracker, parent_run_id: str) -> None:
    for run in tracker.child_runs(parent_run_id):
        if run.info.status == "RUNNING":
            logger.warning("Marking trial run %s KILLED: its process is gone", run.info.run_id)
            tracker.set_terminated(run.info.run_id, "KILLED")


def _finish(tracker, tuner, config, dataset, parent_run_id, tracking_uri) -> SearchResult:
    """Scores the best trial as champion, logs the leaderboard, registers the model."""
    from contrastive import plots
    from contrastive.reporting import evaluate_model, log_evaluation
    from contrastive.tuning import OBJECTIVE

    _close_open_trials(tracker, parent_run_id)
    # With no completed trial Keras Tuner returns a failed one: never the champion.
    best_trials = [
        best for best in tuner.oracle.get_best_trials(1) if best.status == "COMPLETED"
    ]
    if not best_trials:
        raise SearchFailedError(
            f"No trial completed, so no model was registered. "
            f"{_failures(tracker, parent_run_id)}"
        )
    best = best_trials[0]
    runs = _runs_by_trial(tracker, parent_run_id)
    best_run = runs[best.trial_id]

    model = tuner.best_epoch_model(best)
    inference = model.inference_model()
    champion = evaluate_model(
        inference, dataset.x_test, dataset.y_test, dataset.x_labeled, dataset.y_labeled,
        class_names=dataset.class_names, seed=config.seed,
    )
    log_evaluation(
        tracker, parent_run_id, champion, y_test=dataset.y_test,
        class_names=dataset.class_names, x_test=dataset.x_test, seed=config.seed,
    )
    rows = _leaderboard(tuner, runs, OBJECTIVE.name)
    if config.baseline:
        rows.append(_baseline(tracker, tuner, best, config, dataset, parent_run_id, champion))
    tracker.log_text(parent_run_id, _as_csv(rows), "leaderboard.csv")
    tracker.log_text(parent_run_id, _as_markdown(rows), "leaderboard.md")
    tracker.log_figure(
        parent_run_id,
        lambda: plots.search_figure(
            [row for row in rows if row["status"] == "COMPLETED"], objective=OBJECTIVE.name
        ),
        "plots/search.png",
    )
    best_score = best.score
    tracker.log_metrics(parent_run_id, {f"best_{OBJECTIVE.name}": best_score})
    tracker.set_tags(
        parent_run_id, {"best_trial_id": best.trial_id, "best_run_id": best_run.info.run_id}
    )

    version = tracker.registered_version(
        config.model_name, best_run.info.run_id, parent_run_id
    )
    if version is not None:
        # This search ran to its end before: same champion, same model, already there.
        holder = tracker.champion(config.model_name)
        promoted = holder is not None and str(holder.version) == str(version.version)
        reason = f"version {version.version} of this search's champion was registered already"
        logger.info("Version %s is this search's champion, registered already", version.version)
    else:
        version, promoted, reason = _register(
            tracker, config, dataset, best, best_run, parent_run_id, inference, champion
        )
    tracker.set_tags(
        parent_run_id,
        {"model_version": version.version, "promoted": promoted, "promotion": reason},
    )
    return SearchResult(
        tracking_uri=tracking_uri,
        experiment=config.experiment,
        experiment_id=tracker.experiment_id,
        parent_run_id=parent_run_id,
        best_trial_id=best.trial_id,
        best_run_id=best_run.info.run_id,
        metrics=champion.metrics,
        model_name=config.model_name,
        model_version=str(version.version),
        promoted=promoted,
        promotion_reason=reason,
        trials=rows,
    )


def _register(tracker, config, dataset, best, best_run, parent_run_id, inference, champion):
    """Logs the champion's inference model into its trial run and registers it."""
    hyperparameters = dict(best.hyperparameters.values)
    metadata = {
        "class_names": list(dataset.class_names),
        "input_shape": list(dataset.input_shape),
        "value_range": list(dataset.value_range),
        "dataset": dataset.name,
        "hyperparameters": hyperparameters,
    }
    info = tracker.log_inference_model(best_run.info.run_id, inference, metadata=metadata)
    version_tags = {
        "dataset": dataset.name,
        "dataset_digest": dataset.digest,
        "label_fraction": config.label_fraction,
        "source_run_id": best_run.info.run_id,
        "search_run_id": parent_run_id,
        **{f"hp_{k}": v for k, v in hyperparameters.items()},
        **champion.metrics,
        **_versions(),
    }
    description = (
        f"Contrastive classifier for {dataset.name} ({dataset.num_classes} classes, input "
        f"{dataset.input_shape}, values {dataset.value_range[0]:g}-{dataset.value_range[1]:g}), "
        f"label fraction {config.label_fraction}; best of search run {parent_run_id} "
        f"(trial {best.trial_id}); test_accuracy {champion.metrics['test_accuracy']:.4f}."
    )
    version, promoted, reason = tracker.register(
        info.model_uri, config.model_name, tags=version_tags, description=description,
        metric="test_accuracy", promote=config.promote,
    )
    verb = "takes" if promoted else "does not take"
    logger.info("Version %s %s the champion alias: %s", version.version, verb, reason)
    return version, promoted, reason


def _failures(tracker, parent_run_id: str) -> str:
    """One sentence on the failed trials of a search, for an error message."""
    reasons = [
        run.data.tags["failure"].splitlines()[0][:300]
        for run in tracker.child_runs(parent_run_id)
        if "failure" in run.data.tags
    ]
    last = f"Last failure: {reasons[-1]} " if reasons else ""
    return (
        f"{last}See the failed trial runs under run {parent_run_id} (tag 'failure', "
        f"artifact failure/traceback.txt)."
    )


def _baseline(tracker, tuner, best, config, dataset, parent_run_id, champion) -> dict:
    """Trains cross-entropy alone with the champion's encoder; logs the uplift.

    The baseline is the champion's configuration with ``loss_weight = 0`` in joint
    mode: the same encoder, heads, augmentation, learning rate, epochs and optimiser
    steps, but no contrastive term and no unlabelled images. It is a child run tagged
    ``baseline``, outside the tuner, so it is never chosen as champion. The search run
    gets ``baseline_test_accuracy`` and ``uplift_test_accuracy`` (champion minus
    baseline). A resumed search reuses a finished baseline of the same champion.
    """
    import keras_tuner

    from contrastive.standalone import train_standalone
    from contrastive.tuning import trial_seed

    values = {
        name: value for name, value in best.hyperparameters.values.items()
        if not name.startswith("tuner/")
    }
    values.update(loss_weight=0.0, training_mode="joint")
    seed = trial_seed(config.seed, "baseline")
    row = {"trial": "baseline", "status": "BASELINE", **values}

    previous = [
        run for run in tracker.child_runs(parent_run_id)
        if run.data.tags.get("baseline_of_trial") == best.trial_id
        and run.info.status == "FINISHED"
    ]
    if previous:
        run_id, metrics = previous[-1].info.run_id, previous[-1].data.metrics
    else:
        run_id = tracker.create_run(
            "baseline-cross-entropy",
            parent_run_id=parent_run_id,
            tags={**tuner.run_tags, "baseline": "cross-entropy",
                  "baseline_of_trial": best.trial_id},
        )
        tracker.log_params(run_id, {**tuner.fixed_params, **values, "trial_seed": seed})
        hp = keras_tuner.HyperParameters()
        for name, value in values.items():
            hp.Fixed(name, value)
        result, _ = train_standalone(
            tuner.hypermodel, hp, dataset, seed=seed, epochs=config.epochs,
            tracker=tracker, run_id=run_id, evaluation_seed=config.seed,
            verbose=config.verbose,
        )
        metrics = result.metrics

    uplift = champion.metrics["test_accuracy"] - metrics["test_accuracy"]
    tracker.log_metrics(
        parent_run_id,
        {"baseline_test_accuracy": metrics["test_accuracy"], "uplift_test_accuracy": uplift},
    )
    tracker.set_tags(parent_run_id, {"baseline_run_id": run_id})
    logger.info(
        "Cross-entropy baseline: test_accuracy %.4f; the champion's uplift %+.4f",
        metrics["test_accuracy"], uplift,
    )
    return {**row, "run_id": run_id, **{k: v for k, v in metrics.items() if k.startswith("test_")}}


def _runs_by_trial(tracker, parent_run_id: str) -> dict:
    """The latest run of each trial id (a trial rerun after a crash has two)."""
    runs = {}
    for run in tracker.child_runs(parent_run_id):
        trial_id = run.data.tags.get("trial_id")
        if trial_id is not None:
            runs[trial_id] = run
    return runs


def _leaderboard(tuner, runs: dict, objective: str) -> list[dict]:
    rows = []
    for trial in tuner.oracle.trials.values():
        run = runs.get(trial.trial_id)
        metrics = run.data.metrics if run else {}
        rows.append({
            "trial": trial.trial_id,
            "status": str(trial.status),
            "run_id": run.info.run_id if run else "",
            objective: trial.score,
            **{k: v for k, v in trial.hyperparameters.values.items()},
            **{k: v for k, v in sorted(metrics.items()) if k.startswith("test_")},
        })
    rows.sort(key=lambda row: (row[objective] is None, -(row[objective] or 0.0)))
    return rows


def _columns(rows: list[dict]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    return columns


def _as_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_columns(rows))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _as_markdown(rows: list[dict]) -> str:
    columns = _columns(rows)

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _versions() -> dict[str, str]:
    """Package versions and the git commit: what is needed to repeat a run."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("contrastive", "keras", "tensorflow", "keras-tuner", "mlflow"):
        try:
            found[f"version_{package.replace('-', '_')}"] = version(package)
        except PackageNotFoundError:
            found[f"version_{package.replace('-', '_')}"] = "not installed"
    found["git_commit"] = _git_commit() or "unknown"
    return found


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True,
            text=True, timeout=5, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
