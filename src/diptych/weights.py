"""Reading pretrained weights from local files (never from the network)."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import ConfigError


def load_state_dict_file(path: Path, what: str) -> dict[str, torch.Tensor]:
    """Read a tensor state dict from .safetensors or a PyTorch file (weights_only), with errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} weights file not found; diptych never downloads weights, pass a local file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # damaged or foreign files raise many types
        raise ConfigError(f"{path}: not a readable {what} weights file ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: expected a state dict of tensors for {what}")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
