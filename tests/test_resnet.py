"""ResNet generators (resnet_9blocks / resnet_6blocks): the reference's architecture, any input size, training,
translation, tiling, export, inference rewrites and import of reference weights; pix2pixHD's global generator
shares their blocks and keeps its parameter names."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from diptych import Translator
from diptych.checkpoint import resolve_checkpoint
from diptych.cli import build_parser, config_from_args
from diptych.data.io import read_image, write_image
from diptych.data.samples import sample_photo
from diptych.errors import CheckpointError, ConfigError
from diptych.evaluate import evaluate
from diptych.export import export_generator
from diptych.nets import ResnetConfig, ResnetGenerator, create_generator
from diptych.nets.geometry import Geometry
from diptych.nets.hd import HDGenerator
from diptych.nets.inference import prepare_for_inference
from diptych.reference import convert_reference_generator, import_reference_generator
from diptych.train import train

from .conftest import ACROSS_CPUS, photo_crops, tiny_config, write_aligned

FIXTURES = Path(__file__).parent / "fixtures"


class ReferenceResnetBlock(nn.Module):
    """The reference's ResnetBlock (reflect padding): x + conv_block(x)."""

    def __init__(self, dim: int, norm_layer: type[nn.Module] | None, use_dropout: bool, use_bias: bool) -> None:
        super().__init__()
        norm = norm_layer or (lambda _: nn.Identity())
        block = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), norm(dim), nn.ReLU(True)]
        if use_dropout:
            block += [nn.Dropout(0.5)]
        block += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), norm(dim)]
        self.conv_block = nn.Sequential(*block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ReferenceResnetGenerator(nn.Module):
    """The reference's ResnetGenerator, written independently of diptych as one nn.Sequential named `model`."""

    def __init__(self, in_nc: int, out_nc: int, ngf: int, n_blocks: int, norm: str, use_dropout: bool) -> None:
        super().__init__()
        norm_layer = {
            "batch": lambda c: nn.BatchNorm2d(c, affine=True, track_running_stats=True),
            "instance": lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False),
            "none": None,
        }[norm]
        norm_of = norm_layer or (lambda _: nn.Identity())
        use_bias = norm == "instance"  # the reference's rule (its 'none' convs have no bias either)
        model = [nn.ReflectionPad2d(3), nn.Conv2d(in_nc, ngf, 7, bias=use_bias), norm_of(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2**i
            model += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=use_bias),
                norm_of(ngf * mult * 2),
                nn.ReLU(True),
            ]
        model += [ReferenceResnetBlock(ngf * 4, norm_layer, use_dropout, use_bias) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=use_bias
                ),
                norm_of(ngf * mult // 2),
                nn.ReLU(True),
            ]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def randomise(net: nn.Module, seed: int) -> nn.Module:
    """Unit-scale weights and, for batch norms, moved affine parameters and running statistics; eval mode."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    m.bias.normal_(0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def resnet_config(n_blocks: int, **fields: object) -> ResnetConfig:
    """A ResNet generator config as --netG resnet_Nblocks makes it, with 3 -> 3 channels."""
    return ResnetConfig(in_channels=3, out_channels=3, **{**ResnetConfig.presets[f"resnet_{n_blocks}blocks"], **fields})


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("size", [(37, 50), (64, 64), (5, 3), (1, 9)])
def test_any_input_size_comes_back_at_its_size(norm: str, size: tuple[int, int]) -> None:
    g = create_generator(resnet_config(6, ngf=8, norm=norm)).eval()
    assert isinstance(g, ResnetGenerator)
    assert g.geometry == Geometry(stride=4, multiple=4, min_side=8)
    with torch.no_grad():
        y = g(torch.rand(2, 3, *size) * 2 - 1)
    assert y.shape == (2, 3, *size) and y.abs().max() <= 1


@pytest.mark.parametrize(("n_blocks", "norm"), [(9, "batch"), (6, "batch"), (9, "instance")])
def test_parameter_count_equals_the_reference(n_blocks: int, norm: str) -> None:
    reference = ReferenceResnetGenerator(3, 3, 64, n_blocks, norm, use_dropout=True)
    ours = create_generator(resnet_config(n_blocks, norm=norm))

    def count(net: nn.Module) -> int:
        return sum(p.numel() for p in net.parameters())

    # Instance norm cancels the conv biases the reference gives it (they have no effect): diptych leaves them out.
    convs = [m for m in reference.model[:-2].modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    dropped = sum(m.bias.numel() for m in convs if m.bias is not None)
    assert (dropped > 0) == (norm == "instance")
    assert count(ours) == count(reference) - dropped
    if (n_blocks, norm) == (9, "instance"):
        assert count(reference) == 11_378_179  # what the reference prints for CycleGAN's RGB -> RGB generators


def save_reference(net: nn.Module, path: Path, extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Save a state dict the way the reference's save_networks does (plus `extra` keys)."""
    torch.save({**net.state_dict(), **(extra or {})}, path)
    return path


@pytest.mark.parametrize(
    ("n_blocks", "norm", "dropout", "in_nc"),
    [(2, "batch", True, 3), (3, "instance", False, 1), (2, "none", False, 3), (2, "instance", True, 3)],
)
def test_converted_reference_resnet_reproduces_its_output(
    tmp_path: Path, n_blocks: int, norm: str, dropout: bool, in_nc: int
) -> None:
    reference = randomise(ReferenceResnetGenerator(in_nc, 3, 4, n_blocks, norm, dropout), seed=n_blocks)
    legacy = {}
    if norm == "instance":  # old PyTorch saved instance norms' running buffers; the reference ignores them
        legacy = {"model.2.running_mean": torch.zeros(4), "model.2.running_var": torch.ones(4)}
    state = torch.load(save_reference(reference, tmp_path / "net_G.pth", legacy), weights_only=True)
    cfg, converted = convert_reference_generator(state)
    assert (cfg.arch, cfg.n_blocks, cfg.norm, cfg.ngf) == ("resnet", n_blocks, norm, 4)
    assert (cfg.in_channels, cfg.out_channels, cfg.dropout) == (in_nc, 3, 0.5 if dropout else 0.0)
    ours = create_generator(cfg).eval()
    ours.load_state_dict(converted, strict=True)
    x = torch.rand(2, in_nc, 32, 44) * 2 - 1
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert expected.std() > 0.01  # a real signal is compared
    assert (got - expected).abs().max().item() <= 1e-5


def test_imported_reference_resnet_translates_any_size(tmp_path: Path) -> None:
    reference = randomise(ReferenceResnetGenerator(3, 3, 4, 6, "batch", True), seed=6)
    pth = save_reference(reference, tmp_path / "latest_net_G.pth")
    # Saved from nn.DataParallel: a module. prefix on every key.
    wrapped = save_reference(nn.DataParallel(reference), tmp_path / "parallel_net_G.pth")
    out = import_reference_generator(pth, tmp_path / "ref")
    t = Translator.load(out, device="cpu", mode="eval", precision="fp32")
    assert (t.config.generator.arch, t.config.generator.n_blocks) == ("resnet", 6)
    x = torch.rand(1, 3, 36, 48) * 2 - 1
    with torch.no_grad():
        assert (t.translate_tensor(x) - reference(x)).abs().max().item() <= 1e-5
    assert t(np.zeros((37, 50, 3), dtype=np.uint8)).shape == (37, 50, 3)
    assert Translator.load(out, device="cpu").mode == "paper"  # batch norm: the reference's test.py default
    assert import_reference_generator(wrapped, tmp_path / "ref2").is_dir()


def test_reference_resnet_with_a_gap_in_its_blocks_is_rejected(tmp_path: Path) -> None:
    state = ReferenceResnetGenerator(3, 3, 4, 3, "batch", False).state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("model.11.")}
    with pytest.raises(CheckpointError, match="not a reference ResNet generator"):
        convert_reference_generator(state)
    with pytest.raises(CheckpointError, match=r"net_G\.pth: not a reference ResNet"):
        torch.save(state, tmp_path / "net_G.pth")
        import_reference_generator(tmp_path / "net_G.pth", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_batch_norms_fold_into_the_convolutions_with_the_same_output() -> None:
    g = randomise(ResnetGenerator(3, 2, ngf=8, n_blocks=2, norm="batch", dropout=0.5), seed=3)
    folded = copy.deepcopy(g)
    prepare_for_inference(folded, None)
    # front 1, down 2, two per block, up 2: every batch norm is gone.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in g.modules()) == 9
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(2, 3, 37, 50) * 2 - 1
    with torch.no_grad():
        assert (folded(x) - g(x)).abs().max().item() <= 1e-5


def test_gradient_checkpointing_gives_the_same_gradients_with_dropout() -> None:
    torch.manual_seed(0)
    plain = ResnetGenerator(3, 3, ngf=4, n_blocks=2, norm="batch", dropout=0.5)
    recomputed = copy.deepcopy(plain)
    recomputed.checkpointing = True
    x = torch.rand(2, 3, 24, 20) * 2 - 1
    grads = []
    for g in (plain, recomputed):
        torch.manual_seed(1)  # the same dropout masks; recomputation replays them
        g(x).square().mean().backward()
        grads.append([p.grad for p in g.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads, strict=True))


def test_reflection_pads_stay_in_bf16_under_autocast_with_the_same_results() -> None:
    torch.manual_seed(0)
    fast = ResnetGenerator(3, 3, ngf=8, n_blocks=2, norm="instance")
    cast = copy.deepcopy(fast)  # the same net with plain pads, which CPU autocast runs in fp32
    for module in cast.modules():
        for name, child in module.named_children():
            if isinstance(child, nn.ReflectionPad2d):
                setattr(module, name, nn.ReflectionPad2d(child.padding))
    x = torch.rand(1, 3, 36, 28) * 2 - 1
    dtypes: list[torch.dtype] = []
    fast.blocks[0].body[0].register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    outputs, grads = [], []
    for g in (fast, cast):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = g(x)
        y.float().square().mean().backward()
        outputs.append(y)
        grads.append([p.grad for p in g.parameters()])
    assert dtypes == [torch.bfloat16]  # no fp32 round trip around the pad
    assert torch.equal(outputs[0], outputs[1])  # padding copies values: the forward is bit-identical
    for a, b in zip(*grads, strict=True):  # backward differs only by bf16 rounding of the border sums
        assert torch.allclose(a, b, rtol=0.05, atol=0.02 * b.abs().max().item())


def test_pix2pixhd_weights_saved_before_the_shared_blocks_still_load() -> None:
    """A state dict (and its output) written by nets/hd.py before the ResNet blocks moved to nets/resnet.py."""
    g = HDGenerator(3, 2, ngf=4, n_local=1, n_down_global=2, n_blocks_global=2, n_blocks_local=1, norm="batch")
    g.load_state_dict(load_file(FIXTURES / "hd" / "hd_ngf4_batch.safetensors"), strict=True)
    io = load_file(FIXTURES / "hd" / "hd_ngf4_batch_io.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(g.eval()(io["input"]), io["output"], rtol=0, atol=ACROSS_CPUS)


def test_netg_presets_select_the_resnet(tmp_path: Path) -> None:
    parser = build_parser()
    for preset, blocks in (("resnet_9blocks", 9), ("resnet_6blocks", 6)):
        args = parser.parse_args(["train", "--data", str(tmp_path), "--netG", preset])
        g = config_from_args(args).validate().generator
        assert (g.arch, g.n_blocks, g.norm, g.dropout) == ("resnet", blocks, "batch", 0.5)  # pix2pix's defaults
    args = parser.parse_args(["train", "--data", str(tmp_path), "--netG", "resnet_9blocks", "--n-blocks", "4"])
    assert config_from_args(args).generator.n_blocks == 4  # an explicit flag wins
    args = parser.parse_args(["train", "--data", str(tmp_path), "--arch", "resnet", "--n-blocks", "-1"])
    with pytest.raises(ConfigError, match=r"--n-blocks -1 \(generator\.n_blocks\) is out of range"):
        config_from_args(args).validate()


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet_6blocks pix2pix model (ngf 8) trained 3 steps through the Python API."""
    root = tmp_path_factory.mktemp("resnet")
    data = write_aligned(root / "data", [(c, 255 - c) for c in photo_crops("astronaut", 48, 4)])
    config = tiny_config(data, max_steps=3, init="xavier", init_gain=1.0)
    config.use_generator("resnet").n_blocks = 6
    return train(config, root / "run", progress=False).run_dir


def test_trained_resnet_translates_and_tiles_at_odd_sizes(resnet_run: Path, tmp_path: Path) -> None:
    t = Translator.load(resnet_run, device="cpu", precision="fp32")
    assert (t.config.generator.arch, t.config.generator.n_blocks) == ("resnet", 6)
    weights = load_file(resolve_checkpoint(resnet_run) / "generator.safetensors")
    assert sum(1 for k in weights if k.endswith("body.1.weight")) == 6
    photo = sample_photo("coffee")[:37, :50]
    out = t(photo)
    assert out.shape == (37, 50, 3) and out.std() > 1
    settings = t.tile_settings(16, 4, None)
    assert (settings.stride, settings.multiple, settings.minimum) == (4, 4, 8)
    write_image(tmp_path / "in.png", sample_photo("coffee")[:70, :90])
    tiled = read_image(t.translate_file_tiled(tmp_path / "in.png", tmp_path / "out.png", settings))
    assert tiled.shape == (70, 90, 3)
    assert t.tile_settings("auto", None, 8 << 20).tile % 4 == 0
    with pytest.raises(ConfigError, match=r"--tile 18 must be a multiple of the network.s stride 4; try --tile 16"):
        t.tile_settings(18, 4, None)
    with pytest.raises(ConfigError, match=r"--tile 4 is smaller than the network's smallest input \(8 px\)"):
        t.tile_settings(4, 2, None)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_trained_resnet_exports_with_parity(resnet_run: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / ("resnet.onnx" if fmt == "onnx" else "resnet.pt")
    result = export_generator(resnet_run, out, fmt, check_sizes=[(32, 32), (27, 45)])
    assert result.max_abs_diff <= 1e-4 and result.path.is_file()
    torch_t = Translator.load(resnet_run, device="cpu", precision="fp32")
    exported_t = Translator.load(result.path, device="cpu")
    assert exported_t.generator.geometry == Geometry(stride=4, multiple=4, min_side=8)
    x = torch.rand(2, 3, 37, 50) * 2 - 1
    expected = torch_t.translate_tensor(x)
    assert expected.std() > 0.03
    assert (exported_t.translate_tensor(x) - expected).abs().max().item() <= 1e-4


def test_trained_resnet_evaluates_odd_sized_pairs(resnet_run: Path, tmp_path: Path) -> None:
    crops = [sample_photo("rocket")[:37, :50], sample_photo("rocket")[100:137, 200:250]]
    data = write_aligned(tmp_path / "data" / "test", [(c, 255 - c) for c in crops]).parent
    summary = evaluate(resnet_run, data, tmp_path / "ev", metrics=["psnr", "l1"], progress=False).summary
    assert summary["metrics"]["psnr"]["n"] == 2 and np.isfinite(summary["metrics"]["l1"]["mean"])
    outputs = sorted((tmp_path / "ev").rglob("outputs/*.png"))
    assert len(outputs) == 2 and all(read_image(f).shape == (37, 50, 3) for f in outputs)
