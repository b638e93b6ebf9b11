"""Real-ESRGAN's second-order degradation: a clean HR image made into a realistic LR input, drawn per sample.

The method (Wang et al., "Real-ESRGAN", ICCVW 2021; BasicSR's degradations): twice in a row, blur with a random
kernel (isotropic or anisotropic Gaussian, generalized Gaussian, plateau, or a 2-D sinc), resize by a random factor
and interpolation, add Gaussian or Poisson noise (colour or grey) and compress as JPEG; then, in random order, resize
to the LR size with a final sinc filter, and JPEG. Every draw comes from the NumPy generator passed in, so the same
seed gives the same LR bit for bit. Images are C x H x W float tensors in [0, 1] with any channel count; every
stage clamps to [0, 1]. The defaults are Real-ESRGAN's published x4 settings (train_realesrgan_x4plus.yml).
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ConfigError

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
REAL_ESRGAN_KERNEL_SIZES = tuple(range(7, 22, 2))
MAX_KERNEL_SIZE = 63
JPEG_LEVELS = 255  # JPEG (baseline, Pillow) holds 8-bit samples
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, for grey noise of RGB images


@dataclass(frozen=True)
class BlurSettings:
    """How one stage draws its blur kernel."""

    kernel_sizes: tuple[int, ...] = REAL_ESRGAN_KERNEL_SIZES  # odd sides, one drawn uniformly
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # per KERNEL_TYPES entry
    sigma_range: tuple[float, float] = (0.2, 3.0)  # Gaussian standard deviations, pixels
    betag_range: tuple[float, float] = (0.5, 4.0)  # generalized Gaussian shape
    betap_range: tuple[float, float] = (1.0, 2.0)  # plateau shape
    sinc_prob: float = 0.1  # a 2-D sinc (ringing) instead of the kernels above


@dataclass(frozen=True)
class StageSettings:
    """One of the two degradation rounds: blur, random resize, noise, JPEG."""

    blur: BlurSettings = field(default_factory=BlurSettings)
    blur_prob: float = 1.0
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)  # factor: down draws from [low, 1], up from [1, high]
    gaussian_noise_prob: float = 0.5  # else Poisson noise
    noise_range: tuple[float, float] = (1.0, 30.0)  # Gaussian sigma in 8-bit levels (of 255)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4  # one noise field for every channel
    jpeg_range: tuple[int, int] = (30, 95)  # quality


SECOND_STAGE = StageSettings(
    blur=BlurSettings(sigma_range=(0.2, 1.5)),
    blur_prob=0.8,
    resize_probs=(0.3, 0.4, 0.3),
    resize_range=(0.3, 1.2),
    noise_range=(1.0, 25.0),
    poisson_scale_range=(0.05, 2.5),
)


@dataclass(frozen=True)
class DegradationConfig:
    """Every parameter of the second-order degradation; the defaults are Real-ESRGAN's x4 settings."""

    first: StageSettings = field(default_factory=StageSettings)
    second: StageSettings = SECOND_STAGE
    final_sinc_prob: float = 0.8
    resize_modes: tuple[str, ...] = RESIZE_MODES  # one drawn uniformly at each resize
    quantize: bool = True  # round the LR to the data's sample levels (Real-ESRGAN: 8 bits)

    def check(self) -> None:
        """Raise ConfigError naming the first out-of-bounds field (degradation.<stage>.<field>)."""
        _check_probability("degradation.final_sinc_prob", self.final_sinc_prob)
        if not self.resize_modes or any(m not in RESIZE_MODES for m in self.resize_modes):
            raise ConfigError(
                f"degradation.resize_modes {list(self.resize_modes)}: choose one or more of {', '.join(RESIZE_MODES)}"
            )
        for name in ("first", "second"):
            _check_stage(f"degradation.{name}", getattr(self, name))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (ranges as lists), as from_json reads it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DegradationConfig:
        """The configuration a (possibly partial) to_json() dict describes, checked; missing keys keep defaults."""
        config = _from_dict(cls, data, "degradation", cls())
        config.check()
        return config


def _from_dict(cls: type, data: Mapping[str, Any], where: str, default: Any) -> Any:
    """Rebuild a settings dataclass from a dict: nested sections recursively, lists as tuples, unknown keys refused."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown setting; known: {', '.join(sorted(names))}")
    values = {}
    for name, value in data.items():
        current = getattr(default, name)
        if dataclasses.is_dataclass(current):
            values[name] = _from_dict(type(current), value, f"{where}.{name}", current)
        else:
            values[name] = tuple(value) if isinstance(value, list | tuple) else value
    return dataclasses.replace(default, **values)


def _check_probability(name: str, p: object) -> None:
    if not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
        raise ConfigError(f"{name} {p!r}: must be a probability in [0, 1]")


def _check_range(name: str, pair: tuple, low: float, high: float) -> None:
    ok = len(pair) == 2 and all(isinstance(v, int | float) and math.isfinite(v) for v in pair)
    if not ok or not low <= pair[0] <= pair[1] <= high:
        raise ConfigError(f"{name} {list(pair)}: must be [low, high] with {low} <= low <= high <= {high}")


def _check_weights(name: str, weights: tuple, count: int) -> None:
    ok = len(weights) == count and all(isinstance(w, int | float) and w >= 0 for w in weights)
    if not ok or sum(weights) <= 0:
        raise ConfigError(f"{name} {list(weights)}: must be {count} non-negative weights with a positive sum")


def _check_stage(where: str, stage: StageSettings) -> None:
    blur = stage.blur
    sizes_ok = all(isinstance(k, int) and k % 2 == 1 and 3 <= k <= MAX_KERNEL_SIZE for k in blur.kernel_sizes)
    if not blur.kernel_sizes or not sizes_ok:
        raise ConfigError(
            f"{where}.blur.kernel_sizes {list(blur.kernel_sizes)}: must be odd integers in [3, {MAX_KERNEL_SIZE}]"
        )
    _check_weights(f"{where}.blur.kernel_probs", blur.kernel_probs, len(KERNEL_TYPES))
    _check_range(f"{where}.blur.sigma_range", blur.sigma_range, 0.05, 50.0)
    _check_range(f"{where}.blur.betag_range", blur.betag_range, 0.05, 16.0)
    _check_range(f"{where}.blur.betap_range", blur.betap_range, 0.05, 16.0)
    if blur.betag_range[0] > 1 or blur.betag_range[1] < 1 or blur.betap_range[0] > 1 or blur.betap_range[1] < 1:
        raise ConfigError(f"{where}.blur: betag_range and betap_range must contain 1 (half the draws lie on each side)")
    _check_probability(f"{where}.blur.sinc_prob", blur.sinc_prob)
    for name in ("blur_prob", "gaussian_noise_prob", "gray_noise_prob"):
        _check_probability(f"{where}.{name}", getattr(stage, name))
    _check_weights(f"{where}.resize_probs", stage.resize_probs, 3)
    _check_range(f"{where}.resize_range", stage.resize_range, 0.05, 4.0)
    if not stage.resize_range[0] <= 1 <= stage.resize_range[1]:
        raise ConfigError(f"{where}.resize_range {list(stage.resize_range)}: must contain 1 (down below it, up above)")
    _check_range(f"{where}.noise_range", stage.noise_range, 0.0, 255.0)
    _check_range(f"{where}.poisson_scale_range", stage.poisson_scale_range, 0.0, 10.0)
    _check_range(f"{where}.jpeg_range", stage.jpeg_range, 1, 100)


# --- kernels (NumPy float64, odd square, summing to 1) ---


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    half = size // 2
    ax = np.arange(-half, half + 1, dtype=np.float64)
    return np.meshgrid(ax, ax, indexing="xy")  # (x to the right, y down)


def anisotropic_kernel(
    size: int, sigma_x: float, sigma_y: float, theta: float, beta: float = 1.0, shape: str = "gaussian"
) -> np.ndarray:
    """A (size x size) kernel exp(-q/2) (gaussian), exp(-q^beta/2) (generalized) or 1/(q^beta + 1) (plateau), with
    q = d^T S^-1 d for the covariance S of standard deviations sigma_x, sigma_y rotated by theta; sums to 1."""
    x, y = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    rotation = np.array([[c, -s], [s, c]])
    inverse = np.linalg.inv(rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T)
    q = inverse[0, 0] * x * x + (inverse[0, 1] + inverse[1, 0]) * x * y + inverse[1, 1] * y * y
    if shape == "gaussian":
        kernel = np.exp(-0.5 * q)
    elif shape == "generalized":
        kernel = np.exp(-0.5 * np.power(q, beta))
    elif shape == "plateau":
        kernel = 1.0 / (np.power(q, beta) + 1.0)
    else:
        raise ValueError(f"unknown kernel shape {shape!r}")
    return kernel / kernel.sum()


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """A (size x size) circular low-pass (2-D sinc, the jinc) with angular cutoff `cutoff` in (0, pi]; sums to 1."""
    x, y = _grid(size)
    r = np.hypot(x, y)
    safe = np.where(r == 0, 1.0, r)
    from scipy.special import j1  # (here: scipy costs every diptych command ~0.5 s at start-up)

    kernel = np.where(r == 0, cutoff**2 / (4 * math.pi), cutoff * j1(cutoff * safe) / (2 * math.pi * safe))
    return kernel / kernel.sum()


def _split_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A shape parameter: half the draws from [low, 1], half from [1, high] (BasicSR's rule for beta)."""
    return float(rng.uniform(bounds[0], 1.0) if rng.uniform() < 0.5 else rng.uniform(1.0, bounds[1]))


def random_mixed_kernel(blur: BlurSettings, size: int, rng: np.random.Generator) -> np.ndarray:
    """One kernel of a type drawn by kernel_probs, its sigmas, angle and shape drawn from the settings' ranges."""
    probs = np.asarray(blur.kernel_probs, dtype=np.float64)
    kind = KERNEL_TYPES[int(rng.choice(len(KERNEL_TYPES), p=probs / probs.sum()))]
    sigma_x = float(rng.uniform(*blur.sigma_range))
    if kind.endswith("_iso"):
        sigma_y, theta = sigma_x, 0.0
    else:
        sigma_y, theta = float(rng.uniform(*blur.sigma_range)), float(rng.uniform(-math.pi, math.pi))
    if kind.startswith("generalized"):
        return anisotropic_kernel(size, sigma_x, sigma_y, theta, _split_uniform(rng, blur.betag_range), "generalized")
    if kind.startswith("plateau"):
        return anisotropic_kernel(size, sigma_x, sigma_y, theta, _split_uniform(rng, blur.betap_range), "plateau")
    return anisotropic_kernel(size, sigma_x, sigma_y, theta)


def random_blur_kernel(blur: BlurSettings, rng: np.random.Generator) -> np.ndarray:
    """A stage's blur kernel: a sinc with probability sinc_prob (cutoff in [pi/3, pi], [pi/5, pi] from 13 px), else
    a mixed kernel; the size is drawn from kernel_sizes."""
    size = int(rng.choice(blur.kernel_sizes))
    if rng.uniform() < blur.sinc_prob:
        low = math.pi / 3 if size < 13 else math.pi / 5
        return sinc_kernel(size, float(rng.uniform(low, math.pi)))
    return random_mixed_kernel(blur, size, rng)


# --- stages on C x H x W float tensors in [0, 1] ---


def filter2d(image: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """Each channel convolved with `kernel` (the same size out, mirrored at the borders), in float64 by FFT (a
    21 x 21 kernel costs several times less than a direct convolution on a CPU)."""
    pad = kernel.shape[0] // 2
    planes = np.pad(image.double().numpy(), ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    from scipy.signal import fftconvolve  # (here, not at start-up: see sinc_kernel)

    out = fftconvolve(planes, kernel[None], mode="valid")
    return torch.from_numpy(out).to(image.dtype)


def resize(image: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    """`image` resized to height x width by torch's area, bilinear or bicubic interpolation (as Real-ESRGAN)."""
    size = (max(1, height), max(1, width))
    if mode == "area":
        return F.interpolate(image[None], size=size, mode="area")[0]
    return F.interpolate(image[None], size=size, mode=mode, align_corners=False)[0]


def grey(image: torch.Tensor) -> torch.Tensor:
    """A 1 x H x W grey version of an image: BT.601 luma of the first three channels of colour, else the mean."""
    if image.shape[0] >= 3:
        weights = torch.tensor(LUMA, dtype=image.dtype)[:, None, None]
        return (image[:3] * weights).sum(dim=0, keepdim=True)
    return image.mean(dim=0, keepdim=True)


def add_gaussian_noise(image: torch.Tensor, sigma: float, gray: bool, rng: np.random.Generator) -> torch.Tensor:
    """`image` plus Gaussian noise of standard deviation `sigma` (in [0, 1] units), one field for all channels if
    `gray`, clamped to [0, 1]."""
    shape = (1 if gray else image.shape[0], *image.shape[1:])
    noise = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32)).to(image.dtype) * sigma
    return (image + noise).clamp_(0.0, 1.0)


def add_poisson_noise(image: torch.Tensor, scale: float, gray: bool, rng: np.random.Generator) -> torch.Tensor:
    """`image` plus `scale` times shot noise (BasicSR's model: photon counts = the image times 2^ceil(log2(its number
    of distinct 8-bit levels)), Poisson-resampled), from the grey image for every channel if `gray`; clamped."""
    source = grey(image) if gray else image
    q = (source.clamp(0.0, 1.0) * JPEG_LEVELS).round() / JPEG_LEVELS
    levels = len(np.unique(q.numpy()))
    counts = float(2 ** math.ceil(math.log2(max(levels, 2))))
    sampled = rng.poisson(q.double().numpy() * counts) / counts
    noise = torch.from_numpy(sampled).to(image.dtype) - q
    return (image + noise * scale).clamp_(0.0, 1.0)


def jpeg_artifacts(image: torch.Tensor, quality: int) -> torch.Tensor:
    """`image` with the artefacts of a JPEG round trip at `quality` (Pillow, 4:2:0 for 3 channels; 1 channel or any
    other count: each channel a grey JPEG). The artefacts (decoded minus encoded 8-bit image) are added to the input,
    so data finer than 8 bits keeps its precision elsewhere; clamped to [0, 1]."""
    q8 = (image.clamp(0.0, 1.0) * JPEG_LEVELS).round().to(torch.uint8).permute(1, 2, 0).numpy()
    planes = [q8] if q8.shape[2] == 3 else [q8[:, :, c] for c in range(q8.shape[2])]
    decoded = [_jpeg_round_trip(p, quality) for p in planes]
    out = decoded[0] if q8.shape[2] == 3 else np.stack(decoded, axis=2)
    artefacts = torch.from_numpy(out.astype(np.float32) - q8.astype(np.float32)).permute(2, 0, 1) / JPEG_LEVELS
    return (image + artefacts.to(image.dtype)).clamp_(0.0, 1.0)


def _jpeg_round_trip(plane: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(plane).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as img:
        return np.asarray(img)


def random_resize(
    image: torch.Tensor,
    base: tuple[float, float],
    stage: StageSettings,
    modes: tuple[str, ...],
    rng: np.random.Generator,
) -> torch.Tensor:
    """Resize to `base` (H, W) times a factor drawn as the stage says (up, down or keep), by a random mode."""
    probs = np.asarray(stage.resize_probs, dtype=np.float64)
    direction = int(rng.choice(3, p=probs / probs.sum()))
    low, high = stage.resize_range
    factor = (float(rng.uniform(1.0, high)), float(rng.uniform(low, 1.0)), 1.0)[direction]
    mode = modes[int(rng.integers(len(modes)))]
    return resize(image, int(base[0] * factor), int(base[1] * factor), mode)


def random_noise(image: torch.Tensor, stage: StageSettings, rng: np.random.Generator) -> torch.Tensor:
    """Gaussian noise (sigma from noise_range / 255) with probability gaussian_noise_prob, else Poisson noise; grey
    with probability gray_noise_prob."""
    gaussian = rng.uniform() < stage.gaussian_noise_prob
    amount = float(rng.uniform(*(stage.noise_range if gaussian else stage.poisson_scale_range)))
    gray = bool(rng.uniform() < stage.gray_noise_prob)
    if gaussian:
        return add_gaussian_noise(image, amount / JPEG_LEVELS, gray, rng)
    return add_poisson_noise(image, amount, gray, rng)


def random_jpeg(image: torch.Tensor, stage: StageSettings, rng: np.random.Generator) -> torch.Tensor:
    """JPEG artefacts at a quality drawn uniformly (integers) from jpeg_range."""
    return jpeg_artifacts(image, int(rng.integers(stage.jpeg_range[0], stage.jpeg_range[1] + 1)))


def degrade_stage(
    image: torch.Tensor,
    base: tuple[float, float],
    stage: StageSettings,
    modes: tuple[str, ...],
    rng: np.random.Generator,
) -> torch.Tensor:
    """One round: blur (with probability blur_prob), random resize around `base` (H, W), noise."""
    if rng.uniform() < stage.blur_prob:
        image = filter2d(image, random_blur_kernel(stage.blur, rng))
    image = random_resize(image, base, stage, modes, rng)
    return random_noise(image, stage, rng)


def final_sinc_kernel(config: DegradationConfig, rng: np.random.Generator) -> np.ndarray | None:
    """The last filter: a sinc (cutoff in [pi/3, pi], size from the first stage's sizes) with probability
    final_sinc_prob, else None (no filter)."""
    if rng.uniform() >= config.final_sinc_prob:
        return None
    size = int(rng.choice(config.first.blur.kernel_sizes))
    return sinc_kernel(size, float(rng.uniform(math.pi / 3, math.pi)))


def degrade(
    hr: torch.Tensor,
    scale: int,
    rng: np.random.Generator,
    config: DegradationConfig | None = None,
    levels: int | None = JPEG_LEVELS,
) -> torch.Tensor:
    """The LR image (C x H//scale x W//scale, in [0, 1], hr's dtype) that the second-order degradation makes of `hr`
    (C x H x W float in [0, 1]); `levels`: the LR is rounded to that many steps when config.quantize (None: not)."""
    config = config or DegradationConfig()
    h, w = hr.shape[-2:]
    lr_size = (h // scale, w // scale)
    if min(lr_size) < 1:
        raise ConfigError(f"degradation: a {w}x{h} image is smaller than scale {scale}; use a larger crop")
    modes = tuple(config.resize_modes)
    work = hr if hr.dtype in (torch.float32, torch.float64) else hr.float()  # (NumPy has no bf16 for the noise)
    image = degrade_stage(work.clamp(0.0, 1.0), (h, w), config.first, modes, rng)
    image = random_jpeg(image, config.first, rng)
    image = degrade_stage(image, (h / scale, w / scale), config.second, modes, rng)
    sinc = final_sinc_kernel(config, rng)
    jpeg_first = rng.uniform() < 0.5  # Real-ESRGAN: the last JPEG before or after the final resize, at random
    if jpeg_first:
        image = random_jpeg(image, config.second, rng)
    image = resize(image, *lr_size, modes[int(rng.integers(len(modes)))])
    if sinc is not None:
        image = filter2d(image, sinc)
    if not jpeg_first:
        image = random_jpeg(image, config.second, rng)
    image = image.clamp_(0.0, 1.0)
    image = (image * levels).round_() / levels if config.quantize and levels else image
    return image.to(hr.dtype)


def gaussian_kernel_1d(size: int) -> torch.Tensor:
    """OpenCV's getGaussianKernel(size, 0): sigma = 0.3 ((size - 1) / 2 - 1) + 0.8, normalised to sum 1."""
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def unsharp_mask(images: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> torch.Tensor:
    """Real-ESRGAN's sharpened training targets (BasicSR's USMSharp) of N x C x H x W images in [0, 1]: the image plus
    weight x (image - its Gaussian blur), clamped to [0, 1], blended in where the detail exceeds threshold/255
    (a blurred mask, so the sharpening fades out smoothly). Borders are mirrored."""
    size = radius + 1 if radius % 2 == 0 else radius
    k = gaussian_kernel_1d(size).to(images.device, torch.float32)
    channels, pad = images.shape[1], size // 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"
        x = F.pad(x, (pad, pad, pad, pad), mode=mode)
        x = F.conv2d(x, k.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels)
        return F.conv2d(x, k.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels)

    x = images.float()
    residual = x - blur(x)
    mask = ((residual.abs() * 255) > threshold).float()
    soft = blur(mask)
    sharp = (x + weight * residual).clamp(0.0, 1.0)
    return (soft * sharp + (1 - soft) * x).to(images.dtype)
