"""CycleGAN's image pool: fills, then returns a past image half the time; seeded by its own generator; exact resume."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from diptych.errors import CheckpointError, ConfigError
from diptych.recipes.pool import ImagePool


def images(start: int, count: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A batch of 1x2x2 images whose every value is the image's number (start, start + 1, ...)."""
    return torch.arange(start, start + count, dtype=dtype).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()


def numbers(batch: torch.Tensor) -> list[int]:
    """The image numbers of a batch made by images()."""
    return [int(x) for x in batch[:, 0, 0, 0].tolist()]


def test_fills_then_returns_a_past_image_about_half_the_time() -> None:
    pool = ImagePool(size=10, seed=1)
    assert numbers(pool.query(images(0, 4))) == [0, 1, 2, 3]  # not full: the new images themselves
    assert numbers(pool.query(images(4, 6))) == [4, 5, 6, 7, 8, 9]
    assert sorted(numbers(torch.stack(pool.images))) == list(range(10))
    past, draws = 0, 4000
    for n in range(10, 10 + draws, 4):
        stored = set(numbers(torch.stack(pool.images)))
        out = numbers(pool.query(images(n, 4)))
        earlier = [(k, got) for k, got in enumerate(out) if got != n + k]
        # a past image (perhaps one stored by this batch's earlier images, as the reference), taken out of the pool
        assert all(got < n + k and got in stored | set(range(n, n + k)) for k, got in earlier)
        assert len({got for _, got in earlier}) == len(earlier)
        past += len(earlier)
    assert abs(past / draws - 0.5) < 0.03
    assert len(pool.images) == 10


def test_pool_size_zero_returns_its_input() -> None:
    pool = ImagePool(size=0)
    batch = images(0, 3).requires_grad_()
    out = pool.query(batch)
    assert torch.equal(out, batch) and not out.requires_grad and pool.images == []
    with pytest.raises(ConfigError, match="pool_size -1 is negative"):
        ImagePool(size=-1)


def test_pool_size_has_an_upper_bound_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The pool keeps its fakes in memory: a size far above the paper's 50 is refused before anything is read."""
    from diptych.cli import main

    assert main(["train", "--recipe", "cyclegan", "--pool-size", "5000", "--data", str(tmp_path / "none")]) == 1
    assert "--pool-size 5000 (method.pool_size) is out of range: use an integer in [0, 1000]" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_stored_images_are_detached_clones_in_their_own_type() -> None:
    pool = ImagePool(size=2)
    batch = images(7, 2, torch.bfloat16).requires_grad_()
    out = pool.query(batch)
    assert out.dtype == torch.bfloat16 and not out.requires_grad
    with torch.no_grad():
        batch.add_(100)
    assert numbers(torch.stack(pool.images)) == [7, 8] and pool.images[0].dtype == torch.bfloat16


def test_state_dict_round_trip_gives_identical_future_outputs() -> None:
    pool = ImagePool(size=5, seed=3)
    for n in range(0, 40, 2):
        pool.query(images(n, 2))
    buffer = io.BytesIO()
    torch.save(pool.state_dict(), buffer)  # as the training state stores it
    buffer.seek(0)
    resumed = ImagePool(size=5, seed=99)  # the seed is overridden by the stored generator state
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for n in range(40, 100, 3):
        assert torch.equal(pool.query(images(n, 3)), resumed.query(images(n, 3)))
    assert all(torch.equal(a, b) for a, b in zip(pool.images, resumed.images, strict=True))
    with pytest.raises(CheckpointError, match="holds up to 5 images but this run's pool size is 50"):
        ImagePool().load_state_dict(pool.state_dict())


def test_pool_leaves_the_global_random_state_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    pool = ImagePool(size=2, seed=5)
    for n in range(0, 60, 2):
        pool.query(images(n, 2))
    assert torch.equal(torch.rand(3), expected)


def test_pools_with_one_seed_agree_and_other_seeds_differ() -> None:
    """Seeded: the same seed gives the same choices (each DDP rank seeds its own pool differently)."""

    def run(seed: int) -> list[int]:
        pool = ImagePool(size=4, seed=seed)
        return [x for n in range(0, 80, 2) for x in numbers(pool.query(images(n, 2)))]

    assert run(1) == run(1) and run(1) != run(2)


def test_returned_images_take_the_batchs_type_and_device() -> None:
    """A pool filled in float32 (or loaded from a CPU state) answers a bf16 batch on the batch's device."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    saved = ImagePool(size=3, seed=2)
    saved.query(images(0, 3))
    pool = ImagePool(size=3)
    pool.load_state_dict(saved.state_dict())
    out = pool.query(images(3, 40, torch.bfloat16).to(device))
    assert out.dtype == torch.bfloat16 and out.device.type == device.type
    assert set(numbers(out.cpu())) & {0, 1, 2}  # some stored float32 images came back
