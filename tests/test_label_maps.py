"""Semantic label-map inputs (pix2pixHD-style): one-hot encoding, nearest resizing, instance boundaries."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diptych import Translator
from diptych.cli import main
from diptych.config import DataConfig
from diptych.data import open_paired_dataset
from diptych.data.io import write_image
from diptych.data.labels import instance_boundaries
from diptych.errors import ConfigError, DataError
from diptych.evaluate import evaluate
from diptych.train import train

from .conftest import photo_crops, tiny_config


def _label_dataset(root: Path, bad_label: bool = False) -> Path:
    """Label maps made from real photos (4 brightness classes, 255 = ignore) -> the photos; instance maps too."""
    for i, photo in enumerate(photo_crops("astronaut", 48, 4)):
        gray = photo.mean(axis=2)
        labels = np.digitize(gray, [64, 128, 192]).astype(np.uint8)
        labels[:4, :4] = 255
        if bad_label and i == 2:
            labels[10, 10] = 7
        write_image(root / "A" / f"p{i}.png", labels[:, :, None])
        write_image(root / "B" / f"p{i}.png", photo)
        instances = (np.arange(48)[:, None] // 16 * 3 + np.arange(48)[None, :] // 16).astype(np.uint8)
        write_image(root / "inst" / f"p{i}.png", instances[:, :, None])
    return root


def _cfg(root: Path, **kw: object) -> DataConfig:
    cfg = DataConfig(
        root=str(root), layout="folders", preprocess="resize_and_crop", load_size=61, crop_size=40, workers=0
    )
    cfg.label_nc, cfg.ignore_label = 4, 255
    for key, value in kw.items():
        setattr(cfg, key, value)
    return cfg


def test_label_maps_are_one_hot_after_nearest_resizing(tmp_path: Path) -> None:
    ds = open_paired_dataset(_cfg(_label_dataset(tmp_path / "ds")))
    assert ds.summary.in_channels == 4 and ds.summary.out_channels == 3
    for seed in range(3):
        a = ds[(1, seed)]["A"]
        assert a.shape == (4, 40, 40)
        assert set(torch.unique(a).tolist()) <= {0.0, 1.0}  # never blended by the resize
        sums = a.sum(0)
        assert set(torch.unique(sums).tolist()) <= {0.0, 1.0}  # one class per pixel, none where ignored


def test_instance_maps_add_a_boundary_channel(tmp_path: Path) -> None:
    root = _label_dataset(tmp_path / "ds")
    ds = open_paired_dataset(_cfg(root, instance_dir=str(root / "inst"), preprocess="none", flip=False))
    assert ds.summary.in_channels == 5
    edges = ds[0]["A"][4]
    assert edges[:, 15].sum() == 48 and edges[:, 16].sum() == 48  # a vertical instance border at x = 16
    assert edges[:, 8].nonzero().flatten().tolist() == [15, 16, 31, 32]  # only horizontal borders cross x = 8


def test_labels_outside_label_nc_name_the_file_before_training(tmp_path: Path) -> None:
    root = _label_dataset(tmp_path / "ds", bad_label=True)
    with pytest.raises(DataError, match=r"p2\.png: has label 7, outside 0\.\.3"):
        open_paired_dataset(_cfg(root))
    assert len(open_paired_dataset(_cfg(root, skip_bad=True))) == 3
    (root / "inst" / "p1.png").unlink()
    with pytest.raises(DataError, match=r"no instance map named p1"):
        open_paired_dataset(_cfg(root, instance_dir=str(root / "inst"), skip_bad=False))


def test_train_and_translate_from_label_maps(tmp_path: Path) -> None:
    root = _label_dataset(tmp_path / "ds")
    cfg = tiny_config(root, max_steps=2)
    cfg.data.layout, cfg.data.label_nc, cfg.data.ignore_label = "folders", 4, 255
    run = train(cfg, tmp_path / "run", progress=False).run_dir
    t = Translator.load(run, device="cpu")
    assert t.config.generator.in_channels == 4
    labels = np.random.default_rng(0).integers(0, 4, (37, 53), dtype=np.uint8)
    assert t(labels).shape == (37, 53, 3)
    (out,) = t.translate_files([root / "A" / "p0.png"], tmp_path / "out", progress=False)
    assert out.exists()
    with pytest.raises(DataError, match=r"outside 0\.\.3"):
        t(np.full((8, 8), 9, np.uint8))


def test_label_option_errors(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, max_steps=1)
    cfg.data.instance_dir = str(tmp_path)
    with pytest.raises(ConfigError, match="--instance-dir needs --label-nc"):
        cfg.validate()
    photos = tmp_path / "photos"
    for i, c in enumerate(photo_crops("coffee", 32, 2)):
        write_image(photos / "A" / f"x{i}.png", c)
        write_image(photos / "B" / f"x{i}.png", c)
    with pytest.raises(DataError, match="single-channel label maps"):
        open_paired_dataset(_cfg(photos, preprocess="none"))


def test_palette_label_pngs_are_read_as_indices(tmp_path: Path) -> None:
    """VOC-style label maps: palette PNGs whose indices are the classes, not their display colours."""
    from PIL import Image

    root = _label_dataset(tmp_path / "ds")
    for path in (root / "A").glob("*.png"):
        labels = np.asarray(Image.open(path))
        pal = Image.fromarray(labels, mode="P")
        pal.putpalette([200, 10, 10, 10, 200, 10, 10, 10, 200, 90, 90, 90] + [0, 0, 0] * 252)
        pal.save(path)
    ds = open_paired_dataset(_cfg(root, preprocess="none", flip=False))
    assert ds.summary.in_channels == 4  # one channel of indices, not RGB colours
    a = ds[0]["A"]
    assert set(torch.unique(a.sum(0)).tolist()) <= {0.0, 1.0}
    cfg = tiny_config(root, max_steps=1)
    cfg.data.layout, cfg.data.label_nc, cfg.data.ignore_label = "folders", 4, 255
    t = Translator.load(train(cfg, tmp_path / "run", progress=False).run_dir, device="cpu")
    assert t(Image.open(root / "A" / "p0.png")).size == (48, 48)


def test_translate_with_instance_maps(tmp_path: Path) -> None:
    root = _label_dataset(tmp_path / "ds")
    cfg = tiny_config(root, max_steps=1)
    cfg.data.layout, cfg.data.label_nc, cfg.data.ignore_label = "folders", 4, 255
    cfg.data.instance_dir = str(root / "inst")
    t = Translator.load(train(cfg, tmp_path / "run", progress=False).run_dir, device="cpu")
    assert t.config.generator.in_channels == 5
    labels = np.zeros((40, 40), np.uint8)
    with pytest.raises(DataError, match="trained with instance maps"):
        t(labels)
    assert t(labels, instances=np.zeros((40, 40), np.uint8)).shape == (40, 40, 3)
    (out,) = t.translate_files([root / "A" / "p0.png"], tmp_path / "out", instance_dir=root / "inst", progress=False)
    assert out.exists()
    with pytest.raises(ConfigError, match="--instance-dir"):
        t.translate_files([root / "A" / "p1.png"], tmp_path / "out2", progress=False)
    for skip_bad in (False, True):  # a missing folder is one error up front, not every input skipped
        with pytest.raises(DataError, match=r"^--instance-dir \S*nowhere: no such folder"):
            t.translate_files([root / "A"], tmp_path / "out3", instance_dir=tmp_path / "nowhere", skip_bad=skip_bad)
    assert not (tmp_path / "out3").exists()


def test_instance_dir_for_a_model_without_instance_maps_is_refused(tmp_path: Path) -> None:
    root = _label_dataset(tmp_path / "ds")
    cfg = tiny_config(root, max_steps=1)
    cfg.data.layout, cfg.data.label_nc, cfg.data.ignore_label = "folders", 4, 255
    run_dir = train(cfg, tmp_path / "run", progress=False).run_dir
    t = Translator.load(run_dir, device="cpu")
    for folder in (root / "inst", tmp_path / "nowhere"):
        with pytest.raises(ConfigError, match=r"^--instance-dir \S+: this model was trained without instance maps"):
            t.translate_files([root / "A"], tmp_path / "out", instance_dir=folder, progress=False)
        with pytest.raises(ConfigError, match="trained without instance maps"):
            evaluate(run_dir, root, tmp_path / "ev", phase=".", metrics=["psnr"], instance_dir=folder, progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "ev").exists()


def test_tiled_translation_with_instance_maps_sees_the_whole_image_boundaries(tmp_path: Path) -> None:
    root = _label_dataset(tmp_path / "ds")
    cfg = tiny_config(root, max_steps=1)
    cfg.data.layout, cfg.data.label_nc, cfg.data.ignore_label = "folders", 4, 255
    cfg.data.instance_dir = str(root / "inst")
    t = Translator.load(train(cfg, tmp_path / "run", progress=False).run_dir, device="cpu", precision="fp32")
    # Instance edges on the rows where tiles start (tile 16, overlap 4 on 48 rows: starts 0, 11, 21, 32), where a
    # band read without a margin row would miss them.
    ids = np.zeros((48, 48), np.uint8)
    ids[11:], ids[21:], ids[32:], ids[:, 27:] = 1, 2, 3, 9
    inst_dir = tmp_path / "inst"
    write_image(inst_dir / "p0.png", ids[:, :, None])
    t.instance_dir = inst_dir
    # A stand-in network that outputs the boundary channel it was given, so the output shows what the tiles saw.
    t.translate_tensor = lambda x: x[:, -1:].repeat(1, 3, 1, 1) * 2 - 1  # type: ignore[method-assign]
    settings = t.tile_settings(16, 4, None)
    out = np.asarray(Image.open(t.translate_file_tiled(root / "A" / "p0.png", tmp_path / "o.png", settings)))
    expected = np.where(instance_boundaries(ids).numpy()[0] > 0, 255, 0)
    assert (expected > 0).sum() > 100
    np.testing.assert_array_equal(out[:, :, 0], expected)
    cli = ["translate", str(tmp_path / "run"), str(root / "A"), "--out", str(tmp_path / "cli"), "--tile", "16"]
    assert main([*cli, "--overlap", "4", "--instance-dir", str(root / "inst")]) == 0
    assert len(list((tmp_path / "cli").glob("*.png"))) == 4
    # A label out of range in the last map stops the tiled run before any output is written.
    bad = np.asarray(Image.open(root / "A" / "p3.png")).copy()
    bad[40, 40] = 9
    Image.fromarray(bad).save(root / "A" / "p3.png")
    bad_cli = ["translate", str(tmp_path / "run"), str(root / "A"), "--out", str(tmp_path / "bad"), "--tile", "16"]
    assert main([*bad_cli, "--overlap", "4", "--instance-dir", str(root / "inst")]) == 1
    assert not (tmp_path / "bad").exists()


def test_validation_and_evaluation_with_instance_maps(tmp_path: Path) -> None:
    root = _label_dataset(tmp_path / "ds")
    cfg = tiny_config(root, max_steps=2)
    cfg.data.layout, cfg.data.label_nc, cfg.data.ignore_label = "folders", 4, 255
    cfg.data.instance_dir = str(root / "inst")
    cfg.validation.fraction, cfg.validation.every = 0.5, 2
    run = train(cfg, tmp_path / "run", progress=False).run_dir
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if '"val_' in x]
    assert records and math.isfinite(records[-1]["val_psnr"])
    with pytest.raises(ConfigError, match="--instance-dir"):
        evaluate(run, root, tmp_path / "ev0", phase=".", metrics=["psnr"], progress=False)
    ev = evaluate(run, root, tmp_path / "ev", phase=".", metrics=["psnr"], progress=False, instance_dir=root / "inst")
    assert ev.summary["count"] == 4 and math.isfinite(ev.summary["metrics"]["psnr"]["mean"])
    with pytest.raises(DataError, match="no instance map named"):
        empty = tmp_path / "no_maps"
        empty.mkdir()
        evaluate(run, root, tmp_path / "ev1", phase=".", metrics=["psnr"], progress=False, instance_dir=empty)
