"""Typed run configuration: validated early, saved inside every checkpoint, mapped 1:1 to CLI options."""

from __future__ import annotations

import dataclasses
import json
import reprlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from .nets.geometry import Geometry

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

NORMS = ("batch", "instance", "none")
INITS = ("normal", "xavier", "kaiming", "orthogonal")
GAN_LOSSES = ("vanilla", "lsgan", "hinge", "wgangp")
LR_POLICIES = ("linear", "step", "cosine", "plateau")
PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
LAYOUTS = ("auto", "aligned", "folders", "cyclegan")
DIRECTIONS = ("AtoB", "BtoA")
TEST_MODES = ("eval", "paper")
WEIGHTS = ("raw", "ema")  # which of a generator's weights inference runs: as trained, or their moving average (--ema)
NORMALIZE_KINDS = ("auto", "dtype", "minmax", "percentile")


# Bounds that keep a model buildable and a run meaningful; the total weight size is checked when networks are
# built (nets.create_generator), since widths and depths multiply.
MAX_DOWNSAMPLINGS = 12  # inputs are padded to at least 2**depth pixels a side: 4096
MAX_WIDTH = 1024  # first-layer filters (pix2pix and pix2pixHD use 64)
MAX_CHANNELS = 1024  # image or one-hot label channels
MAX_SIDE = 32768  # training resize and crop sizes, pixels
MAX_COUNT = 2**31 - 1  # steps, epochs, items: anything larger is a typo
MAX_SEED = 2**32 - 1  # NumPy's seed range
MAX_LOSS_WEIGHT = 1e6


@dataclass(frozen=True)
class Bounds:
    """The allowed values of a numeric field: an interval whose ends may be included or not."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self, integer: bool) -> str:
        """E.g. 'an integer in [1, 12]', '0, 1 or 2' or 'a finite number in (0, 1]'."""
        if integer and not (self.low_open or self.high_open) and self.high - self.low <= 3:
            values = [str(v) for v in range(int(self.low), int(self.high) + 1)]
            return f"{', '.join(values[:-1])} or {values[-1]}"
        what = "an integer" if integer else "a finite number"
        if self.high == MAX_COUNT and not self.low_open:
            return f"{what} >= {_number(self.low)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{what} in {left}{_number(self.low)}, {_number(self.high)}{right}"


def within(low: float, high: float = MAX_COUNT) -> Bounds:
    """Bounds [low, high] (without a high end: any count)."""
    return Bounds(low, high)


def fraction() -> Bounds:
    """Bounds [0, 1)."""
    return Bounds(0, 1, high_open=True)


LOSS_WEIGHT = Bounds(0, MAX_LOSS_WEIGHT)


def opt(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    flag: str | None = None,
    bounds: Bounds | None = None,
) -> Any:
    """A dataclass field carrying its CLI help text, choices or numeric bounds, and flag name."""
    meta: dict[str, Any] = {"help": help}
    if choices:
        meta["choices"] = choices
    if flag:
        meta["flag"] = flag
    if bounds:
        meta["bounds"] = bounds
    return field(default=default, metadata=meta)


@dataclass(slots=True)  # (slots: a field of another family set by mistake is an AttributeError, not ignored)
class GeneratorConfig:
    """The fields every generator family shares. Each family (nets.families) is a subclass adding its own fields,
    with a builder and a geometry; `arch` names it, and the stored configuration holds its fields only."""

    help: ClassVar[str] = ""  # one line, for --arch
    presets: ClassVar[dict[str, dict[str, Any]]] = {}  # reference-style --netG names -> field values
    exportable: ClassVar[bool] = True  # whether `diptych export` can trace it
    # Whether the network initialises its own weights (e.g. ESRGAN's scaled Kaiming init); recipes then do not
    # apply --init-type to it.
    initialises_itself: ClassVar[bool] = False

    arch: str = field(default="", metadata={"help": "generator family", "flag": "arch"})
    ngf: int = opt(64, "filters in the generator's first layer", bounds=within(1, MAX_WIDTH))
    norm: str = opt("batch", "normalisation layer in the generator", choices=NORMS, flag="g-norm")
    in_channels: int = opt(0, "input channels; 0 = taken from the data", bounds=within(0, MAX_CHANNELS))
    out_channels: int = opt(0, "output channels; 0 = taken from the data", bounds=within(0, MAX_CHANNELS))

    @classmethod
    def arch_name(cls) -> str:
        """The family's --arch name (its `arch` default)."""
        return next(f.default for f in dataclasses.fields(cls) if f.name == "arch")

    def check(self) -> None:
        """Refuse (ConfigError) combinations of the family's fields it cannot build (each field is checked alone
        before)."""

    def build(self) -> nn.Module:
        """The network, with fresh weights (channels must be filled in)."""
        raise NotImplementedError(f"{type(self).__name__} does not say how to build its network")

    def geometry(self) -> Geometry:
        """What the network does to image sizes, known without building it."""
        raise NotImplementedError(f"{type(self).__name__} does not give its geometry")

    def stride_hint(self, side: int) -> str:
        """What to change when training images of `side` pixels are smaller than the stride."""
        return "larger crops"


def generator_families() -> dict[str, type[GeneratorConfig]]:
    """The registered generator families by --arch name (nets.families is the one registry); the first is the
    default."""
    from .nets.families import GENERATOR_FAMILIES

    return GENERATOR_FAMILIES


def generator_class(arch: Any, where: str = "") -> type[GeneratorConfig]:
    """The config class of a family name; ConfigError (prefixed by `where`) naming the choices if there is none."""
    families = generator_families()
    _typed(f"{where}generator.arch", arch, "str")
    if arch not in families:
        raise ConfigError(f"{where}--arch {_shown(arch)} (generator.arch) is not one of: {', '.join(families)}")
    return families[arch]


def default_arch() -> str:
    """The default family's name (the first registered)."""
    return next(iter(generator_families()))


def default_generator() -> GeneratorConfig:
    """The default family's generator with its defaults."""
    return generator_families()[default_arch()]()


def field_names(kind: type) -> set[str]:
    """The names of a dataclass's fields (its ClassVars are not fields)."""
    return {f.name for f in dataclasses.fields(kind)}


def families_with(name: str) -> list[str]:
    """The families that have a generator field (all of them for a shared one)."""
    return [arch for arch, family in generator_families().items() if name in field_names(family)]


def refuse_other_family(names: Iterable[str], arch: str, what: Callable[[str], str], uses: str) -> None:
    """ConfigError for the first of `names` that is another family's field, not the `arch` generator's:
    what(name) is how the user wrote it (a flag, a JSON key); `uses` the rest of the sentence."""
    own = field_names(generator_class(arch))
    for name in names:
        having = families_with(name)
        if name not in own and having:
            raise ConfigError(
                f"{what(name)} is an option of --arch {' / '.join(having)}, not of the {arch} generator {uses}; drop it"
            )


@dataclass
class DiscriminatorConfig:
    """The conditional PatchGAN discriminator's architecture (num_d > 1: pix2pixHD's multi-scale version)."""

    n_layers: int = opt(
        3,
        "PatchGAN depth: 0 = pixel (1x1), 1 = 16x16, 2 = 34x34, 3 = 70x70, 4 = 142x142, 5 = 286x286",
        bounds=within(0, 8),
    )
    ndf: int = opt(64, "filters in the discriminator's first layer", bounds=within(1, MAX_WIDTH))
    norm: str = opt("batch", "normalisation layer in the discriminator", choices=NORMS, flag="d-norm")
    num_d: int = opt(1, "discriminators on an image pyramid (pix2pixHD uses 2 or 3; pix2pix 1)", bounds=within(1, 8))
    spectral_norm: bool = opt(
        False,
        "spectral normalisation of every discriminator convolution (one power iteration per training forward; "
        "its state is saved with the weights)",
    )


@dataclass
class DataConfig:
    """Where the pairs are and how they are augmented."""

    root: str = opt(
        "",
        "(required) dataset folder: aligned A|B images (optionally in train/), or A/ and B/ folders",
        flag="data",
    )
    layout: str = opt(
        "auto",
        "dataset layout; auto detects trainA/+trainB/ (unpaired recipes), A/+B/ folders, else aligned",
        choices=LAYOUTS,
    )
    phase: str = opt("train", "sub-folder to use when the dataset has train/val/test sub-folders")
    direction: str = opt("AtoB", "translate A to B or B to A", choices=DIRECTIONS)
    preprocess: str = opt(
        "resize_and_crop",
        "joint A/B transform: resize_and_crop = resize to load-size square, random crop-size crop (the paper's "
        "jitter); crop = random crop at native size; scale_width = width to load-size, aspect kept; "
        "scale_width_and_crop = that, then a random crop; none = native size",
        choices=PREPROCESS,
    )
    load_size: int = opt(
        286,
        "resize target: the square side for resize_and_crop, the width for scale_width*",
        bounds=within(1, MAX_SIDE),
    )
    crop_size: int = opt(256, "training crop size", bounds=within(1, MAX_SIDE))
    flip: bool = opt(True, "random horizontal flip, identical for A and B")
    workers: int = opt(2, "data-loading worker processes (0 = load in the main process)", bounds=within(0, 256))
    batch_size: int = opt(
        1,
        "pairs per optimisation step, over all torchrun processes and --accum-steps micro-batches (the global batch)",
        bounds=within(1, 65536),
    )
    max_items: int = opt(0, "use at most this many pairs (0 = all)", bounds=within(0))
    skip_bad: bool = opt(False, "skip unreadable or inconsistent pairs and list them, instead of stopping")
    label_nc: int = opt(
        0,
        "the input side holds integer label maps with this many classes (one-hot encoded); 0 = images",
        bounds=within(0, MAX_CHANNELS - 1),  # one channel more for the instance boundary map
    )
    ignore_label: int = opt(
        -1, "label id that is 'no class' (all-zero one-hot), e.g. 255; -1 = none", bounds=within(-1, 65535)
    )
    instance_dir: str = opt("", "folder of instance-id maps named like the label maps; adds a boundary channel")
    normalize: str = opt(
        "auto",
        "which values map to the network's [-1, 1], per side: dtype = the sample type's range (floats: [0, 1]); "
        "minmax / percentile = computed from the training data; auto = dtype for 8/16-bit and [0, 1] floats, "
        "else minmax. Stored with the model and inverted on output",
        choices=NORMALIZE_KINDS,
    )
    percentile_low: float = opt(0.5, "--normalize percentile: the percentile that maps to -1", bounds=within(0, 100))
    percentile_high: float = opt(99.5, "--normalize percentile: the percentile that maps to 1", bounds=within(0, 100))
    dicom_window: str = opt(
        "",
        "[A:|B:]CENTER,WIDTH (e.g. 40,400): window/level for the DICOM sides (A:/B: = that side only, e.g. the CT side "
        "of CT -> MR); values outside are clipped; empty = --normalize",
    )
    nifti_axis: int = opt(2, "NIfTI volumes are cut into 2-D slices along this axis (0, 1 or 2)", bounds=within(0, 2))
    sample_type: str = field(
        default="", metadata={"help": "filled from the data: the output's uint8, uint16, float32, ...", "cli": False}
    )
    input_sample_type: str = field(
        default="", metadata={"help": "filled from the data: the input's sample type; empty = unknown", "cli": False}
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
        low, high = center - width / 2, center + width / 2
        if not (-_HUGE < low < high < _HUGE):
            raise ConfigError(f"--dicom-window {self.dicom_window!r}: CENTER and WIDTH must be finite numbers")
        return low, high


@dataclass
class ValidationConfig:
    """Held-out pairs scored during training; the best checkpoint by one metric is kept beside the latest."""

    root: str = opt("", "validation dataset folder (its val/ split if present); empty = no validation", flag="val-data")
    phase: str = opt("val", "split sub-folder of the validation folder", flag="val-phase")
    fraction: float = opt(
        0.0,
        "hold out this fraction of the training pairs for validation instead of --val-data",
        flag="val-fraction",
        bounds=fraction(),
    )
    every: int = opt(1000, "validate every this many steps (and at the end)", flag="val-every", bounds=within(1))
    metric: str = opt(
        "psnr",
        "metric that selects the best checkpoint",
        choices=("psnr", "ssim", "ms_ssim", "l1", "mse", "st_lpips", "checkerboard"),
        flag="val-metric",
    )
    max_items: int = opt(0, "validate on at most this many pairs (0 = all)", flag="val-max-items", bounds=within(0))
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
    """The optimisation shared by every recipe: optimiser, schedule, checkpoints (losses: the recipe's section)."""

    lr: float = opt(
        2e-4,
        "Adam learning rate (the generators'; the discriminators' too unless --lr-d)",
        bounds=Bounds(0, 1, low_open=True),
    )
    lr_d: float = opt(
        0.0,
        "the discriminators' Adam learning rate (two time-scale updates, e.g. --lr 1e-4 --lr-d 4e-4); 0 = --lr",
        bounds=within(0, 1),
    )
    warmup_steps: int = opt(
        0,
        "linear learning-rate warm-up: step k (from 0) of the first N runs at (k + 1) / N of the scheduled rate, for "
        "every network; 0 = off",
        bounds=within(0),
    )
    ema: float = opt(
        0.0,
        "keep an exponential moving average of the generators' weights with this decay (e.g. 0.999), used for "
        "validation, translation, evaluation and export; 0 = off",
        bounds=fraction(),
    )
    beta1: float = opt(0.5, "Adam beta1", bounds=fraction())
    beta2: float = opt(0.999, "Adam beta2", bounds=fraction())
    epochs: int = opt(
        100,
        "epochs at the initial learning rate (linear policy); the run lasts epochs + epochs-decay",
        bounds=within(0),
    )
    epochs_decay: int = opt(
        100, "further epochs over which the learning rate decays to zero (linear policy)", bounds=within(0)
    )
    lr_policy: str = opt("linear", "learning-rate policy", choices=LR_POLICIES)
    lr_step_epochs: int = opt(
        50, "step policy: multiply the learning rate by lr_gamma every this many epochs", bounds=within(1)
    )
    lr_gamma: float = opt(0.1, "step policy: decay factor", bounds=Bounds(0, 1, low_open=True))
    plateau_patience: int = opt(
        5, "plateau policy: epochs without L1 improvement before the learning rate is cut by 5x", bounds=within(0)
    )
    max_steps: int = opt(
        0,
        "stop after this many optimisation steps (0 = run all epochs); the learning rate still follows epochs",
        bounds=within(0),
    )
    accum_steps: int = opt(
        1,
        "gradient accumulation: split each step's batch into this many micro-batches (less memory, same gradient)",
        bounds=within(1, 65536),
    )
    save_every: int = opt(5000, "save a checkpoint every this many steps (and always at the end)", bounds=within(1))
    keep_last: int = opt(3, "keep this many most recent checkpoints (0 = keep all)", bounds=within(0))
    log_every: int = opt(10, "write mean losses to log.jsonl every this many steps", bounds=within(1))
    init: str = opt("normal", "weight initialisation (the upscaling generators keep their own)", choices=INITS)
    init_gain: float = opt(
        0.02, "scale for normal/xavier/orthogonal initialisation", bounds=Bounds(0, 100, low_open=True)
    )
    seed: int = opt(0, "random seed for weights, shuffling, augmentation and dropout", bounds=within(0, MAX_SEED))
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

    @property
    def discriminator_lr(self) -> float:
        """The discriminators' learning rate: --lr-d, or --lr when it is 0."""
        return self.lr_d or self.lr


FORMAT_VERSION = 3  # the checkpoint format this diptych writes, and the newest it reads (older: see migrate)
MAX_CONFIG_BYTES = 1 << 20  # a configuration file is a few kB; anything this large is not one


@dataclass
class RunConfig:
    """Everything needed to rebuild and continue a run; stored in every checkpoint."""

    recipe: str = "pix2pix"
    generator: GeneratorConfig = field(default_factory=default_generator)  # of the class its arch names
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    # The recipe's own section (its losses and options), of the class its recipe declares; None = its defaults.
    method: Any = None
    test_mode: str = "eval"
    format_version: int = FORMAT_VERSION

    SECTIONS = ("generator", "discriminator", "data", "train", "validation", "method")

    def __post_init__(self) -> None:
        if self.method is None and self.recipe in recipe_names():
            self.method = recipe_class(self.recipe).section()

    def use_recipe(self, name: str) -> RunConfig:
        """Switch to a recipe: its section with its defaults, and the shared-field defaults it changes."""
        _choice("recipe", name, recipe_names())
        recipe = recipe_class(name)
        self.recipe, self.method = name, recipe.section()
        if "arch" in recipe.defaults.get("generator", {}):
            self.use_generator(recipe.defaults["generator"]["arch"])
        for section, fields in recipe.defaults.items():
            for key, value in fields.items():
                if (section, key) != ("generator", "arch"):
                    setattr(getattr(self, section), key, value)
        return self

    def use_generator(self, arch: str) -> GeneratorConfig:
        """Switch to a generator family: its own fields at their defaults, the shared fields kept where they differ
        from the old family's defaults (those at the old family's default take the new family's)."""
        family = generator_class(arch)
        old, defaults = self.generator, type(self.generator)()
        shared = {
            name: getattr(old, name)
            for name in field_names(GeneratorConfig) - {"arch"}
            if getattr(old, name) != getattr(defaults, name)
        }
        self.generator = family(**shared)
        return self.generator

    def validate(self, *, stored: bool = False) -> RunConfig:
        """Check every field (type, choices, range), then how fields combine; raise ConfigError naming the first
        bad one. stored: the configuration of trained weights, which must describe a complete model."""
        _choice("recipe", self.recipe, recipe_names())
        _choice("test-mode", self.test_mode, TEST_MODES)
        recipe = recipe_class(self.recipe)
        if not isinstance(self.method, recipe.section):
            raise ValueError(f"config.method is a {type(self.method).__name__}, not --recipe {self.recipe}'s section")
        g, data, t, v = self.generator, self.data, self.train, self.validation
        if type(g) is not generator_class(g.arch):
            raise ValueError(
                f"config.generator is a {type(g).__name__}, not --arch {g.arch}'s (use_generator switches)"
            )
        for section in self.SECTIONS:
            values = getattr(self, section)
            for f in dataclasses.fields(values):
                _check_field(section, f, getattr(values, f.name))
        g.check()
        if stored:
            for name in ("in_channels", "out_channels"):
                if getattr(g, name) < 1:
                    raise ConfigError(
                        f"generator.{name} is {getattr(g, name)}: the configuration of trained weights must give "
                        "their channels (>= 1); it was altered or is incomplete"
                    )
        recipe.check_config(self)
        for sample_type in (data.sample_type, data.input_sample_type):
            if sample_type:
                _sample_type(sample_type)
        if not data.percentile_low < data.percentile_high:
            raise ConfigError(
                f"--percentile-low {data.percentile_low} and --percentile-high {data.percentile_high} must satisfy "
                "0 <= low < high <= 100"
            )
        data.window()
        for name in ("input_range", "output_range"):
            _value_range(name, getattr(data, name))
        if data.instance_dir and not data.label_nc:
            raise ConfigError("--instance-dir needs --label-nc (instance maps accompany label maps)")
        if data.batch_size % t.accum_steps:
            raise ConfigError(
                f"--batch-size {data.batch_size} must be divisible by --accum-steps {t.accum_steps} "
                "(the batch is split into that many equal micro-batches)"
            )
        if data.preprocess in ("resize_and_crop",) and data.load_size < data.crop_size:
            raise ConfigError(
                f"--load-size {data.load_size} is smaller than --crop-size {data.crop_size}; "
                "the resize target must be at least the crop size"
            )
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
    def from_dict(cls, raw: Any, source: str = "configuration", *, stored: bool = False) -> RunConfig:
        """Build a config from parsed JSON strictly: known keys only, each value of its field's type, a format this
        diptych reads (older formats migrated). stored: written with trained weights, so every section and the
        format version are present."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {_json_type(raw)}")
        check_format_version(raw, source, stored)
        raw = migrate(raw, source)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in fields:
                raise ConfigError(f"{source}: unknown key {_shown(key)}")
            if key in cls.SECTIONS:
                kwargs[key] = section_from_dict(key, value, source, _section_class(key, raw, source))
            else:
                kwargs[key] = _typed(f"{source}: {key}", value, fields[key].type)
        missing = [name for name in cls.SECTIONS if name not in raw]
        if stored and missing:
            raise ConfigError(f"{source}: section {missing[0]!r} is missing; the file was altered or is incomplete")
        return cls(**kwargs)


def recipe_names() -> tuple[str, ...]:
    """The registered recipes' names (recipes.RECIPES is the one registry)."""
    from .recipes import RECIPES

    return tuple(RECIPES)


def recipe_class(name: str) -> Any:
    """The registered recipe class of a name."""
    from .recipes import RECIPES

    return RECIPES[name]


def migrate(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """A stored configuration of an older format rewritten as the current one (each step one function below);
    a hand-written file without format_version is read as the current format, after the same rewriting."""
    raw = dict(raw)
    recipe = _typed(f"{source}: recipe", raw.setdefault("recipe", "pix2pix"), "str")
    if recipe not in recipe_names():
        raise ConfigError(f"{source}: recipe {_shown(recipe)} is not one of: {', '.join(recipe_names())}")
    version = raw.get("format_version", 1)
    while version < FORMAT_VERSION:
        raw = _MIGRATIONS[version](raw)
        version += 1
    if "format_version" in raw:
        raw["format_version"] = FORMAT_VERSION
    return raw


# Format 1's "train" section held every method's options; format 2 moves them into the recipe's "method" section.
V1_METHOD_KEYS = (
    "gan_loss",
    "lambda_l1",
    "lambda_gp",
    "lambda_feat",
    "lambda_vgg",
    "vgg_weights",
    "init_global",
    "fix_global_steps",
)


def _v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """Format 1 -> 2: the method's options leave "train" for the recipe's own section (other methods' are dropped)."""
    train = raw.get("train")
    if not isinstance(train, dict):
        return raw
    own = {f.name for f in dataclasses.fields(recipe_class(raw["recipe"]).section)}
    train = dict(train)
    moved = {key: train.pop(key) for key in V1_METHOD_KEYS if key in train}
    method = raw.get("method") if isinstance(raw.get("method"), dict) else {}
    method = {**{k: v for k, v in moved.items() if k in own}, **method}
    return {**raw, "train": train, "method": method}


# Format 2's "generator" section held every family's fields; format 3 holds the shared ones and its family's own.
V2_GENERATOR_KEYS = (
    "depth",
    "dropout",
    "upsample",
    "n_blocks",
    "n_local",
    "n_down_global",
    "n_blocks_global",
    "n_blocks_local",
)


def _v2_to_v3(raw: dict[str, Any]) -> dict[str, Any]:
    """Format 2 -> 3: the generator section keeps its own family's fields (the other families' are dropped). A file
    written by hand (no format_version) is held to the current format: another family's field is refused there."""
    generator = raw.get("generator")
    if "format_version" not in raw or not isinstance(generator, dict):
        return raw
    arch = generator.get("arch", default_arch())
    if not isinstance(arch, str) or arch not in generator_families():
        return raw  # (refused with its message when the section is read)
    own = field_names(generator_families()[arch])
    kept = {k: v for k, v in generator.items() if k in own or k not in V2_GENERATOR_KEYS}
    return {**raw, "generator": kept}


_MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3}


_SECTION_CLASSES: dict[str, type] = {
    "discriminator": DiscriminatorConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "validation": ValidationConfig,
}


def generator_presets() -> dict[str, dict[str, Any]]:
    """Every family's reference-style --netG names, each with its family and field values."""
    return {
        name: {"arch": arch, **values}
        for arch, family in generator_families().items()
        for name, values in family.presets.items()
    }


def load_config(path: str | Path, *, stored: bool = False) -> RunConfig:
    """Read and validate a RunConfig from a JSON file (a run's config.json, stored=True, or one written by hand)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)  # (a size from stat can lie: a device, a FIFO, a growing file)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: more than {MAX_CONFIG_BYTES} bytes, too large for a configuration file")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a configuration file") from None
    return config_from_json(raw, str(path), stored=stored)


def config_from_json(raw: str | bytes, source: str, *, stored: bool = False) -> RunConfig:
    """Parse, build and validate a configuration from JSON text; every error is one ConfigError naming `source`."""
    return config_from_dict(parse_json(raw, source), source, stored=stored)


def config_from_dict(raw: Any, source: str, *, stored: bool = False) -> RunConfig:
    """Build and validate a configuration from parsed JSON; every error is one ConfigError naming `source`."""
    config = RunConfig.from_dict(raw, source, stored=stored)
    try:
        return config.validate(stored=stored)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def parse_json(raw: str | bytes, source: str) -> Any:
    """JSON text (UTF-8 bytes or str) as Python values; damage of any kind is one ConfigError naming `source`."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON (not UTF-8 text: byte {exc.start})") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise ConfigError(f"{source}: not valid JSON ({str(exc).split(';')[0]})") from None


def flag_name(f: dataclasses.Field) -> str:
    """The command-line flag of a config field, without dashes."""
    return f.metadata.get("flag") or f.name.replace("_", "-")


_FIELD_TYPES: dict[str, tuple[type, str]] = {
    "int": (int, "an integer (int)"),
    "float": (float, "a number (float)"),
    "str": (str, "a string (str)"),
    "bool": (bool, "true or false (bool)"),
    "list[float]": (list, "a list of numbers"),
    "dict[str, Any]": (dict, "a JSON object"),
}


def _section_class(section: str, raw: dict[str, Any], source: str) -> type:
    """The dataclass of a section ("method": the recipe's own; "generator": its family's)."""
    if section == "method":
        return recipe_class(raw["recipe"]).section
    if section == "generator":
        return generator_section_class(raw["generator"], source)
    return _SECTION_CLASSES[section]


def generator_section_class(value: Any, source: str) -> type[GeneratorConfig]:
    """The family class of a generator section or architecture spec (by its "arch"; without one, the default)."""
    if not isinstance(value, dict):
        return type(default_generator())  # (section_from_dict refuses the value)
    arch = value.get("arch", default_arch())
    family = generator_class(arch, f"{source}: ")
    refuse_other_family(value, arch, lambda name: f"{source}: generator.{name}", "it describes")
    return family


def section_from_dict(section: str, value: Any, source: str, kind: type) -> Any:
    """One section's dataclass from its JSON object, every value of its field's type."""
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: section {section!r} must be a JSON object, got {_json_type(value)}")
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {_shown(unknown)} in section {section!r}")
    typed = {name: _typed(f"{source}: {section}.{name}", item, fields[name].type) for name, item in value.items()}
    return kind(**typed)


def _typed(where: str, value: Any, type_name: str) -> Any:
    """A JSON value checked against a field's type (bool is not an integer; an integer is a number, made float)."""
    kind, words = _FIELD_TYPES[type_name]
    if not _is_a(value, kind):
        raise ConfigError(f"{where} must be {words}, got {_json_type(value)} {_shown(value)}")
    if kind is float and isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return value  # refused by the field's bounds, with its flag named
    return value


def _is_a(value: Any, kind: type) -> bool:
    """Whether value is of a field type, strictly: bool is not an int, int counts as float."""
    if kind is bool or isinstance(value, bool):
        return isinstance(value, bool) and kind is bool
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def _check_field(section: str, f: dataclasses.Field, value: Any) -> None:
    """One field's type, choices and bounds; the error names its flag and what it accepts."""
    kind, words = _FIELD_TYPES[str(f.type)]
    name = f"--{flag_name(f)} {_shown(value)} ({section}.{f.name})"
    if not _is_a(value, kind):
        raise ConfigError(f"{name} must be {words}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{name} is not one of: {', '.join(choices)}")
    bounds: Bounds | None = f.metadata.get("bounds")
    # Every bound is finite, so nan and inf are never inside one.
    if bounds is not None and value not in bounds:
        raise ConfigError(f"{name} is out of range: use {bounds.describe(kind is int)}")


def check_format_version(raw: dict[str, Any], source: str, stored: bool) -> None:
    """Refuse (ConfigError) a format newer than this diptych reads, and a missing (when stored) or damaged version."""
    if "format_version" not in raw:
        if stored:
            raise ConfigError(f"{source}: no format_version; it was not written by diptych or was altered")
        return
    version = raw["format_version"]
    if not _is_a(version, int) or version < 1:
        raise ConfigError(
            f"{source}: format_version {_shown(version)} is not a diptych format version (an integer >= 1); "
            "the file was altered or damaged"
        )
    if version > FORMAT_VERSION:
        raise ConfigError(
            f"{source}: written by a newer diptych (format {version}, this one reads up to {FORMAT_VERSION}): "
            "upgrade diptych"
        )


def _json_type(value: Any) -> str:
    """A value's JSON type name, for messages about files."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )


def _shown(value: Any) -> str:
    """A value for a one-line message: short however long or deeply nested it is."""
    return _SHORT_REPR.repr(value)


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 60


def _number(value: float) -> str:
    """A bound as written: integers without a decimal point."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _sample_type(name: str) -> None:
    try:
        ok = np.dtype(name).kind in "uif" and np.dtype(name).name == name
    except TypeError:
        ok = False
    if not ok:
        raise ConfigError(f"sample_type {name!r} is not a numeric NumPy type such as uint8, uint16 or float32")


def _value_range(name: str, value: list[float]) -> None:
    ok = isinstance(value, list) and len(value) in (0, 2)
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) and -_HUGE < v < _HUGE for v in value)
    if not ok or (value and not value[0] < value[1]):
        raise ConfigError(f"data.{name} {_shown(value)} must be empty or [low, high] with finite low < high")


# Compared rather than passed to math.isfinite, which overflows on huge integers; nan and inf fail the comparison.
_HUGE = 1e300


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"--{name} {_shown(value)} is not one of: {', '.join(choices)}")
