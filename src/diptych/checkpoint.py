"""Self-describing checkpoint folders: config + safetensors weights + training state, written atomically."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .atomic import fsync_file, remove_stale_temporaries, temporary_path, write_text_atomic
from .config import (
    DIRECTIONS,
    FORMAT_VERSION,
    MAX_CONFIG_BYTES,
    WEIGHTS,
    RunConfig,
    check_format_version,
    config_from_json,
    load_config,
    parse_json,
    recipe_class,
)
from .errors import CheckpointError, ConfigError
from .nets import check_generator_size, create_generator, generator_config
from .weights import SAFETENSORS_ERRORS, first_line, load_pickled_tensors, shape_mismatches

STATE_VERSION = 1  # the training-state layout this diptych writes, and the newest it reads
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"  # what the folder holds: networks with their specs, domains, generators by direction
STATE_FILE = "training_state.pt"
LATEST_FILE = "LATEST"
CHECKPOINTS_DIR = "checkpoints"
FORMAT_TAG = "diptych"


def weights_file(network: str) -> str:
    """File name of a network's weights inside a checkpoint folder."""
    return f"{network}.safetensors"


def ema_weights_file(network: str) -> str:
    """File name of the moving average of a network's weights (--ema) inside a checkpoint folder."""
    return f"{network}.ema.safetensors"


def save_checkpoint(
    root: Path,
    name: str,
    config: RunConfig,
    networks: dict[str, nn.Module],
    training_state: dict[str, Any] | None = None,
    *,
    averaged: dict[str, nn.Module] | None = None,
) -> Path:
    """Write root/name/ atomically and point root/LATEST at it (removing what interrupted saves left there)."""
    remove_stale_temporaries(root)
    path = write_checkpoint_folder(root / name, config, networks, training_state, averaged=averaged)
    write_text_atomic(root / LATEST_FILE, name)
    return path


def write_checkpoint_folder(
    final: Path,
    config: RunConfig,
    networks: dict[str, nn.Module],
    training_state: dict[str, Any] | None = None,
    *,
    averaged: dict[str, nn.Module] | None = None,
) -> Path:
    """Write a checkpoint folder (config.json, <net>.safetensors, <generator>.ema.safetensors with --ema, training
    state) via a temp folder and rename; `averaged`: the generators' moving averages by network name."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(final)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _write_checkpoint_files(tmp, config, networks, training_state, averaged or {})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # an error or an interrupt leaves nothing half-written behind
        raise
    if final.exists():
        old = temporary_path(final, "old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    return final


def _write_checkpoint_files(
    folder: Path,
    config: RunConfig,
    networks: dict[str, nn.Module],
    training_state: dict[str, Any] | None,
    averaged: dict[str, nn.Module],
) -> None:
    """Write and flush a checkpoint's files into `folder`."""
    config_json = config.to_json()
    manifest = build_manifest(config, list(networks))
    listed = {name for name, entry in manifest["networks"].items() if "ema" in entry}
    # (a bug, not a user error: the manifest and the files written must name the same averages)
    assert listed == set(averaged) & set(networks), f"averages {sorted(averaged)} for {sorted(listed)}"
    write_text_atomic(folder / MANIFEST_FILE, json.dumps(manifest, indent=2))
    files = [(name, net, weights_file(name), {}) for name, net in networks.items()]
    files += [(name, averaged[name], ema_weights_file(name), {"weights": "ema"}) for name in sorted(listed)]
    for net_name, net, file, extra in files:
        tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        meta = {"format": FORMAT_TAG, "network": net_name, "config": config_json, **extra}
        save_file(tensors, str(folder / file), metadata=meta)
    write_text_atomic(folder / CONFIG_FILE, config_json)
    if training_state is not None:
        torch.save(training_state, folder / STATE_FILE)
    for f in folder.iterdir():
        fsync_file(f)


def build_manifest(config: RunConfig, networks: list[str] | None = None) -> dict[str, Any]:
    """A checkpoint's self-description (after diffusers' model_index.json): the recipe, each network's weights file and
    architecture, each domain's channels, sample type and value range, and the generator of each direction.
    networks: those the folder holds (default: all the recipe builds)."""
    recipe = recipe_class(config.recipe)
    specs = recipe.network_specs(config)
    held = list(specs) if networks is None else networks
    d, g = config.data, config.generator
    source, target = ("A", "B") if d.direction == "AtoB" else ("B", "A")
    offered = recipe.generators(config)
    networks = {name: {"file": weights_file(name), "spec": specs[name]} for name in held}
    if config.train.ema > 0:
        for name in set(offered.values()) & set(held):
            networks[name]["ema"] = {"file": ema_weights_file(name), "decay": config.train.ema}
    return {
        "format_version": FORMAT_VERSION,
        "recipe": config.recipe,
        "networks": networks,
        "domains": {
            source: _domain(g.in_channels, d.input_sample_type, d.input_range),
            target: _domain(g.out_channels, d.sample_type, d.output_range),
        },
        "generators": {k: v for k, v in offered.items() if v in held},
    }


def _domain(channels: int, sample_type: str, value_range: list[float]) -> dict[str, Any]:
    """One domain's entry in a manifest (null: unknown, or the sample type's own range)."""
    return {"channels": channels, "sample_type": sample_type or None, "value_range": value_range or None}


def read_manifest(folder: Path, config: RunConfig) -> dict[str, Any]:
    """A checkpoint folder's manifest; an older format is migrated (format 1 had none: it is derived from the
    already migrated configuration, which describes the same networks; so is a lone weights file's)."""
    file = folder / MANIFEST_FILE
    if not file.is_file():
        return migrate_manifest({"format_version": 1}, config, str(file))
    with file.open("rb") as f:
        raw = parse_json(f.read(MAX_CONFIG_BYTES), str(file))
    if not isinstance(raw, dict):
        raise CheckpointError(f"{file}: not a diptych manifest (a JSON object); the file was altered")
    try:
        check_format_version(raw, str(file), stored=True)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    return migrate_manifest(raw, config, str(file))


def migrate_manifest(raw: dict[str, Any], config: RunConfig, source: str) -> dict[str, Any]:
    """A manifest of any format this diptych reads, as the current format (v1 -> v2: built from the config; v2 -> v3:
    the same content, its generator specs already holding their family's fields only)."""
    if raw["format_version"] < 2:
        return build_manifest(config)
    for key in ("networks", "domains", "generators"):
        if not isinstance(raw.get(key), dict):
            raise CheckpointError(f"{source}: damaged manifest ({key!r} is missing or not an object); it was altered")
    # Both files describe the same model, written together: a disagreement means one of them was edited, and
    # whichever the loader followed, the other's description of the weights would be wrong.
    try:
        expected = build_manifest(config, list(raw["networks"]))
    except KeyError as exc:
        raise CheckpointError(f"{source}: the manifest names a network {exc} its recipe does not build") from None
    raw = {**raw, "networks": _with_added_fields(raw["networks"], expected["networks"])}
    for key in ("recipe", "networks", "domains", "generators"):
        if raw.get(key) != expected[key]:
            raise CheckpointError(
                f"{source}: its {key!r} disagree with the configuration stored beside it (config.json); one of "
                "the two was altered: restore both from the run's checkpoint"
            )
    return {**raw, "format_version": FORMAT_VERSION}


def _with_added_fields(networks: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """A manifest's networks with the architecture fields added to format 2 after it was written (e.g. the
    discriminator's spectral_norm) taken from its configuration, where an older config.json gave them their
    defaults."""
    filled = {}
    for name, entry in networks.items():
        spec, wanted = entry.get("spec") if isinstance(entry, dict) else None, expected.get(name, {}).get("spec")
        if isinstance(spec, dict) and isinstance(wanted, dict):
            entry = {**entry, "spec": {**{k: v for k, v in wanted.items() if k not in spec}, **spec}}
        filled[name] = entry
    return filled


def open_generator(
    path: str | Path, direction: str | None = None, weights: str | None = None
) -> tuple[nn.Module, RunConfig, Path, str]:
    """The generator a checkpoint offers for a direction (None: its only one, or AtoB), with the configuration seen
    from that direction (channels, sample types and value ranges of its input and output domains), its weights
    file and which weights these are: weights "raw", "ema" (the moving average) or None (the average where the
    checkpoint holds one)."""
    path = Path(path)
    if direction is not None and direction not in DIRECTIONS:
        raise ConfigError(f"--direction {direction!r} is not one of: {', '.join(DIRECTIONS)}")
    if weights is not None and weights not in WEIGHTS:
        raise ConfigError(f"--weights {weights!r} is not one of: {', '.join(WEIGHTS)}")
    config = read_checkpoint_config(path)
    single = path.suffix == ".safetensors" and path.is_file()
    folder = path.parent if single else resolve_checkpoint(path)
    manifest = read_manifest(folder, config)
    offered: dict[str, str] = manifest["generators"]
    if single:
        network = read_metadata(path).get("network", "generator")
        serves = [d for d, name in offered.items() if name == network]
        if not serves:
            files = [f"{manifest['networks'].get(n, {}).get('file')} ({d})" for d, n in offered.items()]
            raise CheckpointError(f"{path}: holds the {network}'s weights; pass {' or '.join(files)} or the folder")
        offered = {d: network for d in serves}
    if direction is None:
        direction = next(iter(offered)) if len(offered) == 1 else "AtoB"
    if not offered:
        raise CheckpointError(f"{path}: holds no generator (the manifest names none)")
    if direction not in offered:
        raise ConfigError(
            f"--direction {direction}: {path} translates {' and '.join(offered)} only; "
            f"pass --direction {next(iter(offered))}"
        )
    network = offered[direction]
    entry = manifest["networks"].get(network)
    if not isinstance(entry, dict):
        raise CheckpointError(f"{folder / MANIFEST_FILE}: names generator {network!r} but not its weights")
    view = direction_config(config, manifest, direction, generator_config(entry.get("spec"), str(folder)))
    generator = create_generator(view.generator)
    file, kind = _chosen_weights(path, folder, entry, weights) if not single else _single_weights(path, weights)
    load_weights(generator, file, network)
    return generator, view, file, kind


def default_weights(path: str | Path) -> str:
    """Which weights inference runs by default from a checkpoint (folder or weights file): "ema" where it holds the
    generators' moving average, else "raw"."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        return _single_weights(path, None)[1]
    folder = resolve_checkpoint(path)
    networks = read_manifest(folder, read_checkpoint_config(folder))["networks"]
    return "ema" if any(isinstance(entry, dict) and "ema" in entry for entry in networks.values()) else "raw"


def _chosen_weights(path: Path, folder: Path, entry: dict[str, Any], weights: str | None) -> tuple[Path, str]:
    """The weights file of a checkpoint folder's generator entry that `weights` asks for (None: the average if
    there is one), and which kind it is."""
    average = entry.get("ema")
    if weights == "ema" and not isinstance(average, dict):
        raise ConfigError(f"--weights ema: {path} holds no weight average (trained without --ema); use --weights raw")
    if weights != "raw" and isinstance(average, dict):
        return folder / str(average.get("file")), "ema"
    return folder / str(entry.get("file")), "raw"


def _single_weights(path: Path, weights: str | None) -> tuple[Path, str]:
    """A lone weights file is the weights it holds; asking for the other kind is an error."""
    kind = "ema" if read_metadata(path).get("weights") == "ema" else "raw"
    if weights is not None and weights != kind:
        held = "the moving average of the weights" if kind == "ema" else "the raw weights"
        raise ConfigError(f"--weights {weights}: {path} holds {held}; pass the checkpoint folder or drop --weights")
    return path, kind


def direction_config(config: RunConfig, manifest: dict[str, Any], direction: str, generator: Any) -> RunConfig:
    """The run configuration as one direction's generator sees it: its architecture, its input and output domains."""
    view = copy.deepcopy(config)
    view.generator = generator
    source, target = manifest["domains"].get(direction[0], {}), manifest["domains"].get(direction[-1], {})
    view.data.direction = direction
    view.data.input_sample_type = source.get("sample_type") or ""
    view.data.sample_type = target.get("sample_type") or config.data.sample_type
    view.data.input_range = list(source.get("value_range") or [])
    view.data.output_range = list(target.get("value_range") or [])
    return view


def prune_checkpoints(root: Path, keep_last: int, protect: set[str] | None = None) -> None:
    """Delete all but the newest `keep_last` step checkpoints (0 keeps everything)."""
    if keep_last <= 0:
        return
    protect = protect or set()
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in steps[:-keep_last]:
        if old.name not in protect:
            shutil.rmtree(old)


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a run folder, a checkpoints folder, a checkpoint folder or a weights file; return the checkpoint folder."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint, run folder or weights file")
    if path.is_file():
        if path.suffix == ".safetensors":
            return path.parent
        if path.suffix in (".pth", ".pt"):
            raise CheckpointError(
                f"{path}: a PyTorch pickle, not a diptych checkpoint; if it is a pytorch-CycleGAN-and-pix2pix "
                "generator, convert it first with `diptych convert-reference`"
            )
        raise CheckpointError(f"{path}: not a diptych checkpoint (expected a folder or a .safetensors file)")
    for candidate in (path, path / CHECKPOINTS_DIR):
        latest = candidate / LATEST_FILE
        if latest.is_file():
            target = candidate / _latest_name(latest)
            if not (target / CONFIG_FILE).is_file():
                raise CheckpointError(f"{latest}: points to {target}, which is not a complete checkpoint")
            return target
    if (path / CONFIG_FILE).is_file():
        return path
    raise CheckpointError(
        f"{path}: not a diptych checkpoint (no {CONFIG_FILE}, {CHECKPOINTS_DIR}/{LATEST_FILE} or *.safetensors)"
    )


def _latest_name(latest: Path) -> str:
    """The checkpoint folder a LATEST file names: a plain name beside it (save_checkpoint writes nothing else)."""
    with latest.open("rb") as f:
        raw = f.read(256)
    try:
        name = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        name = ""
    if not name or len(raw) == 256 or any(c in name for c in "/\\\0") or name in (".", ".."):
        raise CheckpointError(f"{latest}: does not name a checkpoint folder beside it; the file was altered")
    return name


def read_checkpoint_config(path: str | Path) -> RunConfig:
    """The RunConfig stored with a checkpoint (from a weights file's metadata or the folder's config.json), checked
    like any configuration and required to describe a complete, buildable model of a format this diptych reads."""
    path = Path(path)
    source = path if path.is_file() and path.suffix == ".safetensors" else resolve_checkpoint(path) / CONFIG_FILE
    try:
        config = _stored_config(source)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None  # (it names the file and the field)
    try:
        check_generator_size(config.generator)
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    return config


def _stored_config(source: Path) -> RunConfig:
    """The configuration in a config.json or in a weights file's metadata."""
    if source.suffix != ".safetensors":
        return load_config(source, stored=True)
    raw = read_metadata(source).get("config")
    if raw is None:
        raise CheckpointError(f"{source}: safetensors file has no diptych configuration; it was not written by diptych")
    return config_from_json(raw, str(source), stored=True)


def load_weights(module: nn.Module, file: Path, network: str | None = None) -> None:
    """Load a safetensors state dict into a module, with errors that name the file; `network`: the network the file
    must hold (by the name it records; files that record none are not checked)."""
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT_TAG:
                raise CheckpointError(f"{file}: not a diptych weights file (no diptych metadata)")
            _check_embedded_version(meta, file)
            _check_network(meta, file, network)
            for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                tensors[key] = f.get_tensor(key)
    except FileNotFoundError:
        raise CheckpointError(f"{file}: weights file is missing from the checkpoint") from None
    except SAFETENSORS_ERRORS as exc:
        raise CheckpointError(f"{file}: corrupt or truncated weights file ({first_line(exc)})") from None
    mismatch = _mismatch(module, tensors)
    if mismatch:
        raise CheckpointError(
            f"{file}: weights do not match the stored architecture ({mismatch}); were they copied "
            "from another run? Keep each checkpoint's config.json with its weights"
        )
    module.load_state_dict(tensors, strict=True)


def _check_network(meta: dict[str, str], file: Path, network: str | None) -> None:
    """The network a weights file records is the one asked for: two networks of one shape (CycleGAN's G_A and G_B
    between domains of equal channels) would otherwise load each other's weights without a word."""
    held = meta.get("network")
    if network is not None and held is not None and held != network:
        raise CheckpointError(
            f"{file}: holds the {held}'s weights, not the {network}'s; the checkpoint's files were renamed or "
            "swapped: restore them from the run"
        )


def _check_embedded_version(meta: dict[str, str], file: Path) -> None:
    """The format version of the configuration a weights file carries: one this diptych reads."""
    try:
        embedded = parse_json(meta.get("config", "{}"), str(file))
        check_format_version(embedded if isinstance(embedded, dict) else {}, str(file), stored=False)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None


def _mismatch(module: nn.Module, tensors: dict[str, torch.Tensor]) -> str:
    """What differs between a module's tensors and a state dict (missing and unexpected names, other shapes or
    sample types: load_state_dict would convert those silently); empty when they match."""
    own = module.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    shapes = shape_mismatches(module, tensors)
    dtypes = [
        f"{k} {tensors[k].dtype} instead of {v.dtype}".replace("torch.", "")
        for k, v in own.items()
        if k in tensors and tensors[k].dtype != v.dtype
    ]
    found = [
        f"{len(items)} {what}, e.g. {items[0]}"
        for what, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("of another shape", shapes),
            ("of another type", dtypes),
        )
        if items
    ]
    return f"for its {type(module).__name__}: " + "; ".join(found) if found else ""


def load_training_state(folder: Path) -> dict[str, Any]:
    """Load the optimiser/scheduler/RNG state written by the trainer (our own file; weights_only)."""
    file = folder / STATE_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing; this checkpoint holds weights only and cannot be resumed")
    state = load_pickled_tensors(file, "training state", CheckpointError)
    if not isinstance(state, dict):
        raise CheckpointError(f"{file}: not a diptych training state (a {type(state).__name__}, not a dict)")
    version = state.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(
            f"{file}: training-state version {version!r} is not an integer >= 1; the file was altered"
        )
    if version > STATE_VERSION:
        raise CheckpointError(
            f"{file}: written by a newer diptych (training-state format {version}, this one reads up to "
            f"{STATE_VERSION}): upgrade diptych"
        )
    for key, kind in _STATE_TYPES.items():
        value = state.get(key)
        bad_count = kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0)
        if not isinstance(value, kind) or bad_count:
            raise CheckpointError(
                f"{file}: damaged training state ({key} is {type(value).__name__}); the file was altered"
            )
    l1 = state["epoch_l1"]
    if len(l1) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in l1):
        raise CheckpointError(f"{file}: damaged training state (epoch_l1 {l1!r}); the file was altered")
    return state


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Any, name: str, folder: Path) -> None:
    """Restore one optimiser from a training state, refusing one whose groups or per-parameter tensors (Adam's
    moments) do not fit the network: a one-line CheckpointError now, not a traceback at the first step."""
    damaged = f"{folder / STATE_FILE}: damaged training state (optimiser {name!r}"
    if not isinstance(state, dict):
        raise CheckpointError(f"{damaged} is {type(state).__name__}, not a dict); the file was altered")
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"{damaged}: {first_line(exc)}); the file was altered") from None
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.ndim and value.shape != param.shape:
                    raise CheckpointError(
                        f"{damaged}: {key} of shape {tuple(value.shape)} for a parameter of shape "
                        f"{tuple(param.shape)}); the file was altered"
                    )


# What the trainer's training_state() always writes, and the type resuming relies on.
_STATE_TYPES: dict[str, type | tuple[type, ...]] = {
    "step": int,
    "epoch": int,
    "batch_in_epoch": int,
    "epoch_l1": (list, tuple),
    "optimizers": dict,
    "schedulers": dict,
    "rng_cpu": torch.Tensor,
}


def read_metadata(file: Path) -> dict[str, str]:
    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except SAFETENSORS_ERRORS as exc:
        raise CheckpointError(f"{file}: corrupt or truncated weights file ({first_line(exc)})") from None
