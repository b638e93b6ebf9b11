"""The image pool of CycleGAN (Shrivastava et al. 2017): discriminators see a history of generated images, not only
the latest ones, which damps oscillation between the two generators.

Draws come from a torch.Generator the pool owns, so the global random state (dropout, penalties) is untouched and the
pool's whole state (its images and its generator) goes into the training state for a bit-identical resume. Under
DDP every rank keeps its own pool of its own fakes, seeded per rank (e.g. Distributed.seed); an exact resume saves
every rank's state_dict (Distributed.gather) and gives each rank its own back.
"""

from __future__ import annotations

import torch

from ..errors import CheckpointError, ConfigError

POOL_SIZE = 50  # the reference's --pool_size


class ImagePool:
    """Up to `size` earlier generated images; query() returns, per image, the new one or (half the time once full)
    a stored one that the new one replaces. size 0: query() returns its input."""

    def __init__(self, size: int = POOL_SIZE, seed: int = 0) -> None:
        if size < 0:
            raise ConfigError(f"pool_size {size} is negative; use 0 (no pool) or more (the reference uses {POOL_SIZE})")
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """A batch (N x C x H x W) of the same size for the discriminator: each image is the given one, or, once the
        pool is full and with probability 1/2, a stored one (which the given one replaces). The result is
        detached."""
        images = images.detach()
        if self.size == 0:
            return images
        out = []
        for image in images:
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.generator).item() > 0.5:
                slot = int(torch.randint(self.size, (), generator=self.generator).item())
                stored, self.images[slot] = self.images[slot], image.clone()
                out.append(stored.to(device=image.device, dtype=image.dtype))
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict[str, object]:
        """The stored images (CPU tensors, in their own sample type) and the generator's state."""
        return {
            "size": self.size,
            "images": [image.cpu() for image in self.images],
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Continue exactly where a state_dict() was taken (stored images move to the device of later queries)."""
        if state["size"] != self.size:
            raise CheckpointError(
                f"the checkpoint's image pool holds up to {state['size']} images but this run's pool size is "
                f"{self.size}; resume with the pool size the run was started with"
            )
        self.images = [image.clone() for image in state["images"]]  # type: ignore[attr-defined]
        self.generator.set_state(state["generator"])  # type: ignore[arg-type]
