"""The `mnist`, `cifar10` and `cifar100` sources, read from the Keras cache only.

`keras.datasets.<x>.load_data()` downloads its archive when the cache lacks it or
when the cached file's hash is wrong. This platform never downloads: the file is
looked up and its sha256 checked here first, and only a verified file is handed
to Keras. Otherwise a `DataError` says which file to put in which folder, and what
to use instead. Keras (and with it TensorFlow) is imported only once a verified
file is present.
"""

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np

from contrastive.data.errors import DataError
from contrastive.data.pool import SamplePool, SourceOptions, numeric_names

__all__ = ["KERAS_FILES", "KerasFile", "keras_home", "load_keras_pool"]

_CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                  "horse", "ship", "truck")


@dataclasses.dataclass(frozen=True)
class KerasFile:
    """One file a keras.datasets loader expects in `<KERAS_HOME>/datasets/`.

    Attributes:
        module: the keras.datasets module name, e.g. "mnist".
        file_name: the name the file must have in the cache folder.
        sha256: the hash Keras checks before using the file.
        origin: where Keras would download it from (for the user, not for us).
        alternative: what to use instead when the file cannot be placed.
        class_names: the class names of the dataset.
    """

    module: str
    file_name: str
    sha256: str
    origin: str
    alternative: str
    class_names: tuple[str, ...]


# File names follow keras 3's get_file: an extracted archive is cached as
# "<fname>_archive" when fname has no extension.
KERAS_FILES = {
    "mnist": KerasFile(
        "mnist", "mnist.npz",
        "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
        "a folder of MNIST IDX files (train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-...) passed as a path, or 'mnist-5k' "
        "with test_path=<an IDX folder holding t10k-*>",
        numeric_names(10)),
    "cifar10": KerasFile(
        "cifar10", "cifar-10-batches-py-target_archive",
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "a folder of class sub-folders of images (e.g. the CIFAR-10 JPEGs "
        "extracted to <dir>/train/<class>/*.jpg and <dir>/test/<class>/*.jpg)",
        _CIFAR10_NAMES),
    "cifar100": KerasFile(
        "cifar100", "cifar-100-python-target_archive",
        "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "a folder of class sub-folders of images, or an .npz file with x and y",
        numeric_names(100)),
}


def keras_home() -> Path:
    """The Keras cache root, computed as Keras does but without importing it.

    Returns:
        $KERAS_HOME if set, else ~/.keras (or /tmp/.keras if ~ is not writable).
    """
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"]).expanduser()
    home = Path("~").expanduser()
    return (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def _verified_file(spec: KerasFile) -> Path:
    """The cached file, if present with the right hash; else a DataError."""
    folder = keras_home() / "datasets"
    path = folder / spec.file_name
    fix = (f"Place the file downloaded from {spec.origin} as {path} (named "
           f"{spec.file_name!r}, sha256 {spec.sha256}) in the folder {folder}, "
           f"or use {spec.alternative}.")
    if not path.is_file():
        raise DataError(f"dataset {spec.module!r} is not in the Keras cache and "
                        f"is never downloaded here: {path} is missing. {fix}")
    actual = _sha256(path)
    if actual != spec.sha256:
        # Keras would silently re-download a file with the wrong hash.
        raise DataError(f"{path} has sha256 {actual}, not the {spec.sha256} Keras "
                        f"requires for {spec.module!r}. {fix}")
    return path


def load_keras_pool(module: str, options: SourceOptions) -> SamplePool:
    """Loads mnist, cifar10 or cifar100 through keras.datasets from the cache.

    Args:
        module: "mnist", "cifar10" or "cifar100".
        options: source options; image_size/color_mode are applied by the caller.

    Returns:
        The pool of the training samples with the official test split.

    Raises:
        DataError: if the cached file is missing or has the wrong hash, or if
            KERAS_HOME changed after Keras was imported.
    """
    del options  # nothing to configure while reading
    spec = KERAS_FILES[module]
    path = _verified_file(spec)

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import importlib

    from keras.src.backend import config

    if Path(config.keras_home()).expanduser().resolve() != keras_home().resolve():
        raise DataError(
            f"Keras was imported with cache root {config.keras_home()}, but "
            f"KERAS_HOME is now {keras_home()}; set KERAS_HOME before anything "
            "imports keras."
        )
    loader = importlib.import_module(f"keras.datasets.{module}")
    (x_train, y_train), (x_test, y_test) = loader.load_data()

    def as_images(x):
        x = np.asarray(x, dtype=np.float32)
        return x[..., np.newaxis] if x.ndim == 3 else x

    return SamplePool(
        name=module, source=str(path.resolve()),
        x=as_images(x_train), y=np.asarray(y_train).reshape(-1).astype(np.int64),
        class_names=spec.class_names, value_range=(0.0, 255.0),
        x_test=as_images(x_test),
        y_test=np.asarray(y_test).reshape(-1).astype(np.int64),
    )
