"""Export to ONNX / TorchScript: dynamic shapes, parity with PyTorch, translation through the exports, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

from diptych import Translator
from diptych.checkpoint import resolve_checkpoint
from diptych.cli import main
from diptych.data.io import read_image, write_image
from diptych.data.samples import sample_photo
from diptych.errors import CheckpointError, ConfigError, ExportError
from diptych.export import export_generator
from diptych.exported import ExportedGenerator, _parse_metadata
from diptych.nets import HDConfig, ResnetConfig
from diptych.nets.geometry import Geometry
from diptych.train import train

from .conftest import photo_crops, tiny_config, write_aligned
from .test_pix2pixhd import hd_config

SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
# torch 2.13 deprecates TorchScript (still fully working); the tests build and read TorchScript files on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A U-Net (batch norm, stride 16) and a pix2pixHD generator (instance norm, stride 8), each trained 3 steps."""
    root = tmp_path_factory.mktemp("export")
    data = write_aligned(root / "data", [(c, 255 - c) for c in photo_crops("astronaut", 48, 4)])
    # Unit-gain initialisation: outputs far from zero, so the comparisons below see a real signal.
    unet = tiny_config(data, max_steps=3, init="xavier", init_gain=1.0)
    hd = hd_config(data, max_steps=3, init="xavier", init_gain=1.0)
    out = {}
    for name, config in (("unet", unet), ("hd", hd)):
        result = train(config, root / name, progress=False)
        out[name] = result.run_dir
    return out


@pytest.fixture(scope="module")
def exports(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Every (architecture, format) export, parity-checked at a square multiple and a non-square non-multiple size."""
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for arch, run in checkpoints.items():
        for fmt in ("onnx", "torchscript"):
            result = export_generator(run, root / f"{arch}{SUFFIX[fmt]}", fmt, check_sizes=[(32, 32), (27, 45)])
            assert [(c.height, c.width, c.batch) for c in result.checks] == [(32, 32, 2), (27, 45, 2)]
            assert result.max_abs_diff <= 1e-4
            out[arch, fmt] = result.path
    return out


@pytest.mark.parametrize("arch", ["unet", "hd"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_runs_at_other_sizes_and_batches_like_pytorch(
    exports: dict[tuple[str, str], Path], checkpoints: dict[str, Path], arch: str, fmt: str
) -> None:
    torch_t = Translator.load(checkpoints[arch], device="cpu", precision="fp32")
    exported_t = Translator.load(exports[arch, fmt], device="cpu")
    assert isinstance(exported_t.generator, ExportedGenerator)
    assert exported_t.generator.backend == ("onnxruntime" if fmt == "onnx" else "torch")
    assert exported_t.config.generator == torch_t.config.generator
    assert exported_t.config.data.sample_type == "uint8"
    # Exported at one size (2 strides square, batch 1); run at others: larger, non-square, not a multiple, batch 3.
    photo = torch.from_numpy(sample_photo("chelsea")[:70, :131].copy()).permute(2, 0, 1).float() / 127.5 - 1
    for h, w in ((70, 131), (64, 48), (17, 40)):
        x = torch.stack([photo[:, :h, :w], -photo[:, :h, :w], photo[:, :h, :w].flip(-1)])
        expected = torch_t.translate_tensor(x)
        got = exported_t.translate_tensor(x)
        assert got.shape == (3, 3, h, w)
        assert (got - expected).abs().max().item() <= 1e-4
        assert expected.std() > 0.03  # a real signal is compared, not constants


def test_export_metadata_holds_the_configuration(exports: dict[tuple[str, str], Path]) -> None:
    model = onnx.load(str(exports["hd", "onnx"]))
    meta = json.loads({p.key: p.value for p in model.metadata_props}["diptych.json"])
    assert meta["format"] == "diptych-export" and meta["stride"] == 8 and meta["min_side"] == 16
    assert meta["config"]["generator"]["arch"] == "hd" and meta["config"]["test_mode"] == "eval"
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_value == 3 and dims[2].dim_param and dims[3].dim_param
    assert meta["multiple"] == 8  # the HD generator's inputs are padded to its stride
    extra = {"diptych.json": ""}
    torch.jit.load(str(exports["unet", "torchscript"]), _extra_files=extra)
    unet_meta = json.loads(extra["diptych.json"])
    assert (unet_meta["stride"], unet_meta["multiple"], unet_meta["min_side"]) == (16, 16, 16)
    for fmt in ("onnx", "torchscript"):
        generator = Translator.load(exports["unet", fmt]).generator
        assert generator.geometry == Geometry(stride=16, multiple=16, min_side=16)
    # Exports made before per-level padding carry no "multiple": their inputs are padded to the stride.
    assert unet_meta["scale"] == 1  # same-size translation
    old = {k: v for k, v in unet_meta.items() if k not in ("multiple", "scale")} | {"stride": 64}
    assert _parse_metadata(json.dumps(old), Path("old.pt"))[1] == Geometry(64, 64, 16)
    # ... and those made before output scales carry no "scale": their outputs have the input's size.
    assert _parse_metadata(json.dumps(old | {"scale": 4}), Path("sr.pt"))[1] == Geometry(64, 64, 16, scale=4)


@pytest.mark.parametrize("arch", ["unet", "hd"])
def test_translate_with_onnxruntime_matches_torch_backend(
    exports: dict[tuple[str, str], Path], checkpoints: dict[str, Path], tmp_path: Path, arch: str
) -> None:
    photo = sample_photo("coffee")
    inputs = tmp_path / "in"
    write_image(inputs / "a.png", photo[:50, :77])
    write_image(inputs / "b.png", photo[100:164, 200:264])
    write_image(inputs / "c.png", photo[200:250, 10:77])  # same size as a: batched together
    write_image(inputs / "sub" / "grey.png", photo[:40, :90, :1])  # grey in, converted to the model's RGB
    args = [str(inputs), "--batch-size", "2", "--no-progress"]
    assert (
        main(["translate", str(checkpoints[arch]), *args, "--out", str(tmp_path / "torch"), "--precision", "fp32"]) == 0
    )
    onnx_file = exports[arch, "onnx"]
    assert main(["translate", str(onnx_file), *args, "--out", str(tmp_path / "ort"), "--backend", "onnxruntime"]) == 0
    assert main(["translate", str(onnx_file), *args, "--out", str(tmp_path / "ort-inferred")]) == 0
    names = ["a.png", "b.png", "c.png", "sub/grey.png"]
    for name in names:
        expected = read_image(tmp_path / "torch" / name).astype(int)
        for folder in ("ort", "ort-inferred"):
            got = read_image(tmp_path / folder / name).astype(int)
            assert got.shape == expected.shape == (*read_image(inputs / name).shape[:2], 3)
            assert np.abs(got - expected).max() <= 1


def test_translator_api_and_tiles_with_onnx(exports: dict[tuple[str, str], Path], checkpoints: dict[str, Path]) -> None:
    image = Image.fromarray(sample_photo("astronaut")[100:160, 50:137])
    expected = np.asarray(Translator.load(checkpoints["unet"], precision="fp32")(image)).astype(int)
    t = Translator.load(str(exports["unet", "onnx"]))
    got = np.asarray(t(image)).astype(int)
    assert got.shape == expected.shape == (60, 87, 3)
    assert np.abs(got - expected).max() <= 1
    assert t.tile_settings(32, 16, None).stride == 16


def test_parity_failure_leaves_no_file(checkpoints: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "hd.onnx"
    # The HD generator's instance norms differ from onnxruntime's by ~1e-6: far below the default, above this.
    code = main(["export", str(checkpoints["hd"]), "--out", str(out), "--tolerance", "1e-12", "--check-size", "16x24"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"diptych: error: {out}: parity check failed") and err.count("\n") == 1
    assert "tolerance 1e-12" in err
    assert list(tmp_path.iterdir()) == []


def test_export_cli_prints_parity_and_writes(checkpoints: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.pt"
    image = tmp_path / "check.png"
    write_image(image, sample_photo("rocket")[:100, :100])
    args = ["export", str(checkpoints["unet"]), "--format", "torchscript", "--out", str(out)]
    assert main([*args, "--check-size", "40x56", "33", "--check-images", str(image)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("parity 40x56 (batch 1): max |torchscript - pytorch| = ")
    assert lines[1].startswith("parity 33x33 (batch 1): ")
    assert lines[2].startswith(f"wrote {out}")
    assert out.is_file()
    assert main(args) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_export_errors(
    checkpoints: dict[str, Path], exports: dict[tuple[str, str], Path], tmp_path: Path, capsys
) -> None:
    run = checkpoints["unet"]
    folder = resolve_checkpoint(run)
    with pytest.raises(CheckpointError, match="discriminator's weights"):
        export_generator(folder / "discriminator.safetensors", tmp_path / "d.onnx")
    with pytest.raises(ConfigError, match="already an exported model"):
        export_generator(exports["unet", "onnx"], tmp_path / "again.onnx")
    with pytest.raises(ConfigError, match=r"needs \.onnx"):
        export_generator(run, tmp_path / "m.pt", "onnx")
    assert main(["export", str(run), "--check-size", "12x"]) == 1
    assert capsys.readouterr().err == (
        "diptych: error: --check-size '12x': expected HEIGHTxWIDTH in pixels, each 1 .. 8192, e.g. 256x384\n"
    )
    # Stored test mode 'paper' (dropout and batch statistics) has no inference graph; eval must be asked for.
    paper = tmp_path / "paper"
    paper.mkdir()
    config = json.loads((folder / "config.json").read_text())
    config["test_mode"] = "paper"
    (paper / "config.json").write_text(json.dumps(config))
    (paper / "generator.safetensors").write_bytes((folder / "generator.safetensors").read_bytes())
    with pytest.raises(ExportError, match="--test-mode eval"):
        export_generator(paper, tmp_path / "p.pt", "torchscript")
    assert export_generator(paper, tmp_path / "p.pt", "torchscript", test_mode="eval").path.is_file()
    # A checkpoint whose weights belong to another architecture than its configuration says.
    other = tmp_path / "other"
    other.mkdir()
    config["test_mode"], config["generator"]["depth"] = "eval", 5
    (other / "config.json").write_text(json.dumps(config))
    (other / "generator.safetensors").write_bytes((folder / "generator.safetensors").read_bytes())
    # The message says what differs (the first line of PyTorch's error did not).
    with pytest.raises(
        CheckpointError, match=r"do not match the stored architecture \(for its UNetGenerator: \d+ missing, e\.g\. \S+"
    ):
        export_generator(other, tmp_path / "o.pt", "torchscript")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "p.pt", "paper"]


def test_architecture_the_exporter_does_not_know_is_refused(
    checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As for a generator family added later that cannot be traced yet.
    for family in (ResnetConfig, HDConfig):
        monkeypatch.setattr(family, "exportable", False)
    with pytest.raises(
        ExportError, match=r"the 'hd' generator cannot be exported yet \(supported: unet, msrresnet, rrdbnet, compact\)"
    ):
        export_generator(checkpoints["hd"], tmp_path / "hd.pt", "torchscript")
    assert list(tmp_path.iterdir()) == []


def test_files_not_exported_by_diptych_are_refused(
    exports: dict[tuple[str, str], Path], checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    foreign = tmp_path / "foreign.onnx"
    node = helper.make_node("Identity", ["input"], ["output"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 16, 16])],
    )
    onnx.save_model(helper.make_model(graph), str(foreign))
    with pytest.raises(CheckpointError, match="no diptych metadata"):
        Translator.load(foreign)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    with pytest.raises(CheckpointError, match="not a valid ONNX model"):
        Translator.load(garbage)
    traced = tmp_path / "traced.pt"
    torch.jit.save(torch.jit.trace(torch.nn.Conv2d(3, 3, 1), torch.zeros(1, 3, 4, 4)), str(traced))
    with pytest.raises(CheckpointError, match="no diptych metadata"):
        Translator.load(traced)
    with pytest.raises(ConfigError, match=r"--backend onnxruntime cannot run .*export it first"):
        Translator.load(checkpoints["unet"], backend="onnxruntime")
    with pytest.raises(ConfigError, match=r"--backend torch cannot run .*ONNX export"):
        Translator.load(exports["unet", "onnx"], backend="torch")
    with pytest.raises(ConfigError, match="--test-mode paper"):
        Translator.load(exports["unet", "torchscript"], mode="paper")
    with pytest.raises(ConfigError, match="--precision bf16"):
        Translator.load(exports["unet", "onnx"], precision="bf16")
    with pytest.raises(ConfigError, match="--tile auto"):
        Translator.load(exports["unet", "onnx"]).tile_settings("auto", None, None)


def test_missing_onnxruntime_names_the_extra(
    exports: dict[tuple[str, str], Path], checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install 'diptych\[onnx\]'"):
        Translator.load(exports["unet", "onnx"])
    with pytest.raises(ConfigError, match=r"needs the onnxruntime package; pip install 'diptych\[onnx\]'"):
        export_generator(checkpoints["unet"], Path("unused.onnx"))


def test_backend_benchmark_smoke() -> None:
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "export_backends.py"
    cmd = [sys.executable, str(script), "--count", "2", "--size", "40", "--ngf", "4", "--depth", "3", "--threads", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout
    assert out.startswith("machine: ")
    assert (
        "| torch fp32 |" in out and "| onnxruntime (fp32) |" in out and "export parity: max |onnx - pytorch| = " in out
    )


@pytest.mark.parametrize(
    ("fmt", "upsample", "skip"),
    [
        ("onnx", "transpose", "off"),
        ("torchscript", "transpose", "off"),
        ("onnx", "bilinear", "off"),
        ("onnx", "resize", "on"),
    ],
)
def test_deep_unet_export_pads_its_levels_inside_the_graph(tmp_path: Path, fmt: str, upsample: str, skip: str) -> None:
    """Depth 6: inputs are padded to 32, and the level fed 96 / 32 = 3 pixels pads itself to 4 inside the graph;
    the exported graph does the same at sizes it was not traced at (and adds the unpadded input with --skip on)."""
    from diptych.checkpoint import write_checkpoint_folder
    from diptych.config import RunConfig
    from diptych.nets import create_generator, init_weights

    config = RunConfig()
    config.generator.in_channels = config.generator.out_channels = 3
    config.generator.depth, config.generator.ngf, config.generator.upsample = 6, 4, upsample
    config.generator.skip = skip
    config.data.sample_type = "uint8"
    torch.manual_seed(0)
    generator = create_generator(config.generator)
    init_weights(generator, "xavier", 1.0)
    checkpoint = write_checkpoint_folder(tmp_path / "ckpt", config.validate(), {"generator": generator})
    result = export_generator(checkpoint, tmp_path / f"deep{SUFFIX[fmt]}", fmt, check_sizes=[(96, 160), (70, 131)])
    assert result.max_abs_diff <= 1e-4
    exported = Translator.load(result.path).generator
    assert exported.geometry == Geometry(stride=64, multiple=32, min_side=64)
    x = torch.rand(2, 3, 160, 224) * 2 - 1  # 160 / 32 = 5 and 224 / 32 = 7: odd at level 5, not traced
    with torch.no_grad():
        assert (exported(x) - generator.eval()(x)).abs().max() <= 1e-4


def test_exported_generator_crops_an_upscaled_output_to_scale_times_the_input() -> None:
    def run(x: torch.Tensor) -> torch.Tensor:  # a graph that doubles its (padded) input's size
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    generator = ExportedGenerator(run, Geometry(stride=1, multiple=4, min_side=8, scale=2), "torch", Path("sr.pt"))
    x = torch.rand(1, 3, 5, 11)
    y = generator(x)
    assert y.shape == (1, 3, 10, 22)
    assert torch.equal(y, run(x))  # the reflection padding at the bottom/right is cropped away
