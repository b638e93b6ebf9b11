"""Self-describing checkpoint folders: config + safetensors weights + training state, written atomically."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .atomic import fsync_file, remove_stale_temporaries, temporary_path, write_text_atomic
from .config import RunConfig
from .errors import CheckpointError, ConfigError

CONFIG_FILE = "config.json"
STATE_FILE = "training_state.pt"
LATEST_FILE = "LATEST"
CHECKPOINTS_DIR = "checkpoints"
FORMAT_TAG = "diptych"


def weights_file(network: str) -> str:
    """File name of a network's weights inside a checkpoint folder."""
    return f"{network}.safetensors"


def save_checkpoint(
    root: Path,
    name: str,
    config: RunConfig,
    networks: dict[str, nn.Module],
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write root/name/ atomically and point root/LATEST at it (removing what interrupted saves left there)."""
    remove_stale_temporaries(root)
    path = write_checkpoint_folder(root / name, config, networks, training_state)
    write_text_atomic(root / LATEST_FILE, name)
    return path


def write_checkpoint_folder(
    final: Path,
    config: RunConfig,
    networks: dict[str, nn.Module],
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder (config.json, <net>.safetensors, training state) via a temp folder and rename."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(final)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _write_checkpoint_files(tmp, config, networks, training_state)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # an error or an interrupt leaves nothing half-written behind
        raise
    if final.exists():
        old = temporary_path(final, "old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    return final


def _write_checkpoint_files(
    folder: Path, config: RunConfig, networks: dict[str, nn.Module], training_state: dict[str, Any] | None
) -> None:
    """Write and flush a checkpoint's files into `folder`."""
    config_json = config.to_json()
    for net_name, net in networks.items():
        tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        meta = {"format": FORMAT_TAG, "network": net_name, "config": config_json}
        save_file(tensors, str(folder / weights_file(net_name)), metadata=meta)
    write_text_atomic(folder / CONFIG_FILE, config_json)
    if training_state is not None:
        torch.save(training_state, folder / STATE_FILE)
    for f in folder.iterdir():
        fsync_file(f)


def prune_checkpoints(root: Path, keep_last: int, protect: set[str] | None = None) -> None:
    """Delete all but the newest `keep_last` step checkpoints (0 keeps everything)."""
    if keep_last <= 0:
        return
    protect = protect or set()
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in steps[:-keep_last]:
        if old.name not in protect:
            shutil.rmtree(old)


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a run folder, a checkpoints folder, a checkpoint folder or a weights file; return the checkpoint folder."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint, run folder or weights file")
    if path.is_file():
        if path.suffix == ".safetensors":
            return path.parent
        if path.suffix in (".pth", ".pt"):
            raise CheckpointError(
                f"{path}: a PyTorch pickle, not a diptych checkpoint; if it is a pytorch-CycleGAN-and-pix2pix "
                "generator, convert it first with `diptych convert-reference`"
            )
        raise CheckpointError(f"{path}: not a diptych checkpoint (expected a folder or a .safetensors file)")
    for candidate in (path, path / CHECKPOINTS_DIR):
        latest = candidate / LATEST_FILE
        if latest.is_file():
            target = candidate / latest.read_text().strip()
            if not (target / CONFIG_FILE).is_file():
                raise CheckpointError(f"{latest}: points to {target}, which is not a complete checkpoint")
            return target
    if (path / CONFIG_FILE).is_file():
        return path
    raise CheckpointError(
        f"{path}: not a diptych checkpoint (no {CONFIG_FILE}, {CHECKPOINTS_DIR}/{LATEST_FILE} or *.safetensors)"
    )


def read_checkpoint_config(path: str | Path) -> RunConfig:
    """The RunConfig stored with a checkpoint (from a weights file's metadata or the folder's config.json)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".safetensors":
        raw = read_metadata(path).get("config")
        if raw is None:
            raise CheckpointError(
                f"{path}: safetensors file has no diptych configuration; it was not written by diptych"
            )
        source = str(path)
    else:
        folder = resolve_checkpoint(path)
        cfg_path = folder / CONFIG_FILE
        raw = cfg_path.read_text()
        source = str(cfg_path)
    try:
        return RunConfig.from_dict(json.loads(raw), source=source).validate()
    except (json.JSONDecodeError, ConfigError, TypeError) as exc:
        raise CheckpointError(f"{source}: not a valid diptych configuration ({exc})") from None


def load_weights(module: nn.Module, file: Path) -> None:
    """Load a safetensors state dict into a module, with errors that name the file."""
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            if (f.metadata() or {}).get("format") != FORMAT_TAG:
                raise CheckpointError(f"{file}: not a diptych weights file (no diptych metadata)")
            for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                tensors[key] = f.get_tensor(key)
    except FileNotFoundError:
        raise CheckpointError(f"{file}: weights file is missing from the checkpoint") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{file}: corrupt or truncated weights file ({exc})") from None
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError:
        raise CheckpointError(
            f"{file}: weights do not match the stored architecture ({_mismatch(module, tensors)}); were they copied "
            "from another run? Keep each checkpoint's config.json with its weights"
        ) from None


def _mismatch(module: nn.Module, tensors: dict[str, torch.Tensor]) -> str:
    """What differs between a module's tensors and a state dict: missing and unexpected names, other shapes."""
    own = module.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    shapes = [
        f"{k} {tuple(tensors[k].shape)} instead of {tuple(v.shape)}"
        for k, v in own.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    found = [
        f"{len(items)} {what}, e.g. {items[0]}"
        for what, items in (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes))
        if items
    ]
    return f"for its {type(module).__name__}: " + "; ".join(found)


def load_training_state(folder: Path) -> dict[str, Any]:
    """Load the optimiser/scheduler/RNG state written by the trainer (our own file; weights_only)."""
    file = folder / STATE_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing; this checkpoint holds weights only and cannot be resumed")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged pickles
        raise CheckpointError(f"{file}: corrupt or truncated training state ({type(exc).__name__})") from None


def read_metadata(file: Path) -> dict[str, str]:
    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{file}: corrupt or truncated weights file ({exc})") from None
