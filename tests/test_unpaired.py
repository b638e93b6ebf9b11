"""Unpaired data: layouts, per-domain formats and ranges, seeded independent B draws, sharding, errors, data check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from diptych.cli import main
from diptych.config import DataConfig
from diptych.data import Domain, collate_pairs, find_unpaired_files, open_paired_dataset, open_unpaired_dataset
from diptych.data.io import from_tensor, to_tensor, write_image
from diptych.data.unpaired import is_unpaired_layout
from diptych.distributed import EpochSampler
from diptych.errors import ConfigError, DataError

from .conftest import photo_crops


def write_domain(folder: Path, images: list[np.ndarray], prefix: str, suffix: str = ".png") -> list[Path]:
    """Write images into a domain folder as prefix_000.suffix, ..."""
    return [write_image(folder / f"{prefix}_{i:03d}{suffix}", img) for i, img in enumerate(images)]


def grey16(crops: list[np.ndarray]) -> list[np.ndarray]:
    """1-channel 16-bit versions of 8-bit colour crops."""
    return [c[:, :, :1].astype(np.uint16) * 257 + i for i, c in enumerate(crops)]


def cfg(root: Path, **kw: object) -> DataConfig:
    """A data config reading native-size images without augmentation unless told otherwise."""
    options: dict[str, object] = {"preprocess": "none", "flip": False}
    options.update(kw)
    return DataConfig(root=str(root), **options)  # type: ignore[arg-type]


@pytest.fixture
def cyclegan_root(tmp_path: Path) -> Path:
    """trainA: five 1-channel uint16 TIFFs; trainB: three 3-channel uint8 PNGs; testA/testB: two and one."""
    root = tmp_path / "horse2zebra"
    write_domain(root / "trainA", grey16(photo_crops("astronaut", 32, 5)), "mri", ".tif")
    write_domain(root / "trainB", photo_crops("coffee", 32, 3), "photo")
    write_domain(root / "testA", grey16(photo_crops("astronaut", 32, 2, seed=1)), "mri", ".tif")
    write_domain(root / "testB", photo_crops("coffee", 32, 1, seed=1), "photo")
    return root


def test_cyclegan_layout_keeps_each_domains_channels_sample_type_and_values(cyclegan_root: Path) -> None:
    ds = open_unpaired_dataset(cfg(cyclegan_root))
    assert ds.summary.layout == "cyclegan" and len(ds) == 5
    assert ds.summary.a == Domain(1, "uint16", None, 5, str(cyclegan_root / "trainA"))
    assert ds.summary.b == Domain(3, "uint8", None, 3, str(cyclegan_root / "trainB"))
    item = ds[(3, 7)]
    assert item["A_name"] == "mri_003" and item["B_name"].startswith("photo_")
    assert item["A"].shape == (1, 32, 32) and item["B"].shape == (3, 32, 32)
    assert np.array_equal(from_tensor(item["A"], np.uint16), grey16(photo_crops("astronaut", 32, 5))[3])
    b_index = int(item["B_name"].split("_")[1])
    assert np.array_equal(from_tensor(item["B"], np.uint8), photo_crops("coffee", 32, 3)[b_index])
    test = open_unpaired_dataset(cfg(cyclegan_root, phase="test"))
    assert (test.summary.a.count, test.summary.b.count, len(test)) == (2, 1, 2)


def test_domains_get_their_own_value_range(tmp_path: Path) -> None:
    """A holds CT-like int16 values (minmax range), B 8-bit photos (their type's range)."""
    hu = [(c[:, :, 0].astype(np.int16) * 8 - 1024)[:, :, None] for c in photo_crops("chelsea", 24, 3)]
    write_domain(tmp_path / "A", hu, "ct", ".tif")
    write_domain(tmp_path / "B", photo_crops("coffee", 24, 2), "photo")
    ds = open_unpaired_dataset(cfg(tmp_path))
    low, high = float(min(h.min() for h in hu)), float(max(h.max() for h in hu))
    assert ds.summary.a.value_range == (low, high) and ds.summary.b.value_range is None
    assert torch.equal(ds[0]["A"], to_tensor(hu[0], (low, high)))
    stored = open_unpaired_dataset(cfg(tmp_path), stored_ranges={"A": (-2000.0, 2000.0)})
    assert stored.summary.a.value_range == (-2000.0, 2000.0) and stored.summary.b.value_range is None


def test_folders_with_unrelated_names_counts_and_subfolders(tmp_path: Path) -> None:
    a_files = write_domain(tmp_path / "A" / "day", photo_crops("rocket", 24, 2), "street")
    a_files += write_domain(tmp_path / "A", photo_crops("rocket", 24, 1, seed=3), "sky")
    b_files = write_domain(tmp_path / "B", photo_crops("motorcycle", 24, 4), "night")
    (tmp_path / "A" / ".hidden.png").write_bytes((tmp_path / "A" / "sky_000.png").read_bytes())
    files_a, files_b = find_unpaired_files(tmp_path)
    assert files_a == sorted(a_files) and files_b == sorted(b_files)
    ds = open_unpaired_dataset(cfg(tmp_path, layout="folders"))
    assert ds.summary.layout == "folders" and len(ds) == 4
    assert [ds[i]["A_name"] for i in range(4)] == ["day/street_000", "day/street_001", "sky_000", "day/street_000"]
    assert not is_unpaired_layout(tmp_path, "train")


def test_folders_with_split_subfolders(tmp_path: Path) -> None:
    write_domain(tmp_path / "A" / "train", photo_crops("rocket", 24, 2), "x")
    write_domain(tmp_path / "B" / "train", photo_crops("coffee", 24, 3), "y")
    write_domain(tmp_path / "A" / "test", photo_crops("rocket", 24, 1), "x")
    write_domain(tmp_path / "B" / "test", photo_crops("coffee", 24, 1), "y")
    ds = open_unpaired_dataset(cfg(tmp_path))
    assert ds.summary.a.root == str(tmp_path / "A" / "train") and (ds.summary.a.count, ds.summary.b.count) == (2, 3)


@pytest.fixture
def unequal(tmp_path: Path) -> Path:
    """Six images in trainA, seven in trainB."""
    write_domain(tmp_path / "trainA", photo_crops("rocket", 24, 6), "a")
    write_domain(tmp_path / "trainB", photo_crops("coffee", 24, 7), "b")
    return tmp_path


def test_b_is_a_seeded_draw_of_the_key_alone(unequal: Path, tmp_path: Path) -> None:
    ds = open_unpaired_dataset(cfg(unequal))
    assert len(ds) == 7
    epoch0 = [ds[(i, 11)]["B_name"] for i in range(7)]
    again = open_unpaired_dataset(cfg(unequal))  # a resumed run, another rank, a worker process
    assert [again[(i, 11)]["B_name"] for i in range(7)] == epoch0
    assert torch.equal(again[(4, 11)]["B"], ds[(4, 11)]["B"])
    assert len(set(epoch0)) > 1 and epoch0 != [f"b_{i:03d}" for i in range(7)]  # drawn, not in order
    assert [ds[(i, 12)]["B_name"] for i in range(7)] != epoch0  # another epoch, other draws
    # Independent of A: another A domain (other images and count) draws the same B for the same keys.
    other = tmp_path / "other"
    write_domain(other / "trainA", photo_crops("chelsea", 24, 2), "c")
    (other / "trainB").symlink_to(unequal / "trainB")
    assert [open_unpaired_dataset(cfg(other))[(i, 11)]["B_name"] for i in range(7)] == epoch0


def test_serial_batches_pair_in_order_and_length_is_the_larger_domain(unequal: Path) -> None:
    ds = open_unpaired_dataset(cfg(unequal), serial_batches=True)
    names = [(ds[(i, 5)]["A_name"], ds[(i, 5)]["B_name"]) for i in range(7)]
    assert names == [(f"a_{i % 6:03d}", f"b_{i:03d}") for i in range(7)]


def test_domains_are_cropped_and_flipped_independently(tmp_path: Path) -> None:
    """The same image in both domains: with crops and flips, A's and B's views differ for some keys."""
    coded = (np.arange(40 * 40).reshape(40, 40, 1) * 40).astype(np.uint16)  # each pixel holds its position
    write_image(tmp_path / "trainA" / "x.tif", coded)
    write_image(tmp_path / "trainB" / "x.tif", coded)
    ds = open_unpaired_dataset(cfg(tmp_path, preprocess="crop", crop_size=16, flip=True))
    views = [ds[(0, seed)] for seed in range(8)]
    assert all(v["A"].shape == v["B"].shape == (1, 16, 16) for v in views)
    assert sum(not torch.equal(v["A"], v["B"]) for v in views) >= 6
    assert torch.equal(ds[(0, 3)]["A"], views[3]["A"])  # and each is reproducible


def test_ddp_ranks_see_disjoint_a_and_the_same_b_as_one_process(unequal: Path) -> None:
    ds = open_unpaired_dataset(cfg(unequal))
    one = list(EpochSampler(len(ds), seed=3, batch_size=2, drop_last=True))
    shards = [list(EpochSampler(len(ds), seed=3, batch_size=2, rank=r, world_size=2, drop_last=True)) for r in (0, 1)]
    assert not {i for i, _ in shards[0]} & {i for i, _ in shards[1]}
    assert sorted(shards[0] + shards[1]) == sorted(one)
    b_one = {key: ds[key]["B_name"] for key in one}
    assert all(ds[key]["B_name"] == b_one[key] for shard in shards for key in shard)


def test_batches_collate_per_domain(unequal: Path) -> None:
    ds = open_unpaired_dataset(cfg(unequal))
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_pairs)))
    assert batch["A"].shape == (3, 3, 24, 24) and batch["B"].shape == (3, 3, 24, 24)
    assert batch["A_name"] == ["a_000", "a_001", "a_002"] and len(batch["B_name"]) == 3


def test_domain_json_round_trip() -> None:
    for domain in (Domain(1, "int16", (-1024.0, 3071.0), 12, "/d/trainA"), Domain(3, "uint8", None, 4, "/d/B")):
        assert Domain.from_json(json.loads(json.dumps(domain.to_json()))) == domain


def test_missing_and_empty_domains_are_named(tmp_path: Path) -> None:
    write_domain(tmp_path / "trainA", photo_crops("rocket", 24, 2), "a")
    with pytest.raises(DataError, match=r"trainB: folder missing; add domain B's train images in a folder there$"):
        open_unpaired_dataset(cfg(tmp_path))
    (tmp_path / "trainB").write_text("a file where domain B's folder belongs")
    with pytest.raises(DataError, match=r"trainB: is a file, not a folder; add domain B's train images in a folder"):
        open_unpaired_dataset(cfg(tmp_path))
    (tmp_path / "trainB").unlink()
    (tmp_path / "trainB").mkdir()
    (tmp_path / "trainB" / "notes.txt").write_text("no images")
    with pytest.raises(DataError, match=r"trainB: holds no images .*add domain B's images there$"):
        open_unpaired_dataset(cfg(tmp_path))
    with pytest.raises(DataError, match=r"has no testA/ or testB/ folder \(found trainA/, trainB/\); pass --phase"):
        open_unpaired_dataset(cfg(tmp_path, phase="test"))
    write_domain(tmp_path / "A", photo_crops("rocket", 24, 1), "a")
    with pytest.raises(DataError, match=r"missing .*/B/$"):
        open_unpaired_dataset(cfg(tmp_path, layout="folders"))
    with pytest.raises(ConfigError, match="--layout aligned"):
        open_unpaired_dataset(cfg(tmp_path, layout="aligned"))
    with pytest.raises(ConfigError, match="--label-nc"):
        open_unpaired_dataset(cfg(tmp_path, label_nc=4))


def test_mixed_channels_within_a_domain_and_skip_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_domain(tmp_path / "trainA", photo_crops("rocket", 24, 3), "a")
    write_domain(tmp_path / "trainB", grey16(photo_crops("coffee", 24, 3)), "b", ".tif")
    write_image(tmp_path / "trainB" / "b_009.png", photo_crops("coffee", 24, 1)[0])  # 3 x uint8 among 1 x uint16
    with pytest.raises(DataError, match=r"b_009.png: has 3 x uint8, but earlier images of domain B have 1 x uint16"):
        open_unpaired_dataset(cfg(tmp_path))
    broken = tmp_path / "trainA" / "a_001.png"
    broken.write_bytes(broken.read_bytes()[:100])
    ds = open_unpaired_dataset(cfg(tmp_path, skip_bad=True))
    assert (ds.summary.a.count, ds.summary.b.count, len(ds.summary.skipped)) == (2, 3, 2)
    assert [ds[i]["A_name"] for i in range(2)] == ["a_000", "a_002"]
    err = capsys.readouterr().err
    assert "skipped 2 bad image(s)" in err and "a_001.png" in err and "b_009.png" in err


def test_data_check_unpaired_finds_nan_tiff_empty_domain_and_leaks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ds"
    write_domain(root / "trainA", photo_crops("rocket", 24, 3), "a")
    write_domain(root / "trainB", [*photo_crops("coffee", 24, 2), photo_crops("coffee", 16, 1)[0]], "b")
    write_domain(root / "testA", photo_crops("rocket", 24, 1), "a")  # = trainA/a_000: leaks test data
    (root / "testB").mkdir()
    code = main(["data", "check", str(root), "--unpaired", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 1 and "unpaired cyclegan layout" in out and "B: 3 image(s) (train: 3, test: 0)" in out
    kinds = {p["kind"]: p for p in report["problems"]}
    assert set(kinds) == {"empty_domain", "duplicate"}
    assert kinds["empty_domain"]["message"].startswith(f"{root / 'testB'}: holds no images")
    assert "across splits test, train" in kinds["duplicate"]["message"]
    assert report["formats"] == {"A: 3 x uint8": 4, "B: 3 x uint8": 3}

    (root / "testA" / "a_000.png").unlink()
    write_domain(root / "testB", photo_crops("coffee", 24, 1, seed=5), "b")
    nan = np.full((24, 24, 1), 0.5, np.float32)
    nan[3, 4] = np.nan
    write_image(root / "testA" / "scan.tif", nan)
    write_image(root / "testA" / "grey.png", photo_crops("rocket", 24, 1)[0][:, :, :1])
    code = main(["data", "check", str(root), "--unpaired", "--crop-size", "20", "--json", str(tmp_path / "r.json")])
    report = json.loads((tmp_path / "r.json").read_text())
    by_kind = {p["kind"]: p["message"] for p in report["problems"]}
    assert code == 1 and set(by_kind) == {"unreadable", "mixed_format", "too_small"}
    assert "scan.tif: 1 of 576 samples are NaN or infinite" in by_kind["unreadable"]
    assert "grey.png: 1 x uint8 but most images of domain A are 3 x uint8" in by_kind["mixed_format"]
    assert "b_002.png: crop 20x20 is larger than the image (16x16" in by_kind["too_small"]


def test_data_check_crop_size_needs_unpaired(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_domain(tmp_path / "A", photo_crops("rocket", 24, 1), "x")
    write_domain(tmp_path / "B", photo_crops("rocket", 24, 1), "x")
    assert main(["data", "check", str(tmp_path), "--crop-size", "8"]) == 1
    assert "--crop-size is checked with --unpaired only" in capsys.readouterr().err


def test_paired_readers_point_an_unpaired_dataset_to_unpaired_use(
    cyclegan_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """trainA/ trainB/ used to be read as a folder of aligned A|B images (each halved into a nonsense pair)."""
    with pytest.raises(DataError, match=r"horse2zebra: holds trainA/ and trainB/ folders, an unpaired dataset"):
        open_paired_dataset(DataConfig(root=str(cyclegan_root)))
    assert main(["data", "check", str(cyclegan_root)]) == 1
    assert "`data check --unpaired` checks it" in capsys.readouterr().err
    assert main(["data", "check", str(cyclegan_root), "--unpaired"]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_worker_processes_draw_what_the_main_process_draws(unequal: Path) -> None:
    ds = open_unpaired_dataset(cfg(unequal))
    sampler = EpochSampler(len(ds), seed=4)
    sampler.set_epoch(2)
    keys = list(sampler)
    loaded = DataLoader(ds, sampler=sampler, batch_size=1, num_workers=1, collate_fn=collate_pairs)
    assert [b["B_name"][0] for b in loaded] == [ds[key]["B_name"] for key in keys]
    assert ds.b_index(*keys[0]) == int(ds[keys[0]]["B_name"].split("_")[1])


def test_max_items_per_domain_and_sizes_that_cannot_be_batched(unequal: Path) -> None:
    ds = open_unpaired_dataset(cfg(unequal, max_items=4))
    assert (ds.summary.a.count, ds.summary.b.count, len(ds)) == (4, 4, 4)
    write_image(unequal / "trainB" / "wide.png", photo_crops("coffee", 40, 1)[0][:24])
    with pytest.raises(DataError, match=r"trainB: images have 2 different sizes.* use --batch-size 1"):
        open_unpaired_dataset(cfg(unequal, batch_size=2))
    ds = open_unpaired_dataset(cfg(unequal, batch_size=2, preprocess="crop", crop_size=16))
    assert ds.summary.min_side == 16 and ds[(7, 0)]["B"].shape == (3, 16, 16)


def test_nifti_volumes_are_one_image_per_slice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nib = pytest.importorskip("nibabel")
    grey = photo_crops("astronaut", 24, 1)[0].astype(np.int16).mean(axis=2)
    volume = np.stack([grey + 50 * z - 1000 for z in range(3)], axis=2).astype(np.int16)
    (tmp_path / "trainA").mkdir()
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(tmp_path / "trainA" / "ct.nii.gz"))
    write_domain(tmp_path / "trainB", photo_crops("coffee", 24, 2), "b")
    ds = open_unpaired_dataset(cfg(tmp_path))
    assert [ds[i]["A_name"] for i in range(3)] == [f"ct/slice_{z:04d}" for z in range(3)]
    assert ds.summary.a == Domain(1, "int16", (float(volume.min()), float(volume.max())), 3, str(tmp_path / "trainA"))
    assert torch.equal(ds[2]["A"], to_tensor(volume[:, :, 2:3], ds.summary.a.value_range))
    assert main(["data", "check", str(tmp_path), "--unpaired"]) == 0
    assert "A: 3 image(s) (train: 3)" in capsys.readouterr().out
