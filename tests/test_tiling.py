"""Seamless tiled translation: tiling geometry, exactness for local networks, seams, streaming I/O, errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from diptych import Translator
from diptych.config import RunConfig
from diptych.data import windows as windows_module
from diptych.data.io import read_image, to_tensor, write_image
from diptych.errors import ConfigError, DataError
from diptych.metrics.seams import seam_score, seam_visibility
from diptych.nets import UNetGenerator, init_weights
from diptych.nets.geometry import Geometry
from diptych.nets.layers import pad_to_multiple
from diptych.tiling import (
    RowSource,
    TileSettings,
    alignment,
    auto_tile,
    blend_weights,
    padded_work,
    plan_axis,
    tile_spans,
    tiled_rows,
)

from .conftest import photo_crops


def _translator(generator: nn.Module, in_c: int = 3, out_c: int = 3) -> Translator:
    cfg = RunConfig()
    cfg.generator.in_channels, cfg.generator.out_channels = in_c, out_c
    cfg.data.sample_type = "uint8"
    return Translator(generator.eval(), cfg, torch.device("cpu"), mode="eval")


def _photo(h: int, w: int) -> np.ndarray:
    from diptych.data.samples import sample_photo

    return np.ascontiguousarray(sample_photo("retina")[200 : 200 + h, 300 : 300 + w])


@pytest.mark.parametrize(
    ("size", "tile", "overlap", "quantum", "stride"),
    [(100, 32, 8, 1, 1), (64, 64, 16, 1, 1), (65, 64, 16, 1, 1), (1000, 256, 64, 1, 256), (10, 64, 8, 1, 1),
     (203, 64, 16, 4, 4), (2048, 1024, 64, 1, 256), (1100, 1024, 900, 1, 256)],
)  # fmt: skip
def test_tiles_cover_the_image_and_blend_to_one(size: int, tile: int, overlap: int, quantum: int, stride: int) -> None:
    spans = tile_spans(size, tile, overlap, quantum, stride)
    covered = np.zeros(size)
    total = np.zeros(size)
    for i, (s, e) in enumerate(spans):
        assert 0 < e - s <= tile and s % quantum == 0
        covered[s:e] += 1
        total[s:e] += blend_weights(spans, i)
        if i:
            assert spans[i - 1][1] - s >= overlap and s > spans[i - 1][0]  # neighbours share at least `overlap`
    assert spans[0][0] == 0 and spans[-1][1] == size
    assert covered.min() >= 1 and covered.max() <= 2  # blending never mixes three tiles
    assert np.allclose(total, 1.0, atol=1e-6)  # a partition of unity: no brightness change under overlaps


@pytest.mark.parametrize("chunk_rows", [256, 7])
def test_tiled_equals_whole_for_a_local_network(chunk_rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1x1-conv network has no spatial context, so tiling must reproduce the whole-image output exactly
    (also when finished rows are handed on in small chunks: each row once, in order)."""
    import diptych.tiling

    monkeypatch.setattr(diptych.tiling, "OUTPUT_CHUNK_ROWS", chunk_rows)
    torch.manual_seed(0)
    t = _translator(nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 3, 1), nn.Tanh()))
    img = _photo(203, 317)
    whole = t.translate_tensor(to_tensor(img)[None])[0].permute(1, 2, 0).numpy()

    class ArraySource(RowSource):
        def __init__(self, arr: np.ndarray) -> None:
            self.array, (self.height, self.width, self.channels), self.streamed = arr, arr.shape, True
            self.path = Path("array")

    src = ArraySource(img)
    settings = TileSettings(64, 24, 3)
    bands = list(
        tiled_rows(src, t.translate_tensor, lambda y0, y1, x0, x1: to_tensor(src.rows(y0, y1, x0, x1)), 3, settings)
    )
    tiled = np.concatenate(bands)
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).max() < 1e-5


def _unet_translator() -> Translator:
    torch.manual_seed(0)
    g = UNetGenerator(3, 3, depth=5, ngf=8)
    init_weights(g)
    return _translator(g)


def test_seam_metric_low_for_blended_tiles_high_for_naive_tiles(tmp_path: Path) -> None:
    """On a real photo, blended tiles are as seamless as the whole-image output; naive tiles are not."""
    torch.manual_seed(0)
    g = UNetGenerator(3, 3, depth=5, ngf=8)
    init_weights(g, "kaiming")  # textured outputs that depend on context
    t = _translator(g)
    img = _photo(256, 256)
    write_image(tmp_path / "in.tif", img)
    tiled = read_image(t.translate_file_tiled(tmp_path / "in.tif", tmp_path / "out.tif", t.tile_settings(64, 16, None)))
    naive = np.zeros_like(img)
    for y in range(0, 256, 64):
        for x in range(0, 256, 64):
            naive[y : y + 64, x : x + 64] = t(img[y : y + 64, x : x + 64])
    lines = [64, 128, 192]
    blended, cut, whole = (seam_visibility(x, lines, lines) for x in (tiled, naive, t(img)))
    assert blended < 0.1 and abs(blended - whole) < 0.05, (blended, whole)
    assert cut > 0.3 and cut > 4 * blended, (cut, blended)
    # The ratio itself: about 1 for blended tiles.
    assert 0.9 < seam_score(tiled, lines, lines) < 1.1


def test_streamed_tiff_equals_in_memory_output_and_keeps_odd_sizes(tmp_path: Path) -> None:
    t = _unet_translator()
    img = _photo(333, 517)
    write_image(tmp_path / "in.tif", img)
    assert RowSource(tmp_path / "in.tif").streamed  # uncompressed TIFF is memory-mapped
    settings = t.tile_settings(96, 32, None)
    a = read_image(t.translate_file_tiled(tmp_path / "in.tif", tmp_path / "a.tif", settings))
    b = read_image(t.translate_file_tiled(tmp_path / "in.tif", tmp_path / "b.png", settings))
    assert a.shape == b.shape == (333, 517, 3)
    assert np.array_equal(a, b)
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert tif.pages[0].is_tiled  # written tile by tile


def test_sources_that_stream_and_those_that_decode(tmp_path: Path) -> None:
    img = photo_crops("coffee", 40, 1)[0]
    np.save(tmp_path / "x.npy", img)
    tifffile.imwrite(tmp_path / "z.tif", img, compression="zlib")
    write_image(tmp_path / "p.png", img)
    assert RowSource(tmp_path / "x.npy").streamed and RowSource(tmp_path / "z.tif").streamed
    assert not RowSource(tmp_path / "p.png").streamed
    for name in ("x.npy", "z.tif", "p.png"):
        assert np.array_equal(RowSource(tmp_path / name).rows(5, 9), img[5:9])


@pytest.mark.parametrize(
    ("options", "channels"),
    [
        ({"tile": (32, 32), "compression": "zlib"}, 3),  # tiled and compressed, like diptych's own outputs
        ({"compression": "lzw", "rowsperstrip": 8}, 3),  # strips
        ({"tile": (32, 32), "compression": "zstd", "photometric": "rgb", "planarconfig": "separate"}, 3),
        ({"tile": (48, 48), "compression": "zlib"}, 1),
        ({"compression": "lzw", "rowsperstrip": 5}, 1),
    ],
)
def test_compressed_and_tiled_tiffs_are_read_window_by_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict, channels: int
) -> None:
    img = photo_crops("astronaut", 120, 1)[0][:100, :, :channels]
    data = (
        np.moveaxis(img, -1, 0) if options.get("planarconfig") == "separate" else img[:, :, 0] if channels == 1 else img
    )
    tifffile.imwrite(tmp_path / "in.tif", data, **options)
    src = RowSource(tmp_path / "in.tif")
    assert src.streamed and (src.height, src.width, src.channels) == (100, 120, channels)
    windows = [(0, 40, 0, 50), (0, 40, 30, 120), (35, 77, 10, 90), (70, 100, 0, 120), (3, 4, 119, 120)]
    for y0, y1, x0, x1 in windows:
        assert np.array_equal(src.rows(y0, y1, x0, x1), img[y0:y1, x0:x1])
    monkeypatch.setattr(windows_module, "BAND_CACHE_BYTES", 0)  # bands too wide to keep: read window by window
    for y0, y1, x0, x1 in windows[::-1]:
        assert np.array_equal(src.rows(y0, y1, x0, x1), img[y0:y1, x0:x1])
    src.close()


def test_streamed_compressed_tiffs_keep_the_decompression_bomb_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tifffile.imwrite(tmp_path / "z.tif", np.zeros((100, 100), np.uint8), tile=(32, 32), compression="zlib")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 10000 pixels is more than twice the limit
    with pytest.raises(DataError, match=r"z.tif: has more than twice Pillow's decompression-bomb limit"):
        RowSource(tmp_path / "z.tif")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert RowSource(tmp_path / "z.tif").streamed


def test_a_tiled_output_streams_into_the_next_tiled_translation(tmp_path: Path) -> None:
    """diptych's own outputs are tiled, compressed-or-not TIFFs: a second pass reads them window by window and
    gives what the in-memory path gives."""
    t = _unet_translator()
    img = _photo(150, 230)
    write_image(tmp_path / "in.tif", img)
    settings = t.tile_settings(64, 16, None)
    first = t.translate_file_tiled(tmp_path / "in.tif", tmp_path / "first.tif", settings)
    assert RowSource(first).streamed
    second = read_image(t.translate_file_tiled(first, tmp_path / "second.tif", settings))
    in_memory = read_image(t.translate_file_tiled(first, tmp_path / "second.png", settings))
    assert second.shape == (150, 230, 3) and np.array_equal(second, in_memory)


def test_translate_files_with_tiles_via_the_api(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = _unet_translator()
    write_image(tmp_path / "in" / "big.png", _photo(150, 210))
    (out,) = t.translate_files([tmp_path / "in"], tmp_path / "out", tile=64, overlap=16, progress=False)
    assert read_image(out).shape == (150, 210, 3)
    (auto,) = t.translate_files([tmp_path / "in"], tmp_path / "auto", tile="auto", memory_budget=64 << 20)
    assert read_image(auto).shape == (150, 210, 3)
    chosen = t.tile_settings("auto", None, 64 << 20, 4)
    assert f"--tile auto: {chosen.tile} px tiles, overlap {chosen.overlap}" in capsys.readouterr().err  # says what


def test_tiled_folder_with_a_bad_input_writes_nothing_or_skips_it(tmp_path: Path) -> None:
    """Tiled translation checks every input before writing (as whole-image translation does); --skip-bad works."""
    t = _unet_translator()
    write_image(tmp_path / "in" / "a.png", _photo(70, 90))
    write_image(tmp_path / "in" / "b.png", _photo(70, 90))
    data = (tmp_path / "in" / "b.png").read_bytes()
    (tmp_path / "in" / "b.png").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(DataError, match=r"b\.png: corrupt or truncated"):
        t.translate_files([tmp_path / "in"], tmp_path / "out", tile=64, overlap=16, progress=False)
    assert not (tmp_path / "out").exists()
    (out,) = t.translate_files([tmp_path / "in"], tmp_path / "out", tile=64, overlap=16, skip_bad=True, progress=False)
    assert out.name == "a.png" and read_image(out).shape == (70, 90, 3)


def test_tile_errors() -> None:
    t = _unet_translator()  # depth 5: stride 32, inputs padded to a multiple of 32
    with pytest.raises(ConfigError, match=r"--tile 48 must be a multiple of the network.s stride 32; try --tile 64"):
        t.tile_settings(48, 8, None)
    with pytest.raises(ConfigError, match=r"--tile 16 must be a multiple"):
        t.tile_settings(16, 4, None)
    with pytest.raises(ConfigError, match=r"--overlap 64 must be >= 0 and smaller than --tile 64"):
        t.tile_settings(64, 64, None)
    assert t.tile_settings(32, None, None).overlap == 16  # default tile/8, at least 16 ...
    assert t.tile_settings(512, None, None).overlap == 64
    with pytest.raises(ConfigError, match="not a number"):
        t.tile_settings("big", 8, None)
    paper = Translator(t.generator, t.config, torch.device("cpu"), mode="paper")
    with pytest.raises(ConfigError, match="--test-mode eval"):
        paper.tile_settings(64, 16, None)


def test_auto_tile_fits_the_budget() -> None:
    assert auto_tile(1000.0, 1000 * 512 * 512, 32) == 512
    assert auto_tile(1000.0, 1000, 32) == 32  # never below one stride
    assert auto_tile(1.0, 1 << 40, 256) == 4096  # capped
    t = _unet_translator()
    bpp = t.bytes_per_pixel()
    assert bpp > 3 * 4  # at least the input and output pixels
    assert t.tile_settings("auto", None, int(bpp * 256 * 256)).tile == 256


def test_plan_axis_minimises_padded_work() -> None:
    assert plan_axis(1000, 1024, 64, 256) == [(0, 1000)]  # fits in one tile: no overlap at all
    # Full tiles from the left, then a short last tile instead of a whole one, extended back to the stride;
    # between plans of equal work, the one whose shortest tile is longest (no thin strip of small tiles):
    assert plan_axis(2048, 1024, 64, 256) == [(0, 768), (704, 1472), (1280, 2048)]
    assert [e - s for s, e in plan_axis(4096, 2048, 64, 256)] == [1536, 1536, 1280]  # not 2048 + 2048 + 256
    assert plan_axis(8192, 1024, 64, 256)[-2:] == [(6720, 7744), (7680, 8192)]
    # Padded work: 8 x 1024 + 512 (evenly spread 1024 px tiles would need 9 x 1024); 1.0625x the image per axis.
    assert padded_work(plan_axis(8192, 1024, 64, 256), 256) == 8704
    assert padded_work(plan_axis(4096, 1024, 64, 256), 256) == 4352
    assert plan_axis(1100, 768, 64, 256) == [(0, 768), (588, 1100)]  # 768 + 512 beats 3 x 512
    for size in (700, 1024, 3000, 8192):
        spans = plan_axis(size, 512, 64, 256)
        assert spans[0][0] == 0 and spans[-1][1] == size
        assert all(e - s <= 512 for s, e in spans)
        assert all(a[1] - b[0] >= 64 for a, b in itertools.pairwise(spans))


def test_plan_axis_keeps_the_overlap_everywhere() -> None:
    """Every pair of neighbouring tiles shares at least --overlap pixels, the short last tile included, also
    with overlaps of more than half a tile (where blending divides by the weight sum)."""
    rng = np.random.default_rng(0)
    cases = [(1000, 256, 192, 256), (1000, 512, 300, 256), (171, 64, 63, 64), (2048, 1024, 64, 256)]
    for _ in range(300):
        stride = int(rng.choice([1, 4, 16, 64]))
        tile = stride * int(rng.integers(1, 12))
        cases.append((int(rng.integers(1, 3000)), tile, int(rng.integers(0, tile)), stride))
    for size, tile, overlap, stride in cases:
        spans = plan_axis(size, tile, overlap, stride)
        assert spans[0][0] == 0 and spans[-1][1] == size, (size, tile, overlap, stride)
        assert all(e - s <= max(tile, size if len(spans) == 1 else 0) for s, e in spans)
        for a, b in itertools.pairwise(spans):
            assert a[1] - b[0] >= overlap and b[0] > a[0], (size, tile, overlap, stride, spans)


def test_released_rows_can_still_be_read(tmp_path: Path) -> None:
    img = _photo(300, 200)
    write_image(tmp_path / "in.tif", img)
    src = RowSource(tmp_path / "in.tif")
    assert np.array_equal(src.rows(100, 120), img[100:120])
    src.release(250)
    assert np.array_equal(src.rows(0, 300), img)


def test_hd_generator_tiles_small_images_and_too_small_tiles(tmp_path: Path) -> None:
    from diptych.nets.hd import HDGenerator

    torch.manual_seed(0)
    t = _translator(HDGenerator(3, 3, ngf=4, n_local=1, n_down_global=2, n_blocks_global=1, n_blocks_local=1))
    assert t(_photo(1, 300)).shape == (1, 300, 3)  # one pixel high: padded to two strides inside
    settings = t.tile_settings("auto", None, 8 << 20)
    assert settings.tile >= 8
    write_image(tmp_path / "in.tif", _photo(70, 90))
    out = read_image(t.translate_file_tiled(tmp_path / "in.tif", tmp_path / "out.tif", t.tile_settings(16, 4, None)))
    assert out.shape == (70, 90, 3)
    # ... and at most half a tile: small tiles (or what --tile auto picks on a small budget) need no --overlap.
    assert t.tile_settings(16, None, None).overlap == 8
    assert t.tile_settings("auto", None, 1).tile == 16 and t.tile_settings("auto", None, 1).overlap == 8
    with pytest.raises(ConfigError, match=r"--tile 12 must be a multiple of the network.s stride 8; try --tile 16"):
        t.tile_settings(12, 4, None)
    with pytest.raises(ConfigError, match=r"--tile 8 is smaller than the network's smallest input \(16 px\)"):
        t.tile_settings(8, 4, None)


def test_planar_and_page_stack_tiffs_stream_as_channels(tmp_path: Path) -> None:
    img = _photo(60, 80)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(img, -1, 0), photometric="rgb", planarconfig="separate")
    src = RowSource(tmp_path / "planar.tif")
    assert src.streamed and (src.height, src.width, src.channels) == (60, 80, 3)
    assert np.array_equal(src.rows(10, 20), img[10:20])
    t = _unet_translator()
    out = read_image(t.translate_file_tiled(tmp_path / "planar.tif", tmp_path / "o.tif", t.tile_settings(32, 8, None)))
    assert out.shape == (60, 80, 3)


def test_tiles_start_on_the_stride_so_their_centres_match_the_whole_image() -> None:
    """A shallow U-Net's output depends on where its stride-2 grid falls: tiles must start on multiples of the
    stride (and the last one reach the image edge), or even their centres differ from the whole-image output."""
    torch.manual_seed(0)
    g = UNetGenerator(3, 3, depth=2, ngf=8, norm="none")
    init_weights(g, "kaiming")
    t = _translator(g)
    img = _photo(203, 317)
    x = to_tensor(img)[None]
    whole = t.translate_tensor(x)[0]
    tile, overlap, stride = 64, 16, 4
    quantum = alignment(stride, overlap)
    assert quantum == stride

    def worst_centre_error(quantum: int) -> float:
        ys, xs = tile_spans(203, tile, overlap, quantum, stride), tile_spans(317, tile, overlap, quantum, stride)
        worst = 0.0
        for y0, y1 in ys:
            for x0, x1 in xs:
                out = t.translate_tensor(x[:, :, y0:y1, x0:x1])[0]
                m = 12  # beyond the receptive field of the tile's own borders
                diff = out[:, m:-m, m:-m] - whole[:, y0 + m : y1 - m, x0 + m : x1 - m]
                worst = max(worst, float(diff.abs().max()))
        return worst

    assert worst_centre_error(quantum) < 1e-5
    assert worst_centre_error(1) > 1e-2  # unaligned starts: the same network, visibly different centres
    for size in (203, 317, 1000):
        spans = plan_axis(size, tile, overlap, stride)
        assert all(s % quantum == 0 for s, _ in spans) and spans[-1][1] == size
        assert all(a[1] - b[0] >= overlap for a, b in itertools.pairwise(spans))


class _BlockMean(nn.Module):
    """A network whose output at a pixel is the mean of its 64 x 64 grid cell: receptive field one cell, stride
    64, inputs padded to 32 and the deep level padding itself to 64 (as a U-Net's deeper levels do)."""

    geometry = Geometry(stride=64, multiple=32, min_side=64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        padded, _ = pad_to_multiple(x, 64)
        pooled = F.avg_pool2d(padded, 64)
        return F.interpolate(pooled, scale_factor=64, mode="nearest")[..., :h, :w]


def test_aligned_tiles_keep_the_deep_grid_when_padding_to_less_than_the_stride(tmp_path: Path) -> None:
    """With an overlap of at least the stride, tiles start on the stride's grid; their lengths must stay on it
    too (not only on the 32 px padding multiple), or a tile's end cuts a grid cell and pads it."""
    t = _translator(_BlockMean())
    img = _photo(640, 700)
    write_image(tmp_path / "in.tif", img)
    settings = t.tile_settings(288, 96, None)
    assert all((e - s) % 64 == 0 or e == 700 for s, e in settings.plan(700))
    tiled = read_image(t.translate_file_tiled(tmp_path / "in.tif", tmp_path / "out.tif", settings)).astype(int)
    assert np.abs(tiled - t(img).astype(int)).max() <= 1  # 8-bit rounding only


@pytest.mark.parametrize("compression", ["deflate", "lzw", "zstd"])
def test_tiff_outputs_can_be_compressed_losslessly(tmp_path: Path, compression: str) -> None:
    """--tiff-compression: smaller files, the same pixels, tiled (streamed) and whole-image outputs alike."""
    t = _unet_translator()
    write_image(tmp_path / "in" / "a.png", _photo(120, 150))
    plain = t.translate_files([tmp_path / "in"], tmp_path / "plain", suffix=".tif", progress=False)[0]
    packed = t.translate_files(
        [tmp_path / "in"], tmp_path / "packed", suffix=".tif", progress=False, tiff_compression=compression
    )[0]
    tiled = t.translate_files(
        [tmp_path / "in"],
        tmp_path / "tiled",
        suffix=".tif",
        progress=False,
        tiff_compression=compression,
        tile=64,
        overlap=16,
    )[0]
    assert np.array_equal(read_image(packed), read_image(plain))
    assert packed.stat().st_size < plain.stat().st_size
    for path in (packed, tiled):
        with tifffile.TiffFile(path) as tif:
            assert tif.pages[0].compression != 1  # compressed
    with pytest.raises(ConfigError, match="--tiff-compression 'jpeg' is not one of"):
        t.translate_files([tmp_path / "in"], tmp_path / "x", suffix=".tif", progress=False, tiff_compression="jpeg")
    assert not (tmp_path / "x").exists()


def test_damaged_tiffs_give_one_line_errors_in_tiled_mode(tmp_path: Path) -> None:
    """A .tif that is no TIFF, and compressed data damaged deep inside: one-line errors naming the file, nothing
    written for it, and --skip-bad skips and lists it after translating the others."""
    t = _unet_translator()
    img = _photo(200, 96)
    write_image(tmp_path / "in" / "a.png", img)
    (tmp_path / "in" / "b.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(DataError, match=r"b.tif: "):
        t.translate_files([tmp_path / "in"], tmp_path / "out1", suffix=".tif", progress=False, tile=64, overlap=16)
    assert not (tmp_path / "out1").exists()
    (tmp_path / "in" / "b.tif").unlink()
    tifffile.imwrite(tmp_path / "in" / "c.tif", img, compression="lzw", rowsperstrip=8)
    data = bytearray((tmp_path / "in" / "c.tif").read_bytes())
    with tifffile.TiffFile(tmp_path / "in" / "c.tif") as tif:
        offset = tif.pages[0].dataoffsets[20]  # a strip well below the first rows, which the check reads
    data[offset : offset + 40] = bytes(range(200, 240))
    (tmp_path / "in" / "c.tif").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"c.tif: corrupt or truncated"):
        t.translate_files([tmp_path / "in"], tmp_path / "out2", suffix=".tif", progress=False, tile=64, overlap=16)
    assert not (tmp_path / "out2" / "c.tif").exists()
    written = t.translate_files(
        [tmp_path / "in"], tmp_path / "out3", suffix=".tif", progress=False, tile=64, overlap=16, skip_bad=True
    )
    assert [p.name for p in written] == ["a.tif"] and not (tmp_path / "out3" / "c.tif").exists()


def test_single_strip_tiffs_are_decoded_once_and_samples_are_normalised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    img = _photo(90, 70)
    tifffile.imwrite(tmp_path / "one.tif", img, compression="zlib", rowsperstrip=90)  # one strip
    src = RowSource(tmp_path / "one.tif")
    assert src.streamed and np.array_equal(src.rows(10, 20, 5, 9), img[10:20, 5:9])
    assert src._band is not None and src._band.shape[0] == 90  # the strip, decoded once, serves every band
    assert np.array_equal(src.rows(60, 90, 0, 70), img[60:90])
    monkeypatch.setattr(windows_module, "BAND_CACHE_BYTES", 1000)  # a strip larger than a band may be
    src = RowSource(tmp_path / "one.tif")
    assert not src.streamed and np.array_equal(src.rows(10, 20, 5, 9), img[10:20, 5:9])  # decoded whole
    monkeypatch.undo()
    half = (img[:, :, 0].astype(np.float16) / 255).astype(np.float16)
    tifffile.imwrite(tmp_path / "half.tif", half, compression="zlib", tile=(32, 32))
    block = RowSource(tmp_path / "half.tif").rows(0, 40, 0, 50)
    assert RowSource(tmp_path / "half.tif").streamed and block.dtype == np.float32  # as read_image gives it
    assert np.array_equal(block[:, :, 0], half[:40, :50].astype(np.float32))


def test_compressed_outputs_of_wide_integers_skip_the_predictor(tmp_path: Path) -> None:
    arr = np.arange(40 * 30 * 2, dtype=np.int64).reshape(40, 30, 2) * 12345
    path = write_image(tmp_path / "wide.tif", arr, tiff_compression="deflate")
    assert np.array_equal(read_image(path), arr)


def test_tiled_png_inputs_are_decoded_once_when_translated_right_after_their_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check pass runs last-to-first so the first image to translate keeps what its check decoded; the
    others are decoded again (one decoded image at a time either way)."""
    t = _unet_translator()
    for name in ("a", "b"):
        write_image(tmp_path / "in" / f"{name}.png", _photo(70, 90))
    decoded: list[str] = []
    real = windows_module.read_image

    def counting(path: Path, *args: object) -> np.ndarray:
        decoded.append(Path(path).name)
        return real(path, *args)

    monkeypatch.setattr(windows_module, "read_image", counting)
    written = t.translate_files([tmp_path / "in"], tmp_path / "out", suffix=".png", progress=False, tile=64, overlap=16)
    assert [p.name for p in written] == ["a.png", "b.png"]
    assert decoded == ["b.png", "a.png", "b.png"]  # checks (b, then a), then a kept, b decoded again
    again = t.translate_file_tiled(tmp_path / "in" / "a.png", tmp_path / "again.png", t.tile_settings(64, 16, None))
    assert np.array_equal(read_image(written[0]), read_image(again))  # the kept decode gives the same output
