"""Reading pretrained weights from local files (never from the network)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn

from .errors import ConfigError, DiptychError

# What safetensors raises for a damaged file: its own error, and OS errors for what it cannot read.
SAFETENSORS_ERRORS = (SafetensorError, OSError, ValueError, RuntimeError)


def load_state_dict_file(path: Path, what: str) -> dict[str, torch.Tensor]:
    """Read a tensor state dict from .safetensors or a PyTorch file (weights_only), with errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} weights file not found; diptych never downloads weights, pass a local file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except SAFETENSORS_ERRORS as exc:
            raise ConfigError(f"{path}: not a readable {what} weights file ({first_line(exc)})") from None
    else:
        state = load_pickled_tensors(path, f"{what} weights")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: expected a state dict of tensors for {what}")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_pickled_tensors(path: Path, what: str, error: type[DiptychError] = ConfigError) -> Any:
    """torch.load with weights_only (tensors and plain containers, never other pickled objects); a file it cannot
    read raises `error` in one line naming it, never with torch's advice to load it unsafely (that runs its code)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's restricted unpickler comments on pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except pickle.UnpicklingError:
        raise error(
            f"{path}: not a readable {what} file: it is damaged, or holds Python objects besides tensors, which "
            "diptych never unpickles (that could run code from the file)"
        ) from None
    except Exception as exc:  # torch raises many types for damaged files (zip, EOF, storage errors)
        raise error(f"{path}: not a readable {what} file: damaged or truncated ({type(exc).__name__})") from None


def shape_mismatches(module: nn.Module, tensors: dict[str, torch.Tensor]) -> list[str]:
    """The tensors of a state dict whose shape differs from the module's tensor of the same name."""
    return [
        f"{k} {tuple(tensors[k].shape)} instead of {tuple(v.shape)}"
        for k, v in module.state_dict().items()
        if k in tensors and tensors[k].shape != v.shape
    ]


def check_shapes(module: nn.Module, tensors: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """Refuse (ConfigError naming the file) a state dict with tensors of another shape than the module's, which
    load_state_dict would report in a multi-line RuntimeError."""
    shapes = shape_mismatches(module, tensors)
    if shapes:
        raise ConfigError(f"{path}: not {what} weights ({len(shapes)} tensors of another shape, e.g. {shapes[0]})")


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line and 160 characters (library errors can run long)."""
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__
