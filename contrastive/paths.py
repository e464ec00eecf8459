"""Where the project keeps its files by default, whatever the working directory.

The default MLflow store and the Keras Tuner folders live at the repository root (the
folder holding ``pyproject.toml``), so ``python scripts/tune.py`` run from anywhere in a
checkout writes to the same place. An installed copy outside a checkout falls back to the
current working directory.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["project_root", "default_store", "default_tracking_uri", "default_tuner_dir"]


def project_root() -> Path:
    """Returns the checkout's root, or the working directory for an installed copy."""
    candidate = Path(__file__).resolve().parents[1]
    if (candidate / "pyproject.toml").is_file() and (candidate / "contrastive").is_dir():
        return candidate
    return Path.cwd()


def default_store() -> Path:
    """The local MLflow store: ``mlruns/`` at the project root (SQLite plus artifacts)."""
    return project_root() / "mlruns"


def default_tracking_uri() -> str:
    """A SQLite tracking URI for the database inside `default_store()`."""
    return f"sqlite:///{default_store() / 'mlflow.db'}"


def default_tuner_dir() -> Path:
    """Keras Tuner's working folder (oracle state, checkpoints): ``tuner/`` at the root."""
    return project_root() / "tuner"
