"""Configuration and options from any source (CLI, --config, a checkpoint, an export) are range- and type-checked
before anything is built; checkpoint format versions and damaged weight files are one-line errors (issue 11)."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from diptych.checkpoint import (
    CONFIG_FILE,
    load_training_state,
    read_checkpoint_config,
    save_checkpoint,
    write_checkpoint_folder,
)
from diptych.config import FORMAT_VERSION, RunConfig, flag_name, load_config
from diptych.errors import CheckpointError, ConfigError
from diptych.exported import _parse_metadata, export_metadata
from diptych.nets import create_generator
from diptych.weights import load_state_dict_file

from .test_cli import assert_one_error_line, run_cli


def tiny_config() -> RunConfig:
    """A complete configuration of a 2-level, 4-filter U-Net for 3 -> 3 channels (a trained model's)."""
    config = RunConfig()
    g = config.generator
    g.depth, g.ngf, g.in_channels, g.out_channels = 2, 4, 3, 3
    config.data.sample_type = "uint8"
    return config.validate(stored=True)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A checkpoint folder (config.json + generator.safetensors) of the tiny U-Net."""
    config = tiny_config()
    return write_checkpoint_folder(tmp_path / "ckpt", config, {"generator": create_generator(config.generator)})


def edit_json(path: Path, edit: object) -> None:
    """Rewrite a JSON file through edit(dict) -> None."""
    raw = json.loads(path.read_text())
    edit(raw)  # type: ignore[operator]
    path.write_text(json.dumps(raw))


# ---------------------------------------------------------------------------------------------------------------
# Every numeric field is bounded; the bounds are checked generically, naming the flag


def numeric_fields() -> list[tuple[str, dataclasses.Field]]:
    config = RunConfig()
    return [
        (section, f)
        for section in RunConfig.SECTIONS
        for f in dataclasses.fields(getattr(config, section))
        if f.type in ("int", "float")
    ]


@pytest.mark.parametrize(("section", "f"), numeric_fields(), ids=lambda v: getattr(v, "name", v))
def test_every_numeric_field_refuses_values_outside_its_bounds(section: str, f: dataclasses.Field) -> None:
    bounds = f.metadata["bounds"]
    assert getattr(getattr(RunConfig(), section), f.name) in bounds  # the default is allowed
    outside = [bounds.low - 1, bounds.high + 1] + ([float("nan"), float("inf")] if f.type == "float" else [])
    for value in outside:
        config = RunConfig()
        setattr(getattr(config, section), f.name, value)
        with pytest.raises(ConfigError, match="out of range") as caught:
            config.validate()
        assert f"--{flag_name(f)} " in str(caught.value) and f"{section}.{f.name}" in str(caught.value)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--lr", "nan"], "--lr nan"),
        (["--lr", "inf"], "--lr inf"),
        (["--beta1", "2"], "--beta1 2.0"),
        (["--beta2", "1"], "--beta2 1.0"),
        (["--init-gain", "nan"], "--init-gain nan"),
        (["--depth", "100"], "--depth 100"),
        (["--ngf", "1000000"], "--ngf 1000000"),
        (["--dropout", "-0.5"], "--dropout -0.5"),
        (["--lambda-l1", "nan"], "--lambda-l1 nan"),
        (["--lr-gamma", "0"], "--lr-gamma 0.0"),
        (["--val-fraction", "nan"], "--val-fraction nan"),
        (["--percentile-high", "inf"], "--percentile-high inf"),
        (["--seed", "4294967296"], "--seed 4294967296"),
    ],
)
def test_out_of_range_training_options_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--data", tmp_path, "--run-dir", run, *argv], capsys)
    assert code == 1
    assert_one_error_line(err, named, "out of range")
    assert not run.exists()


def test_weights_too_large_to_build_are_refused_before_allocating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], aligned_dataset: Path
) -> None:
    # Each field is within its bounds; together they describe ~100 GiB of weights.
    run = tmp_path / "run"
    argv = ["train", "--data", aligned_dataset, "--run-dir", run, "--ngf", "1024", "--depth", "12", "--workers", "0"]
    code, _, err = run_cli([*argv, "--preprocess", "none", "--max-steps", "1"], capsys)
    assert code == 1
    assert_one_error_line(err.splitlines()[-1], "generator", "GiB of weights", "--ngf")  # after a stride warning
    assert not (run / "checkpoints").exists()


def test_hd_downsampling_is_bounded_in_total() -> None:
    config = RunConfig().use_recipe("pix2pixhd")
    g = config.generator
    g.n_down_global, g.n_local = 10, 5
    with pytest.raises(ConfigError, match=r"--n-down-global 10 \+ --n-local 5"):
        config.validate()


# ---------------------------------------------------------------------------------------------------------------
# Strict types and damaged JSON, in --config files and in checkpoints


BAD_JSON = {
    "deep-nesting": (b'{"train": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    "not-an-object": (b"[1, 2]", "expected a JSON object, got a list"),
    "string-for-int": (b'{"generator": {"ngf": "64"}}', "generator.ngf must be an integer"),
    "list-for-int": (b'{"generator": {"depth": [8]}}', "generator.depth must be an integer"),
    "null-for-float": (b'{"train": {"lr": null}}', "train.lr must be a number"),
    "bool-for-int": (b'{"generator": {"ngf": true}}', "generator.ngf must be an integer"),
    "huge-integer": (b'{"generator": {"ngf": ' + b"9" * 5000 + b"}}", "not valid JSON"),
    "huge-float": (b'{"train": {"lr": 1e999}}', "--lr inf"),
    "nan-literal": (b'{"train": {"beta1": NaN}}', "--beta1 nan"),
    "unknown-top-key": (b'{"optimizer": "adam"}', "unknown key 'optimizer'"),
    "invalid-utf8": (b'{"data": {"root": "\xff\xfe"}}', "not UTF-8"),
    "top-level-type": (b'{"recipe": 3}', "recipe must be a string"),
    "newer-format": (b'{"format_version": 99}', "written by a newer diptych (format 99, this one reads up to 3)"),
    "garbage-format": (b'{"format_version": "1"}', "format_version '1' is not a diptych format version"),
}


@pytest.mark.parametrize("kind", sorted(BAD_JSON))
def test_damaged_config_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    content, words = BAD_JSON[kind]
    cfg = tmp_path / "c.json"
    cfg.write_bytes(content)
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--config", cfg, "--data", tmp_path, "--run-dir", run], capsys)
    assert code == 1
    assert_one_error_line(err, str(cfg), words)
    assert not run.exists()


def test_an_integer_is_accepted_for_a_number_and_stored_as_one(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text('{"train": {"lr": 1, "beta1": 0}}')
    config = load_config(cfg)
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float) and config.train.beta1 == 0.0


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda c: c["generator"].update(ngf=1000000), ["--ngf 1000000 (generator.ngf)", "out of range"]),
        (lambda c: c["generator"].update(out_channels=0), ["generator.out_channels is 0"]),
        (lambda c: c["generator"].update(ngf=1024, depth=12), ["GiB of weights"]),
        (lambda c: c.pop("train"), ["section 'train' is missing"]),
        (lambda c: c.pop("format_version"), ["no format_version"]),
        (lambda c: c.update(format_version=99), ["written by a newer diptych (format 99", "upgrade diptych"]),
        (lambda c: c.update(format_version=0), ["format_version 0 is not a diptych format version"]),
        (lambda c: c["generator"].update(in_channels=True), ["generator.in_channels must be an integer"]),
    ],
    ids=[
        "huge-width",
        "no-output-channels",
        "too-large-to-build",
        "missing-section",
        "missing-version",
        "newer-version",
        "garbage-version",
        "bool-channels",
    ],
)
def test_tampered_checkpoint_config_is_a_one_line_error_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: Path, edit: object, words: list[str]
) -> None:
    edit_json(checkpoint / CONFIG_FILE, edit)
    image = tmp_path / "in.png"
    image.write_bytes(b"")  # never read: the checkpoint is refused first
    for argv in (["info", checkpoint], ["translate", checkpoint, image, "--out", tmp_path / "out"]):
        code, out, err = run_cli(argv, capsys)
        assert code == 1 and out == ""
        # (info names the checkpoint folder on stderr first)
        assert_one_error_line(err.splitlines()[-1], str(checkpoint / CONFIG_FILE), *words)
    assert not (tmp_path / "out").exists()


def test_config_in_weights_metadata_is_checked(checkpoint: Path) -> None:
    weights = checkpoint / "generator.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        meta = f.metadata()
    stored = json.loads(meta["config"])
    stored["format_version"] = 99
    save_file(tensors, str(weights), metadata={**meta, "config": json.dumps(stored)})
    with pytest.raises(CheckpointError, match=r"generator\.safetensors: written by a newer diptych \(format 99"):
        read_checkpoint_config(weights)
    save_file(tensors, str(weights), metadata={**meta, "config": "[" * 50_000})
    with pytest.raises(CheckpointError, match=r"generator\.safetensors: not valid JSON \(nested too deeply\)"):
        read_checkpoint_config(weights)


def test_older_format_versions_stay_readable(checkpoint: Path) -> None:
    assert FORMAT_VERSION >= 1
    edit_json(checkpoint / CONFIG_FILE, lambda c: c.update(format_version=1))
    assert read_checkpoint_config(checkpoint).generator.ngf == 4


def test_resume_checks_the_format_of_the_run_and_of_its_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_config()
    run = tmp_path / "run"
    run.mkdir()
    (run / CONFIG_FILE).write_text(config.to_json())
    save_checkpoint(run / "checkpoints", "step_00000001", config, {"generator": create_generator(config.generator)})
    ckpt_config = run / "checkpoints" / "step_00000001" / CONFIG_FILE
    edit_json(ckpt_config, lambda c: c.update(format_version=99))
    code, _, err = run_cli(["train", "--resume", run, "--no-progress"], capsys)
    assert code == 1
    assert_one_error_line(err, str(ckpt_config), "newer diptych (format 99")
    ckpt_config.write_text(config.to_json())
    edit_json(run / CONFIG_FILE, lambda c: c["train"].update(lr=float("nan")))
    code, _, err = run_cli(["train", "--resume", run, "--no-progress"], capsys)
    assert code == 1
    assert_one_error_line(err, str(run / CONFIG_FILE), "--lr nan")
    # Options that may change on resume are range-checked too.
    (run / CONFIG_FILE).write_text(config.to_json())
    code, _, err = run_cli(["train", "--resume", run, "--save-every", "0", "--no-progress"], capsys)
    assert code == 1
    assert_one_error_line(err, "--save-every 0", "out of range")


@pytest.mark.parametrize(
    ("meta", "words"),
    [
        ({"version": 99}, "exported by a newer diptych (export format 99"),
        ({"version": "x"}, "export metadata version 'x'"),
        ({"config_version": 99}, "written by a newer diptych (format 99"),
        ({"stride": -4}, "are not sizes in pixels"),
        ({"scale": 0}, "export metadata scale 0 is not an integer from 1 to 16"),
        ({"out_channels": 0}, "generator.out_channels is 0"),
    ],
    ids=["newer-export", "garbage-export-version", "newer-config", "bad-stride", "bad-scale", "no-channels"],
)
def test_tampered_export_metadata_is_a_checkpoint_error(tmp_path: Path, meta: dict, words: str) -> None:
    raw = json.loads(export_metadata(tiny_config(), 4, 4, 4))
    if "config_version" in meta:
        raw["config"]["format_version"] = meta["config_version"]
    elif "out_channels" in meta:
        raw["config"]["generator"]["out_channels"] = 0
    else:
        raw.update(meta)
    path = tmp_path / "model.pt"
    with pytest.raises(CheckpointError, match=r"model\.pt") as caught:
        _parse_metadata(json.dumps(raw), path)
    assert words in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(CheckpointError, match="not UTF-8"):
        _parse_metadata(b'{"format": "\xff"}', path)


# ---------------------------------------------------------------------------------------------------------------
# Weight files: our own one-line errors, never torch's advice to load with weights_only=False


class Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("payload ran",))


def test_pickle_payload_in_a_weights_file_is_refused_without_unsafe_advice(tmp_path: Path) -> None:
    path = tmp_path / "vgg19.pth"
    path.write_bytes(pickle.dumps({"features.0.weight": Payload()}))
    with pytest.raises(ConfigError) as caught:
        load_state_dict_file(path, "VGG19")
    message = str(caught.value)
    assert str(path) in message and "never unpickles" in message
    assert "weights_only" not in message and "\n" not in message


def test_convert_reference_payload_is_refused_without_unsafe_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pth = tmp_path / "latest_net_G.pth"
    torch.save({"model.model.0.weight": Payload()}, pth)
    code, out, err = run_cli(["convert-reference", pth, tmp_path / "out"], capsys)
    assert code == 1 and "payload ran" not in out
    line = assert_one_error_line(err, str(pth), "never unpickles")
    assert "weights_only" not in line
    assert not (tmp_path / "out").exists()


def test_damaged_training_state_is_a_one_line_error(checkpoint: Path) -> None:
    (checkpoint / "training_state.pt").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match=r"training_state\.pt: not a readable training state file") as caught:
        load_training_state(checkpoint)
    assert "weights_only" not in str(caught.value)


def tamper_weights(weights: Path, kind: str) -> None:
    with safe_open(str(weights), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        meta = f.metadata()
    name = next(iter(tensors))
    if kind == "dtype":
        tensors[name] = tensors[name].to(torch.float16)
    elif kind == "shape":
        tensors[name] = torch.zeros(1)
    elif kind == "extra":
        tensors["extra.weight"] = torch.zeros(1)
    elif kind == "missing":
        del tensors[name]
    save_file(tensors, str(weights), metadata=meta)
    if kind == "header-lies":
        data = bytearray(weights.read_bytes())
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        header[name]["data_offsets"][1] += 10**9  # points past the end of the file
        text = json.dumps(header).encode()
        weights.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + header_len :])


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("dtype", "of another type"),
        ("shape", "of another shape"),
        ("extra", "unexpected"),
        ("missing", "missing"),
        ("header-lies", "corrupt or truncated weights file"),
    ],
)
def test_tampered_weights_are_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: Path, kind: str, words: str
) -> None:
    weights = checkpoint / "generator.safetensors"
    tamper_weights(weights, kind)
    image = tmp_path / "in.png"
    image.write_bytes(b"")
    code, _, err = run_cli(["translate", checkpoint, image, "--out", tmp_path / "out"], capsys)
    assert code == 1
    assert_one_error_line(err, str(weights), words)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# Numeric options of the other commands


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["evaluate", "ckpt", "data", "--max-items", "-1"], "--max-items"),
        (["evaluate", "ckpt", "data", "--crop-border", "-2"], "--crop-border"),
        (["evaluate", "ckpt", "data", "--seed", "-1"], "--seed"),
        (["translate", "ckpt", "in.png", "--out", "o", "--batch-size", "0"], "--batch-size"),
        (["translate", "ckpt", "in.png", "--out", "o", "--tile", "-5"], "--tile"),
        (["translate", "ckpt", "in.png", "--out", "o", "--tile", "nan"], "--tile"),
        (["translate", "ckpt", "in.png", "--out", "o", "--overlap", "-1"], "--overlap"),
        (["translate", "ckpt", "in.png", "--out", "o", "--memory-budget", "inf"], "--memory-budget"),
        (["translate", "ckpt", "in.png", "--out", "o", "--seed", "nan"], "--seed"),
        (["export", "ckpt", "--tolerance", "nan"], "--tolerance"),
        (["export", "ckpt", "--tolerance", "inf"], "--tolerance"),
        (["demo", "--steps", "0"], "--steps"),
        (["data", "make-pairs", "p", "o", "--task", "blur", "--blur-sigma", "nan"], "--blur-sigma"),
        (["data", "make-pairs", "p", "o", "--task", "jpeg", "--quality", "0"], "--quality"),
        (["data", "make-pairs", "p", "o", "--task", "downscale", "--scale", "0"], "--scale"),
        (["data", "make-pairs", "p", "o", "--task", "noise", "--noise-sigma", "-1"], "--noise-sigma"),
        (["data", "check", "d", "--min-correlation", "nan"], "--min-correlation"),
        (["data", "check", "d", "--workers", "0"], "--workers"),
        (["data", "download", "facades", "--max-size", "nan"], "--max-size"),
        (["data", "glyphs", "a.ttf", "b.ttf", "o", "--size", "-3"], "--size"),
    ],
)
def test_out_of_range_options_are_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str], option: str
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and out == ""
    last = err.strip().splitlines()[-1]  # argparse: the usage, then one error line
    assert f"error: argument {option}: " in last and ("out of range" in last or "is not an integer" in last)
    assert list(tmp_path.iterdir()) == []


def test_export_check_size_is_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: Path) -> None:
    out = tmp_path / "m.pt"
    args = ["export", checkpoint, "--format", "torchscript", "--out", out, "--check-size", "100000x100000"]
    code, _, err = run_cli(args, capsys)
    assert code == 1
    assert_one_error_line(err, "--check-size '100000x100000'", "1 .. 8192")
    assert not out.exists()


def test_make_pairs_split_refuses_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        ["data", "make-pairs", tmp_path, tmp_path / "o", "--task", "gray", "--split", "nan,0,0"], capsys
    )
    assert code == 1
    assert_one_error_line(err, "--split nan,0,0")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "content",
    [b"[" * 100_000, b"\xff\xfe", b"[1]", b'{"count": 1, "metrics": {"psnr": {"mean": "high"}}}', b'{"count": 1}'],
    ids=["deep-nesting", "invalid-utf8", "not-an-object", "string-mean", "no-metrics"],
)
def test_compare_refuses_a_damaged_metrics_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    for folder in (good, bad):
        folder.mkdir()
        (folder / "metrics.json").write_text('{"count": 1, "metrics": {"psnr": {"mean": 20.0}}}')
        (folder / "per_image.csv").write_text("name,psnr\na.png,20\n")
    (bad / "metrics.json").write_bytes(content)
    code, out, err = run_cli(["compare", good, bad, "--out", tmp_path / "cmp"], capsys)
    assert code == 1 and out == ""
    assert_one_error_line(err, str(bad / "metrics.json"), "evaluate again")
    assert not (tmp_path / "cmp").exists()


def test_mis_shaped_pretrained_weights_are_one_line_errors(tmp_path: Path) -> None:
    from diptych.data.tools.degrade import HEDEdges
    from diptych.metrics.inception import load_inception

    hed = tmp_path / "hed.safetensors"
    save_file({"netVggOne.0.weight": torch.zeros(2, 2)}, str(hed))
    with pytest.raises(ConfigError, match=r"hed\.safetensors: not HED weights \(1 tensors of another shape"):
        HEDEdges(hed)
    inception = tmp_path / "inception.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(3)}, inception)
    with pytest.raises(ConfigError, match=r"inception\.pth: not Inception-v3 weights \(1 tensors of another shape"):
        load_inception(inception)


def test_evaluate_api_refuses_a_negative_max_items(tmp_path: Path) -> None:
    from diptych.evaluate import evaluate

    # Before: pairs[:-1] scored all pairs but the last.
    with pytest.raises(ConfigError, match=r"--max-items -1 must be an integer >= 0 \(0 = all pairs\)"):
        evaluate(tmp_path / "run", tmp_path / "data", tmp_path / "out", max_items=-1)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("window", ["nan,400", "40,inf", "1e308,1e308"])
def test_dicom_window_must_be_finite(window: str) -> None:
    config = RunConfig()
    config.data.dicom_window = window
    with pytest.raises(ConfigError, match="--dicom-window"):
        config.validate()


def test_a_config_file_that_never_ends_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="too large for a configuration file"):
        load_config("/dev/zero")
    huge = tmp_path / "huge.json"
    huge.write_text('{"data": {"root": "' + "x" * (2 << 20) + '"}}')
    with pytest.raises(ConfigError, match=r"huge\.json: more than"):
        load_config(huge)


@pytest.mark.parametrize("content", [b"\xff\xfe", b"../../elsewhere", b"", b"a\x00b", b"x" * 300])
def test_a_tampered_latest_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: Path, content: bytes
) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    checkpoint.rename(run / "checkpoints" / "step_1")
    (run / "checkpoints" / "LATEST").write_bytes(content)
    code, out, err = run_cli(["info", run], capsys)
    assert code == 1 and out == ""
    assert_one_error_line(err, str(run / "checkpoints" / "LATEST"), "does not name a checkpoint folder")


def good_state() -> dict:
    """The shape of what the trainer's training_state() writes."""
    return {
        "version": 1,
        "step": 3,
        "epoch": 0,
        "batch_in_epoch": 3,
        "epoch_l1": [0.5, 3],
        "optimizers": {},
        "schedulers": {},
        "rng_cpu": torch.Generator().get_state(),
        "best": "null",
    }


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"version": 99}, "written by a newer diptych (training-state format 99, this one reads up to 1)"),
        ({"version": None}, "training-state version None"),
        ({"step": "3"}, "damaged training state (step is str)"),
        ({"step": -1}, "damaged training state (step is int)"),
        ({"optimizers": None}, "damaged training state (optimizers is NoneType)"),
        ({"epoch_l1": [1.0]}, "damaged training state (epoch_l1 [1.0])"),
    ],
)
def test_a_tampered_training_state_is_a_one_line_error(checkpoint: Path, change: dict, words: str) -> None:
    torch.save(good_state(), checkpoint / "training_state.pt")
    assert load_training_state(checkpoint)["step"] == 3
    torch.save({**good_state(), **change}, checkpoint / "training_state.pt")
    with pytest.raises(CheckpointError) as caught:
        load_training_state(checkpoint)
    assert str(checkpoint / "training_state.pt") in str(caught.value) and words in str(caught.value)


def test_convert_reference_refuses_a_unet_too_wide_to_build(tmp_path: Path) -> None:
    from diptych.reference import convert_reference_unet

    # Shapes say ngf 2048 (over the 1024 bound): refused before diptych's U-Net is built from them.
    state = {
        "model.model.0.weight": torch.zeros(2048, 3, 1, 1),
        "model.model.1.model.1.weight": torch.zeros(1, 1, 1, 1),
        "model.model.3.weight": torch.zeros(1, 3, 1, 1),
    }
    with pytest.raises(CheckpointError, match=r"cannot be built \(--ngf 2048 \(generator\.ngf\) is out of range"):
        convert_reference_unet(state)


def test_weights_of_a_newer_format_are_refused_beside_an_older_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: Path
) -> None:
    weights = checkpoint / "generator.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        meta = f.metadata()
    save_file(tensors, str(weights), metadata={**meta, "config": json.dumps({"format_version": 99})})
    image = tmp_path / "in.png"
    image.write_bytes(b"")
    code, _, err = run_cli(["translate", checkpoint, image, "--out", tmp_path / "out"], capsys)
    assert code == 1
    assert_one_error_line(err, str(weights), "written by a newer diptych (format 99")


@pytest.mark.parametrize("damage", ["moment shape", "group size", "missing"])
def test_an_optimiser_state_that_does_not_fit_the_network_is_a_one_line_error(tmp_path: Path, damage: str) -> None:
    """Adam moments of another shape (or another number of parameters) are refused on resume, not at step one."""
    from diptych.checkpoint import load_optimizer_state

    net = torch.nn.Linear(3, 2)
    adam = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    adam.step()
    state = copy.deepcopy(adam.state_dict())
    load_optimizer_state(torch.optim.Adam(net.parameters()), state, "G", tmp_path)  # fits: no error
    if damage == "moment shape":
        state["state"][0]["exp_avg"] = torch.zeros(5, 5)
        words = "exp_avg of shape (5, 5) for a parameter of shape (2, 3)"
    elif damage == "group size":
        state["param_groups"][0]["params"] = [0]
        words = "optimiser 'G'"
    else:
        state = None
        words = "optimiser 'G'"
    with pytest.raises(CheckpointError) as caught:
        load_optimizer_state(torch.optim.Adam(net.parameters()), state, "G", tmp_path)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "training_state.pt") in message and words in message
