"""Tests of contrastive.data.images: read_image and array conversion."""

import numpy as np
import pytest
from PIL import Image

from contrastive.data import DataError, read_image
from contrastive.data.images import convert_array, rescale
from contrastive.data.mnist_5k import find_mnist_5k, read_mnist_5k


@pytest.fixture(scope="module")
def digit():
    """One real 28x28 MNIST digit as uint8."""
    x, _ = read_mnist_5k(find_mnist_5k())
    return x[0, ..., 0].astype(np.uint8)


def test_grayscale_png_read_as_rgb_repeats_the_channel(digit, tmp_path):
    Image.fromarray(digit).save(tmp_path / "d.png")

    image = read_image(tmp_path / "d.png")

    assert image.shape == (28, 28, 3) and image.dtype == np.float32
    np.testing.assert_array_equal(image[..., 1], digit.astype(np.float32))


def test_rgb_read_as_grayscale_uses_luma_weights(tmp_path):
    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "red.png")

    image = read_image(tmp_path / "red.png", color_mode="grayscale")

    assert image.shape == (4, 4, 1)
    assert image[0, 0, 0] == 76.0  # 255 * 0.299, as PIL rounds it


def test_rgb_read_as_rgba_is_opaque(digit, tmp_path):
    Image.fromarray(np.stack([digit] * 3, -1)).save(tmp_path / "d.png")

    image = read_image(tmp_path / "d.png", color_mode="rgba")

    assert image.shape == (28, 28, 4)
    assert (image[..., 3] == 255).all()


def test_palette_transparency_becomes_alpha(digit, tmp_path):
    palette = Image.fromarray(digit).convert("P")
    palette.info["transparency"] = 0
    palette.save(tmp_path / "p.png", transparency=0)

    image = read_image(tmp_path / "p.png", color_mode="rgba")

    background = digit == 0
    assert (image[..., 3][background] == 0).all()
    assert (image[..., 3][~background] == 255).all()


def test_image_size_is_height_then_width(digit, tmp_path):
    Image.fromarray(digit).save(tmp_path / "d.png")

    image = read_image(tmp_path / "d.png", image_size=(10, 20), color_mode="grayscale")

    assert image.shape == (10, 20, 1)


def test_read_image_does_not_judge_the_extension(digit, tmp_path):
    Image.fromarray(digit).save(tmp_path / "d.jpg", "PNG")

    image = read_image(tmp_path / "d.jpg", color_mode="grayscale")

    np.testing.assert_array_equal(image[..., 0], digit.astype(np.float32))


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"", r"is empty \(0 bytes\)"),
        (b"just some text, no pixels", r"is not a readable image"),
    ],
)
def test_unreadable_files_raise_data_error(tmp_path, content, pattern):
    path = tmp_path / "bad.png"
    path.write_bytes(content)

    with pytest.raises(DataError, match=pattern):
        read_image(path)


def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match=r"nothing.png does not exist"):
        read_image(tmp_path / "nothing.png")


def test_read_image_needs_a_color_mode(digit, tmp_path):
    Image.fromarray(digit).save(tmp_path / "d.png")

    with pytest.raises(DataError, match=r"read_image needs a color_mode"):
        read_image(tmp_path / "d.png", color_mode=None)


def test_convert_array_gray_to_rgba_adds_opaque_alpha(digit):
    x = digit[None, ..., None].astype(np.float32) / 255 * 16

    out = convert_array(x, image_size=None, color_mode="rgba", value_range=(0, 16))

    assert out.shape == (1, 28, 28, 4)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    assert (out[..., 3] == 16).all()


def test_convert_array_rgb_to_gray_uses_luma():
    x = np.zeros((1, 2, 2, 3), np.float32)
    x[..., 1] = 100.0

    out = convert_array(x, image_size=None, color_mode="grayscale",
                        value_range=(0, 255))

    np.testing.assert_allclose(out[0, 0, 0, 0], 58.7, rtol=1e-5)


def test_convert_array_resizes_within_the_value_range(digit):
    x = digit[None, ..., None].astype(np.float32)

    out = convert_array(x, image_size=(56, 14), color_mode=None,
                        value_range=(0, 255))

    assert out.shape == (1, 56, 14, 1)
    assert out.min() >= 0 and out.max() <= 255
    assert out.mean() == pytest.approx(x.mean(), rel=0.1)


def test_rescale_maps_ranges_linearly():
    out = rescale(np.array([0.0, 127.5, 255.0], np.float32), (0, 255), (0, 16))

    np.testing.assert_allclose(out, [0.0, 8.0, 16.0])
