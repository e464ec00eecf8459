#!/usr/bin/env python3
"""Performance: what a user pays in wall time, measured as ratios in one run.

Prints a Markdown table and, with --output, writes it into the "Performance" section of
benchmarks/RESULTS.md. Measured here:

1. Training throughput (images per second, both views counted once per image) of the
   platform's joint step against a two-stage recipe in the keras.io style (contrastive
   pre-training of the encoder, then a classifier head on the frozen encoder, same
   encoder and batch sizes), and against plain cross-entropy with the same encoder.
2. Start-up: ``scripts/tune.py --help`` and ``scripts/predict.py --help``.
3. ``--deterministic``: the joint step's throughput with TensorFlow op determinism.

Not measured yet (see the README of the issue notes): tracking overhead of a whole
search, per-trial fixed cost, time to the first prediction of a registered model, the
default ``make tune`` end to end, and peak memory.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _help_seconds(script: str, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"],
                       capture_output=True, check=True)
        best = min(best, time.perf_counter() - started)
    return best


def _throughput(dataset, *, loss_weight: float, epochs: int, deterministic: bool = False,
                frozen_encoder: bool = False) -> float:
    """Images per second of `epochs` epochs of the joint step (after one warm-up epoch)."""
    import keras
    import keras_tuner

    from contrastive.hypermodel import ContrastiveHyperModel
    from contrastive.search_space import load_search_space

    space = load_search_space("default")
    hypermodel = ContrastiveHyperModel(space, dataset.input_shape, dataset.num_classes,
                                       dataset.value_range, seed=0)
    hp = keras_tuner.HyperParameters()
    hp.Fixed("loss_weight", loss_weight)
    hp.Fixed("training_mode", "joint")
    keras.utils.set_random_seed(0)
    model = hypermodel.build(hp)
    if frozen_encoder:
        model.start_stage(0.0, train_encoder=False, learning_rate=1e-3)
    stream, steps = hypermodel._stream(dataset, model.loss_weight)
    model.fit(stream, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    started = time.perf_counter()
    model.fit(stream, steps_per_epoch=steps, epochs=epochs, verbose=0, shuffle=False)
    elapsed = time.perf_counter() - started
    images = len(dataset.x_labeled) + (len(dataset.x_unlabeled) if model.loss_weight else 0)
    return epochs * images / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--output", default=None, help="RESULTS.md to update")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    rows = [
        ("`scripts/tune.py --help`", f"{_help_seconds('tune.py'):.2f} s", "target < 1.5 s"),
        ("`scripts/predict.py --help`", f"{_help_seconds('predict.py'):.2f} s",
         "target < 1.5 s"),
    ]

    from contrastive.data import load_dataset

    dataset = load_dataset("digits", label_fraction=0.1, seed=0)
    joint = _throughput(dataset, loss_weight=0.8, epochs=args.epochs)
    pretrain = _throughput(dataset, loss_weight=1.0, epochs=args.epochs)
    probe = _throughput(dataset, loss_weight=0.0, epochs=args.epochs, frozen_encoder=True)
    ce = _throughput(dataset, loss_weight=0.0, epochs=args.epochs)
    rows += [
        ("joint step, digits", f"{joint:,.0f} img/s", "1.00"),
        ("two-stage: pre-training epoch", f"{pretrain:,.0f} img/s",
         f"joint / pre-training = {joint / pretrain:.2f} (target >= 1.3)"),
        ("two-stage: probe epoch (frozen encoder)", f"{probe:,.0f} img/s", ""),
        ("cross-entropy floor (same encoder)", f"{ce:,.0f} img/s",
         f"floor / joint = {ce / joint:.2f} (target <= 2.5)"),
    ]

    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    deterministic = _throughput(dataset, loss_weight=0.8, epochs=args.epochs)
    rows.append(("joint step with --deterministic", f"{deterministic:,.0f} img/s",
                 f"cost: {joint / deterministic:.2f}x"))

    import keras
    import mlflow

    header = (
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}, tensorflow {tf.__version__}, keras "
        f"{keras.__version__}, mlflow {mlflow.__version__}; {time.strftime('%Y-%m-%d')}; "
        f"{args.epochs} timed epochs after one warm-up; digits, 10% labels (126 labelled, "
        f"1131 unlabelled images per epoch).\n"
    )
    table = "| measure | value | ratio / target |\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows
    )
    text = header + "\n" + table + "\n"
    sys.stdout.write(text)
    if args.output:
        _write_section(Path(args.output), "## Performance", text)
    return 0


def _write_section(path: Path, heading: str, body: str) -> None:
    content = path.read_text() if path.exists() else ""
    start = content.find(heading)
    if start < 0:
        content = content.rstrip() + f"\n\n{heading}\n\n{body}"
    else:
        end = content.find("\n## ", start + len(heading))
        end = len(content) if end < 0 else end
        line_end = content.index("\n", start)
        content = content[:line_end + 1] + "\n" + body + content[end:]
    path.write_text(content)


if __name__ == "__main__":
    sys.exit(main())
