"""Translation: any size, batching, test-time modes, files, precision and the Python API."""

from __future__ import annotations

import copy
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from diptych import Translator
from diptych.checkpoint import load_weights, resolve_checkpoint, weights_file
from diptych.config import RunConfig
from diptych.data.io import read_image, write_image
from diptych.errors import ConfigError
from diptych.nets import UNetGenerator, create_generator, init_weights
from diptych.precision import full_precision
from diptych.train import train

from .conftest import photo_crops, tiny_config, write_folders


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("translate")
    crops = photo_crops("astronaut", 64, 4)
    data = write_folders(root / "data", [(c, 255 - c) for c in crops])
    cfg = tiny_config(data, max_steps=2)
    cfg.generator.depth = 6  # has dropout, so the test-time modes differ
    return train(cfg, root / "run", progress=False).run_dir


@pytest.mark.parametrize("size", [(1, 1), (17, 300), (64, 64), (129, 65), (333, 250)])
def test_any_size_keeps_shape(run_dir: Path, size: tuple[int, int]) -> None:
    t = Translator.load(run_dir, device="cpu")
    arr = np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    out = t(arr)
    assert out.shape == (*size, 3) and out.dtype == np.uint8


def test_eval_mode_is_deterministic_paper_mode_is_seeded(run_dir: Path) -> None:
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    ev = Translator.load(run_dir, device="cpu")
    assert ev.mode == "eval"
    assert torch.equal(ev.translate_tensor(x), ev.translate_tensor(x))
    p1 = Translator.load(run_dir, device="cpu", mode="paper", seed=3)
    p2 = Translator.load(run_dir, device="cpu", mode="paper", seed=3)
    p3 = Translator.load(run_dir, device="cpu", mode="paper", seed=4)
    a, b, c = p1.translate_tensor(x), p2.translate_tensor(x), p3.translate_tensor(x)
    assert torch.equal(a, b)  # same seed, same noise
    assert not torch.equal(a, c)  # dropout is on
    assert not torch.equal(a, ev.translate_tensor(x))


def test_batched_equals_one_by_one(run_dir: Path) -> None:
    t = Translator.load(run_dir, device="cpu")
    x = torch.rand(3, 3, 40, 72) * 2 - 1
    batched = t.translate_tensor(x)
    single = torch.cat([t.translate_tensor(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_pil_in_pil_out_and_channel_conversion(run_dir: Path) -> None:
    t = Translator.load(run_dir, device="cpu")
    img = Image.fromarray(photo_crops("coffee", 50, 1)[0])
    out = t(img)
    assert isinstance(out, Image.Image) and out.size == (50, 50) and out.mode == "RGB"
    gray = img.convert("L")  # converted to the 3 channels the model expects
    assert t(gray).size == (50, 50)
    with pytest.raises(Exception, match="channel"):
        t(np.zeros((8, 8, 5), dtype=np.uint16))


def test_translate_files_keeps_structure_and_sizes(run_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    sizes = [(30, 40), (30, 40), (61, 33), (30, 40)]
    for i, (h, w) in enumerate(sizes):
        write_image(src / ("sub" if i == 3 else "") / f"im{i}.jpg", np.full((h, w, 3), 40 * i, np.uint8))
    t = Translator.load(run_dir, device="cpu")
    written = t.translate_files([src], tmp_path / "out", batch_size=2, progress=False)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "im0.png",
        "im1.png",
        "im2.png",
        "sub/im3.png",
    ]
    for i, (h, w) in enumerate(sizes):
        out = read_image(tmp_path / "out" / ("sub" if i == 3 else "") / f"im{i}.png")
        assert out.shape == (h, w, 3)
    # Same result as translating one at a time.
    one = t(read_image(src / "im2.jpg"))
    assert np.array_equal(one, read_image(tmp_path / "out" / "im2.png"))


def test_aligned_inputs_use_the_source_half(run_dir: Path, tmp_path: Path) -> None:
    a, b = photo_crops("rocket", 48, 2)
    write_image(tmp_path / "pair.png", np.concatenate([a, b], axis=1))
    write_image(tmp_path / "a.png", a)
    t = Translator.load(run_dir, device="cpu")
    (out,) = t.translate_files([tmp_path / "pair.png"], tmp_path / "out", aligned=True, progress=False)
    assert np.array_equal(read_image(out), t(a))


def test_sixteen_bit_data_gives_sixteen_bit_output(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(4):
        a = rng.integers(0, 65536, (32, 32, 1), dtype=np.uint16)
        pairs.append((a, (65535 - a).astype(np.uint16)))
    data = write_folders(tmp_path / "data", pairs)
    result = train(tiny_config(data, max_steps=1), tmp_path / "run", progress=False)
    t = Translator.load(result.run_dir, device="cpu")
    assert t.config.generator.in_channels == 1 and t.config.data.sample_type == "uint16"
    (out,) = t.translate_files([data / "A" / "img_000.png"], tmp_path / "out", progress=False)
    arr = read_image(out)
    assert arr.dtype == np.uint16 and arr.shape == (32, 32, 1)
    assert len(np.unique(arr)) > 256  # more levels than 8 bits could hold
    with pytest.raises(ConfigError, match="--format jpg"):
        t.translate_files([data / "A" / "img_000.png"], tmp_path / "jpg", suffix=".jpg", progress=False)
    assert not (tmp_path / "jpg").exists()


def test_loading_from_weights_file_alone(run_dir: Path) -> None:
    from diptych.checkpoint import resolve_checkpoint

    weights = resolve_checkpoint(run_dir) / "generator.safetensors"
    t1, t2 = Translator.load(weights, device="cpu"), Translator.load(run_dir, device="cpu")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(t1.translate_tensor(x), t2.translate_tensor(x))


def test_paper_mode_leaves_running_statistics_alone(run_dir: Path) -> None:
    t = Translator.load(run_dir, device="cpu", mode="paper")
    bn = t.generator.down[1].norm
    before = bn.running_mean.clone()
    t.translate_tensor(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert torch.equal(bn.running_mean, before)


def test_paper_mode_batches_images_without_mixing_their_statistics() -> None:
    """Per-image batch-norm statistics (the reference's test-time behaviour at batch 1), now at any batch size."""
    torch.manual_seed(0)
    g = UNetGenerator(3, 3, depth=5, ngf=8, dropout=0.0)
    init_weights(g)
    config = RunConfig()
    config.generator.in_channels = config.generator.out_channels = 3
    reference = copy.deepcopy(g).train()  # training-mode batch norm, one image at a time
    t = Translator(g, config, torch.device("cpu"), mode="paper", precision="fp32")
    x = torch.rand(3, 3, 64, 96) * 2 - 1
    batched = t.translate_tensor(x)
    with torch.no_grad():
        one_by_one = torch.cat([reference(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, one_by_one, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1])  # different images, different outputs


def test_sixteen_bit_gray_pil_round_trip(tmp_path: Path) -> None:
    pairs = [(np.full((32, 32, 1), 1000 * i, np.uint16), np.full((32, 32, 1), 60000, np.uint16)) for i in range(3)]
    data = write_folders(tmp_path / "data", pairs)
    t = Translator.load(train(tiny_config(data, max_steps=1), tmp_path / "run", progress=False).run_dir, device="cpu")
    out = t(Image.fromarray(np.full((20, 24), 500, np.int32)).convert("I;16"))
    assert isinstance(out, Image.Image) and out.mode == "I;16" and out.size == (24, 20)


def test_translate_files_refuses_to_overwrite_and_checks_inputs_first(run_dir: Path, tmp_path: Path) -> None:
    from diptych.errors import DataError

    src = tmp_path / "in"
    for i in range(4):
        write_image(src / f"im{i}.png", np.full((24, 24, 3), 50 * i, np.uint8))
    t = Translator.load(run_dir, device="cpu")
    out = tmp_path / "out"
    out.mkdir()
    (out / "im1.png").write_bytes(b"the user's own file")
    with pytest.raises(DataError, match=r"im1\.png: already exists; pass --overwrite"):
        t.translate_files([src], out, progress=False)
    assert (out / "im1.png").read_bytes() == b"the user's own file"
    assert sorted(p.name for p in out.iterdir()) == ["im1.png"]
    assert len(t.translate_files([src], out, overwrite=True, progress=False)) == 4

    # A truncated input among good ones: nothing is written at all.
    data = (src / "im2.png").read_bytes()
    (src / "im2.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"im2\.png"):
        t.translate_files([src], tmp_path / "out2", progress=False)
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").iterdir())
    written = t.translate_files([src], tmp_path / "out3", skip_bad=True, progress=False)
    assert sorted(p.name for p in written) == ["im0.png", "im1.png", "im3.png"]
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        t.translate_files([src / "im0.png"], tmp_path / "afile", progress=False)


def test_sixteen_bit_pil_input_keeps_its_precision(run_dir: Path) -> None:
    """A 16-bit PIL image is not squeezed to 8 bits on its way in: same result as the array."""
    t = Translator.load(run_dir, device="cpu")
    arr = np.random.default_rng(0).integers(0, 65536, (30, 40), dtype=np.uint16)
    img = Image.fromarray(arr.astype(np.int32)).convert("I;16")
    assert np.array_equal(np.asarray(t(img)), t(arr))
    with pytest.raises(Exception, match="int64"):
        t(arr.astype(np.int64))


def test_bf16_inference_is_close_to_fp32(run_dir: Path) -> None:
    img = photo_crops("astronaut", 64, 1)[0]
    fp32 = Translator.load(run_dir, device="cpu")(img).astype(float)
    bf16 = Translator.load(run_dir, device="cpu", precision="bf16")(img).astype(float)
    assert np.abs(fp32 - bf16).mean() < 2.0  # within a couple of 8-bit levels on average
    with pytest.raises(ConfigError, match="--precision"):
        Translator.load(run_dir, device="cpu", precision="fp8")


def test_translator_load_rewrites_only_its_own_eval_generator(run_dir: Path) -> None:
    eval_t = Translator.load(run_dir, device="cpu", precision="fp32")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in eval_t.generator.modules())
    paper = Translator.load(run_dir, device="cpu", mode="paper", precision="fp32")
    assert any(isinstance(m, nn.BatchNorm2d) for m in paper.generator.modules())  # per-image statistics need them
    # Same pixels as the generator as trained, in eval mode.
    generator = create_generator(eval_t.config.generator)
    load_weights(generator, resolve_checkpoint(run_dir) / weights_file("generator"))
    plain = Translator(generator.eval(), eval_t.config, torch.device("cpu"), mode="eval", precision="fp32")
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.generator.modules())  # handed in: left alone
    img = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    diff = np.abs(eval_t(img).astype(int) - plain(img).astype(int))
    assert diff.max() <= 1
    # Paper mode keeps its norms but stores conv weights in bf16, which autocast would cast them to anyway.
    paper_bf16 = Translator.load(run_dir, device="cpu", mode="paper", precision="bf16", seed=3)
    convs = [m for m in paper_bf16.generator.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert convs and all(m.weight.dtype == torch.bfloat16 for m in convs)
    fresh = create_generator(eval_t.config.generator)
    load_weights(fresh, resolve_checkpoint(run_dir) / weights_file("generator"))
    handed = Translator(fresh, eval_t.config, torch.device("cpu"), mode="paper", seed=3, precision="bf16")
    assert np.array_equal(paper_bf16(img), handed(img))
    # A training step's fp32 fallback does not reach a Translator (its bf16 weights would meet fp32 inputs).
    with full_precision():
        assert np.array_equal(paper_bf16(img), handed(img))


def test_folder_inputs_are_decoded_once(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check pass decodes every input; the translation pass reuses those pixels instead of decoding again,
    and the outputs are the same as when the cache is too small to keep any."""
    import diptych.translate as translate_module

    for i, crop in enumerate(photo_crops("coffee", 48, 5)):
        write_image(tmp_path / "in" / f"{i}.png", crop)
    reads: list[Path] = []
    real_read = translate_module.read_image

    def counting_read(path: Path, *args: object, **kwargs: object) -> np.ndarray:
        reads.append(Path(path))
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(translate_module, "read_image", counting_read)
    t = Translator.load(run_dir, device="cpu")
    cached = t.translate_files([tmp_path / "in"], tmp_path / "a", progress=False)
    assert len(reads) == 5 and len(set(reads)) == 5
    monkeypatch.setattr(translate_module, "DECODED_CACHE_BYTES", 0)
    reads.clear()
    again = t.translate_files([tmp_path / "in"], tmp_path / "b", progress=False)
    assert len(reads) == 10  # nothing kept: decoded for the check, then again for the translation
    for x, y in zip(sorted(cached), sorted(again), strict=True):
        assert np.array_equal(read_image(x), read_image(y))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"batch_size": 0}, "batch_size 0 must be a whole number >= 1"),
        ({"batch_size": 2.5}, "batch_size 2.5 must be"),
        ({"tile": "auto", "memory_budget": -1}, "memory_budget -1 must be a number of bytes > 0"),
        ({"tile": 40}, "--tile 40 must be a multiple"),
        ({"tile": 64, "overlap": 64}, "--overlap 64 must be >= 0 and smaller than --tile 64"),
    ],
)
def test_translate_files_checks_its_options_like_the_cli(
    run_dir: Path, tmp_path: Path, options: dict[str, object], message: str
) -> None:
    """The Python API refuses out-of-range options with the CLI's one-line errors, before anything is written."""
    src = write_image(tmp_path / "in" / "photo.png", photo_crops("coffee", 64, 1)[0])
    with pytest.raises(ConfigError, match=re.escape(message)):
        Translator.load(run_dir).translate_files([src], tmp_path / "out", progress=False, **options)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_pil_input_is_turned_upright_by_its_exif_orientation(run_dir: Path) -> None:
    """A PIL image carrying EXIF orientation 6 (a phone photo held upright) is translated as viewers show it."""
    stored = photo_crops("coffee", 64, 1)[0][:, :48]
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    rotated = Image.open(_png_with_exif(image, exif))
    translator = Translator.load(run_dir)
    out = np.asarray(translator(rotated))
    assert out.shape[:2] == (48, 64)  # upright: width and height swapped
    np.testing.assert_array_equal(out, translator(np.rot90(stored, -1).copy()))


def _png_with_exif(image: Image.Image, exif: Image.Exif) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif)
    buffer.seek(0)
    return buffer
