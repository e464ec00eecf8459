"""View pipelines: the random augmentations that make two views of every image.

Contrastive training learns what stays the same between two random views of an image, so
the augmentations define what the encoder learns to ignore. Two pipelines, chosen by the
input:

- ``grayscale`` (digits, MNIST, Fashion-MNIST): small shifts, rotations and zooms plus
  pixel noise. No flips: a mirrored 2 is not a 2.
- ``color`` (CIFAR-like photos): random crops (zoom plus shift), horizontal flips, and
  brightness and contrast jitter.

Both work on images already rescaled to [0, 1] and are scaled by one ``strength`` factor,
a hyperparameter. Keras' random layers draw from a seed generator whose state advances on
every call, so the two views of a step differ from each other and from those of every
other step and epoch, and a seeded run draws the same sequence again. At inference the
pipeline is never called: predictions and embeddings are deterministic.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

__all__ = ["augmenter", "pipeline_kind"]

# Per unit of strength. Translation and zoom are fractions of the image size; rotation is
# a fraction of a full turn (0.03 is about 11 degrees); noise is in [0, 1] pixel units.
_GRAYSCALE = {"translate": 0.12, "rotate": 0.03, "zoom": 0.12, "noise": 0.06}
_COLOR = {"translate": 0.12, "zoom": 0.2, "brightness": 0.2, "contrast": 0.3}


def pipeline_kind(input_shape: tuple[int, int, int]) -> str:
    """``"grayscale"`` for one channel, ``"color"`` for three or four."""
    return "grayscale" if input_shape[-1] == 1 else "color"


def augmenter(
    input_shape: tuple[int, int, int],
    strength: float = 1.0,
    seed: int | None = None,
    name: str = "augmenter",
) -> keras.Sequential:
    """Builds the view pipeline for images of ``input_shape`` with values in [0, 1].

    Args:
        input_shape: ``(height, width, channels)``.
        strength: Scales every augmentation; 0 turns the pipeline into the identity.
            Defaults to 1.0.
        seed: Seeds the layers' generators (each layer gets its own offset). Defaults to
            None (unseeded).
        name: The model's name. Defaults to ``"augmenter"``.

    Returns:
        A `keras.Sequential` to call with ``training=True``.

    Raises:
        ValueError: For a negative strength.
    """
    if strength < 0:
        raise ValueError(f"strength must be >= 0; received strength={strength}.")
    layers = [keras.Input(shape=input_shape)]
    if strength == 0:
        # An empty Sequential cannot be called on a batch of another size than the one
        # it was first built on; an identity layer makes it an ordinary model.
        return keras.Sequential([*layers, keras.layers.Identity()], name=name)

    def layer_seed(offset: int) -> int | None:
        return None if seed is None else seed + offset

    if pipeline_kind(input_shape) == "grayscale":
        p = {k: v * strength for k, v in _GRAYSCALE.items()}
        layers += [
            keras.layers.RandomRotation(
                p["rotate"], fill_mode="constant", seed=layer_seed(1)
            ),
            keras.layers.RandomZoom(
                (-p["zoom"], p["zoom"]), fill_mode="constant", seed=layer_seed(2)
            ),
            keras.layers.RandomTranslation(
                p["translate"], p["translate"], fill_mode="constant", seed=layer_seed(3)
            ),
            keras.layers.GaussianNoise(p["noise"], seed=layer_seed(4)),
        ]
    else:
        p = {k: v * strength for k, v in _COLOR.items()}
        layers += [
            keras.layers.RandomFlip("horizontal", seed=layer_seed(1)),
            keras.layers.RandomZoom(
                (-p["zoom"], 0.0), fill_mode="reflect", seed=layer_seed(2)
            ),
            keras.layers.RandomTranslation(
                p["translate"], p["translate"], fill_mode="reflect", seed=layer_seed(3)
            ),
            keras.layers.RandomBrightness(
                p["brightness"], value_range=(0.0, 1.0), seed=layer_seed(4)
            ),
            keras.layers.RandomContrast(min(p["contrast"], 0.9), seed=layer_seed(5)),
        ]
    return keras.Sequential(layers, name=name)
