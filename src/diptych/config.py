"""Typed run configuration: validated early, saved inside every checkpoint, mapped 1:1 to CLI options."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

NORMS = ("batch", "instance", "none")
INITS = ("normal", "xavier", "kaiming", "orthogonal")
GAN_LOSSES = ("vanilla", "lsgan", "hinge", "wgangp")
LR_POLICIES = ("linear", "step", "cosine", "plateau")
PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
LAYOUTS = ("auto", "aligned", "folders")
DIRECTIONS = ("AtoB", "BtoA")
UPSAMPLES = ("transpose", "resize")
ARCHS = ("unet", "resnet", "hd")
RECIPES = ("pix2pix", "pix2pixhd")
# Defaults a recipe brings before command-line flags are applied (pix2pixHD's published settings).
RECIPE_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "pix2pix": {},
    "pix2pixhd": {
        "generator": {"arch": "hd", "ngf": 32, "norm": "instance"},
        "discriminator": {"num_d": 2, "norm": "instance"},
        "train": {"gan_loss": "lsgan", "lambda_l1": 0.0},
    },
}
TEST_MODES = ("eval", "paper")
NORMALIZE_KINDS = ("auto", "dtype", "minmax", "percentile")


def opt(default: Any, help: str, *, choices: tuple[str, ...] | None = None, flag: str | None = None) -> Any:
    """A dataclass field carrying its CLI help text, choices and flag name."""
    meta: dict[str, Any] = {"help": help}
    if choices:
        meta["choices"] = choices
    if flag:
        meta["flag"] = flag
    return field(default=default, metadata=meta)


@dataclass
class GeneratorConfig:
    """The generator's architecture: pix2pix's U-Net or ResNet, or pix2pixHD's coarse-to-fine ResNet."""

    arch: str = opt(
        "unet",
        "generator family: unet (pix2pix), resnet (pix2pix/CycleGAN's resnet_Nblocks) or hd (pix2pixHD global + "
        "local enhancers)",
        choices=ARCHS,
        flag="arch",
    )
    depth: int = opt(
        8, "number of 2x downsamplings (unet_256 = 8, unet_128 = 7); inputs are padded to a multiple of 2**depth"
    )
    ngf: int = opt(64, "filters in the generator's first layer")
    norm: str = opt("batch", "normalisation layer in the generator", choices=NORMS, flag="g-norm")
    dropout: float = opt(
        0.5,
        "unet: dropout in decoder levels 4 .. depth-2, the paper's noise (none exists with --depth <= 5); resnet: in "
        "every residual block; 0 disables",
    )
    upsample: str = opt(
        "transpose",
        "decoder upsampling: transposed conv, or resize + conv (avoids checkerboard artifacts)",
        choices=UPSAMPLES,
    )
    in_channels: int = opt(0, "input channels; 0 = taken from the data")
    out_channels: int = opt(0, "output channels; 0 = taken from the data")
    n_blocks: int = opt(9, "resnet: residual blocks (resnet_9blocks = 9, resnet_6blocks = 6)")
    n_local: int = opt(1, "hd: local enhancers around the global generator (0 = global generator alone, stage 1)")
    n_down_global: int = opt(4, "hd: stride-2 downsamplings in the global generator")
    n_blocks_global: int = opt(9, "hd: residual blocks in the global generator")
    n_blocks_local: int = opt(3, "hd: residual blocks in each local enhancer")


@dataclass
class DiscriminatorConfig:
    """The conditional PatchGAN discriminator's architecture (num_d > 1: pix2pixHD's multi-scale version)."""

    n_layers: int = opt(3, "PatchGAN depth: 0 = pixel (1x1), 1 = 16x16, 2 = 34x34, 3 = 70x70, 4 = 142x142, 5 = 286x286")
    ndf: int = opt(64, "filters in the discriminator's first layer")
    norm: str = opt("batch", "normalisation layer in the discriminator", choices=NORMS, flag="d-norm")
    num_d: int = opt(1, "discriminators on an image pyramid (pix2pixHD uses 2 or 3; pix2pix 1)")


@dataclass
class DataConfig:
    """Where the pairs are and how they are augmented."""

    root: str = opt("", "(required) dataset folder: aligned A|B images (optionally in train/), or A/ and B/ folders")
    layout: str = opt("auto", "dataset layout; auto detects A/+B/ folders, else aligned", choices=LAYOUTS)
    phase: str = opt("train", "sub-folder to use when the dataset has train/val/test sub-folders")
    direction: str = opt("AtoB", "translate A to B or B to A", choices=DIRECTIONS)
    preprocess: str = opt(
        "resize_and_crop",
        "joint A/B transform: resize_and_crop = resize to load-size square, random crop-size crop (the paper's "
        "jitter); crop = random crop at native size; scale_width = width to load-size, aspect kept; "
        "scale_width_and_crop = that, then a random crop; none = native size",
        choices=PREPROCESS,
    )
    load_size: int = opt(286, "resize target: the square side for resize_and_crop, the width for scale_width*")
    crop_size: int = opt(256, "training crop size")
    flip: bool = opt(True, "random horizontal flip, identical for A and B")
    workers: int = opt(2, "data-loading worker processes (0 = load in the main process)")
    batch_size: int = opt(
        1, "pairs per optimisation step, over all torchrun processes and --accum-steps micro-batches (the global batch)"
    )
    max_items: int = opt(0, "use at most this many pairs (0 = all)")
    skip_bad: bool = opt(False, "skip unreadable or inconsistent pairs and list them, instead of stopping")
    label_nc: int = opt(
        0, "the input side holds integer label maps with this many classes (one-hot encoded); 0 = images"
    )
    ignore_label: int = opt(-1, "label id that is 'no class' (all-zero one-hot), e.g. 255; -1 = none")
    instance_dir: str = opt("", "folder of instance-id maps named like the label maps; adds a boundary channel")
    normalize: str = opt(
        "auto",
        "which values map to the network's [-1, 1], per side: dtype = the sample type's range (floats: [0, 1]); "
        "minmax / percentile = computed from the training data; auto = dtype for 8/16-bit and [0, 1] floats, "
        "else minmax. Stored with the model and inverted on output",
        choices=NORMALIZE_KINDS,
    )
    percentile_low: float = opt(0.5, "--normalize percentile: the percentile that maps to -1")
    percentile_high: float = opt(99.5, "--normalize percentile: the percentile that maps to 1")
    dicom_window: str = opt(
        "",
        "[A:|B:]CENTER,WIDTH (e.g. 40,400): window/level for the DICOM sides (A:/B: = that side only, e.g. the CT side "
        "of CT -> MR); values outside are clipped; empty = --normalize",
    )
    nifti_axis: int = opt(2, "NIfTI volumes are cut into 2-D slices along this axis (0, 1 or 2)")
    sample_type: str = field(
        default="", metadata={"help": "filled from the data: uint8, uint16, float32, ...", "cli": False}
    )
    input_range: list[float] = field(
        default_factory=list,
        metadata={"help": "filled from the data: input values mapped to [-1, 1]; empty = sample type", "cli": False},
    )
    output_range: list[float] = field(
        default_factory=list,
        metadata={"help": "filled from the data: output values mapped to [-1, 1]; empty = sample type", "cli": False},
    )

    def window(self, side: str = "") -> tuple[float, float] | None:
        """The DICOM window as a value range (center - width/2, center + width/2), or None; with `side` ("A" or
        "B", the dataset's folders), None unless the window applies to that side."""
        if not self.dicom_window:
            return None
        text = self.dicom_window
        if text[:2].upper() in ("A:", "B:"):
            if side and side != text[0].upper():
                return None
            text = text[2:]
        try:
            center, width = (float(v) for v in text.split(","))
        except ValueError:
            raise ConfigError(
                f"--dicom-window {self.dicom_window!r} must be CENTER,WIDTH, e.g. 40,400 (a CT soft-tissue window), "
                "or A:CENTER,WIDTH / B:CENTER,WIDTH for one side"
            ) from None
        if not width > 0:
            raise ConfigError(f"--dicom-window {self.dicom_window!r}: the width must be positive")
        return center - width / 2, center + width / 2


@dataclass
class ValidationConfig:
    """Held-out pairs scored during training; the best checkpoint by one metric is kept beside the latest."""

    root: str = opt("", "validation dataset folder (its val/ split if present); empty = no validation", flag="val-data")
    phase: str = opt("val", "split sub-folder of the validation folder", flag="val-phase")
    fraction: float = opt(
        0.0, "hold out this fraction of the training pairs for validation instead of --val-data", flag="val-fraction"
    )
    every: int = opt(1000, "validate every this many steps (and at the end)", flag="val-every")
    metric: str = opt(
        "psnr",
        "metric that selects the best checkpoint",
        choices=("psnr", "ssim", "ms_ssim", "l1", "mse"),
        flag="val-metric",
    )
    max_items: int = opt(0, "validate on at most this many pairs (0 = all)", flag="val-max-items")
    instance_dir: str = opt(
        "",
        "instance-id maps of the --val-data label maps (default: the training --instance-dir)",
        flag="val-instance-dir",
    )

    @property
    def enabled(self) -> bool:
        """Whether any validation split is configured."""
        return bool(self.root) or self.fraction > 0


@dataclass
class TrainConfig:
    """The optimisation: losses, optimiser, schedule, checkpoints."""

    gan_loss: str = opt("vanilla", "adversarial loss", choices=GAN_LOSSES)
    lambda_l1: float = opt(100.0, "weight of the L1 reconstruction loss")
    lambda_gp: float = opt(10.0, "weight of the WGAN-GP gradient penalty (wgangp only)")
    lambda_feat: float = opt(10.0, "pix2pixhd: weight of the discriminator feature-matching loss")
    lambda_vgg: float = opt(0.0, "pix2pixhd: weight of the VGG19 perceptual loss (needs --vgg-weights); 0 = off")
    vgg_weights: str = opt("", "pix2pixhd: local torchvision vgg19-*.pth for the perceptual loss (never downloaded)")
    init_global: str = opt("", "pix2pixhd stage 2: run or checkpoint whose global generator initialises this one")
    fix_global_steps: int = opt(
        0, "pix2pixhd: keep the global generator frozen for this many steps (train the enhancer)"
    )
    lr: float = opt(2e-4, "Adam learning rate for both networks")
    beta1: float = opt(0.5, "Adam beta1")
    beta2: float = opt(0.999, "Adam beta2")
    epochs: int = opt(100, "epochs at the initial learning rate (linear policy); the run lasts epochs + epochs-decay")
    epochs_decay: int = opt(100, "further epochs over which the learning rate decays to zero (linear policy)")
    lr_policy: str = opt("linear", "learning-rate policy", choices=LR_POLICIES)
    lr_step_epochs: int = opt(50, "step policy: multiply the learning rate by lr_gamma every this many epochs")
    lr_gamma: float = opt(0.1, "step policy: decay factor")
    plateau_patience: int = opt(
        5, "plateau policy: epochs without L1 improvement before the learning rate is cut by 5x"
    )
    max_steps: int = opt(
        0, "stop after this many optimisation steps (0 = run all epochs); the learning rate still follows epochs"
    )
    accum_steps: int = opt(
        1, "gradient accumulation: split each step's batch into this many micro-batches (less memory, same gradient)"
    )
    save_every: int = opt(5000, "save a checkpoint every this many steps (and always at the end)")
    keep_last: int = opt(3, "keep this many most recent checkpoints (0 = keep all)")
    log_every: int = opt(10, "write mean losses to log.jsonl every this many steps")
    init: str = opt("normal", "weight initialisation", choices=INITS)
    init_gain: float = opt(0.02, "scale for normal/xavier/orthogonal initialisation")
    seed: int = opt(0, "random seed for weights, shuffling, augmentation and dropout")
    device: str = opt("auto", "auto (CUDA if present, else CPU), cpu, cuda, cuda:N, mps")
    deterministic: bool = opt(False, "use deterministic algorithms (bit-exact resume on GPU; slower)")
    tensorboard: bool = opt(
        False, "also log losses, learning rates, validation metrics and image grids to RUN/tensorboard"
    )
    precision: str = opt(
        "auto",
        "auto (bf16 where the hardware runs it natively: CPUs with AVX-512 bf16 or AMX, recent GPUs, for 8-bit "
        "outputs; else fp32), "
        "fp32, bf16, or fp16 (CUDA; loss scaling). Forward passes are autocast, weights stay fp32; a step whose "
        "loss or gradients overflow is recomputed in fp32",
        choices=PRECISIONS,
    )
    grad_checkpoint: bool = opt(
        False, "recompute the resnet and hd generators' residual blocks in backward (less memory, slower)"
    )


@dataclass
class RunConfig:
    """Everything needed to rebuild and continue a run; stored in every checkpoint."""

    recipe: str = "pix2pix"
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    test_mode: str = "eval"
    format_version: int = 1

    SECTIONS = ("generator", "discriminator", "data", "train", "validation")

    def validate(self) -> RunConfig:
        """Check every field; raise ConfigError naming the first bad one."""
        g, d, data, t = self.generator, self.discriminator, self.data, self.train
        _choice("recipe", self.recipe, RECIPES)
        _choice("test_mode", self.test_mode, TEST_MODES)
        _choice("arch", g.arch, ARCHS)
        _at_least("num-d", d.num_d, 1)
        _at_least("n-local", g.n_local, 0)
        _at_least("n-blocks", g.n_blocks, 0)
        _at_least("n-down-global", g.n_down_global, 1)
        _at_least("fix-global-steps", t.fix_global_steps, 0)
        if self.recipe == "pix2pixhd" and g.arch != "hd":
            raise ConfigError("--recipe pix2pixhd needs --arch hd")
        if self.recipe == "pix2pix" and d.num_d > 1:
            raise ConfigError("--num-d > 1 is pix2pixHD's multi-scale discriminator: use --recipe pix2pixhd")
        if t.lambda_vgg > 0 and not t.vgg_weights:
            raise ConfigError(
                "--lambda-vgg needs --vgg-weights FILE (torchvision's vgg19-*.pth); nothing is downloaded"
            )
        _choice("g-norm", g.norm, NORMS)
        _choice("d-norm", d.norm, NORMS)
        _choice("upsample", g.upsample, UPSAMPLES)
        _choice("gan-loss", t.gan_loss, GAN_LOSSES)
        _choice("lr-policy", t.lr_policy, LR_POLICIES)
        _choice("init", t.init, INITS)
        _choice("precision", t.precision, PRECISIONS)
        _choice("preprocess", data.preprocess, PREPROCESS)
        _choice("layout", data.layout, LAYOUTS)
        _choice("direction", data.direction, DIRECTIONS)
        if data.sample_type:
            _sample_type(data.sample_type)
        _choice("normalize", data.normalize, NORMALIZE_KINDS)
        if not 0.0 <= data.percentile_low < data.percentile_high <= 100.0:
            raise ConfigError(
                f"--percentile-low {data.percentile_low} and --percentile-high {data.percentile_high} must satisfy "
                "0 <= low < high <= 100"
            )
        data.window()
        if data.nifti_axis not in (0, 1, 2):
            raise ConfigError(f"--nifti-axis {data.nifti_axis!r} must be 0, 1 or 2")
        for name in ("input_range", "output_range"):
            _value_range(name, getattr(data, name))
        _at_least("depth", g.depth, 1)
        _at_least("ngf", g.ngf, 1)
        _at_least("ndf", d.ndf, 1)
        _at_least("n-layers", d.n_layers, 0)
        _at_least("in-channels", g.in_channels, 0)
        _at_least("out-channels", g.out_channels, 0)
        _at_least("crop-size", data.crop_size, 1)
        _at_least("load-size", data.load_size, 1)
        _at_least("batch-size", data.batch_size, 1)
        _at_least("workers", data.workers, 0)
        _at_least("max-items", data.max_items, 0)
        _at_least("label-nc", data.label_nc, 0)
        if data.instance_dir and not data.label_nc:
            raise ConfigError("--instance-dir needs --label-nc (instance maps accompany label maps)")
        _at_least("epochs", t.epochs, 0)
        _at_least("epochs-decay", t.epochs_decay, 0)
        _at_least("max-steps", t.max_steps, 0)
        _at_least("save-every", t.save_every, 1)
        _at_least("accum-steps", t.accum_steps, 1)
        if data.batch_size % t.accum_steps:
            raise ConfigError(
                f"--batch-size {data.batch_size} must be divisible by --accum-steps {t.accum_steps} "
                "(the batch is split into that many equal micro-batches)"
            )
        _at_least("keep-last", t.keep_last, 0)
        _at_least("log-every", t.log_every, 1)
        _at_least("lr-step-epochs", t.lr_step_epochs, 1)
        _at_least("seed", t.seed, 0)
        if not 0.0 <= g.dropout < 1.0:
            raise ConfigError(f"--dropout {g.dropout} is out of range; use a value in [0, 1)")
        if t.lr <= 0:
            raise ConfigError(f"--lr {t.lr} must be positive")
        if t.lambda_l1 < 0 or t.lambda_gp < 0:
            raise ConfigError("--lambda-l1 and --lambda-gp must be >= 0")
        if data.preprocess in ("resize_and_crop",) and data.load_size < data.crop_size:
            raise ConfigError(
                f"--load-size {data.load_size} is smaller than --crop-size {data.crop_size}; "
                "the resize target must be at least the crop size"
            )
        v = self.validation
        _choice("val-metric", v.metric, ("psnr", "ssim", "ms_ssim", "l1", "mse"))
        _at_least("val-every", v.every, 1)
        _at_least("val-max-items", v.max_items, 0)
        if not 0.0 <= v.fraction < 1.0:
            raise ConfigError(f"--val-fraction {v.fraction} is out of range; use a value in [0, 1)")
        if v.root and v.fraction > 0:
            raise ConfigError("--val-data and --val-fraction are alternatives; give one of them")
        if t.epochs + t.epochs_decay == 0 and t.max_steps == 0:
            raise ConfigError("nothing to train: --epochs and --epochs-decay are 0 and --max-steps is 0")
        if not (t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda") or t.device == "mps"):
            raise ConfigError(f"--device {t.device!r} is not a device; use auto, cpu, cuda or cuda:N")
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the whole configuration."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The configuration as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "configuration") -> RunConfig:
        """Build a config from a dict, rejecting unknown keys with a message naming them."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a JSON object")
        section_types = {f.name: f.type for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in section_types:
                raise ConfigError(f"{source}: unknown key {key!r}")
            if key in cls.SECTIONS:
                sub_cls = _SECTION_CLASSES[key]
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: section {key!r} must be a JSON object, got {value!r}")
                fields = {f.name: f for f in dataclasses.fields(sub_cls)}
                unknown = set(value) - set(fields)
                if unknown:
                    raise ConfigError(f"{source}: unknown key(s) {sorted(unknown)} in section {key!r}")
                for name, item in value.items():
                    _check_type(f"{source}: {key}.{name}", item, getattr(sub_cls(), name))
                kwargs[key] = sub_cls(**value)
            else:
                kwargs[key] = value
        return cls(**kwargs)


_SECTION_CLASSES: dict[str, type] = {
    "generator": GeneratorConfig,
    "discriminator": DiscriminatorConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "validation": ValidationConfig,
}

PRESETS: dict[str, dict[str, Any]] = {
    "unet_256": {"arch": "unet", "depth": 8},
    "unet_128": {"arch": "unet", "depth": 7},
    "resnet_9blocks": {"arch": "resnet", "n_blocks": 9},
    "resnet_6blocks": {"arch": "resnet", "n_blocks": 6},
}


def load_config(path: str | Path) -> RunConfig:
    """Read a RunConfig from a JSON file (a run's config.json or one written by hand)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    return RunConfig.from_dict(raw, source=str(path)).validate()


def _check_type(where: str, value: Any, default: Any) -> None:
    """Reject a JSON value whose type differs from the field's (ints are accepted for floats)."""
    expected = type(default)
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ConfigError(f"{where} must be {expected.__name__}, got {value!r}")


def _sample_type(name: str) -> None:
    try:
        ok = np.dtype(name).kind in "uif" and np.dtype(name).name == name
    except TypeError:
        ok = False
    if not ok:
        raise ConfigError(f"sample_type {name!r} is not a numeric NumPy type such as uint8, uint16 or float32")


def _value_range(name: str, value: list[float]) -> None:
    ok = isinstance(value, list) and len(value) in (0, 2)
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok or (value and not value[0] < value[1]):
        raise ConfigError(f"data.{name} {value!r} must be empty or [low, high] with low < high")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"--{name} {value!r} is not one of: {', '.join(choices)}")


def _at_least(name: str, value: int, low: int) -> None:
    if not isinstance(value, int) or value < low:
        raise ConfigError(f"--{name} {value!r} must be an integer >= {low}")
