"""Upscaling models through the translator, tiles, the CLI and export: outputs exactly `scale` x the input (odd
sizes, batched folders), tiles cut in input pixels and blended in output pixels equal to whole-image outputs,
16-bit and multi-band TIFFs, --tile auto's measured memory, ONNX parity, and the inputs an upscaler refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F

from diptych import Translator
from diptych.checkpoint import write_checkpoint_folder
from diptych.config import RunConfig
from diptych.data.io import read_image, to_tensor, write_image
from diptych.data.samples import sample_photo
from diptych.errors import ConfigError
from diptych.export import export_generator
from diptych.memory import bytes_per_input_pixel, measure_allocations
from diptych.nets import init_weights
from diptych.tiling import RowSource, TileSettings, default_overlap, tiled_rows

from .test_cli import assert_one_error_line, run_cli

TINY: dict[str, dict[str, Any]] = {
    "compact": {"n_convs": 2},
    "msrresnet": {"n_blocks": 2},
    "rrdbnet": {"n_blocks": 1, "growth": 4},
}


def sr_checkpoint(
    folder: Path, arch: str, scale: int, channels: int = 3, sample_type: str = "uint8", **fields: Any
) -> Path:
    """A checkpoint folder of a tiny upscaler with weights large enough to change its input visibly."""
    config = RunConfig()
    g = config.use_generator(arch)
    g.in_channels = g.out_channels = channels
    g.scale, g.ngf = scale, 8
    for name, value in {**TINY[arch], **fields}.items():
        setattr(g, name, value)
    config.data.sample_type = config.data.input_sample_type = sample_type
    torch.manual_seed(0)
    net = g.build()
    init_weights(net, "xavier", 0.5)
    return write_checkpoint_folder(folder, config.validate(stored=True), {"generator": net})


def photo(h: int, w: int, name: str = "astronaut") -> np.ndarray:
    """An 8-bit crop of a real photo."""
    return np.ascontiguousarray(sample_photo(name)[60 : 60 + h, 150 : 150 + w])


@pytest.mark.parametrize(("arch", "scale"), [("compact", 2), ("msrresnet", 4), ("rrdbnet", 2), ("rrdbnet", 4)])
def test_whole_images_come_out_exactly_scale_times_larger(arch: str, scale: int, tmp_path: Path) -> None:
    t = Translator.load(sr_checkpoint(tmp_path / "m", arch, scale), device="cpu", precision="fp32")
    assert t.scale == scale
    for h, w in [(7, 11), (1, 1), (13, 4)]:
        out = t(photo(h, w))
        assert out.shape == (h * scale, w * scale, 3) and out.dtype == np.uint8


def test_batched_folders_through_the_cli_keep_each_images_own_upscaled_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = sr_checkpoint(tmp_path / "m", "compact", 4)
    sizes = {"a.png": (13, 9), "b.png": (13, 9), "c.png": (8, 15)}  # a and b go through the network together
    for name, (h, w) in sizes.items():
        write_image(tmp_path / "in" / name, photo(h, w, "coffee" if name == "b.png" else "astronaut"))
    argv = ["translate", model, tmp_path / "in", "--out", tmp_path / "out", "--batch-size", "2", "--precision", "fp32"]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    t = Translator.load(model, device="cpu", precision="fp32")
    for name, (h, w) in sizes.items():
        out = read_image(tmp_path / "out" / name)
        assert out.shape == (4 * h, 4 * w, 3)
        assert np.array_equal(out, t(read_image(tmp_path / "in" / name)))  # batching changes nothing


class ArraySource(RowSource):
    """An in-memory image read by rows, as a streamed file is."""

    def __init__(self, arr: np.ndarray) -> None:
        self.array, (self.height, self.width, self.channels), self.streamed = arr, arr.shape, True
        self.path = Path("array")


def tiled_and_whole(t: Translator, img: np.ndarray, settings: TileSettings) -> tuple[np.ndarray, np.ndarray]:
    """The float [-1, 1] outputs of a tiled and a whole-image translation."""
    src = ArraySource(img)
    bands = tiled_rows(src, t.translate_tensor, lambda *box: to_tensor(src.rows(*box)), 3, settings)
    whole = t.translate_tensor(to_tensor(img)[None])[0].permute(1, 2, 0).numpy()
    return np.concatenate(list(bands)), whole


def test_tiles_equal_the_whole_image_when_the_receptive_field_fits_in_the_overlap(tmp_path: Path) -> None:
    """Four 3x3 convolutions see 4 input pixels each way; the blend leaves out a quarter of the 16 px overlap (4 px)
    next to every cut, so each output pixel comes from tiles that saw all its context: the whole image's values."""
    t = Translator.load(sr_checkpoint(tmp_path / "m", "compact", 4), device="cpu", precision="fp32")
    img = photo(70, 93)
    tiled, whole = tiled_and_whole(t, img, TileSettings(32, 16, 2, scale=4))
    assert tiled.shape == whole.shape == (280, 372, 3)
    assert np.abs(tiled - whole).max() < 1e-5  # float rounding only
    assert np.abs(whole).max() > 0.5  # (a real signal)
    # A cut with less context than the network's reach shows (an overlap of 8: 2 px of margin).
    narrow, _ = tiled_and_whole(t, img, TileSettings(32, 8, 2, scale=4))
    assert np.abs(narrow - whole).max() > 1e-3


def test_tiles_of_a_deep_upscaler_on_a_padding_multiple_stay_within_tolerance(tmp_path: Path) -> None:
    """RRDBNet x2 folds 2x2 pixels into channels: tiles start and end on even pixels; its reach exceeds the margin,
    so tiled and whole outputs differ slightly, far below an 8-bit level."""
    t = Translator.load(sr_checkpoint(tmp_path / "m", "rrdbnet", 2), device="cpu", precision="fp32")
    settings = t.tile_settings(48, 24, None)
    assert (settings.scale, settings.multiple) == (2, 2)
    img = photo(75, 83)
    tiled, whole = tiled_and_whole(t, img, settings)
    assert tiled.shape == whole.shape == (150, 166, 3)
    assert np.abs(tiled - whole).max() < 2 / 255


def test_16_bit_multiband_tiffs_upscale_in_tiles_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = sr_checkpoint(tmp_path / "m", "compact", 2, channels=4, sample_type="uint16")
    rgb = photo(75, 61).astype(np.uint16) * 257
    bands = np.concatenate([rgb, (65535 - rgb[:, :, :1])], axis=2)  # four bands, 16-bit
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "scene.tif", bands)
    argv = ["translate", model, tmp_path / "in" / "scene.tif", "--out", tmp_path / "out", "--tile", "32"]
    code, _, err = run_cli([*argv, "--overlap", "16", "--format", "tif", "--precision", "fp32"], capsys)
    assert code == 0, err
    tiled = tifffile.imread(tmp_path / "out" / "scene.tif")
    assert tiled.dtype == np.uint16 and tiled.shape == (150, 122, 4)
    whole = Translator.load(model, device="cpu", precision="fp32")(bands)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1  # (16-bit rounding of float differences)
    assert len(np.unique(tiled[:, :, 3])) > 1000  # 16-bit precision kept


def test_tile_auto_counts_the_upscaled_output_and_fits_the_budget(tmp_path: Path) -> None:
    x2 = Translator.load(sr_checkpoint(tmp_path / "a", "compact", 2), device="cpu", precision="fp32")
    x4 = Translator.load(sr_checkpoint(tmp_path / "b", "compact", 4), device="cpu", precision="fp32")
    # At least the float output (scale^2 pixels of 3 channels) and the body's features (8 channels).
    assert x4.bytes_per_pixel() >= 16 * 3 * 4 + 8 * 4
    assert x4.bytes_per_pixel() > x2.bytes_per_pixel() + 8 * 3 * 4  # (12 more output pixels of 3 floats)
    budget = 1 << 22
    settings = x4.tile_settings("auto", None, budget)
    assert settings.tile**2 * x4.bytes_per_pixel() <= budget and settings.tile >= 32


@pytest.mark.parametrize(("arch", "scale"), [("compact", 3), ("msrresnet", 2), ("rrdbnet", 2)])
def test_onnx_exports_of_upscalers_match_pytorch_at_odd_sizes(arch: str, scale: int, tmp_path: Path) -> None:
    model = sr_checkpoint(tmp_path / "m", arch, scale)
    result = export_generator(model, tmp_path / "m.onnx", "onnx", check_sizes=[(13, 21), (16, 16)])
    assert result.max_abs_diff <= 1e-4 and [c.height for c in result.checks] == [13, 16]
    exported = Translator.load(tmp_path / "m.onnx", device="cpu")
    assert exported.scale == scale and exported(photo(9, 14)).shape == (9 * scale, 14 * scale, 3)
    # the same geometry, context included (rrdbnet x2: 38 px), so tiles overlap alike by default
    assert exported.generator.geometry == Translator.load(model, device="cpu").generator.geometry


def test_default_overlap_covers_twice_the_networks_context(tmp_path: Path) -> None:
    """An eighth of the tile, at least 16 px, and twice the context where a quarter of the tile allows it."""
    cases = {(32, 0): 16, (512, 0): 64, (256, 32): 64, (128, 32): 32, (64, 32): 16, (256, 18): 36, (96, 32): 24}
    assert {case: default_overlap(*case) for case in cases} == cases
    t = Translator.load(sr_checkpoint(tmp_path / "m", "compact", 4, n_convs=20), device="cpu", precision="fp32")
    assert t.generator.geometry.context == 22
    assert [t.tile_settings(tile, None, None).overlap for tile in (64, 128, 256, 512)] == [16, 32, 44, 64]
    assert t.tile_settings(128, 8, None).overlap == 8  # (--overlap wins)


def test_upscalers_refuse_nifti_volumes_and_label_maps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nib = pytest.importorskip("nibabel", reason="nibabel (the nifti extra) is not installed")
    model = sr_checkpoint(tmp_path / "m", "compact", 2)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.uint8), np.eye(4)), tmp_path / "vol.nii.gz")
    code, _, err = run_cli(["translate", model, tmp_path / "vol.nii.gz", "--out", tmp_path / "out"], capsys)
    line = assert_one_error_line(err, "vol.nii.gz")
    assert code == 1 and "this model upscales x2, and a NIfTI volume is written on its input's grid" in line
    assert not (tmp_path / "out").exists()
    t = Translator.load(model, device="cpu")
    t.config.data.label_nc = 5
    with pytest.raises(ConfigError, match=r"this model upscales label maps x2 \(--label-nc 5\); diptych translates"):
        Translator(t.generator, t.config, torch.device("cpu"))


def test_allocations_count_functional_calls_while_their_results_are_alive() -> None:
    """What --tile auto (peak) and the training memory estimate (total) read: every operation's new tensor."""
    x = torch.zeros(1, 3, 10, 10)
    size = 3 * 40 * 40 * 4  # one x4-upscaled float image

    def forward() -> torch.Tensor:
        a = F.interpolate(x, scale_factor=4)  # (a function, not a layer: hooks on modules would miss it)
        b = a * 2
        del a
        c = b + 1  # a is gone: b and c are alive
        return c.sum()

    counts = measure_allocations(forward)
    assert counts.total == 3 * size + 4  # (the sum is a 4-byte scalar)
    assert counts.peak == 2 * size + 4
    per_pixel = bytes_per_input_pixel(lambda s: F.interpolate(torch.zeros(1, 3, s, s), scale_factor=4), 8, 12)
    assert per_pixel.peak == per_pixel.total == (1 + 16) * 3 * 4  # the input and its x4 output
