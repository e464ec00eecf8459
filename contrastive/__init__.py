"""contrastive: tracked, tunable contrastive classification on Keras 3.

SupCon on labelled views, NT-Xent on unlabelled views and cross-entropy on the labels,
weighted against each other, tuned by Keras Tuner and recorded in MLflow.

The names below load on first use, so that ``import contrastive`` (and every script's
``--help``) stays fast and does not import TensorFlow.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "SearchConfig": "contrastive.config",
    "SearchResult": "contrastive.search",
    "run_search": "contrastive.search",
    "load_dataset": "contrastive.data",
    "Dataset": "contrastive.data",
    "load_search_space": "contrastive.search_space",
    "ContrastiveModel": "contrastive.model",
    "ContrastiveHyperModel": "contrastive.hypermodel",
    "supcon_loss": "contrastive.losses",
    "nt_xent_loss": "contrastive.losses",
    "SupConLoss": "contrastive.losses",
    "NTXentLoss": "contrastive.losses",
    "Classifier": "contrastive.serving",
    "load_classifier": "contrastive.serving",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'contrastive' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return sorted(__all__)
