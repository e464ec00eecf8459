#!/usr/bin/env python3
"""Performance: what a user pays in wall time and memory, measured in one run.

Prints Markdown tables and, with ``--output``, writes them as the "Measured" part of the
"Performance" section of benchmarks/RESULTS.md (the hand-written parts stay). Costs are
compared as ratios within the run, since these machines are shared.

1. Training throughput, images per second (an image counts once, however many views
   it gets), on digits and MNIST-5k: the joint step; the two-stage recipe of the
   keras.io examples (`two_stage_recipe.py`: pre-training epochs, then classifier
   epochs, same encoder, heads, augmentation and batches); plain cross-entropy with the
   same encoder and no augmentation, the floor of one step. Median epoch times, the
   first (tracing) epoch left out, the models taking turns.
2. The default search (``scripts/tune.py`` with no arguments but a fresh store, as
   ``make tune`` runs it) end to end, with its champion's accuracy and peak memory,
   against the same trials run by plain Keras Tuner with no tracking, no test scoring
   and no pictures: the difference is what tracking and plots cost.
3. Per-trial fixed cost: a trial's time outside ``fit`` (building, compiling,
   scoring, pictures, logging), from the ``build_seconds``, ``fit_seconds`` and
   ``scoring_seconds`` each trial logs. Checkpoints and epoch logging happen inside
   ``fit``; so does tracing the step, in the first epoch.
4. Start-up: ``--help`` of each script, and process start to the first prediction of
   the registered champion by ``scripts/predict.py``.

Usage::

    python benchmarks/performance.py --output benchmarks/RESULTS.md   # about 15 minutes
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from results_file import replace_subsection  # noqa: E402

SECTION = "## Performance (benchmarks/performance.py)"
MEASURED = "### Measured"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
ENV.pop("MLFLOW_TRACKING_URI", None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4,
                        help="timed epochs per model and round (default 4)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds in which the models take turns (default 2)")
    parser.add_argument("--datasets", nargs="*", default=["digits", "mnist-5k"],
                        help="datasets of the throughput tables (none: leave them out)")
    parser.add_argument("--search-rounds", type=int, default=3,
                        help="tracked and untracked default searches, in turns (default "
                             "3; 0 leaves parts 2-4 out, but --help)")
    parser.add_argument("--output", default=None, help="RESULTS.md to update")
    parser.add_argument("--untracked-search", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.update(TF_CPP_MIN_LOG_LEVEL="2")
    if args.untracked_search:
        return untracked_search(Path(args.untracked_search))

    started = time.perf_counter()
    parts = [startup_table()]
    # The searches first: Linux gives a child the peak memory of its parent at fork as
    # its own starting peak, so they must start while this process is still small.
    if args.search_rounds:
        search = search_table(args.search_rounds)
    for name in args.datasets:
        parts.append(throughput_table(name, args.epochs, args.rounds))
    if args.search_rounds:
        parts.append(search)
    minutes = (time.perf_counter() - started) / 60

    text = (
        f"{MEASURED}\n\nCommand: `python benchmarks/performance.py "
        f"{' '.join(sys.argv[1:])}`. {_machine()} Wall time {minutes:.1f} min.\n\n"
        + "\n\n".join(parts) + "\n"
    )
    sys.stdout.write(text)
    if args.output:
        path = Path(args.output)
        current = path.read_text() if path.exists() else ""
        path.write_text(replace_subsection(current, SECTION, MEASURED[4:], text, first=True))
    return 0


# --- 1. training throughput --------------------------------------------------------


def throughput_table(name: str, epochs: int, rounds: int) -> str:
    """Joint step, two-stage recipe and cross-entropy floor on one dataset."""
    import keras
    import numpy as np

    from contrastive.data import load_dataset

    dataset = load_dataset(name, label_fraction=0.1, seed=0)
    joint, stream, steps, settings = _joint_model(dataset)
    pretrainer, classifier = _recipe_models(dataset)
    floor = _floor_model(dataset)

    per_step = min(settings.labeled_batch_size, len(dataset.x_labeled)) + min(
        settings.unlabeled_batch_size, len(dataset.x_unlabeled)
    )
    floor_x = np.resize(dataset.x_labeled, (steps * per_step, *dataset.input_shape))
    floor_y = np.resize(dataset.y_labeled, (steps * per_step,))
    runs = {
        "joint": lambda n, c: joint.fit(stream, steps_per_epoch=steps, epochs=n,
                                        callbacks=c, verbose=0, shuffle=False),
        "pretrain": lambda n, c: pretrainer.fit(stream, steps_per_epoch=steps, epochs=n,
                                                callbacks=c, verbose=0, shuffle=False),
        "classifier": lambda n, c: classifier.fit(
            dataset.x_labeled, dataset.y_labeled, batch_size=settings.labeled_batch_size,
            epochs=n, callbacks=c, verbose=0),
        "floor": lambda n, c: floor.fit(floor_x, floor_y, batch_size=per_step, epochs=n,
                                        callbacks=c, verbose=0),
    }
    times = {key: [] for key in runs}
    for key, run in runs.items():
        run(1, [])  # traces the step
    for _ in range(rounds):
        for key, run in runs.items():
            clock = _epoch_clock()
            run(epochs, [clock])
            times[key] += clock.seconds
    median = {key: statistics.median(values) for key, values in times.items()}

    images = steps * per_step
    joint_rate = images / median["joint"]
    pretrain_rate = images / median["pretrain"]
    classifier_rate = len(dataset.x_labeled) / median["classifier"]
    recipe_rate = images / (median["pretrain"] + median["classifier"])
    floor_rate = images / median["floor"]
    rows = [
        ("joint step (the platform)", joint_rate, median["joint"], "1.00"),
        ("two-stage: pre-training epoch", pretrain_rate, median["pretrain"],
         f"joint / pre-training = {joint_rate / pretrain_rate:.2f}"),
        ("two-stage: classifier epoch (labelled images only)", classifier_rate,
         median["classifier"], ""),
        ("two-stage, per epoch of pre-training (+ one classifier epoch)", recipe_rate,
         median["pretrain"] + median["classifier"],
         f"joint / two-stage = **{joint_rate / recipe_rate:.2f}** (target >= 1.3)"),
        ("cross-entropy floor (same encoder, one view, no augmentation)", floor_rate,
         median["floor"], f"floor / joint = **{floor_rate / joint_rate:.2f}** "
         f"(target <= 2.5)"),
    ]
    keras.backend.clear_session()
    header = (
        f"**{name}**, 10% labels: {len(dataset.x_labeled):,} labelled and "
        f"{len(dataset.x_unlabeled):,} unlabelled {dataset.input_shape} images; an epoch is "
        f"{steps} steps of {per_step} images ({images:,} images; the classifier epoch "
        f"{len(dataset.x_labeled):,}); median of {rounds} x {epochs} epochs per model."
    )
    table = "| training | images/s | epoch | ratio |\n|---|---|---|---|\n" + "\n".join(
        f"| {label} | {rate:,.0f} | {seconds:.3f} s | {ratio} |"
        for label, rate, seconds, ratio in rows
    )
    return header + "\n\n" + table


def _epoch_clock():
    """A Keras callback whose ``seconds`` lists each epoch's wall time."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._started)

    return EpochClock()


def _joint_model(dataset):
    import keras
    import keras_tuner

    from contrastive.hypermodel import ContrastiveHyperModel
    from contrastive.search_space import load_search_space

    hypermodel = ContrastiveHyperModel(
        load_search_space("default"), dataset.input_shape, dataset.num_classes,
        dataset.value_range, seed=0,
    )
    hp = keras_tuner.HyperParameters()
    for name, value in _SETTINGS.items():
        hp.Fixed(name, value)
    keras.utils.set_random_seed(0)
    model = hypermodel.build(hp)
    stream, steps = hypermodel._stream(dataset, model.loss_weight)
    return model, stream, steps, hypermodel.settings


# The default search space's centre, for every model here.
_SETTINGS = {
    "encoder_width": 32, "projection_dim": 64, "projection_depth": 2,
    "temperature": 0.5, "loss_weight": 0.8, "learning_rate": 0.002,
    "training_mode": "joint",
}


def _recipe_models(dataset):
    """The two stages, with fresh copies of the joint model's parts.

    The classifier stage gets an encoder of its own: freezing the pre-trainer's would
    stop its training (timing does not depend on the weights).
    """
    import keras

    from contrastive.augment import augmenter
    from contrastive.encoders import conv_encoder
    from contrastive.heads import classification_head, projection_head
    from two_stage_recipe import Pretrainer, classifier_stage

    encoder = conv_encoder(dataset.input_shape, width=_SETTINGS["encoder_width"])
    dim = encoder.output_shape[-1]
    pretrainer = Pretrainer(
        encoder,
        projection_head(dim, _SETTINGS["projection_dim"], _SETTINGS["projection_depth"]),
        augmenter(dataset.input_shape, 1.0, seed=0),
        dataset.value_range,
        _SETTINGS["temperature"],
    )
    pretrainer.compile(optimizer=keras.optimizers.Adam(_SETTINGS["learning_rate"]))
    classifier = classifier_stage(
        conv_encoder(dataset.input_shape, width=_SETTINGS["encoder_width"]),
        classification_head(dim, dataset.num_classes),
        augmenter(dataset.input_shape, 1.0, seed=1), dataset.value_range,
    )
    return pretrainer, classifier


def _floor_model(dataset):
    import keras

    from contrastive.encoders import conv_encoder
    from contrastive.heads import classification_head

    low, high = dataset.value_range
    encoder = conv_encoder(dataset.input_shape, width=_SETTINGS["encoder_width"])
    inputs = keras.Input(shape=dataset.input_shape)
    x = keras.layers.Rescaling(1.0 / (high - low), offset=-low / (high - low))(inputs)
    outputs = classification_head(encoder.output_shape[-1], dataset.num_classes)(encoder(x))
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(_SETTINGS["learning_rate"]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


# --- 2-4. the default search, tracked and untracked, and a first prediction ---------------


def search_table(rounds: int) -> str:
    """Runs the default search tracked and untracked, in turns; then a first prediction."""
    folder = Path(tempfile.mkdtemp(prefix="performance-"))
    tracked, untracked = [], []
    for round_ in range(rounds):
        on, off = folder / f"on-{round_}", folder / f"off-{round_}"
        tracked.append(_timed([sys.executable, str(REPO / "scripts" / "tune.py"),
                               "--tracking-uri", f"sqlite:///{on / 'mlflow.db'}",
                               "--tuner-dir", str(on / "tuner")], on))
        untracked.append(_timed([sys.executable, __file__, "--untracked-search", str(off)],
                                off))
    store = f"sqlite:///{folder / 'on-0' / 'mlflow.db'}"
    trials, champion = _trial_costs(store)
    first_prediction = _first_prediction(store, folder)

    def median(runs, key):
        return statistics.median(run[key] for run in runs)

    def each(runs, key, unit):
        return ", ".join(f"{run[key]:.{0 if unit == ' MiB' else 1}f}{unit}" for run in runs)

    on_seconds, off_seconds = median(tracked, "seconds"), median(untracked, "seconds")
    on_cpu, off_cpu = median(tracked, "cpu"), median(untracked, "cpu")
    # A trial's parts; its run's duration is no measure for the champion, whose run is
    # reopened later to receive the registered model.
    parts = {k: statistics.mean(t[k] for t in trials)
             for k in ("build_seconds", "fit_seconds", "scoring_seconds")}
    trial = sum(parts.values())
    fixed = parts["build_seconds"] + parts["scoring_seconds"]
    rows = [
        ("default search, tracked (`scripts/tune.py`, as `make tune` runs it): wall",
         f"{on_seconds:.1f} s (runs: {each(tracked, 'seconds', ' s')})",
         f"champion test_accuracy {champion:.4f}; target <= 300 s"),
        ("the same trials, plain Keras Tuner, untracked (no MLflow, test scores, "
         "pictures): wall", f"{off_seconds:.1f} s (runs: {each(untracked, 'seconds', ' s')})",
         ""),
        ("tracking and plots, by wall time (difference of the medians)",
         f"{on_seconds - off_seconds:.1f} s",
         f"**{(on_seconds - off_seconds) / on_seconds:.1%}** of the search (target <= 2%)"),
        ("CPU time (user + system), tracked / untracked",
         f"{on_cpu:.1f} / {off_cpu:.1f} s (runs: {each(tracked, 'cpu', ' s')} / "
         f"{each(untracked, 'cpu', ' s')})", ""),
        ("tracking and plots, by CPU time (steadier on a shared machine)",
         f"{on_cpu - off_cpu:.1f} s", f"**{(on_cpu - off_cpu) / on_cpu:.1%}** of the "
         f"search's CPU time"),
        ("peak memory (resident), tracked / untracked",
         f"{each(tracked, 'peak_mib', ' MiB')} / {each(untracked, 'peak_mib', ' MiB')}", ""),
        ("trial (mean): build / fit / scoring",
         " / ".join(f"{value:.2f} s" for value in parts.values()), f"{trial:.1f} s in all"),
        ("per-trial fixed cost outside fit (build + scoring)", f"{fixed:.2f} s",
         f"{fixed / trial:.1%} of a trial"),
        ("process start to first prediction (`scripts/predict.py`, champion)",
         f"{first_prediction:.2f} s", "target < 6 s"),
    ]
    return (
        f"**The default search**: 4 random-search trials of 40 epochs on digits at 10% "
        f"labels, then the cross-entropy baseline; each a fresh process, from start to "
        f"exit; {rounds} rounds, tracked and untracked in turns.\n\n"
        "| search | value | ratio / target |\n|---|---|---|\n"
        + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    )


def _timed(command: list[str], folder: Path) -> dict:
    """Runs ``command``; returns its wall time, CPU time and peak resident memory."""
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / "output.log", "w")
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=folder, env=ENV, stdout=log,
                               stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    log.close()
    if status != 0:
        tail = (folder / "output.log").read_text()[-3000:]
        raise RuntimeError(f"{command[1]} failed ({status}):\n{tail}")
    return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime,
            "peak_mib": usage.ru_maxrss / 1024}


def _trial_costs(store: str) -> tuple[list[dict], float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("contrastive")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    trials = [r.data.metrics for r in runs if "trial_id" in r.data.tags]
    return trials, parent.data.metrics["test_accuracy"]


def _first_prediction(store: str, folder: Path, repeats: int = 3) -> float:
    """Median seconds from process start to the first CSV row of a prediction."""
    import numpy as np
    from sklearn.datasets import load_digits

    images = folder / "five_digits.npy"
    np.save(images, load_digits().images[:5, :, :, None].astype("float32"))
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "predict.py"), "--tracking-uri",
             store, str(images)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=ENV, text=True,
        )
        process.stdout.readline()  # the CSV header
        if not process.stdout.readline():
            raise RuntimeError("scripts/predict.py printed no prediction")
        seconds.append(time.perf_counter() - started)
        process.wait()
    return statistics.median(seconds)


def untracked_search(folder: Path) -> int:
    """The default search's training, by plain Keras Tuner: no MLflow, no scoring.

    The same hypermodel, oracle seed, trial seeds, epochs and progress output as
    ``scripts/tune.py``, then the cross-entropy baseline's training, so that the two
    runs train the same models and differ by what tracking adds.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import keras_tuner

    from contrastive.config import SearchConfig
    from contrastive.data import load_dataset
    from contrastive.hypermodel import ContrastiveHyperModel
    from contrastive.search_space import load_search_space
    from contrastive.tuning import OBJECTIVE, trial_seed

    config = SearchConfig()
    dataset = load_dataset(config.dataset, **config.dataset_options())
    hypermodel = ContrastiveHyperModel(
        load_search_space(config.search_space), dataset.input_shape, dataset.num_classes,
        dataset.value_range,
    )

    class SeededRandomSearch(keras_tuner.RandomSearch):
        def run_trial(self, trial, *args, **kwargs):
            seed = trial_seed(config.seed, trial.trial_id)
            keras.utils.set_random_seed(seed)
            self.hypermodel.seed = seed
            return super().run_trial(trial, *args, **kwargs)

    tuner = SeededRandomSearch(
        hypermodel, objective=OBJECTIVE, max_trials=config.max_trials,
        seed=trial_seed(config.seed, "oracle") or 1, directory=str(folder / "tuner"),
        project_name="untracked", overwrite=True,
    )
    tuner.search(dataset, epochs=config.epochs, verbose=config.verbose)

    best = tuner.oracle.get_best_trials(1)[0]
    values = {name: value for name, value in best.hyperparameters.values.items()
              if not name.startswith("tuner/")}
    values.update(loss_weight=0.0, training_mode="joint")
    hp = keras_tuner.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    seed = trial_seed(config.seed, "baseline")
    keras.utils.set_random_seed(seed)
    hypermodel.seed = seed
    keras.backend.clear_session()
    model = hypermodel.build(hp)
    hypermodel.fit(hp, model, dataset, epochs=config.epochs, verbose=config.verbose)
    return 0


# --- 4. start-up ---------------------------------------------------------------------


def startup_table() -> str:
    rows = []
    for script in ("tune.py", "predict.py", "evaluate.py"):
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"],
                           capture_output=True, check=True, env=ENV)
            best = min(best, time.perf_counter() - started)
        rows.append((f"`scripts/{script} --help`", f"{best:.2f} s", "target < 1.5 s"))
    return "| start-up | best of 5 | target |\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows
    )


# --- the report ----------------------------------------------------------------------------


def _machine() -> str:
    import keras
    import keras_tuner
    import mlflow
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    model = Path("/proc/cpuinfo")
    if model.exists():
        found = re.search(r"model name\s*:\s*(.+)", model.read_text())
        cpu = found.group(1).strip() if found else cpu
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"Machine: {os.cpu_count()} CPU cores, {cpu}, {platform.system()} "
        f"{platform.machine()}; python {platform.python_version()}, tensorflow "
        f"{tf.__version__}, keras {keras.__version__}, keras-tuner "
        f"{keras_tuner.__version__}, mlflow {mlflow.__version__}; run on "
        f"{time.strftime('%Y-%m-%d')}, load average {load:.1f} at the end."
    )


if __name__ == "__main__":
    sys.exit(main())
