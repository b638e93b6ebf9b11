"""Import generators trained with junyanz/pytorch-CycleGAN-and-pix2pix (unet_128 / unet_256 and
resnet_9blocks / resnet_6blocks state dicts)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .checkpoint import write_checkpoint_folder
from .config import GeneratorConfig, RunConfig
from .errors import CheckpointError, ConfigError
from .nets import (
    RESNET_DOWNSAMPLINGS,
    ResnetConfig,
    ResnetGenerator,
    UNetConfig,
    UNetGenerator,
    check_generator_size,
    create_generator,
)
from .weights import load_pickled_tensors


def _level_and_slot(key: str) -> tuple[int, int, str] | None:
    """Parse a reference U-Net key into (level, slot index in its Sequential, tensor name)."""
    outer = re.match(r"^model\.model\.(\d+)\.(\w+)$", key)
    if outer and outer.group(1) in ("0", "3"):
        return 0, int(outer.group(1)), outer.group(2)
    inner = re.match(r"^model\.model\.1\.((?:model\.3\.)*)model\.(\d+)\.(\w+)$", key)
    if inner:
        level = 1 + inner.group(1).count("model.3.")
        return level, int(inner.group(2)), inner.group(3)
    return None


def convert_reference_unet(
    state: dict[str, torch.Tensor], dropout: float = 0.5
) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    """Map a reference UnetGenerator state dict to diptych's flat names; infer depth, width, channels and norm."""
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    parsed = {k: _level_and_slot(k) for k in state}
    unknown = [k for k, v in parsed.items() if v is None]
    if unknown or "model.model.0.weight" not in state:
        raise CheckpointError(
            f"not a reference U-Net or ResNet generator state dict (unexpected keys such as {unknown[:3] or list(state)[:3]})"
        )
    depth = 1 + max(level for level, _, _ in parsed.values())  # type: ignore[misc]
    if depth < 2:
        raise CheckpointError("reference U-Net state dict is too shallow to convert")
    in_channels = state["model.model.0.weight"].shape[1]
    ngf = state["model.model.0.weight"].shape[0]
    out_channels = state["model.model.3.weight"].shape[1]
    has_running = any(k.endswith("running_mean") for k in state)
    mid_bias = any(lv not in (0, depth - 1) and slot == 1 and name == "bias" for lv, slot, name in parsed.values())  # type: ignore[misc]
    norm = "batch" if has_running else ("instance" if mid_bias else "none")
    cfg = UNetConfig(
        depth=depth, ngf=ngf, norm=norm, dropout=dropout, in_channels=in_channels, out_channels=out_channels
    )
    _check_buildable(cfg)
    ours = UNetGenerator(in_channels, out_channels, depth, ngf, norm, dropout)
    target = ours.state_dict()
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        level, slot, name = parsed[key]  # type: ignore[misc]
        part = _slot_to_part(level, slot, depth)
        if part is None or (name == "num_batches_tracked" and norm != "batch"):
            continue
        if part.endswith("norm") and norm == "instance":
            continue  # legacy InstanceNorm buffers; ours keeps none
        new_key = f"{part}.{name}"
        if new_key not in target:
            if name == "bias" and part.endswith("conv"):
                continue  # a bias directly followed by a mean-subtracting norm has no effect
            raise CheckpointError(f"reference key {key} has no counterpart ({new_key})")
        _place(converted, target, key, new_key, value)
    # (a conv bias the reference omitted where our layout keeps one is zero)
    _fill_missing(converted, target, ("conv.bias", "num_batches_tracked"), "is it a U-Net generator?")
    return cfg, converted


def _check_buildable(cfg: GeneratorConfig) -> None:
    """Refuse (CheckpointError) what a state dict's shapes imply when it is out of range or too large to build,
    before anything is built from it."""
    try:
        RunConfig(generator=cfg).validate(stored=True)
        check_generator_size(cfg)
    except ConfigError as exc:
        raise CheckpointError(f"the generator it describes cannot be built ({exc})") from None


def _slot_to_part(level: int, slot: int, depth: int) -> str | None:
    if level == 0:
        return {0: "down.0.conv", 3: "up.0.conv"}.get(slot)
    if level == depth - 1:
        return {1: f"down.{level}.conv", 3: f"up.{level}.conv", 4: f"up.{level}.norm"}.get(slot)
    return {1: f"down.{level}.conv", 2: f"down.{level}.norm", 5: f"up.{level}.conv", 6: f"up.{level}.norm"}.get(slot)


RESNET_FIRST_BLOCK = 1 + 3 + 3 * RESNET_DOWNSAMPLINGS  # the Sequential slot of the reference's first block


def convert_reference_resnet(state: dict[str, torch.Tensor]) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    """Map a reference ResnetGenerator state dict to diptych's names; infer blocks, width, channels, norm, dropout."""
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"^model\.(\d+)\.conv_block\.", k))})
    n_blocks, first = len(blocks), RESNET_FIRST_BLOCK
    if "model.1.weight" not in state or blocks != list(range(first, first + n_blocks)):
        raise CheckpointError(f"not a reference ResNet generator state dict (keys such as {list(state)[:3]})")
    # Dropout sits between a block's two convs and moves the second one from slot 5 to slot 6 (a norm's without).
    dropout = state.get(f"model.{first}.conv_block.6.weight", torch.zeros(0)).dim() == 4
    # Batch norm has affine weights; instance norm has none (legacy files keep its running buffers), and only the
    # reference's instance-norm convs carry biases.
    norm = "batch" if "model.2.weight" in state else ("instance" if "model.1.bias" in state else "none")
    ngf, in_channels = state["model.1.weight"].shape[:2]
    head = f"model.{first + n_blocks + 3 * RESNET_DOWNSAMPLINGS + 1}"
    if f"{head}.weight" not in state:
        raise CheckpointError(f"reference ResNet state dict lacks its output convolution {head}.weight")
    cfg = ResnetConfig(
        n_blocks=n_blocks,
        ngf=ngf,
        norm=norm,
        dropout=0.5 if dropout else 0.0,
        in_channels=in_channels,
        out_channels=state[f"{head}.weight"].shape[0],
    )
    _check_buildable(cfg)
    ours = ResnetGenerator(in_channels, cfg.out_channels, ngf, RESNET_DOWNSAMPLINGS, n_blocks, norm, cfg.dropout)
    target = ours.state_dict()
    parts = _resnet_parts(n_blocks, dropout)
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, _, name = key.rpartition(".")
        part = parts.get(module)
        if part is None:
            raise CheckpointError(f"reference key {key} has no counterpart in a {n_blocks}-block ResNet generator")
        new_key = f"{part}.{name}"
        if new_key not in target:
            if norm == "instance":
                continue  # legacy running buffers, and conv biases the mean subtraction cancels
            raise CheckpointError(f"reference key {key} has no counterpart ({new_key})")
        _place(converted, target, key, new_key, value)
    # (the reference has no bias where norm 'none' follows)
    _fill_missing(converted, target, (".bias", "num_batches_tracked"), "is it a ResNet generator?")
    return cfg, converted


def _place(
    converted: dict[str, torch.Tensor], target: dict[str, torch.Tensor], key: str, new_key: str, value: torch.Tensor
) -> None:
    """Copy one reference tensor under our name, refusing one of another shape."""
    if target[new_key].shape != value.shape:
        raise CheckpointError(f"reference key {key}: shape {tuple(value.shape)} != {tuple(target[new_key].shape)}")
    converted[new_key] = value.clone()


def _fill_missing(
    converted: dict[str, torch.Tensor], target: dict[str, torch.Tensor], zeroed: tuple[str, ...], hint: str
) -> None:
    """Zeros for our tensors the reference has no counterpart of (names ending in `zeroed`); any other gap is an
    error."""
    for key, value in target.items():
        if key not in converted:
            if not key.endswith(zeroed):
                raise CheckpointError(f"reference state dict lacks the counterpart of {key}; {hint}")
            converted[key] = torch.zeros_like(value)


def _resnet_parts(n_blocks: int, dropout: bool) -> dict[str, str]:
    """The reference's module paths (nn.Sequential slots) mapped to ours."""
    parts = {"model.1": "front.1", "model.2": "front.2"}
    for i in range(RESNET_DOWNSAMPLINGS):
        parts |= {f"model.{4 + 3 * i}": f"down.{i}.0", f"model.{5 + 3 * i}": f"down.{i}.1"}
    for b in range(n_blocks):
        ref, shift = f"model.{RESNET_FIRST_BLOCK + b}.conv_block", int(dropout)
        parts |= {f"{ref}.{slot + (shift if slot > 3 else 0)}": f"blocks.{b}.body.{slot}" for slot in (1, 2, 5, 6)}
    up = RESNET_FIRST_BLOCK + n_blocks
    for i in range(RESNET_DOWNSAMPLINGS):
        parts |= {f"model.{up + 3 * i}": f"up.{i}.0", f"model.{up + 3 * i + 1}": f"up.{i}.1"}
    parts[f"model.{up + 3 * RESNET_DOWNSAMPLINGS + 1}"] = "head.1"
    return parts


def convert_reference_generator(
    state: dict[str, torch.Tensor], dropout: float = 0.5
) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    """Convert a reference U-Net or ResNet generator state dict, recognised by its keys (ResNets record their
    dropout in their layout; `dropout` applies to U-Nets)."""
    if any(".conv_block." in key for key in state):
        return convert_reference_resnet(state)
    return convert_reference_unet(state, dropout)


def import_reference_generator(
    pth: str | Path, out_dir: str | Path, *, dropout: float = 0.5, direction: str = "AtoB", test_mode: str | None = None
) -> Path:
    """Convert a reference latest_net_G.pth into a self-describing diptych checkpoint folder."""
    pth = Path(pth)
    state = load_pickled_tensors(pth, "PyTorch state dict", CheckpointError)
    if not isinstance(state, dict):
        raise CheckpointError(f"{pth}: expected a state dict, found {type(state).__name__}")
    try:
        cfg, converted = convert_reference_generator(state, dropout)
    except CheckpointError as exc:
        raise CheckpointError(f"{pth}: {exc}") from None
    config = RunConfig(generator=cfg)
    config.data.direction = direction
    config.data.sample_type = "uint8"
    # The reference's test.py runs without --eval by default: batch statistics and dropout on.
    config.test_mode = test_mode or ("paper" if cfg.norm == "batch" else "eval")
    generator = create_generator(cfg)
    generator.load_state_dict(converted, strict=True)
    return write_checkpoint_folder(Path(out_dir), config.validate(stored=True), {"generator": generator})
