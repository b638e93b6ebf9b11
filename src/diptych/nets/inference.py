"""Inference-only rewrites of a trained generator (eval mode): fewer passes over memory, same outputs.

- Each batch norm that directly follows a convolution is folded into it (scaled weights, shifted bias): its
  running statistics are constants at inference, so the norm's own pass over the activations goes away.
- Under bf16/fp16 autocast, convolution weights are stored in that type, as autocast would cast them at every
  forward pass anyway: half the resident weight memory and no per-call cast.

A folded network can no longer be trained or switched to per-image statistics, so `--test-mode paper` gets
the weight storage only. `Translator.load` applies these to the generator it builds for itself, never to one
it was handed.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return (
        isinstance(conv, CONVS)
        and isinstance(norm, nn.BatchNorm2d)
        and norm.running_mean is not None
        and not (conv.training or norm.training)
    )


def _fold(parent: nn.Module, conv_name: str, norm_name: str) -> bool:
    conv, norm = parent._modules[conv_name], parent._modules[norm_name]
    if conv is None or norm is None or not _foldable(conv, norm):
        return False
    fused = fuse_conv_bn_eval(conv, norm, transpose=isinstance(conv, nn.ConvTranspose2d))  # type: ignore[arg-type]
    parent._modules[conv_name] = fused
    parent._modules[norm_name] = nn.Identity()
    return True


def fold_batch_norms(module: nn.Module) -> int:
    """Fold eval-mode batch norms into the convolutions they follow; returns how many were folded.

    Pairs are found in `nn.Sequential` containers (a conv and the norm right after it) and in blocks that name
    them in a `FOLDABLE = (("conv", "norm"),)` class attribute, which promise that their forward applies the
    norm straight to the conv's output."""
    folded = 0
    for m in list(module.modules()):
        if isinstance(m, nn.Sequential):
            names = list(m._modules)
            folded += sum(_fold(m, a, b) for a, b in itertools.pairwise(names))
        for conv_name, norm_name in getattr(type(m), "FOLDABLE", ()):
            folded += _fold(m, conv_name, norm_name)
    return folded


def store_conv_weights(module: nn.Module, dtype: torch.dtype) -> None:
    """Keep convolution weights and biases in `dtype` (what autocast casts them to); norms stay fp32."""
    for m in module.modules():
        if isinstance(m, CONVS):
            m.to(dtype)


def prepare_for_inference(module: nn.Module, autocast_dtype: torch.dtype | None, fold: bool = True) -> nn.Module:
    """No gradients, conv weights in the autocast type (None: fp32), and with `fold` (eval mode) batch norms
    folded. Without `fold` the module's mode is left alone (per-image statistics and dropout keep working)."""
    module.requires_grad_(False)
    if fold:
        fold_batch_norms(module.eval())
    if autocast_dtype is not None:
        store_conv_weights(module, autocast_dtype)
    return module
