"""FID, KID and LPIPS: their mathematics with randomly initialised networks, and weight-file handling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from diptych.errors import ConfigError
from diptych.metrics.feature import FeatureDistances, inception_distances
from diptych.metrics.inception import InceptionFeatures, load_inception
from diptych.metrics.lpips import LPIPS, load_lpips, lpips_distance

from .conftest import photo_crops


def _scaled_random(module: nn.Module) -> nn.Module:
    """Random weights that keep activations O(1) through a deep ReLU network (He init), frozen in eval mode."""
    torch.manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return module.eval()


@pytest.fixture(scope="module")
def inception() -> InceptionFeatures:
    return _scaled_random(InceptionFeatures("fid"))  # type: ignore[return-value]


def _photos(n: int, seed: int = 0) -> torch.Tensor:
    from diptych.data.io import to_tensor

    return torch.stack([to_tensor(c) for c in photo_crops("astronaut", 64, n, seed=seed)])


def _fid(
    feature: nn.Module, fake: torch.Tensor, real: torch.Tensor, names: tuple[str, ...] = ("fid",)
) -> dict[str, float]:
    d = FeatureDistances(list(names), feature, kid_subset_size=min(10, fake.shape[0]))
    d.update(fake, real)
    return d.compute()


def test_inception_features_shape(inception: InceptionFeatures) -> None:
    feats = inception(torch.rand(2, 3, 50, 70))
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all() and feats.std() > 0


class SmallFeatures(nn.Module):
    """A small random conv net standing in for Inception in the FID/KID mathematics tests (fast on CPU)."""

    num_features = 64

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 32, 3, stride=2), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.float()).mean(dim=(2, 3))


def test_fid_zero_on_identical_sets_symmetric_and_growing_with_shift() -> None:
    feat = SmallFeatures()
    x, y = _photos(16), _photos(16, seed=5)
    assert abs(_fid(feat, x, x)["fid"]) < 1e-4
    xy, yx = _fid(feat, x, y)["fid"], _fid(feat, y, x)["fid"]
    assert xy > 0 and xy == pytest.approx(yx, rel=1e-3)
    shifts = [_fid(feat, (x + s).clamp(-1, 1), x)["fid"] for s in (0.1, 0.3, 0.6)]
    assert 0 < shifts[0] < shifts[1] < shifts[2]


def test_fid_with_inception_features(inception: InceptionFeatures) -> None:
    x = _photos(4)
    assert abs(_fid(inception, x, x)["fid"]) < 1e-2
    assert _fid(inception, (x + 0.6).clamp(-1, 1), x)["fid"] > 0


def test_kid_zero_on_identical_sets_and_growing_with_shift() -> None:
    feat = SmallFeatures()
    x = _photos(20)
    same = _fid(feat, x, x, ("kid",))["kid"]
    far = _fid(feat, (x + 0.6).clamp(-1, 1), x, ("kid",))["kid"]
    # KID is an unbiased estimate over random subsets: near zero (either sign) for identical sets.
    assert far > 0 and abs(same) < 0.1 * far


def test_inception_weights_file_round_trip_ignores_aux_and_fc(tmp_path: Path, inception: InceptionFeatures) -> None:
    state = dict(inception.state_dict())
    state["AuxLogits.fc.weight"] = torch.zeros(1000, 768)
    state["fc.weight"] = torch.zeros(1008, 2048)
    for key in [k for k in state if k.endswith("num_batches_tracked")][:5]:
        del state[key]  # older files have no BN counters
    torch.save(state, tmp_path / "pt_inception.pth")
    loaded = load_inception(tmp_path / "pt_inception.pth")
    x = torch.rand(1, 3, 80, 80)
    assert torch.equal(loaded(x), inception(x))


def test_inception_bad_or_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="never download"):
        inception_distances(["fid"], None, "fid", "cpu")
    with pytest.raises(ConfigError, match="not found"):
        load_inception(tmp_path / "absent.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="not Inception-v3"):
        load_inception(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="not a readable"):
        load_inception(tmp_path / "junk.pth")


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_mathematics_with_random_weights(net: str) -> None:
    model = _scaled_random(LPIPS(net))
    for lin in model.lins:  # LPIPS linear weights are non-negative
        nn.init.uniform_(lin.weight, 0.0, 1.0)
    x, y = _photos(2)
    assert lpips_distance(model, x, x) == pytest.approx(0.0, abs=1e-7)
    assert lpips_distance(model, x, y) == pytest.approx(lpips_distance(model, y, x), rel=1e-5)
    noisy = [lpips_distance(model, x, (x + s * torch.randn_like(x)).clamp(-1, 1)) for s in (0.05, 0.2, 0.5)]
    assert 0 < noisy[0] < noisy[1] < noisy[2]
    gray = x.mean(0, keepdim=True)
    assert lpips_distance(model, gray, gray) == pytest.approx(0.0, abs=1e-7)  # 1 channel is repeated to RGB


def test_lpips_weight_files(tmp_path: Path) -> None:
    model = _scaled_random(LPIPS("alex"))
    features = {k: v for k, v in model.state_dict().items() if k.startswith("features.")}
    lins = {f"lin{i}.model.1.weight": lin.weight.detach().clone() for i, lin in enumerate(model.lins)}
    torch.save(features, tmp_path / "alexnet-owt.pth")
    torch.save(lins, tmp_path / "alex.pth")
    torch.save({**features, **lins}, tmp_path / "merged.pth")
    x, y = _photos(2)
    expected = lpips_distance(model, x, y)
    assert lpips_distance(load_lpips([tmp_path / "alexnet-owt.pth", tmp_path / "alex.pth"]), x, y) == pytest.approx(
        expected
    )
    assert lpips_distance(load_lpips([tmp_path / "merged.pth"]), x, y) == pytest.approx(expected)
    with pytest.raises(ConfigError, match="incomplete"):
        load_lpips([tmp_path / "alex.pth"])
    with pytest.raises(ConfigError, match="never downloads"):
        load_lpips([])


def test_evaluate_with_feature_metrics_and_missing_weights(tmp_path: Path, inception: InceptionFeatures) -> None:
    """FID/KID/LPIPS through evaluate: set metrics in metrics.json, LPIPS per image; no weights -> error, no files."""
    import json

    from diptych.evaluate import DeepMetricOptions, evaluate
    from diptych.train import train

    from .conftest import tiny_config, write_aligned

    crops = photo_crops("rocket", 48, 6)
    write_aligned(tmp_path / "ds" / "train", [(c, 255 - c) for c in crops[:4]])
    write_aligned(tmp_path / "ds" / "test", [(c, 255 - c) for c in crops[4:]])
    run = train(tiny_config(tmp_path / "ds", max_steps=1), tmp_path / "run", progress=False).run_dir
    torch.save(inception.state_dict(), tmp_path / "inception.pth")
    lp = _scaled_random(LPIPS("alex"))
    torch.save(
        {**lp.state_dict(), **{f"lin{i}.model.1.weight": m.weight for i, m in enumerate(lp.lins)}},
        tmp_path / "lpips.pth",
    )

    with pytest.raises(ConfigError, match="inception-weights"):
        evaluate(run, tmp_path / "ds", tmp_path / "ev_none", metrics=["psnr", "fid"], progress=False)
    assert not (tmp_path / "ev_none").exists()

    deep = DeepMetricOptions(tmp_path / "inception.pth", "fid", (tmp_path / "lpips.pth",), "alex")
    result = evaluate(
        run, tmp_path / "ds", tmp_path / "ev", metrics=["psnr", "lpips", "fid", "kid"], deep=deep, progress=False
    )
    stored = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert stored["metrics"]["fid"]["n"] == 2 and stored["metrics"]["fid"]["mean"] > 0
    assert stored["metrics"]["lpips"]["n"] == 2 and stored["metrics"]["lpips"]["ci95_low"] is not None
    assert stored["protocol"]["feature_networks"]["inception"]["variant"] == "fid"
    header = (tmp_path / "ev" / "per_image.csv").read_text().splitlines()[0]
    assert header == "name,output,psnr,lpips"  # set-level metrics have no per-image column
    assert result.summary["count"] == 2
