"""Keras Tuner, tracked: every trial is a nested MLflow run, and failures are sorted.

`make_tuner` returns one of Keras Tuner's own tuners (random search, Bayesian
optimisation, Hyperband) with `TrackedTrials` mixed in. Its ``run_trial``:

1. derives the trial's seed from the search seed and the trial id, so a resumed search,
   or a trial run by another worker, trains as it would have uninterrupted;
2. opens the trial's child run under the search's parent run and logs the
   hyperparameters under their search-space names plus the fixed settings;
3. trains through Keras Tuner (which keeps the best epoch's weights), with MLflow's epoch
   callback and a guard that stops a diverging trial at the first NaN or inf loss;
4. reloads the best epoch into the model it trained, scores it on the test split and
   logs metrics and pictures, then what each part cost (``build_seconds``,
   ``fit_seconds``, ``scoring_seconds``).

A trial that raises or diverges is marked FAILED in MLflow, with the traceback as an
artifact, and reported to Keras Tuner as a failed trial: the search goes on, and a
failed trial is never chosen best. Ctrl-C marks the trial run KILLED and stops the search.
"""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
import warnings
import zlib

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import keras_tuner  # noqa: E402

from contrastive.reporting import evaluate_model, log_evaluation  # noqa: E402
from contrastive.tracking import EpochMetricsLogger, Tracker  # noqa: E402

__all__ = ["OBJECTIVE", "TIMING_METRICS", "TrialDiverged", "make_tuner", "trial_seed"]

logger = logging.getLogger(__name__)

OBJECTIVE = keras_tuner.Objective("val_accuracy", direction="max")

# Wall-clock seconds of a trial's parts, logged on its run: the only metrics that a
# seeded rerun does not reproduce.
TIMING_METRICS = ("build_seconds", "fit_seconds", "scoring_seconds")


def trial_seed(search_seed: int, trial_id: str) -> int:
    """A trial's seed: a function of the search seed and the trial id only."""
    return zlib.crc32(f"{search_seed}:{trial_id}".encode()) % (2**31 - 1)


class TrialDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class DivergenceGuard(keras.callbacks.Callback):
    """Raises `TrialDiverged` at the first batch whose loss is not finite.

    Keras' ``TerminateOnNaN`` only stops training, which would let a diverged trial
    finish and be scored; raising makes it a failed trial instead.
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrialDiverged(
                f"Training diverged at step {batch} of epoch {self._epoch}: loss={loss}. "
                f"Lower the learning rate or raise the temperature."
            )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


class TrackedTrials:
    """Mixed into a Keras Tuner tuner: runs each trial inside its own MLflow run.

    Set ``tracker``, ``parent_run_id``, ``search_seed``, ``fixed_params``,
    ``run_tags`` and ``search_space_text`` after construction (`make_tuner` does).
    """

    tracker: Tracker
    parent_run_id: str
    search_seed: int = 0
    fixed_params: dict = {}
    run_tags: dict = {}
    search_space_text: str = ""

    def run_trial(self, trial, dataset, **fit_kwargs):
        seed = trial_seed(self.search_seed, trial.trial_id)
        keras.utils.set_random_seed(seed)
        self.hypermodel.seed = seed

        run_id = self._trial_run(trial)
        # The oracle has drawn the values already: logged before training, a failed
        # trial's run still says which configuration failed.
        drawn = dict(trial.hyperparameters.values)
        self.tracker.log_params(
            run_id, {**self.fixed_params, "trial_seed": seed, **drawn}
        )
        # What is needed to repeat this trial alone (scripts/tune.py --repeat-run).
        self.tracker.set_tags(run_id, self.run_tags)
        if self.search_space_text:
            self.tracker.log_text(run_id, self.search_space_text, "search_space.toml")
        callbacks = [*fit_kwargs.pop("callbacks", []), EpochMetricsLogger(), DivergenceGuard()]
        try:
            with self.tracker.active(run_id):
                started = time.perf_counter()
                histories = super().run_trial(
                    trial, dataset, callbacks=callbacks, **fit_kwargs
                )
                trained = time.perf_counter()
                # Conditional hyperparameters appear only once `build` has declared
                # them; the others are logged already (a second value would be refused).
                declared = trial.hyperparameters.values
                self.tracker.log_params(
                    run_id, {k: v for k, v in declared.items() if k not in drawn}
                )
                self._report(trial, run_id, dataset, histories)
                # What the trial cost, in three parts (benchmarks/performance.py). The
                # run's duration adds its creation and params, and for the champion
                # the model logged into its run once the search is done.
                seconds = (self._build_seconds, trained - started - self._build_seconds,
                           time.perf_counter() - trained)
                self.tracker.log_metrics(run_id, dict(zip(TIMING_METRICS, seconds)))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:
            self.tracker.log_text(run_id, traceback.format_exc(), "failure/traceback.txt")
            self.tracker.set_tags(run_id, {"failure": f"{type(error).__name__}: {error}"[:4000]})
            logger.warning("Trial %s failed: %s: %s", trial.trial_id, type(error).__name__, error)
            raise keras_tuner.errors.FailedTrialError(
                f"{type(error).__name__}: {error}"
            ) from error
        return histories

    def _try_build(self, hp):
        # Remembered so that `_report` scores the trained model itself: Keras Tuner's
        # `load_model` would clear the session and build a second model first (0.9 s
        # on digits with the quick search space, against 0.06 s to reload weights).
        started = time.perf_counter()
        self._trained_model = super()._try_build(hp)
        self._build_seconds = time.perf_counter() - started
        return self._trained_model

    def best_epoch_model(self, trial, *, reuse: bool = False):
        """The trial's model with the weights of its best epoch (Keras Tuner's checkpoint).

        Args:
            trial: A trial of this search.
            reuse: Load the checkpoint into the model the trial just trained instead of
                building a new one. Only `run_trial` may pass True. Defaults to False.
        """
        # Only the layers' weights matter here. A two-stage trial saved the optimizer
        # of the stage of its best epoch, of another shape than a fresh model's when
        # the encoder was frozen; Keras warns and skips it, which is what is wanted.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            if not reuse:
                return self.load_model(trial)
            self._trained_model.load_weights(self._get_checkpoint_fname(trial.trial_id))
            return self._trained_model

    def _trial_run(self, trial) -> str:
        """Creates the trial's child run.

        On resume, Keras Tuner reruns the trial a killed process left unfinished, under
        the same trial id. Its earlier run is never reused (its metrics would mix with
        the new ones): it is closed as KILLED if still RUNNING, and the new run links to
        it with the tag ``retry_of``.
        """
        name = f"trial-{trial.trial_id}"
        # Which worker ran the trial, on how many replicas (contrastive.distributed).
        tags = {"trial_id": trial.trial_id, "tuner_id": self.tuner_id}
        if self.distribution_strategy is not None:
            tags["distribution_strategy"] = type(self.distribution_strategy).__name__
            tags["replicas"] = str(self.distribution_strategy.num_replicas_in_sync)
        for run in self.tracker.child_runs(self.parent_run_id):
            if run.data.tags.get("trial_id") == trial.trial_id:
                if run.info.status == "RUNNING":
                    self.tracker.set_terminated(run.info.run_id, "KILLED")
                tags["retry_of"] = run.info.run_id
        return self.tracker.create_run(
            name, parent_run_id=self.parent_run_id, tags=tags
        )

    def _report(self, trial, run_id: str, dataset, histories) -> None:
        model = self.best_epoch_model(trial, reuse=True)
        inference = model.inference_model()
        result = evaluate_model(
            inference,
            dataset.x_test,
            dataset.y_test,
            dataset.x_labeled,
            dataset.y_labeled,
            class_names=dataset.class_names,
            seed=self.search_seed,
        )
        history = histories[-1].history if histories else None
        log_evaluation(
            self.tracker,
            run_id,
            result,
            y_test=dataset.y_test,
            class_names=dataset.class_names,
            history=history,
            seed=self.search_seed,
        )
        self._trained_model = None  # scored: its memory can go with the next build
        best = max(history.get(OBJECTIVE.name, [float("nan")])) if history else float("nan")
        self.tracker.log_metrics(run_id, {f"best_{OBJECTIVE.name}": best})
        logger.info(
            "Trial %s: best %s %.4f, test_accuracy %.4f",
            trial.trial_id, OBJECTIVE.name, best, result.metrics["test_accuracy"],
        )


class TrackedRandomSearch(TrackedTrials, keras_tuner.RandomSearch):
    """Random search with tracked trials."""


class TrackedBayesianOptimization(TrackedTrials, keras_tuner.BayesianOptimization):
    """Bayesian optimisation (Gaussian process) with tracked trials."""


class TrackedHyperband(TrackedTrials, keras_tuner.Hyperband):
    """Hyperband with tracked trials; a trial's epochs come from its bracket."""


_TUNERS = {
    "random": TrackedRandomSearch,
    "bayesian": TrackedBayesianOptimization,
    "hyperband": TrackedHyperband,
}


def make_tuner(
    name: str,
    hypermodel,
    *,
    tracker: Tracker,
    parent_run_id: str,
    fixed_params: dict,
    run_tags: dict | None = None,
    search_space_text: str = "",
    max_trials: int,
    epochs: int,
    seed: int,
    directory: str,
    project_name: str,
    overwrite: bool,
    distribution_strategy=None,
):
    """Builds the tuner called ``name`` (``random``, ``bayesian`` or ``hyperband``).

    Args:
        name: Which Keras Tuner tuner.
        hypermodel: A `contrastive.hypermodel.ContrastiveHyperModel`.
        tracker: Where trial runs are created.
        parent_run_id: The search's run; every trial run is nested under it.
        fixed_params: Settings logged as params on every trial run.
        run_tags: Tags set on every trial run (dataset and search-space digests,
            versions, git commit). Defaults to None.
        search_space_text: The search-space file, logged on every trial run. Defaults
            to ``""`` (not logged).
        max_trials: Trials for random and Bayesian search. Hyperband runs its own
            schedule over ``epochs`` (``max_epochs``) and ignores this.
        epochs: Epochs per trial (Hyperband: the largest budget).
        seed: The search seed (the tuner's sampling, and each trial's derived seed).
        directory: Keras Tuner's folder.
        project_name: Sub-folder of ``directory`` for this search.
        overwrite: Start afresh rather than resume.
        distribution_strategy: A `tf.distribute.Strategy` for each trial, or None
            (see `contrastive.distributed.make_strategy`). Defaults to None.
    """
    common = dict(
        hypermodel=hypermodel,
        objective=OBJECTIVE,
        # Keras Tuner replaces a falsy seed (0, the default search seed) with a random
        # one, so the oracle gets a seed derived from the search seed, never 0.
        seed=trial_seed(seed, "oracle") or 1,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
        distribution_strategy=distribution_strategy,
        # A trial that fails is recorded and skipped; several failures in a row mean
        # the configuration, not the luck, is wrong: the search then stops.
        max_consecutive_failed_trials=3,
    )
    if name == "hyperband":
        tuner = TrackedHyperband(max_epochs=epochs, factor=3, **common)
    else:
        tuner = _TUNERS[name](max_trials=max_trials, **common)
    tuner.tracker = tracker
    tuner.parent_run_id = parent_run_id
    tuner.search_seed = seed
    tuner.fixed_params = fixed_params
    tuner.run_tags = dict(run_tags or {})
    tuner.search_space_text = search_space_text
    return tuner
