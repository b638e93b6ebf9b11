"""The super-resolution recipes under torchrun (two gloo processes, a tiny compact x2 network): the ranks stay in
sync, two processes match one with the same global batch, a two-process resume continues a realesrgan run exactly, and
each rank's Real-ESRGAN degradations are its own samples', the same in any process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from diptych.config import RunConfig
from diptych.data.io import write_image
from diptych.distributed import process_group
from diptych.recipes.sr import RealESRGANRecipe
from diptych.train import Trainer, resume_config, train

from .conftest import checkpoint_weights, photo_crops, spawn_two_ranks, untimed_log

RUNS = (("sr", 4), ("realesrgan", 4), ("realesrgan", 2))  # (recipe, steps); the 2-step run is resumed to 4


def ddp_config(data: Path, recipe: str, steps: int) -> RunConfig:
    """A compact x2 network (8 features, 2 convs) on 16 px LR crops, global batch 4, fp32, no perceptual loss."""
    config = RunConfig().use_recipe(recipe)
    g = config.use_generator("compact")
    g.scale, g.ngf, g.n_convs = 2, 8, 2
    if recipe != "sr":
        config.method.lambda_perceptual = 0.0
        config.discriminator.ndf = 8
    config.method.lr_crop = 16
    config.data.root, config.data.workers, config.data.batch_size = str(data), 0, 4
    t = config.train
    t.max_steps, t.precision, t.seed, t.log_every, t.lr, t.ema = steps, "fp32", 3, 1, 1e-3, 0.9
    return config


def _rank_main(rank: int, port: int, data: str, out: str) -> None:
    """One of two processes: the runs of RUNS, each rank's parameters after each and the LR of its first samples;
    then a copy of the 2-step realesrgan run resumed to 4 steps."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        for recipe, steps in RUNS:
            with process_group("cpu") as ctx:
                config = ddp_config(Path(data), recipe, steps)
                trainer = Trainer(config, Path(out) / f"{recipe}{steps}", progress=False, dist=ctx)
                trainer.fit()
            nets = {**trainer.recipe.networks, **{f"{n}.ema": m for n, m in trainer.averaged.items()}}
            params = {f"{n}.{k}": p.detach() for n, m in nets.items() for k, p in m.state_dict().items()}
            samples = {}
            if recipe == "realesrgan":
                keys = list(trainer._sampler())[:2]
                samples = {key: trainer.dataset[key]["LR"] for key in keys}
            torch.save({"params": params, "samples": samples}, Path(out) / f"{recipe}{steps}_rank{rank}.pt")
        resumed = Path(out) / "resumed"
        if rank == 0:
            shutil.copytree(Path(out) / "realesrgan2", resumed)
        dist.barrier()
        with process_group("cpu") as ctx:
            config = resume_config(resumed, {"train": {"max_steps": 4}})
            Trainer(config, resumed, resume=True, progress=False, dist=ctx).fit()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def hr_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight 48x48 crops of a real photo (two global batches of 4)."""
    root = tmp_path_factory.mktemp("sr_ddp_data")
    for i, crop in enumerate(photo_crops("astronaut", 48, 8, seed=5)):
        write_image(root / f"p{i}.png", crop)
    return root


@pytest.fixture(scope="module")
def ddp_runs(hr_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runs of RUNS made by two gloo processes (spawned once for the tests below)."""
    out = tmp_path_factory.mktemp("sr_ddp_runs")
    spawn_two_ranks(_rank_main, str(hr_data), str(out))
    return out


@pytest.mark.parametrize("recipe", ["sr", "realesrgan"])
def test_ranks_stay_in_sync_and_match_one_process(recipe: str, ddp_runs: Path, hr_data: Path, tmp_path: Path) -> None:
    """Same weights (generator, discriminator, EMA, spectral norm's vectors) on both ranks after 4 steps, and those
    of one process with the same global batch: each rank trained on its own half of every batch."""
    r0, r1 = (torch.load(ddp_runs / f"{recipe}4_rank{r}.pt")["params"] for r in (0, 1))
    assert r0.keys() == r1.keys() and any(k.startswith("generator.ema.") for k in r0)
    assert recipe == "sr" or any(k.startswith("discriminator.") and k.endswith("_u") for k in r0)
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key
    single = train(ddp_config(hr_data, recipe, 4), tmp_path / "single", progress=False).run_dir
    a, b = checkpoint_weights(single), checkpoint_weights(ddp_runs / f"{recipe}4")
    assert a.keys() == b.keys()
    start = checkpoint_weights(ddp_runs / "realesrgan2") if recipe == "realesrgan" else None
    if start is not None:  # the last two steps moved the weights, so agreement below means something
        assert max(float((a[k] - start[k]).abs().max()) for k in a) > 1e-3
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=5e-5, msg=key)


def test_each_rank_degrades_its_own_samples_reproducibly(ddp_runs: Path, hr_data: Path, tmp_path: Path) -> None:
    """The ranks' first keys differ and so do their degraded LR crops; this process makes the same LR for each key
    (the degradation is seeded by the sample's key, not by the process)."""
    samples = [torch.load(ddp_runs / f"realesrgan4_rank{r}.pt")["samples"] for r in (0, 1)]
    assert len(samples[0]) == len(samples[1]) == 2 and not set(samples[0]) & set(samples[1])
    here = RealESRGANRecipe.open_dataset(ddp_config(hr_data, "realesrgan", 4), resume=False)
    for rank in samples:
        for key, lr in rank.items():
            assert torch.equal(here[key]["LR"], lr), key
    first = [next(iter(rank.values())) for rank in samples]
    assert first[0].shape == first[1].shape == (3, 16, 16) and not torch.equal(*first)


def test_a_two_process_realesrgan_run_resumes_exactly(ddp_runs: Path) -> None:
    """Two processes take the 2-step run to 4 steps with --resume: bit-identical to 4 steps straight (generator,
    U-Net discriminator, EMA) with the same logged losses."""
    a, b = checkpoint_weights(ddp_runs / "realesrgan4"), checkpoint_weights(ddp_runs / "resumed")
    assert a.keys() == b.keys() and any(k.startswith("discriminator") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    logs = [untimed_log(r) for r in (ddp_runs / "realesrgan4", ddp_runs / "resumed")]
    assert [r["step"] for r in logs[0]] == [1, 2, 3, 4] and logs[0] == logs[1]
