"""The `digits` source: scikit-learn's bundled 8x8 handwritten digits.

1,797 images with values 0-16, shipped inside scikit-learn, so it needs no
download and loads in milliseconds; it is the platform's smoke-test dataset.
"""

import numpy as np

from contrastive.data.pool import SamplePool, SourceOptions, numeric_names

__all__ = ["load_digits_pool"]


def load_digits_pool(options: SourceOptions) -> SamplePool:
    """Reads sklearn's digits as (8, 8, 1) images in (0, 16).

    Args:
        options: source options; image_size and color_mode are applied later by
            the caller, strict has no effect here.

    Returns:
        The pool of all 1,797 digits, without an official test split.
    """
    from sklearn.datasets import load_digits

    del options  # nothing to configure while reading
    bunch = load_digits()
    x = bunch.images.astype(np.float32)[..., np.newaxis]
    return SamplePool(
        name="digits",
        source="sklearn.datasets.load_digits",
        x=x,
        y=bunch.target.astype(np.int64),
        class_names=numeric_names(10),
        value_range=(0.0, 16.0),
    )
