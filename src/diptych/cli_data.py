"""The `diptych data` command line: dataset tools (combine, split, make-pairs, glyphs, check, download)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DATA_EPILOG = """examples:
  diptych data combine photos_A/ photos_B/ datasets/mine          # A|B side by side, matched by name
  diptych data split datasets/facades/train facades_split/        # -> facades_split/A, facades_split/B
"""


def _workers(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be >= 1")
    return n


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
        type=_workers,
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


def cmd_data(args: argparse.Namespace) -> int:
    """Run one `diptych data` tool."""
    return DATA_COMMANDS[args.data_command](args)


def cmd_combine(args: argparse.Namespace) -> int:
    from .data.tools.combine import combine_folders

    n = combine_folders(
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
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from .data.tools.combine import split_aligned

    n = split_aligned(args.aligned_dir, args.out, f".{args.format}", args.workers, args.overwrite)
    print(f"wrote {n} pair(s) to {args.out / 'A'} and {args.out / 'B'}")
    return 0


DATA_COMMANDS = {
    "combine": cmd_combine,
    "split": cmd_split,
}
