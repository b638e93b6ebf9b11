"""Apply a trained generator to images of any size: arrays, PIL images, files and folders, batched."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import load_weights, read_checkpoint_config, resolve_checkpoint, weights_file
from .config import TEST_MODES, RunConfig
from .data.io import from_tensor, list_images, output_suffix, read_image, to_tensor, write_image
from .device import resolve_device
from .errors import ConfigError, DataError
from .nets import create_generator

PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


class Translator:
    """A trained generator ready for inference; `Translator.load(path)(image)` translates one image."""

    def __init__(
        self, generator: nn.Module, config: RunConfig, device: torch.device, mode: str | None = None, seed: int = 0
    ) -> None:
        mode = mode or config.test_mode
        if mode not in TEST_MODES:
            raise ConfigError(f"--test-mode {mode!r} is not one of: {', '.join(TEST_MODES)}")
        self.generator = generator.to(device)
        self.config = config
        self.device = device
        self.mode = mode
        self.in_channels = config.generator.in_channels
        self.out_dtype = np.dtype(config.data.sample_type or "uint8")
        # 'paper' keeps dropout on and uses per-image batch statistics, as pix2pix did at test time.
        self.generator.train(mode == "paper")
        if mode == "paper":
            for m in self.generator.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.momentum = 0.0  # use batch statistics without drifting the stored running ones
        self._rng = torch.Generator(device=device).manual_seed(seed)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", mode: str | None = None, seed: int = 0) -> Translator:
        """Load a generator from a run folder, checkpoint folder or generator.safetensors file."""
        path = Path(path)
        config = read_checkpoint_config(path)
        weights = path if path.suffix == ".safetensors" else resolve_checkpoint(path) / weights_file("generator")
        generator = create_generator(config.generator)
        load_weights(generator, weights)
        return cls(generator, config, resolve_device(device), mode, seed)

    @torch.no_grad()
    def translate_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Translate a Bx C x H x W batch in [-1, 1]; any H and W (padded to the network stride and cropped back)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise DataError(f"expected a batch of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if self.mode == "paper":
            # Dropout draws from the global RNG; fork it so a seeded Translator is reproducible.
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=self._rng)))
                return self.generator(x.to(self.device)).float().cpu()
        return self.generator(x.to(self.device)).float().cpu()

    def __call__(self, image: Image.Image | np.ndarray) -> Image.Image | np.ndarray:
        """Translate one PIL image or HxW(xC) array; returns the same kind, at the input's size."""
        if isinstance(image, Image.Image):
            arr = np.asarray(image.convert(PIL_MODES.get(self.in_channels, image.mode)))
            out = self._translate_array(arr)
            if out.dtype != np.uint8 and out.shape[2] > 1:
                raise DataError(f"{out.shape[2]}-channel {out.dtype} output cannot be a PIL image; pass a NumPy array")
            if out.dtype == np.uint16:
                return Image.fromarray(out[:, :, 0].astype(np.int32)).convert("I;16")
            return Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out)
        return self._translate_array(np.asarray(image))

    def _translate_array(self, arr: np.ndarray) -> np.ndarray:
        arr = self.match_channels(arr if arr.ndim == 3 else arr[:, :, None], "input")
        return from_tensor(self.translate_tensor(to_tensor(arr)[None])[0], self.out_dtype)

    def match_channels(self, arr: np.ndarray, name: str) -> np.ndarray:
        c = arr.shape[2]
        if c == self.in_channels:
            return arr
        if arr.dtype == np.uint8 and c in PIL_MODES and self.in_channels in PIL_MODES:
            src = Image.fromarray(arr[:, :, 0] if c == 1 else arr)
            out = np.asarray(src.convert(PIL_MODES[self.in_channels]))
            return out if out.ndim == 3 else out[:, :, None]
        raise DataError(f"{name}: has {c} channel(s) but the model expects {self.in_channels}")

    def translate_files(
        self,
        inputs: Iterable[str | Path],
        out_dir: str | Path,
        *,
        batch_size: int = 4,
        aligned: bool = False,
        suffix: str = ".png",
        skip_bad: bool = False,
        progress: bool = True,
    ) -> list[Path]:
        """Translate files and folders into out_dir (folder structure kept); return the written paths."""
        out_channels = self.config.generator.out_channels
        if suffix in (".jpg", ".jpeg") and (self.out_dtype != np.uint8 or out_channels not in (1, 3)):
            raise ConfigError(
                f"--format jpg cannot hold {out_channels}-channel {self.out_dtype} output; use --format png or tif"
            )
        suffix = output_suffix(suffix, self.out_dtype, out_channels)
        jobs = plan_outputs(inputs, Path(out_dir), suffix)
        if self.mode == "paper":
            batch_size = 1  # batch statistics would mix images
        written: list[Path] = []
        bad: list[str] = []
        bar = tqdm(total=len(jobs), desc="translate", unit="img", disable=not progress, dynamic_ncols=True)
        with ThreadPoolExecutor(max_workers=2) as pool:
            pending = []
            for group in _same_size_batches(self._decoded(jobs, aligned, pool, bad, skip_bad), batch_size):
                outputs = self.translate_tensor(torch.stack([t for _, t in group]))
                for (dest, _), out in zip(group, outputs, strict=True):
                    pending.append(pool.submit(write_image, dest, from_tensor(out, self.out_dtype)))
                bar.update(len(group))
            written = [f.result() for f in pending]
        bar.close()
        if bad:
            print(f"diptych: skipped {len(bad)} bad input(s):", file=sys.stderr)
            for msg in bad:
                print(f"  {msg}", file=sys.stderr)
        return written

    def _decoded(
        self, jobs: list[tuple[Path, Path]], aligned: bool, pool: ThreadPoolExecutor, bad: list[str], skip_bad: bool
    ) -> Iterator[tuple[Path, torch.Tensor]]:
        def load(job: tuple[Path, Path]) -> tuple[Path, torch.Tensor]:
            src, dest = job
            arr = read_image(src)
            if aligned:
                half = arr.shape[1] // 2
                if arr.shape[1] % 2:
                    raise DataError(f"{src}: aligned A|B image has odd width {arr.shape[1]}")
                arr = arr[:, :half] if self.config.data.direction == "AtoB" else arr[:, half:]
            return dest, to_tensor(self.match_channels(arr, str(src)))

        window = 8
        futures = [pool.submit(load, job) for job in jobs[:window]]
        for i in range(len(jobs)):
            if i + window < len(jobs):
                futures.append(pool.submit(load, jobs[i + window]))
            try:
                yield futures[i].result()
            except DataError as exc:
                if not skip_bad:
                    raise
                bad.append(str(exc))
            futures[i] = None  # type: ignore[call-overload]


def plan_outputs(inputs: Iterable[str | Path], out_dir: Path, suffix: str = ".png") -> list[tuple[Path, Path]]:
    """Map input files/folders to output paths; reject missing inputs, collisions and writing over an input."""
    jobs: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = list_images(path)
            if not files:
                raise DataError(f"{path}: folder holds no images")
            jobs += [(f, out_dir / f.relative_to(path).with_suffix(suffix)) for f in files]
        elif path.is_file():
            jobs.append((path, out_dir / (path.stem + suffix)))
        else:
            raise DataError(f"{path}: no such file or folder")
    seen: dict[Path, Path] = {}
    sources = {src.resolve() for src, _ in jobs}
    for src, dest in jobs:
        if dest in seen:
            raise DataError(f"{src} and {seen[dest]} would both be written to {dest}; translate them separately")
        if dest.resolve() in sources:
            raise DataError(f"{dest}: output would overwrite an input; choose another --out folder")
        seen[dest] = src
    return jobs


def _same_size_batches(
    items: Iterator[tuple[Path, torch.Tensor]], batch_size: int
) -> Iterator[list[tuple[Path, torch.Tensor]]]:
    group: list[tuple[Path, torch.Tensor]] = []
    for item in items:
        if group and (len(group) == batch_size or group[0][1].shape != item[1].shape):
            yield group
            group = []
        group.append(item)
    if group:
        yield group
