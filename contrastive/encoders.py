"""Encoders: small convolutional networks that map an image to its embedding.

The encoder is what contrastive training is for: its output (the embedding) is what
the classifier reads, what k-NN and linear probes score, and what ``embed`` returns
downstream. Its width is a hyperparameter; its depth follows the image size, so one
builder serves 8x8 digits and 32x32 photos alike. Images of 24 pixels a side or more
first pass a strided convolution (a "stem") that halves their resolution: on a CPU the
full-resolution block would otherwise cost most of a step, and digit strokes survive
the halving.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

__all__ = ["conv_encoder"]

# Keras' default momentum (0.99) needs hundreds of steps before the moving statistics
# match the data; a small labelled set gives a few steps an epoch, and inference then
# runs on statistics that are still mostly the initial ones. 0.9 settles within tens of
# steps.
_BN_MOMENTUM = 0.9

# From this side length on, a stride-2 stem halves the image before the first block. On
# 28x28 MNIST the stem makes a training step about four times cheaper; 8x8 and 16x16
# images have no resolution to spare and skip it.
_STEM_MIN_SIDE = 24


def conv_encoder(
    input_shape: tuple[int, int, int], width: int = 32, name: str = "encoder"
) -> keras.Model:
    """Builds a VGG-style encoder: blocks of two 3x3 convolutions, then pooling.

    Each block doubles the filters and halves the resolution; there are as many blocks
    as fit the image (two for 8x8, three from 16x16 up). Images of 24 pixels a side or
    more first pass a stride-2 3x3 convolution with ``width`` filters (the stem). Global
    average pooling gives an embedding of ``width * 2 ** (blocks - 1)`` values.

    Args:
        input_shape: ``(height, width, channels)`` of images rescaled to [0, 1].
        width: Filters of the first block. Defaults to 32.
        name: The model's name. Defaults to ``"encoder"``.

    Returns:
        A functional `keras.Model` from images to embeddings.

    Raises:
        ValueError: For a width below 1 or images smaller than 4x4.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1; received width={width}.")
    side = min(input_shape[0], input_shape[1])
    if side < 4:
        raise ValueError(
            f"images must be at least 4x4 pixels; received input_shape={input_shape}."
        )
    blocks = max(1, min(3, int(math.log2(side)) - 1))

    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    if side >= _STEM_MIN_SIDE:
        x = _conv_unit(x, width, strides=2)
    for block in range(blocks):
        filters = width * 2**block
        for _ in range(2):
            x = _conv_unit(x, filters)
        if block < blocks - 1:
            x = keras.layers.MaxPooling2D(2)(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, outputs, name=name)


def _conv_unit(x, filters: int, strides: int = 1):
    """A 3x3 convolution, batch normalisation and ReLU; the bias is left to the norm."""
    x = keras.layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False
    )(x)
    x = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM)(x)
    return keras.layers.ReLU()(x)
