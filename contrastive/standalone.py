"""Train one configuration outside the tuner, exactly as a tuner trial would.

Used to repeat a recorded trial (`contrastive.repeat`) and to train each search's
cross-entropy baseline (`contrastive.search`). The steps and their order match Keras
Tuner's trial: seed everything, clear the Keras session, build, fit, and keep the weights
of the first epoch with the best validation accuracy.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

from contrastive.reporting import Evaluation, evaluate_model, log_evaluation  # noqa: E402
from contrastive.tracking import EpochMetricsLogger, Tracker  # noqa: E402
from contrastive.tuning import OBJECTIVE, DivergenceGuard  # noqa: E402

__all__ = ["train_standalone"]


class _BestEpoch(keras.callbacks.Callback):
    """Keeps, in memory, the weights of the first epoch with the best objective.

    The same choice as Keras Tuner's checkpoint of a trial's best epoch.
    """

    def __init__(self, objective: str):
        super().__init__()
        self.objective = objective
        self.best = float("-inf")
        self.weights = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.objective)
        if value is not None and value > self.best:
            self.best = value
            self.weights = self.model.get_weights()


def train_standalone(
    hypermodel,
    hp,
    dataset,
    *,
    seed: int,
    epochs: int,
    tracker: Tracker,
    run_id: str,
    evaluation_seed: int = 0,
    verbose: int = 0,
) -> tuple[Evaluation, float]:
    """Trains ``hp``'s model into ``run_id`` and scores its best epoch on the test split.

    Args:
        hypermodel: A `contrastive.hypermodel.ContrastiveHyperModel`.
        hp: Keras Tuner ``HyperParameters`` holding every value (``hp.Fixed``).
        dataset: The `contrastive.data.Dataset`.
        seed: The trial's seed.
        epochs: Training epochs.
        tracker: Where ``run_id`` lives.
        run_id: The run that receives per-epoch metrics, test metrics and pictures; it
            ends FINISHED, or FAILED if training raises.
        evaluation_seed: Seeds the linear probe and the pictures (trials use the
            search seed). Defaults to 0.
        verbose: Keras progress output. Defaults to 0.

    Returns:
        The test `Evaluation` of the best epoch, and that epoch's validation accuracy.
    """
    best = _BestEpoch(OBJECTIVE.name)
    with tracker.active(run_id):
        keras.utils.set_random_seed(seed)
        hypermodel.seed = seed
        keras.backend.clear_session()
        model = hypermodel.build(hp)
        history = hypermodel.fit(
            hp, model, dataset, epochs=epochs, verbose=verbose,
            callbacks=[EpochMetricsLogger(), DivergenceGuard(), best],
        )
        model.set_weights(best.weights)
        result = evaluate_model(
            model.inference_model(), dataset.x_test, dataset.y_test, dataset.x_labeled,
            dataset.y_labeled, class_names=dataset.class_names, seed=evaluation_seed,
        )
        log_evaluation(
            tracker, run_id, result, y_test=dataset.y_test,
            class_names=dataset.class_names, history=history.history,
            seed=evaluation_seed,
        )
        tracker.log_metrics(run_id, {f"best_{OBJECTIVE.name}": best.best})
    return result, best.best
