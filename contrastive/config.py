"""`SearchConfig`: every setting of one search, built once and passed down.

The command line (``scripts/tune.py``) turns its arguments into a `SearchConfig`; nothing
below it reads arguments, globals or the environment, except where MLflow and Keras Tuner
define their own variables (read in `contrastive.tracking`, `contrastive.tuning` and,
for Keras Tuner's distributed mode, `contrastive.distributed`).
`SearchConfig.validate` checks the cheap things (numbers, names, files) before any data
is loaded or anything is written to the store. This module imports no TensorFlow, so
``--help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

__all__ = ["ConfigError", "SearchConfig", "TUNERS", "PROMOTE_CHOICES", "STRATEGIES"]

TUNERS = ("random", "bayesian", "hyperband")
PROMOTE_CHOICES = ("better", "always", "never")
STRATEGIES = ("none", "mirrored")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it and what is allowed."""


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Settings of one search.

    Args:
        dataset: A dataset name or path (see `contrastive.data.load_dataset`). Defaults to
            ``"digits"``.
        search_space: A file in ``search_spaces/`` or a path. Defaults to ``"default"``.
        tuner: ``"random"``, ``"bayesian"`` or ``"hyperband"``. Defaults to ``"random"``.
        max_trials: Trials to run (for Hyperband: its ``max_epochs`` budget decides, and
            this caps the number of models). Defaults to 4.
        epochs: Training epochs per trial (Hyperband's largest budget). Defaults to 40.
        label_fraction: Share of the training split that keeps its labels, in (0, 1].
            Defaults to 0.1.
        seed: Seeds the split, the tuner and every trial. Defaults to 0.
        experiment: MLflow experiment name. Defaults to ``"contrastive"``.
        model_name: Registered model name. Defaults to ``"contrastive-classifier"``.
        tracking_uri: MLflow tracking URI; None means ``MLFLOW_TRACKING_URI``, else the
            SQLite store in ``mlruns/``. Defaults to None.
        tuner_dir: Keras Tuner's folder; None means ``tuner/`` at the project root.
            Defaults to None.
        overwrite: Start afresh instead of resuming a search in ``tuner_dir``. Defaults to
            False.
        promote: When the new best model takes the ``champion`` alias: ``"better"``
            (only if it beats the current champion), ``"always"`` or ``"never"``.
            Defaults to ``"better"``.
        labeled_batch_size: Labelled images per step. Defaults to 64.
        unlabeled_batch_size: Unlabelled images per step. Defaults to 192.
        verbose: Keras progress output: 0 silent, 1 bars, 2 a line an epoch. Defaults to 2.
        image_size: ``(height, width)`` to resize images to; None keeps the source's.
            Defaults to None.
        color_mode: ``"grayscale"``, ``"rgb"`` or ``"rgba"``; None keeps the source's.
            Defaults to None.
        unlabeled_dir: A folder of extra unlabelled images. Defaults to None.
        test_path: Data used as the whole test split (an IDX folder, ``.npz`` or image
            folder), e.g. the official MNIST test set for ``mnist-5k``. Defaults to None.
        strict: Refuse unreadable or misnamed image files instead of skipping them.
            Defaults to False.
        deterministic: Turn on TensorFlow's op determinism (slower; see the README).
            Defaults to False.
        limit: Keep at most this many samples in each split (stratified), for quick
            runs on large datasets; None keeps everything. Defaults to None.
        baseline: After the search, train the champion's configuration with
            cross-entropy alone and log the uplift. Defaults to True.
        strategy: How each trial trains: ``"none"`` (one device) or ``"mirrored"``
            (`tf.distribute.MirroredStrategy` over the visible GPUs, else the logical
            CPUs). Defaults to ``"none"``.
        parent_run_id: For a worker in distributed mode: the chief's search run, to
            nest the trials under; None reads it from the chief's state file in the
            shared tuner folder (see `contrastive.distributed`). Defaults to None.
        chief_timeout: For a worker: seconds to wait for the chief's oracle and files.
            Defaults to 600.
    """

    dataset: str = "digits"
    search_space: str = "default"
    tuner: str = "random"
    max_trials: int = 4
    epochs: int = 40
    label_fraction: float = 0.1
    seed: int = 0
    experiment: str = "contrastive"
    model_name: str = "contrastive-classifier"
    tracking_uri: str | None = None
    tuner_dir: str | None = None
    overwrite: bool = False
    promote: str = "better"
    labeled_batch_size: int = 64
    unlabeled_batch_size: int = 192
    verbose: int = 2
    image_size: tuple[int, int] | None = None
    color_mode: str | None = None
    unlabeled_dir: str | None = None
    test_path: str | None = None
    strict: bool = False
    deterministic: bool = False
    limit: int | None = None
    baseline: bool = True
    strategy: str = "none"
    parent_run_id: str | None = None
    chief_timeout: float = 600.0

    def validate(self) -> "SearchConfig":
        """Checks every setting that needs no data; returns self.

        Raises:
            ConfigError: Naming the first bad setting, its value and what is allowed.
        """
        if self.tuner not in TUNERS:
            raise ConfigError(
                f"Unknown tuner {self.tuner!r}; allowed: {', '.join(TUNERS)}."
            )
        if self.promote not in PROMOTE_CHOICES:
            raise ConfigError(
                f"Unknown promote rule {self.promote!r}; allowed: "
                f"{', '.join(PROMOTE_CHOICES)}."
            )
        for name in ("max_trials", "epochs", "labeled_batch_size", "unlabeled_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"{name} must be a positive whole number; received {name}={value!r}."
                )
        fraction = self.label_fraction
        if not isinstance(fraction, (int, float)) or not math.isfinite(fraction) or not (
            0 < fraction <= 1
        ):
            raise ConfigError(
                f"label_fraction must be in (0, 1]; received label_fraction={fraction!r}."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a whole number >= 0; received seed={self.seed!r}.")
        for name in ("experiment", "model_name"):
            if not str(getattr(self, name)).strip():
                raise ConfigError(f"{name} must not be empty.")
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 2
        ):
            raise ConfigError(
                f"limit must be a whole number >= 2 (samples per split); received "
                f"limit={self.limit!r}."
            )
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"Unknown strategy {self.strategy!r}; allowed: {', '.join(STRATEGIES)}."
            )
        if self.parent_run_id is not None and not str(self.parent_run_id).strip():
            raise ConfigError(
                "parent_run_id must be a run id (the chief's search run), or None; "
                "received an empty string."
            )
        timeout = self.chief_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
            math.isfinite(timeout) and timeout > 0
        ):
            raise ConfigError(
                f"chief_timeout must be a number of seconds > 0; received "
                f"chief_timeout={timeout!r}."
            )
        if self.tuner_dir is not None and Path(self.tuner_dir).is_file():
            raise ConfigError(
                f"tuner_dir {self.tuner_dir!r} is a file; pass a folder (it is created)."
            )
        return self

    def dataset_options(self) -> dict[str, object]:
        """Keyword arguments of `contrastive.data.load_dataset` for this search."""
        return {
            "label_fraction": self.label_fraction,
            "seed": self.seed,
            "image_size": self.image_size,
            "color_mode": self.color_mode,
            "unlabeled_dir": self.unlabeled_dir,
            "test_path": self.test_path,
            "strict": self.strict,
        }

    def fixed_params(self) -> dict[str, object]:
        """The settings logged as params on every run (the tuned ones come from hp)."""
        return {
            "dataset": self.dataset,
            "search_space": Path(self.search_space).name,
            "tuner": self.tuner,
            "epochs": self.epochs,
            "label_fraction": self.label_fraction,
            "seed": self.seed,
            "labeled_batch_size": self.labeled_batch_size,
            "unlabeled_batch_size": self.unlabeled_batch_size,
            "deterministic": self.deterministic,
            **{
                name: value
                for name, value in (
                    ("image_size", self.image_size),
                    ("color_mode", self.color_mode),
                    ("unlabeled_dir", self.unlabeled_dir),
                    ("test_path", self.test_path),
                    ("limit", self.limit),
                )
                if value is not None
            },
        }
