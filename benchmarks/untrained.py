"""Checkpoints of untrained generators for benchmarks (timing and memory need no training)."""

from __future__ import annotations

from pathlib import Path

import torch


def save_untrained(folder: Path, config: object) -> Path:
    """The generator `config` describes, with pix2pix's initialisation (seed 0; families that initialise themselves
    keep theirs), as a diptych checkpoint folder."""
    from diptych.checkpoint import write_checkpoint_folder
    from diptych.nets import create_generator, init_weights

    torch.manual_seed(0)
    generator = create_generator(config.generator)  # type: ignore[attr-defined]
    if not config.generator.initialises_itself:  # type: ignore[attr-defined]
        init_weights(generator)
    return write_checkpoint_folder(folder, config.validate(), {"generator": generator})  # type: ignore[attr-defined]
