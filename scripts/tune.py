#!/usr/bin/env python3
"""Tune a contrastive classifier: a whole Keras Tuner search, tracked in MLflow.

With no arguments it searches the default space on scikit-learn's digits, records every
trial in the SQLite store under mlruns/, and registers the best model as
contrastive-classifier@champion. Run from any working directory.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contrastive.config import (  # noqa: E402
    PROMOTE_CHOICES,
    STRATEGIES,
    TUNERS,
    SearchConfig,
)

_DEFAULTS = SearchConfig()


def parse_args(
    argv: list[str] | None = None,
) -> tuple[SearchConfig, str | None, dict[str, str | None]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--dataset", default=_DEFAULTS.dataset,
        help="digits, mnist-5k, fashion-mnist, mnist, cifar10, cifar100, or a path to a "
             "folder of class sub-folders, a folder of IDX files or an .npz file "
             "(default: %(default)s)")
    add("--search-space", default=_DEFAULTS.search_space,
        help="a file in search_spaces/ (by name) or a path (default: %(default)s)")
    add("--tuner", choices=TUNERS, default=_DEFAULTS.tuner, help="(default: %(default)s)")
    add("--max-trials", type=int, default=_DEFAULTS.max_trials,
        help="trials for random and Bayesian search (default: %(default)s)")
    add("--epochs", type=int, default=_DEFAULTS.epochs,
        help="epochs per trial; Hyperband's largest budget (default: %(default)s)")
    add("--label-fraction", type=float, default=_DEFAULTS.label_fraction,
        help="share of the training split that keeps labels, in (0, 1] (default: %(default)s)")
    add("--seed", type=int, default=_DEFAULTS.seed, help="(default: %(default)s)")
    add("--experiment", default=_DEFAULTS.experiment,
        help="MLflow experiment (default: %(default)s)")
    add("--model-name", default=_DEFAULTS.model_name,
        help="registered model name (default: %(default)s)")
    add("--tracking-uri", default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else SQLite in mlruns/)")
    add("--tuner-dir", default=None,
        help="Keras Tuner folder; rerunning with the same one resumes (default: tuner/)")
    add("--overwrite", action="store_true", help="start afresh instead of resuming")
    add("--promote", choices=PROMOTE_CHOICES, default=_DEFAULTS.promote,
        help="when the new model takes the champion alias (default: %(default)s)")
    add("--labeled-batch-size", type=int, default=_DEFAULTS.labeled_batch_size,
        help="(default: %(default)s)")
    add("--unlabeled-batch-size", type=int, default=_DEFAULTS.unlabeled_batch_size,
        help="(default: %(default)s)")
    add("--verbose", type=int, choices=(0, 1, 2), default=_DEFAULTS.verbose,
        help="Keras progress: 0 silent, 1 bars, 2 a line an epoch (default: %(default)s)")
    add("--deterministic", action="store_true",
        help="TensorFlow op determinism: the same seed gives the same numbers (slower)")
    add("--no-baseline", dest="baseline", action="store_false",
        help="skip the cross-entropy baseline trained after the search")
    add("--repeat-run", default=None, metavar="RUN_ID",
        help="retrain and rescore the trial recorded in this run, logged as a new run; "
             "the other options are then read from the run (except --tracking-uri)")

    add("--strategy", choices=STRATEGIES, default=_DEFAULTS.strategy,
        help="mirrored: train each trial with tf.distribute.MirroredStrategy over the "
             "visible GPUs (default: %(default)s)")

    cluster = parser.add_argument_group(
        "several workers (Keras Tuner's chief/worker mode; see the README)",
        "The options set KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and\n"
        "KERASTUNER_ORACLE_PORT, which may be set instead. Give the chief and every\n"
        "worker the same other options, one --tracking-uri (an mlflow server) and\n"
        "one shared --tuner-dir.",
    )
    cluster.add_argument("--role", choices=("chief", "worker"), default=None,
                         help="chief: serves the trials and registers the champion; "
                              "worker: runs trials (default: one process does it all)")
    cluster.add_argument("--worker-id", default=None, metavar="ID",
                         help="a worker's id, unique in the search, e.g. worker0")
    cluster.add_argument("--oracle-address", default=None, metavar="HOST:PORT",
                         help="chief: where its oracle listens (0.0.0.0:PORT for all "
                              "interfaces); worker: where the chief is reached")
    cluster.add_argument("--parent-run-id", default=None, metavar="RUN_ID",
                         help="worker: the chief's search run (default: read from the "
                              "chief's mlflow_search.json in the shared tuner folder)")
    cluster.add_argument("--chief-timeout", type=float, default=_DEFAULTS.chief_timeout,
                         metavar="SECONDS",
                         help="worker: how long to wait for the chief (default: "
                              "%(default)s)")

    data = parser.add_argument_group("datasets given as paths")
    data.add_argument("--image-size", type=_image_size, default=None, metavar="HxW",
                      help="resize images, e.g. 32x32 (default: the first image's size)")
    data.add_argument("--color-mode", choices=("grayscale", "rgb", "rgba"), default=None,
                      help="channels of folder images (default: rgb unless all are gray)")
    data.add_argument("--unlabeled-dir", default=None,
                      help="a folder of extra unlabelled images")
    data.add_argument("--test-path", default=None,
                      help="data used as the whole test split (IDX folder, .npz, folder)")
    data.add_argument("--limit", type=int, default=None, metavar="N",
                      help="keep at most N samples per split (stratified) for a quick run")
    data.add_argument("--strict", action="store_true",
                      help="refuse unreadable or misnamed image files instead of skipping")
    args = parser.parse_args(argv)
    options = vars(args)
    repeat_run = options.pop("repeat_run")
    names = ("role", "worker_id", "oracle_address")
    cluster = {name: options.pop(name) for name in names}
    return SearchConfig(**options), repeat_run, cluster


def _image_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected HEIGHTxWIDTH such as 32x32; received {text!r}"
        ) from None
    return height, width


def main(argv: list[str] | None = None) -> int:
    config, repeat_run, cluster = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if repeat_run:
        return _repeat(repeat_run, config)

    from contrastive.config import ConfigError
    from contrastive.distributed import (
        WorkerResult,
        set_cluster_environment,
        stop_on_sigterm,
    )
    from contrastive.search import SearchFailedError

    # A stopped process (kill, a scheduler) closes its runs as KILLED, as Ctrl-C does.
    stop_on_sigterm()
    try:
        config.validate()
        set_cluster_environment(**cluster)
        from contrastive.search import run_search

        result = run_search(config)
    except (ConfigError, ValueError, FileNotFoundError) as error:
        # Bad input: one clear line, no traceback, nothing trained.
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SearchFailedError as error:
        # Every trial's traceback is already an artifact of its run.
        print(f"error: {error}", file=sys.stderr)
        return 1

    if isinstance(result, WorkerResult):
        print(
            f"\nWorker {result.tuner_id} finished: ran trials "
            f"{', '.join(result.trial_ids) or '(none)'} under search run "
            f"{result.parent_run_id} of experiment '{result.experiment}'. The chief "
            f"picks and registers the champion."
        )
        return 0

    metrics = "  ".join(
        f"{name[5:]}={value:.4f}" for name, value in result.metrics.items()
    )
    champion = "now champion" if result.promoted else "not champion"
    print(
        f"\nSearch finished: {len(result.trials)} trials in experiment "
        f"'{result.experiment}' (id {result.experiment_id}), search run "
        f"{result.parent_run_id}\n"
        f"Best trial {result.best_trial_id} (run {result.best_run_id}), test: {metrics}\n"
        f"Registered {result.model_name} version {result.model_version}, {champion} "
        f"({result.promotion_reason})\n"
        f"Load it:  mlflow.pyfunc.load_model('models:/{result.model_name}@champion')\n"
        f"Look:     mlflow ui --backend-store-uri {result.tracking_uri}"
    )
    return 0


def _repeat(run_id: str, config: SearchConfig) -> int:
    from contrastive.repeat import repeat_trial

    try:
        result = repeat_trial(run_id, config.tracking_uri, verbose=config.verbose)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Repeated run {result.run_id} as run {result.repeated_run_id}:")
    for name, value in result.metrics.items():
        recorded = result.recorded_metrics.get(name)
        shown = "missing" if recorded is None else f"{recorded:.6f}"
        print(f"  {name}: {value:.6f} (recorded {shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
