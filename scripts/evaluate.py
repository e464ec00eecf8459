#!/usr/bin/env python3
"""Evaluate a logged or registered contrastive classifier, in an MLflow run of its own.

Scores the model on a dataset's test split (--dataset; by default the dataset the model
was trained on, split with the seed and label fraction it was trained with) or on all
of an .npz file (arrays x and y) or an image folder of class sub-folders (--input).
The run, in the experiment 'contrastive-evaluation', holds the test_ metrics, the
per-class report, the confusion matrix and t-SNE / PCA pictures, and is linked to the
model version by tags (model_uri, model_name, model_version, model_source_run_id).

k-NN and linear-probe accuracy use the dataset's labelled training split as reference;
with --input they are cross-validated on the evaluated set (stratified 5-fold).

Example:
    python scripts/evaluate.py --model-uri models:/contrastive-classifier@champion \\
        --dataset digits
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Light: the assessment module imports TensorFlow and MLflow only when it runs.
from contrastive.assessment import (  # noqa: E402
    DEFAULT_EXPERIMENT,
    DEFAULT_MODEL_URI,
    AssessmentError,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Reads the command line; imports nothing heavy, so --help stays fast."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--model-uri", default=DEFAULT_MODEL_URI,
        help="any MLflow model URI: models:/NAME@ALIAS, models:/NAME/VERSION, "
             "runs:/RUN_ID/model (default: %(default)s)")
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--dataset", default=None,
        help="a dataset name or path (as for tune.py); its test split is evaluated "
             "(default: the dataset the model was trained on)")
    data.add_argument(
        "--input", default=None, metavar="FILE_OR_FOLDER",
        help="an .npz file with x and y, or a folder of class sub-folders of images; "
             "all of it is evaluated")
    add("--tracking-uri", default=None,
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else SQLite in mlruns/)")
    add("--experiment", default=DEFAULT_EXPERIMENT,
        help="MLflow experiment of the evaluation run (default: %(default)s)")
    add("--seed", type=int, default=None,
        help="split seed of --dataset, also seeding the probe and the pictures "
             "(default: the model's training seed, else 0)")
    add("--label-fraction", type=float, default=None,
        help="label fraction of --dataset's split, which decides the reference set "
             "(default: the model's, else 0.1)")
    add("--k", type=int, default=5,
        help="neighbours of the k-NN score (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the evaluation; returns the exit code (2 for bad input)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("contrastive").setLevel(logging.INFO)

    from contrastive.assessment import assess_model
    from contrastive.data import DataError
    from contrastive.stores import TrackingError

    try:
        result = assess_model(
            args.model_uri, dataset=args.dataset, input_path=args.input,
            tracking_uri=args.tracking_uri, experiment=args.experiment,
            seed=args.seed, label_fraction=args.label_fraction, k=args.k,
        )
    except (AssessmentError, DataError, TrackingError, OSError) as error:
        # Bad input: one clear line, no traceback, nothing written to the store.
        print(f"error: {error}", file=sys.stderr)
        return 2

    metrics = "  ".join(
        f"{name[5:]}={value:.4f}" for name, value in result.metrics.items()
    )
    lineage = result.lineage
    model = lineage.model_uri
    if lineage.registered_name and lineage.version:
        model = f"{lineage.registered_name} version {lineage.version} ({model})"
    what = "the test split" if result.split == "test" else "all"
    print(
        f"\nEvaluated {model} on {what} of {result.data_name} "
        f"({result.num_samples} images): {metrics}\n"
        f"Embedding metrics: {result.embedding_reference}\n"
        f"Run {result.run_id} in experiment '{result.experiment}' "
        f"(id {result.experiment_id})\n"
        f"Look:     mlflow ui --backend-store-uri {result.tracking_uri}"
    )
    for caution in result.warnings:
        print(f"Caution: {caution}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
