#!/usr/bin/env python3
"""Predict with a registered contrastive classifier.

Reads .npy / .npz arrays (in the model's own value range, e.g. 0-16 for digits) or image
files (PNG, JPEG, BMP, GIF; mapped from 0-255), and writes one row per image: its
predicted class and the probability of every class, as CSV or JSON.

Example:
    python scripts/predict.py --model-uri models:/contrastive-classifier@champion \\
        digits.npy --output predictions.csv --embeddings embeddings.npy
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("inputs", nargs="+", help=".npy, .npz or image files")
    parser.add_argument(
        "--model-uri", default="models:/contrastive-classifier@champion",
        help="any MLflow model URI (default: %(default)s)",
    )
    parser.add_argument("--tracking-uri", default=None,
                        help="default: $MLFLOW_TRACKING_URI, else SQLite in mlruns/")
    parser.add_argument("--output", default="-",
                        help="file to write (.csv or .json), or - for stdout (default)")
    parser.add_argument("--format", choices=("csv", "json"), default=None,
                        help="default: from --output's suffix, else csv")
    parser.add_argument("--embeddings", default=None,
                        help="also write the embeddings to this .npy file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    output_format = args.format or ("json" if args.output.endswith(".json") else "csv")

    from contrastive.inputs import read_inputs
    from contrastive.serving import load_classifier

    try:
        classifier = load_classifier(args.model_uri, tracking_uri=args.tracking_uri)
        images, names = read_inputs(args.inputs, classifier.input_shape, classifier.value_range)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - MLflow raises its own types for bad URIs
        print(f"error: could not load {args.model_uri}: {error}", file=sys.stderr)
        return 2

    probabilities = classifier.predict_proba(images)
    rows = []
    for name, row in zip(names, probabilities):
        best = int(row.argmax())
        rows.append({
            "input": name,
            "label": classifier.class_names[best],
            "label_index": best,
            **{f"p_{c}": float(p) for c, p in zip(classifier.class_names, row)},
        })
    text = json.dumps(rows, indent=2) if output_format == "json" else _csv(rows)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)

    if args.embeddings:
        import numpy as np

        np.save(args.embeddings, classifier.embed(images))
    return 0


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


if __name__ == "__main__":
    sys.exit(main())
