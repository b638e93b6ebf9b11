"""MATLAB-compatible bicubic imresize: hand-derived values, known behaviour, and independent implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diptych.data.resize import bicubic_downscale, bicubic_upscale, cubic, imresize, modcrop
from diptych.errors import ConfigError

# Keys' cubic with a = -0.5 at the distances that x2 resizing meets (derived by hand below).
C025, C075, C125, C175 = 0.8671875, 0.2265625, -0.0703125, -0.0234375


def test_cubic_kernel_values() -> None:
    """cubic(x) = 1.5|x|^3 - 2.5|x|^2 + 1 on [0, 1], -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2 on (1, 2), 0 beyond:
    cubic(0.25) = 0.0234375 - 0.15625 + 1 = 0.8671875; cubic(0.75) = 0.6328125 - 1.40625 + 1 = 0.2265625;
    cubic(1.25) = -0.9765625 + 3.90625 - 5 + 2 = -0.0703125; cubic(1.75) = -2.6796875 + 7.65625 - 7 + 2 = -0.0234375."""
    x = torch.tensor([0.0, 0.25, 0.75, 1.0, 1.25, 1.75, 2.0, 2.5, -0.75], dtype=torch.float64)
    expected = [1.0, C025, C075, 0.0, C125, C175, 0.0, 0.0, C075]
    assert cubic(x).tolist() == expected


def test_upscale_x2_of_two_pixels_by_hand() -> None:
    """Row [a, b] = [0, 1] to 4 pixels. Output x (1-based) samples u = x/2 + 0.25: u = 0.75, 1.25, 1.75, 2.25.
    x=1: taps at input 1-based -1, 0, 1, 2 (distances 1.75, 0.75, -0.25, -1.25); mirrored, -1 -> b and 0 -> a, so
    out = C175*b + C075*a + C025*a + C125*b = 1.09375a - 0.09375b = -0.09375.
    x=2: taps 0, 1, 2, 3 (distances 1.25, 0.25, -0.75, -1.75); 0 -> a and 3 -> b, so
    out = (C125 + C025)a + (C075 + C175)b = 0.796875a + 0.203125b = 0.203125. x=3, 4 mirror these: 1 - the value."""
    row = np.array([[0.0, 1.0]])
    out = imresize(row, size=(1, 4))
    assert out.tolist() == [[-0.09375, 0.203125, 0.796875, 1.09375]]
    assert bicubic_upscale(row, 2).shape == (2, 4)


def test_downscale_x2_impulse_by_hand_with_and_without_antialias() -> None:
    """Length 8 -> 4. Output x samples u = 2x - 0.5 = 1.5, 3.5, 5.5, 7.5 (1-based). An impulse at 1-based 4.
    Antialiased, the kernel is 0.5*cubic(0.5 d) over 8 taps: at d = -2.5, -0.5, 1.5, 3.5 (x = 1..4) the weights are
    0.5*cubic(1.25) = -0.03515625, 0.5*cubic(0.25) = 0.43359375, 0.5*cubic(0.75) = 0.11328125 and
    0.5*cubic(1.75) = -0.01171875 (each row's weights already sum to 1; no mirrored tap lands on pixel 4).
    Without antialiasing the kernel is cubic(d) over 4 taps: d = -0.5 -> cubic(0.5) = 0.5625 and
    d = 1.5 -> cubic(1.5) = -0.0625, the other two outputs are beyond its support."""
    row = np.zeros((1, 8))
    row[0, 3] = 1.0
    assert imresize(row, scale=0.5).tolist() == [[-0.03515625, 0.43359375, 0.11328125, -0.01171875]]
    assert imresize(row, scale=0.5, antialias=False).tolist() == [[0.0, 0.5625, -0.0625, 0.0]]


def test_antialias_suppresses_what_plain_subsampling_aliases() -> None:
    """Nyquist-rate stripes (0, 1, 0, 1, ...) down x3: output x samples u = 3x - 1, a pixel centre, so the plain cubic
    (weights 0, 1, 0 there) returns every third pixel, the stripes aliased into full-contrast 1, 0, 1, ...; the
    kernel widened 3x averages them to 0.5 (within 1%)."""
    stripes = np.tile(np.array([0.0, 1.0]), 36)[None, :].repeat(6, axis=0)
    aliased = imresize(stripes, scale=1 / 3, antialias=False)
    assert np.array_equal(aliased, stripes[1::3, 1::3])
    smooth = imresize(stripes, scale=1 / 3)[:, 2:-2]
    assert np.abs(smooth - 0.5).max() < 0.01


def test_constant_image_survives_down_and_up() -> None:
    image = np.full((13, 17, 2), 0.3)
    down = imresize(image, scale=1 / 3)
    assert down.shape == (5, 6, 2)
    assert np.allclose(down, 0.3, atol=1e-14)
    assert np.allclose(imresize(down, scale=3), 0.3, atol=1e-14)


def test_linear_ramp_down_x2_samples_between_pixel_pairs() -> None:
    """Output pixel i (0-based) of a x2 reduction sits at input position 2i + 0.5; the symmetric kernel reproduces a
    linear ramp exactly there, away from the mirrored borders."""
    ramp = np.arange(40, dtype=np.float64)[None, :].repeat(4, axis=0)
    out = imresize(ramp, scale=0.5)
    assert out.shape == (2, 20)
    assert np.allclose(out[:, 2:-2], (2 * np.arange(20) + 0.5)[2:-2], atol=1e-12)


def test_sizes_for_integer_non_integer_scales_and_odd_sizes() -> None:
    image = np.random.default_rng(0).random((15, 21, 3))
    assert imresize(image, scale=2).shape == (30, 42, 3)
    assert imresize(image, scale=0.5).shape == (8, 11, 3)  # MATLAB: ceil(scale * size)
    assert imresize(image, scale=1.5).shape == (23, 32, 3)
    assert imresize(image, scale=(2, 0.5)).shape == (30, 11, 3)
    assert imresize(image, size=(7, 40)).shape == (7, 40, 3)
    assert np.array_equal(imresize(image, scale=1), image)  # weights (0, 1, 0, 0): exactly the input
    big = np.zeros((300, 300))
    assert imresize(big, scale=1 / 3).shape == (100, 100)  # 300 * (1/3) is not rounded up to 101


def test_integer_inputs_come_back_as_unrounded_floats() -> None:
    image = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    out = imresize(image, scale=2)
    assert out.dtype == np.float64
    assert out.min() < 0 and out.max() > 255  # overshoot kept, not clipped
    assert not np.allclose(out, np.round(out))
    assert np.allclose(imresize(image.astype(np.uint16) * 257, scale=2), out * 257)
    assert imresize(image.astype(np.float32), scale=2).dtype == np.float32


def test_tensor_batches_channels_and_dtypes() -> None:
    rng = np.random.default_rng(1)
    images = rng.random((2, 5, 9, 11))  # any channel count
    batch = imresize(torch.from_numpy(images), scale=0.5)
    assert batch.shape == (2, 5, 5, 6) and batch.dtype == torch.float64
    for n in range(2):
        one = imresize(np.moveaxis(images[n], 0, -1), scale=0.5)
        assert np.allclose(batch[n].numpy(), np.moveaxis(one, -1, 0), atol=1e-12)
    half = imresize(torch.from_numpy(images).to(torch.bfloat16), scale=0.5)
    assert half.dtype == torch.bfloat16
    assert torch.allclose(half.double(), batch, atol=0.02)
    again = imresize(torch.from_numpy(images).float(), scale=0.5)
    assert torch.equal(again, imresize(torch.from_numpy(images).float(), scale=0.5))  # deterministic
    assert torch.allclose(again.double(), batch, atol=1e-6)


def test_downscale_and_upscale_helpers() -> None:
    image = np.random.default_rng(2).random((12, 20, 3))
    assert np.array_equal(bicubic_downscale(image, 4), imresize(image, size=(3, 5)))
    assert bicubic_upscale(torch.zeros(1, 3, 7, 5), 4).shape == (1, 3, 28, 20)
    assert modcrop(np.zeros((13, 22, 3)), 4).shape == (12, 20, 3)
    with pytest.raises(ConfigError, match="13x12 image does not divide by scale 4; crop it first"):
        bicubic_downscale(np.zeros((12, 13)), 4)


@pytest.mark.parametrize("kwargs", [{}, {"scale": 2, "size": (4, 4)}, {"scale": 0}, {"scale": float("nan")}])
def test_bad_scale_or_size_is_a_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="imresize"):
        imresize(np.zeros((4, 4)), **kwargs)


@pytest.mark.parametrize(
    ("shape", "scale"), [((1, 3, 17, 23), 0.5), ((2, 3, 16, 16), 3), ((1, 1, 33, 31), 0.25), ((1, 2, 9, 10), 1.5)]
)
def test_matches_bicubic_pytorch(shape: tuple[int, ...], scale: float) -> None:
    """bicubic-pytorch (sanghyun-son's MATLAB-compatible resize, computed in float32) agrees everywhere."""
    core = pytest.importorskip("bicubic_pytorch.core", reason="the test-only bicubic-pytorch package is not installed")
    x = torch.from_numpy(np.random.default_rng(3).random(shape))
    theirs = core.imresize(x, scale=scale, antialiasing=True)
    ours = imresize(x, scale=scale)
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs.double(), atol=5e-6)


@pytest.mark.parametrize("scale", [0.5, 0.25, 2, 4])
def test_matches_resize_right_away_from_the_borders(scale: float) -> None:
    """resize-right (Shocher et al.) implements the same kernel and grid in float64 but pads borders its own way
    (no symmetric mode), so the two agree to rounding wherever no tap reaches past the border."""
    resize_right = pytest.importorskip("resize_right.resize_right", reason="resize-right is not installed")
    methods = pytest.importorskip("resize_right.interp_methods")
    x = torch.from_numpy(np.random.default_rng(4).random((1, 3, 48, 44)))
    theirs = resize_right.resize(x, scale_factors=scale, interp_method=methods.cubic, antialiasing=True)
    ours = imresize(x, scale=scale)
    margin = 3 if scale < 1 else 12  # outputs whose taps stay inside the image
    inner = (..., slice(margin, -margin), slice(margin, -margin))
    assert ours.shape == theirs.shape
    assert torch.allclose(ours[inner], theirs[inner], atol=1e-12)
