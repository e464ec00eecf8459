"""Tracking URIs: which MLflow store a command uses, and whether it can be used.

Kept apart from `contrastive.tracking` (which imports MLflow, Keras and TensorFlow) so
that a command checks its ``--tracking-uri`` in milliseconds, before any heavy import,
and a bad URI is refused before anything else happens.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from contrastive.paths import default_tracking_uri

__all__ = ["TrackingError", "check_tracking_uri", "resolve_tracking_uri"]


class TrackingError(ValueError):
    """A tracking URI or store that cannot be used; the message says how to fix it."""


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri`` if given, else ``MLFLOW_TRACKING_URI``, else SQLite under ``mlruns/``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def check_tracking_uri(uri: str) -> None:
    """Checks that a tracking URI can be used, without writing anything to it.

    SQLite: the database's folder must exist and be writable. HTTP(S): a tracking server
    must answer on ``/health`` within a few seconds. Other MLflow schemes (PostgreSQL,
    MySQL, Databricks, local folders) are passed to MLflow as they are.

    Raises:
        TrackingError: Naming the URI, what is wrong and what to pass instead.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None
        if path is None or not str(path):
            raise TrackingError(
                f"Unusable tracking URI {uri!r}: a SQLite URI names a file, e.g. "
                f"'sqlite:////abs/path/mlflow.db' or 'sqlite:///relative/mlflow.db'."
            )
        folder = path.parent if path.parent != Path("") else Path.cwd()
        if not folder.is_dir():
            raise TrackingError(
                f"Unusable tracking URI {uri!r}: the folder {folder} does not exist. "
                f"Create it first, or pass another --tracking-uri."
            )
        if not os.access(folder, os.W_OK):
            raise TrackingError(
                f"Unusable tracking URI {uri!r}: the folder {folder} is not writable."
            )
    elif parsed.scheme in ("http", "https"):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=5) as response:
                ok = response.status == 200
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise TrackingError(
                f"Unusable tracking URI {uri!r}: no MLflow server answered at {health} "
                f"({error}). Start one with `mlflow server --host 127.0.0.1 --port "
                f"PORT --backend-store-uri sqlite:///mlflow.db`, or pass another "
                f"--tracking-uri."
            ) from None
        if not ok:
            raise TrackingError(
                f"Unusable tracking URI {uri!r}: {health} answered {response.status}."
            )
    elif parsed.scheme in ("", "file"):
        folder = Path(parsed.path if parsed.scheme else uri)
        if folder.exists() and not folder.is_dir():
            raise TrackingError(
                f"Unusable tracking URI {uri!r}: {folder} is a file, not a folder. "
                f"Pass a folder or a 'sqlite:///...' URI."
            )
