"""One short search shared by the end-to-end tests that only read what it recorded.

A whole search costs tens of seconds on 2 cores; the tests of the main job, of the
artifacts and of scripts/evaluate.py all read the same kind of store, so they share this
one (session-scoped) instead of running three. Tests that change a store, or need other
settings, run their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
QUICK_SEARCH = ("--max-trials", "2", "--epochs", "2", "--search-space", "quick")


def run_tune(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """Runs scripts/tune.py from ``tmp`` into the SQLite store ``tmp/mlflow.db``."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_RUN_ID", None)
    command = [
        sys.executable, str(REPO / "scripts" / "tune.py"),
        "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}",
        "--tuner-dir", str(tmp / "tuner"), "--verbose", "0", *args,
    ]
    return subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="session")
def tune_script():
    """`run_tune`, for tests that run scripts/tune.py themselves."""
    return run_tune


@pytest.fixture(scope="session")
def quick_search(tmp_path_factory) -> dict:
    """A finished 2-trial, 2-epoch search of the ``quick`` space on digits.

    Returns:
        ``tmp`` (its folder), ``out`` (tune.py's stdout), ``client``, ``parent`` (the
        search run), ``children`` (every nested run) and ``trials`` (trial runs only).
    """
    tmp = tmp_path_factory.mktemp("quick-search")
    done = run_tune(tmp, *QUICK_SEARCH)
    if done.returncode != 0:
        raise AssertionError(f"tune.py failed ({done.returncode}):\n{done.stderr[-4000:]}")
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("contrastive")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return {
        "tmp": tmp,
        "out": done.stdout,
        "client": client,
        "parent": parent,
        "children": [r for r in runs if "mlflow.parentRunId" in r.data.tags],
        "trials": [r for r in runs if "trial_id" in r.data.tags],
    }
