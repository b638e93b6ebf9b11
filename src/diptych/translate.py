"""Apply a trained generator to images of any size: arrays, PIL images, files and folders, batched."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from .atomic import check_name_length, remove_stale_temporaries_of
from .checkpoint import open_generator
from .config import TEST_MODES, RunConfig
from .data.checks import check_all
from .data.io import (
    TIFF_EXTENSIONS,
    ValueRange,
    check_encodable,
    convert_channels,
    exif_orientation,
    from_tensor,
    image_array,
    image_suffix,
    list_images,
    orient,
    output_suffix,
    pil_to_array,
    read_image,
    strip_image_suffix,
    tiff_codec,
    to_tensor,
    write_image,
)
from .data.labels import check_label_range
from .data.nifti import is_nifti, nifti_shape, read_nifti_slices, slice_index, write_nifti_like
from .data.paired import label_spec
from .device import resolve_device
from .errors import ConfigError, DataError
from .exported import BACKENDS, ExportedGenerator, backend_for, exported_kind, load_exported
from .memory import bytes_per_input_pixel
from .nets.geometry import Geometry
from .nets.inference import prepare_for_inference
from .precision import AUTOCAST_DTYPES, PRECISIONS, resolve_precision, use_precision
from .tiling import (
    RowSource,
    TileSettings,
    auto_tile,
    available_memory,
    check_tiles,
    default_overlap,
    tiled_rows,
    to_samples,
    write_tiff_streamed,
)

TILE_BATCH_PIXELS = 1 << 20
# Decoded inputs kept from the check pass for the translation pass (beyond this, files are decoded again).
DECODED_CACHE_BYTES = 256 << 20


class Translator:
    """A trained generator ready for inference; `Translator.load(path)(image)` translates one image."""

    def __init__(
        self,
        generator: nn.Module,
        config: RunConfig,
        device: torch.device,
        mode: str | None = None,
        seed: int = 0,
        precision: str = "fp32",
        optimize: bool = False,
    ) -> None:
        """optimize: the generator is this Translator's own, so it may be rewritten for inference (weights stored
        in the autocast type; in eval mode also batch norms folded into convolutions; see nets/inference.py)."""
        mode = mode or config.test_mode
        if mode not in TEST_MODES:
            raise ConfigError(f"--test-mode {mode!r} is not one of: {', '.join(TEST_MODES)}")
        self.generator = generator.to(device)
        self.config = config
        self.device = device
        self.mode = mode
        self.in_channels = config.generator.in_channels
        self.out_dtype = np.dtype(config.data.sample_type or "uint8")
        # The value ranges training mapped to [-1, 1] (None: each image's sample type), inverted on output.
        self.in_range: ValueRange | None = _stored_range(config.data.input_range)
        self.out_range: ValueRange | None = _stored_range(config.data.output_range)
        # Inputs beyond a percentile range or a DICOM window are clipped by design; beyond others they are refused.
        in_side = "A" if config.data.direction == "AtoB" else "B"
        self.in_clipped = config.data.normalize == "percentile" or config.data.window(in_side) is not None
        # 'paper' keeps dropout on and uses per-image batch statistics, as pix2pix did at test time.
        self.generator.train(mode == "paper")
        if mode == "paper":
            for m in self.generator.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    per_image_statistics(m)
        self._rng = torch.Generator().manual_seed(seed)  # on the CPU: it only draws per-call seeds
        self.labels = label_spec(config.data)
        if self.labels is not None and self.scale != 1:
            raise ConfigError(
                f"this model upscales label maps x{self.scale} (--label-nc {config.data.label_nc}); diptych translates "
                "label maps at their own size only: retrain at --scale 1 or give images, not label maps"
            )
        self.needs_instances = bool(config.data.instance_dir)
        self.instance_dir: Path | None = None
        if precision not in PRECISIONS:
            raise ConfigError(f"--precision {precision!r} is not one of: {', '.join(PRECISIONS)}")
        self.precision = resolve_precision(precision, device, self.out_dtype.name)
        if optimize and not isinstance(self.generator, ExportedGenerator):
            prepare_for_inference(self.generator, AUTOCAST_DTYPES.get(self.precision), fold=mode == "eval")
        use_precision(self.generator, self.precision, device, fallback=False)
        # Convolutions in channels-last layout: 1.2x (fp32) to 1.4x (bf16) faster for a unet_256 on CPU (oneDNN),
        # and the layout cuDNN prefers on GPUs. Outputs agree with the default layout to float rounding.
        # (pix2pixHD's reflection pads and instance norms are slower channels-last on CPU: 4.99 against 4.55 s for
        # its default generator at 2048x1024 in bf16, so generators can opt out with CPU_CHANNELS_LAST = False.)
        channels_last = device.type == "cuda" or (
            device.type == "cpu" and getattr(type(generator), "CPU_CHANNELS_LAST", True)
        )
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if not isinstance(self.generator, ExportedGenerator):
            self.generator.to(memory_format=self.memory_format)
        self._warned_instance_norm = False
        self.weights_path: Path | None = None  # the checkpoint weights file the generator came from, if any
        self.weights: str | None = None  # which of a checkpoint's weights: "raw" or "ema" (None: not a checkpoint)

    @property
    def scale(self) -> int:
        """Output size / input size (the generator's geometry)."""
        return self.generator.geometry.scale

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str = "auto",
        mode: str | None = None,
        seed: int = 0,
        precision: str = "auto",
        backend: str | None = None,
        direction: str | None = None,
        weights: str | None = None,
    ) -> Translator:
        """Load a generator from a run folder, checkpoint folder, generator.safetensors file, or a model exported
        by `diptych export` (.onnx runs on onnxruntime, a TorchScript file on torch).

        direction: "AtoB" or "BtoA", for a checkpoint that offers both (None: its only one, or AtoB).
        weights: "ema" (the moving average of a run trained with --ema), "raw" (the weights as trained) or None (the
        average where the checkpoint holds one, else the raw weights); `translator.weights` says which ran.
        precision: "auto" (bf16 autocast where the hardware runs it natively: CPUs with AVX-512 bf16 or AMX,
        recent GPUs; else fp32), "fp32", "bf16" or "fp16" (CUDA). bf16 outputs differ from fp32 by at most one
        8-bit level (57 dB PSNR between the two on a trained unet_256). backend: "torch", "onnxruntime" or None
        (from the file).
        """
        path = Path(path)
        kind = exported_kind(path)
        if backend is not None and backend not in BACKENDS:
            raise ConfigError(f"--backend {backend!r} is not one of: {', '.join(BACKENDS)}")
        if backend is not None and backend != backend_for(kind):
            what = {None: "a checkpoint", "onnx": "an ONNX export"}.get(kind, "a TorchScript export")
            raise ConfigError(
                f"--backend {backend} cannot run {path} ({what}, which runs on {backend_for(kind)}); "
                + (
                    "export it first with `diptych export --format onnx`"
                    if backend == "onnxruntime"
                    else "drop --backend"
                )
            )
        if kind is not None:
            if mode == "paper":
                raise ConfigError(
                    f"--test-mode paper cannot run {path}: an export holds the eval-mode generator; "
                    "translate the checkpoint instead"
                )
            if precision not in ("auto", "fp32"):
                raise ConfigError(f"--precision {precision} applies to checkpoints; {path} is an fp32 export")
            if weights is not None:
                raise ConfigError(f"--weights applies to checkpoints; {path} is an export of one set of weights")
            resolved = resolve_device(device)
            generator, config = load_exported(path, resolved, kind)
            if direction is not None and direction != config.data.direction:
                raise ConfigError(
                    f"--direction {direction}: {path} translates {config.data.direction} only (an export holds one "
                    "generator); export the other with `diptych export --direction`"
                )
            return cls(generator, config, resolved, "eval", seed)
        generator, config, file, kind = open_generator(path, direction, weights)
        translator = cls(generator, config, resolve_device(device), mode, seed, precision, optimize=True)
        translator.weights_path, translator.weights = file, kind
        return translator

    @torch.no_grad()
    def translate_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Translate a Bx C x H x W batch in [-1, 1]; any H and W (padded as the network pads inputs, cropped back to
        `scale` x H x `scale` x W)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise DataError(f"expected a batch of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if self.mode == "paper":
            # Dropout draws from the global RNG; fork it so a seeded Translator is reproducible.
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=self._rng)))
                return self._forward(x)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if not isinstance(self.generator, ExportedGenerator):
            x = x.contiguous(memory_format=self.memory_format)
        return self.generator(x).float().cpu().contiguous()

    def __call__(
        self, image: Image.Image | np.ndarray, instances: np.ndarray | None = None
    ) -> Image.Image | np.ndarray:
        """Translate one PIL image or HxW(xC) array; returns the same kind, at the input's size times the model's
        scale. A PIL image's EXIF orientation is applied first, as for files (and image viewers): the output is
        upright."""
        if isinstance(image, Image.Image):
            upright = orient(pil_to_array(image, self.labels is not None), exif_orientation(image))
            out = self._translate_array(upright, instances)
            if out.dtype != np.uint8 and out.shape[2] > 1:
                raise DataError(f"{out.shape[2]}-channel {out.dtype} output cannot be a PIL image; pass a NumPy array")
            if out.dtype == np.uint16:
                return Image.fromarray(out[:, :, 0].astype(np.int32)).convert("I;16")
            return Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out)
        arr = np.asarray(image)
        if arr.dtype.kind not in "uif" or arr.ndim not in (2, 3):
            raise DataError(f"input array of {arr.dtype} with shape {arr.shape}: pass HxW or HxWxC numbers")
        return self._translate_array(arr, instances)

    def _translate_array(self, arr: np.ndarray, instances: np.ndarray | None = None) -> np.ndarray:
        x = self.encode(arr if arr.ndim == 3 else arr[:, :, None], "input", instances)
        return self.decode(self.translate_tensor(x[None])[0])

    def decode(self, out: torch.Tensor) -> np.ndarray:
        """A CxHxW generator output as an HxWxC array in the training targets' sample type and value range."""
        return from_tensor(out, self.out_dtype, self.out_range)

    def encode(self, arr: np.ndarray, name: str, instances: np.ndarray | None = None) -> torch.Tensor:
        """An input image as the generator's CxHxW input: [-1, 1] pixels, or one-hot channels for label maps
        (plus the instance boundary channel for models trained with instance maps)."""
        if self.labels is not None:
            if self.needs_instances and instances is None:
                raise DataError(f"{name}: this model was trained with instance maps; give one (--instance-dir DIR)")
            inst = None if instances is None else (instances[:, :, 0] if instances.ndim == 3 else instances)
            return self.labels.encode(arr[:, :, 0] if arr.ndim == 3 else arr, inst, name)
        self.check_input(arr, name)
        # (clamped: values within the tolerance check_input allows beyond the range are clipped into it)
        return to_tensor(self.match_channels(arr, name), self.in_range).clamp_(-1.0, 1.0)

    def check_input(self, arr: np.ndarray, name: str) -> None:
        """Refuse input samples this model cannot take faithfully (see data.io.check_encodable): non-finite values,
        integers wider than 16 bits without a stored range, values far beyond the model's input range."""
        check_encodable(arr, self.in_range, name, self.in_clipped)

    def match_channels(self, arr: np.ndarray, name: str) -> np.ndarray:
        """Adapt an input's channels to the model (grey <-> RGB, alpha added or dropped) or raise DataError."""
        return convert_channels(arr, self.in_channels, name)

    def translate_files(
        self,
        inputs: Iterable[str | Path],
        out_dir: str | Path,
        *,
        batch_size: int = 4,
        aligned: bool = False,
        suffix: str = ".png",
        skip_bad: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        instance_dir: str | Path | None = None,
        tile: int | str | None = None,
        overlap: int | None = None,
        memory_budget: int | None = None,
        tiff_compression: str = "none",
    ) -> list[Path]:
        """Translate files and folders into out_dir (folder structure kept); return the written paths.

        Every input is decoded once before anything is written, so a bad file stops the run with no outputs
        (or is skipped and listed with skip_bad); existing outputs are only replaced with overwrite=True.
        With `tile` (pixels, or "auto" to fit `memory_budget` bytes), each image is translated in overlapping,
        blended tiles and streamed by rows (see tiling.py); inputs are then only opened, not decoded, up front.
        TIFF outputs are compressed with `tiff_compression` (none, deflate, lzw, zstd; lossless).
        """
        tiff_codec(tiff_compression)  # an unknown name fails before any work
        # (the CLI's argparse types check these too; the Python API gets the same one-line errors)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size {batch_size!r} must be a whole number >= 1")
        if memory_budget is not None and not memory_budget > 0:
            raise ConfigError(f"memory_budget {memory_budget!r} must be a number of bytes > 0")
        self.instance_dir = self.instance_folder(instance_dir)
        out_dir = Path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise DataError(f"{out_dir}: exists and is not a folder; choose another --out")
        out_channels = self.config.generator.out_channels
        if suffix in (".jpg", ".jpeg") and (self.out_dtype != np.uint8 or out_channels not in (1, 3)):
            raise ConfigError(
                f"--format jpg cannot hold {out_channels}-channel {self.out_dtype} output; use --format png or tif"
            )
        suffix = output_suffix(suffix, self.out_dtype, out_channels)
        jobs = plan_outputs(inputs, out_dir, suffix)
        volumes = [job for job in jobs if is_nifti(job[0])]
        if volumes and (tile is not None or aligned):
            raise ConfigError(f"{volumes[0][0]}: NIfTI volumes cannot be combined with --tile or --aligned")
        if volumes and self.scale != 1:
            raise ConfigError(
                f"{volumes[0][0]}: this model upscales x{self.scale}, and a NIfTI volume is written on its input's "
                "grid (affine, header); translate its slices as TIFF or .npy files instead"
            )
        # An output name the file system cannot hold stops the run (or is skipped) before anything is written.
        jobs, bad = check_all(jobs, lambda job: check_name_length(job[1]), skip_bad, workers=1)
        remove_stale_temporaries_of(dest for _, dest in jobs)  # left by an earlier run killed while writing them
        existing = [dest for _, dest in jobs if dest.exists()]
        if existing and not overwrite:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise DataError(f"{existing[0]}: already exists{more}; pass --overwrite to replace earlier outputs")
        if tile is not None:
            if aligned:
                raise ConfigError("--tile cannot be combined with --aligned; split the A|B images first")
            settings = self.tile_settings(tile, overlap, memory_budget, batch_size)
            if tile == "auto" and progress:
                print(f"diptych: --tile auto: {settings.tile} px tiles, overlap {settings.overlap}", file=sys.stderr)
            # One at a time: a format that does not stream is decoded whole to be checked. Checked last and
            # translated first, the first image keeps what its check decoded (one decoded image at a time).
            decoded: list[RowSource] = []

            def check(job: tuple[Path, Path]) -> None:
                decoded.clear()
                source = self._check_tiled_input(job[0])
                if not source.streamed:
                    decoded.append(source)

            checked, errors = check_all(jobs[::-1], check, skip_bad, workers=1)
            jobs = checked[::-1]
            bad.extend(errors)
            written = []
            for src, dest in tqdm(jobs, desc="translate (tiled)", unit="img", disable=not progress, dynamic_ncols=True):
                source = decoded.pop() if decoded and decoded[0].path == src else None
                # Streamed inputs are checked by their header and first rows only (a full check would decode
                # them twice): damage deeper in the data surfaces here. Its output is not written (atomic).
                with _skippable(bad, skip_bad):
                    written.append(self.translate_file_tiled(src, dest, settings, tiff_compression, source))
            _report_skipped(bad)
            return written
        jobs, kept = self._check_inputs(jobs, aligned, bad, skip_bad)
        volumes = [job for job in jobs if is_nifti(job[0])]
        jobs = [job for job in jobs if not is_nifti(job[0])]
        written: list[Path] = []
        for src, dest in volumes:
            # (also data damaged past what the check read: a .nii.gz is not decompressed twice)
            with _skippable(bad, skip_bad):
                written.append(self.translate_volume(src, dest, batch_size))
        bar = tqdm(total=len(jobs), desc="translate", unit="img", disable=not progress or not jobs, dynamic_ncols=True)
        with ThreadPoolExecutor(max_workers=2) as pool:
            pending = []
            for group in _same_size_batches(self._decoded(jobs, aligned, pool, kept), batch_size):
                outputs = self.translate_tensor(torch.stack([t for _, t in group]))
                for (dest, _), out in zip(group, outputs, strict=True):
                    pending.append(pool.submit(write_image, dest, self.decode(out), tiff_compression))
                bar.update(len(group))
            for future in pending:
                with _skippable(bad, skip_bad):  # an output that cannot be written (name too long, disk full)
                    written.append(future.result())
        bar.close()
        _report_skipped(bad)
        return written

    def tile_settings(
        self, tile: int | str, overlap: int | None, memory_budget: int | None, batch_size: int = 1
    ) -> TileSettings:
        """Resolve --tile/--overlap (and the budget for --tile auto) into checked settings."""
        g: Geometry = self.generator.geometry
        stride = g.stride
        geometry = {"stride": g.stride, "multiple": g.multiple, "minimum": g.min_side, "scale": g.scale}
        if self.mode == "paper":
            raise ConfigError("--tile needs --test-mode eval: per-tile batch statistics and dropout would show seams")
        if tile == "auto":
            if isinstance(self.generator, ExportedGenerator):
                raise ConfigError("--tile auto measures the PyTorch network; with an exported model give --tile N")
            budget = memory_budget or available_memory() // 2
            tile = auto_tile(self.bytes_per_pixel() * max(1, batch_size), budget, stride, minimum=geometry["minimum"])
        if isinstance(tile, str):
            try:
                tile = int(tile)
            except ValueError:
                raise ConfigError(f"--tile {tile!r} is not a number of pixels or 'auto'") from None
        if overlap is None:
            overlap = default_overlap(tile, g.context)
        check_tiles(TileSettings(tile, overlap, 1, **geometry))
        # Tiles per forward pass: --batch-size, but at most about a megapixel of tiles (large tiles already keep
        # every core busy; four 1024 px tiles at once would cost 4x the activation memory for no speed).
        batch = max(1, min(batch_size, TILE_BATCH_PIXELS // (tile * tile)))
        settings = TileSettings(tile, overlap, batch, **geometry)
        # The network itself decides what it can take (instance norm needs > 1 pixel at the bottleneck); beyond 8
        # strides a side every level has pixels to spare, so larger tiles are probed at that size (an RRDBNet's
        # 512 px tile would take minutes on a CPU).
        probe = min(tile, 8 * max(stride, geometry["minimum"]))
        try:
            self.translate_tensor(torch.zeros(1, self.in_channels, probe, probe))
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"--tile {tile} is too small for this network ({str(exc).splitlines()[0][:120]}); use a larger --tile"
            ) from None
        if self.config.generator.norm == "instance" and not self._warned_instance_norm:
            self._warned_instance_norm = True
            print(
                "diptych: warning: this generator uses instance norm, whose statistics are taken per tile; tiled output "
                "can differ from whole-image output (larger tiles reduce the difference)",
                file=sys.stderr,
            )
        return settings

    def bytes_per_pixel(self) -> float:
        """Activation bytes per input pixel at their peak in one forward pass: the tensors every operation creates
        (layers and functional calls alike, the output at `scale`**2 x the input's pixels included), counted
        while they are alive."""
        # At least two strides a side (instance-norm networks need more than one pixel at their bottleneck).
        stride = self.generator.geometry.stride
        small = max(2 * stride, 8)
        large = small + max(stride, small // 2)

        def forward(side: int) -> torch.Tensor:
            return self.translate_tensor(torch.zeros(1, self.in_channels, side, side))

        return bytes_per_input_pixel(forward, small, large).peak

    def _check_tiled_input(self, src: Path) -> RowSource:
        """Check what would stop a tiled translation half-way, before any output is written: the file opens (formats
        that do not stream are decoded), its channels suit the model, its instance map exists and has its size, and
        every label is in range (label maps, read band by band so memory stays bounded). Returns the source."""
        source = RowSource(src, palette_indices=self.labels is not None)
        self._tiled_instances(src, source)
        if self.labels is None:
            first = source.rows(0, 1)
            self.match_channels(first, str(src))
            self.check_input(first, str(src))
            if self._scans_samples(first.dtype):
                for band in _bands(source):
                    self.check_input(band, str(src))
        else:
            for band in _bands(source):
                labels = np.rint(band[:, :, 0]).astype(np.int64)
                check_label_range(labels, self.labels.label_nc, self.labels.ignore_label, str(src))
        return source

    def _tiled_instances(self, src: Path, source: RowSource) -> RowSource | None:
        """The instance map of a tiled input, for models that take one (checked to have the input's size)."""
        if not self.needs_instances:
            return None
        inst_path = self._instance_file(src)
        instances = RowSource(inst_path)
        if (instances.height, instances.width) != (source.height, source.width):
            raise DataError(f"{inst_path}: size differs from its label map {src}")
        return instances

    def translate_file_tiled(
        self,
        src: Path,
        dest: Path,
        settings: TileSettings,
        tiff_compression: str = "none",
        source: RowSource | None = None,
    ) -> Path:
        """Translate one image in blended tiles; stream rows into a TIFF, or assemble other formats in memory.
        `source`: `src` already opened (e.g. decoded by the check pass)."""
        source = source or RowSource(src, palette_indices=self.labels is not None)
        instances = self._tiled_instances(src, source)

        def tile_input(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
            if instances is None:
                return self.encode(source.rows(y0, y1, x0, x1), str(src))
            # Boundaries need each pixel's neighbours: encode a pixel of margin on every side, then drop it.
            m0, m1 = max(0, y0 - 1), min(source.height, y1 + 1)
            n0, n1 = max(0, x0 - 1), min(source.width, x1 + 1)
            encoded = self.encode(source.rows(m0, m1, n0, n1), str(src), instances.rows(m0, m1, n0, n1))
            if x0 == 0:
                instances.release(y0 - 1)
            return encoded[:, y0 - m0 : y1 - m0, x0 - n0 : x1 - n0]

        out_c, k = self.config.generator.out_channels, settings.scale
        bands = tiled_rows(source, self.translate_tensor, tile_input, out_c, settings)
        samples = (to_samples(b, self.out_dtype, self.out_range) for b in bands)
        if dest.suffix.lower() in TIFF_EXTENSIONS:
            return write_tiff_streamed(
                dest, source.height * k, source.width * k, out_c, self.out_dtype, samples, tiff_compression
            )
        return write_image(dest, np.concatenate(list(samples)), tiff_compression)

    def translate_volume(self, src: Path, dest: Path, batch_size: int = 4) -> Path:
        """Translate a NIfTI image slice by slice (along data.nifti_axis) and write the output volume as NIfTI
        with the input's affine and header; `batch_size` slices at a time are read through nibabel's proxy."""
        spatial, _ = nifti_shape(src)
        axis = self.config.data.nifti_axis if len(spatial) == 3 else 0
        count = spatial[axis] if len(spatial) == 3 else 1
        out_c = self.config.generator.out_channels
        volume = np.zeros(spatial + ((out_c,) if out_c > 1 else ()), dtype=self.out_dtype)
        step = max(1, batch_size)
        for first in range(0, count, step):
            block = read_nifti_slices(src, axis, first, min(first + step, count))
            batch = torch.stack([self.encode(image_array(s, src), str(src)) for s in block])
            for i, out in enumerate(self.translate_tensor(batch)):
                arr = self.decode(out)
                key = slice_index(len(spatial), axis, first + i) if len(spatial) == 3 else ()
                volume[key] = arr if out_c > 1 else arr[:, :, 0]
        return write_nifti_like(dest, volume, src)

    def _load(self, src: Path, aligned: bool) -> torch.Tensor:
        return self._encode_read(src, self._read(src, aligned))

    def _read(self, src: Path, aligned: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """An input file's pixels (the A or B half of an A|B image) and its instance map, decoded."""
        if is_nifti(src):  # a volume is checked by its header and first slice here, read slice by slice later
            spatial, _ = nifti_shape(src)
            vs = None if len(spatial) == 2 else (self.config.data.nifti_axis, 0)
            first = read_image(src, volume_slice=vs)
            if len(spatial) == 3 and self._scans_samples(first.dtype):
                self._check_volume_samples(src, spatial[self.config.data.nifti_axis])
            return first, None
        arr = read_image(src, palette_indices=self.labels is not None)
        if aligned:
            if arr.shape[1] % 2:
                raise DataError(f"{src}: aligned A|B image has odd width {arr.shape[1]}")
            half = arr.shape[1] // 2
            arr = arr[:, :half] if self.config.data.direction == "AtoB" else arr[:, half:]
        instances = None
        if self.needs_instances:
            inst_path = self._instance_file(src)
            instances = read_image(inst_path)
            if instances.shape[:2] != arr.shape[:2]:
                raise DataError(f"{inst_path}: size differs from its label map {src}")
        return arr, instances

    def _scans_samples(self, dtype: np.dtype) -> bool:
        """Whether an input of this sample type must be checked all through before translation (floats may hold
        NaN, and a stored range may be exceeded), not only where it is first read."""
        return self.labels is None and (dtype.kind == "f" or (self.in_range is not None and not self.in_clipped))

    def _check_volume_samples(self, src: Path, count: int, step: int = 16) -> None:
        """Every slice of a NIfTI volume checked, `step` slices at a time (memory stays bounded)."""
        axis = self.config.data.nifti_axis
        for first in range(0, count, step):
            for s in read_nifti_slices(src, axis, first, min(first + step, count)):
                self.check_input(image_array(s, src), str(src))

    def _encode_read(self, src: Path, read: tuple[np.ndarray, np.ndarray | None]) -> torch.Tensor:
        return self.encode(read[0], str(src), read[1])

    def instance_folder(self, instance_dir: str | Path | None) -> Path | None:
        """The --instance-dir given, checked: an existing folder, for a model trained with instance maps only."""
        if not instance_dir:
            return None
        folder = Path(instance_dir)
        if not self.needs_instances:
            raise ConfigError(
                f"--instance-dir {folder}: this model was trained without instance maps; leave the option out"
            )
        if not folder.is_dir():
            raise DataError(f"--instance-dir {folder}: no such folder; give the folder of the inputs' instance maps")
        return folder

    def _instance_file(self, src: Path) -> Path:
        """The instance-id map named like `src` in --instance-dir."""
        if self.instance_dir is None:
            raise ConfigError("this model was trained with instance maps: pass --instance-dir DIR")
        matches = sorted(self.instance_dir.glob(f"{src.stem}.*"))
        if not matches:
            raise DataError(f"{self.instance_dir}: no instance map named {src.stem}.* for {src}")
        return matches[0]

    def _check_inputs(
        self, jobs: list[tuple[Path, Path]], aligned: bool, bad: list[str], skip_bad: bool
    ) -> tuple[list[tuple[Path, Path]], dict[Path, tuple[np.ndarray, np.ndarray | None]]]:
        """Decode and encode every input once (in threads) so a bad one is found before any output is written.

        Returns the good jobs and their decoded pixels, kept (up to DECODED_CACHE_BYTES) so the translation
        pass does not decode them again."""
        kept: dict[Path, tuple[np.ndarray, np.ndarray | None]] = {}
        budget = DECODED_CACHE_BYTES
        lock = threading.Lock()

        def check(job: tuple[Path, Path]) -> None:
            nonlocal budget
            read = self._read(job[0], aligned)
            self._encode_read(job[0], read)
            # A view (the A half of an A|B image) keeps its whole decoded image alive: count that.
            size = sum(getattr(a.base, "nbytes", a.nbytes) for a in read if a is not None)
            with lock:
                if size <= budget and not is_nifti(job[0]):
                    budget -= size
                    kept[job[0]] = read

        good, errors = check_all(jobs, check, skip_bad)
        bad.extend(errors)
        return good, kept

    def _decoded(
        self,
        jobs: list[tuple[Path, Path]],
        aligned: bool,
        pool: ThreadPoolExecutor,
        kept: dict[Path, tuple[np.ndarray, np.ndarray | None]],
    ) -> Iterator[tuple[Path, torch.Tensor]]:
        """Encode inputs (decoding those the check pass did not keep) a few ahead of the network, in the pool."""

        def load(src: Path) -> torch.Tensor:
            read = kept.pop(src, None)
            return self._load(src, aligned) if read is None else self._encode_read(src, read)

        window = 8
        futures = [pool.submit(load, src) for src, _ in jobs[:window]]
        for i, (_, dest) in enumerate(jobs):
            if i + window < len(jobs):
                futures.append(pool.submit(load, jobs[i + window][0]))
            yield dest, futures[i].result()
            futures[i] = None  # type: ignore[call-overload]


def _bands(source: RowSource, samples: int = 1 << 22) -> Iterator[np.ndarray]:
    """A source's full-width rows, top to bottom, about `samples` samples at a time (memory stays bounded);
    the rows already handed out are released."""
    rows = max(1, samples // max(1, source.width * source.channels))
    for y in range(0, source.height, rows):
        band = source.rows(y, min(y + rows, source.height))
        yield band
        source.release(y + band.shape[0])


@contextmanager
def _skippable(bad: list[str], skip_bad: bool) -> Iterator[None]:
    """Run one file's translation; with skip_bad its DataError joins the skipped list instead of stopping the run."""
    try:
        yield
    except DataError as exc:
        if not skip_bad:
            raise
        bad.append(str(exc))


def _report_skipped(bad: list[str]) -> None:
    if bad:
        print(f"diptych: skipped {len(bad)} file(s):", file=sys.stderr)
        for msg in bad:
            print(f"  {msg}", file=sys.stderr)


def per_image_statistics(bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Make a batch-norm layer normalise each image by its own statistics, with its learned scale and shift.

    That is what training-mode batch norm computes on a batch of one (the reference's test-time behaviour),
    now for any batch size, so 'paper' mode can batch images without mixing them; the stored running
    statistics are neither used nor changed."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        # Batch norm over each image alone (no running statistics). F.instance_norm computes the same, but it
        # folds the batch into one image of N x C channels, which copies every channels-last activation
        # (43.5 against 37.7 ms/image for a unet_256 at batch 4 in bf16 on CPU).
        images = [
            torch.batch_norm(x[i : i + 1], bn.weight, bn.bias, None, None, True, 0.0, bn.eps, False)
            for i in range(x.shape[0])
        ]
        return images[0] if len(images) == 1 else torch.cat(images)

    bn.forward = forward  # type: ignore[method-assign]


def plan_outputs(inputs: Iterable[str | Path], out_dir: Path, suffix: str = ".png") -> list[tuple[Path, Path]]:
    """Map input files/folders to output paths; reject missing inputs, collisions and writing over an input."""
    jobs: list[tuple[Path, Path]] = []

    def output_name(rel: Path) -> Path:
        # A NIfTI volume is translated into a NIfTI volume of the same kind (.nii or .nii.gz).
        kept = image_suffix(rel) if is_nifti(rel) else suffix
        return out_dir / strip_image_suffix(rel).with_name(strip_image_suffix(rel).name + kept)

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = list_images(path)
            if not files:
                raise DataError(f"{path}: folder holds no images")
            jobs += [(f, output_name(f.relative_to(path))) for f in files]
        elif path.is_file():
            jobs.append((path, output_name(Path(path.name))))
        else:
            raise DataError(f"{path}: no such file or folder")
    seen: dict[Path, Path] = {}
    # os.path.realpath, not Path.resolve: a symlink loop among the inputs is refused when read, not a RuntimeError
    sources = {os.path.realpath(src) for src, _ in jobs}
    for src, dest in jobs:
        if dest in seen:
            raise DataError(f"{src} and {seen[dest]} would both be written to {dest}; translate them separately")
        if os.path.realpath(dest) in sources:
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


def _stored_range(values: list[float]) -> ValueRange | None:
    return (float(values[0]), float(values[1])) if values else None
