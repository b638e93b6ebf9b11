"""Downloading the public pix2pix datasets: resumable, verified, and extracted without trusting the archive."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import re
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from ...errors import DataError

DEFAULT_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"  # as in the reference's download script
URL_ENV = "DIPTYCH_DATASETS_URL"
DATASETS = ("facades", "maps", "edges2shoes", "edges2handbags", "night2day")
# The authors publish no checksums, and we list none we have not verified ourselves; pass --sha256 to check one.
KNOWN_SHA256: dict[str, str] = {}
CITYSCAPES_NOTE = """The Cityscapes dataset cannot be redistributed (licence), so it is not downloaded here.
1. Register at https://www.cityscapes-dataset.com and download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip.
2. Build the label|photo pairs, e.g. with the reference's datasets/prepare_cityscapes_dataset.py
   (pytorch-CycleGAN-and-pix2pix), or build A/ and B/ folders and run `diptych data combine`."""
CHUNK = 1 << 20
MAX_BYTES = 64 << 30  # by default, refuse archives that unpack to more than this
MAX_RATIO = 100  # ... or to more than this many times their size (beyond BOMB_FLOOR); --max-size replaces both
BOMB_FLOOR = 16 << 20


@dataclass(frozen=True)
class DownloadResult:
    """Where the dataset is, how many bytes the archive had, from which byte this run resumed (-1: an archive
    kept by an earlier run was used, nothing was downloaded)."""

    path: Path
    archive_bytes: int
    resumed_from: int
    sha256: str


def base_url(url: str | None = None) -> str:
    """The dataset server: --url, else $DIPTYCH_DATASETS_URL, else the pix2pix authors' server."""
    return (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")


def download_dataset(
    name: str,
    root: Path,
    url: str | None = None,
    sha256: str | None = None,
    overwrite: bool = False,
    keep_archive: bool = False,
    max_bytes: int | None = None,
    progress: bool = True,
) -> DownloadResult:
    """Download NAME.tar.gz into root (resuming a .part file), verify it and extract it to root/NAME.

    max_bytes: the most the archive may unpack to; None = MAX_BYTES and at most MAX_RATIO x the archive."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose from {', '.join((*DATASETS, 'cityscapes'))}")
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise DataError(f"--sha256 {sha256!r}: a SHA-256 checksum is 64 hexadecimal digits")
    target = root / name
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise DataError(f"{target}: already exists; pass --overwrite to replace it, or --root DIR for another place")
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"{name}.tar.gz"
    source = f"{base_url(url)}/{name}.tar.gz"
    resumed_from = -1
    if not archive.exists():
        part = archive.with_name(archive.name + ".part")
        resumed_from = fetch(source, part, progress)
        os.replace(part, archive)
    expected = (sha256 or KNOWN_SHA256.get(name, "")).lower()
    digest = file_sha256(archive)
    if expected and digest != expected:
        archive.unlink()
        raise DataError(
            f"{archive}: sha256 {digest} does not match the expected {expected}; the corrupt download was deleted, "
            "run the command again"
        )
    staging = root / f".{name}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        safe_extract(archive, staging, max_bytes)
        entries = list(staging.iterdir())
        inner = entries[0] if len(entries) == 1 and entries[0].is_dir() and entries[0].name == name else staging
        if target.exists():
            shutil.rmtree(target)
        os.replace(inner, target)
    except DataError:
        archive.unlink()  # a bad archive would fail the same way next time
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = archive.stat().st_size
    if not keep_archive:
        archive.unlink()
    return DownloadResult(target, size, resumed_from, digest)


def fetch(url: str, part: Path, progress: bool = True) -> int:
    """Download url into `part`, continuing from its current size with an HTTP Range request; returns that offset.
    Raises DataError (keeping the partial file for the next try) when the transfer is cut short."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have and _remote_size(url) == have:
            return have  # the previous run got every byte and stopped before renaming
        if exc.code == 416:
            part.unlink()
            return fetch(url, part, progress)
        raise DataError(
            f"{url}: HTTP {exc.code} {exc.reason}; check the dataset name, or the server with --url"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"{url}: cannot connect ({reason}); check the network, or pass --url / ${URL_ENV}") from None
    with response:
        start, total = _range_of(response, have)
        mode = "ab" if start else "wb"
        done = start
        with (
            open(part, mode) as f,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
            ) as bar,
        ):
            try:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
            except (http.client.HTTPException, OSError) as exc:
                raise DataError(
                    f"{url}: download interrupted after {done} of {total or '?'} bytes ({type(exc).__name__}); "
                    "run the same command again to resume"
                ) from None
    if total is not None and done != total:
        raise DataError(
            f"{url}: download interrupted after {done} of {total} bytes; run the same command again to resume"
        )
    return start


def _range_of(response: http.client.HTTPResponse, have: int) -> tuple[int, int | None]:
    """(first byte this response carries, total size) from a 206's Content-Range or a 200's Content-Length."""
    if response.status == 206:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != have:
            raise DataError(
                f"{response.url}: the server answered the resume request with a wrong range; delete the .part file"
            )
        return have, None if match.group(3) == "*" else int(match.group(3))
    length = response.headers.get("Content-Length")
    return 0, int(length) if length is not None else None  # 200: the server sent the whole file again


def _remote_size(url: str) -> int | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=60) as response:
            length = response.headers.get("Content-Length")
            return int(length) if length is not None else None
    except (urllib.error.URLError, OSError):
        return None


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def safe_extract(archive: Path, dest: Path, max_bytes: int | None = None) -> None:
    """Extract a tar (any compression) or zip archive into dest after checking every member: no absolute paths or
    '..' escapes, no links leading outside, no device files, and no more than max_bytes unpacked (None: MAX_BYTES
    and MAX_RATIO x the archive; a limit the user gives replaces both)."""
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, dest, max_bytes)
        elif tarfile.is_tarfile(archive):
            _verify_gzip(archive)
            _extract_tar(archive, dest, max_bytes)
        else:
            raise DataError(
                f"{archive}: not a tar or zip archive (truncated or an error page?); it was deleted, run again"
            )
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise DataError(f"{archive}: corrupt archive ({exc}); it was deleted, run the command again") from None


def _verify_gzip(archive: Path) -> None:
    """Read a gzip stream to its end, which checks its CRC and length (tar stops reading before the trailer)."""
    with open(archive, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            return
    with gzip.open(archive, "rb") as g:
        while g.read(CHUNK):
            pass


def _inside(dest: Path, name: str, archive: Path) -> Path:
    """The path a member name extracts to, refusing absolute names and names that climb out of dest."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in pure.parts:
        raise DataError(
            f"{archive}: member {name!r} points outside the target folder; refusing to extract this archive"
        )
    return dest.joinpath(*pure.parts)


def _check_size(archive: Path, total: int, max_bytes: int | None) -> None:
    packed = archive.stat().st_size
    if max_bytes is not None:
        if total > max_bytes:
            raise DataError(
                f"{archive}: unpacks to {total} bytes, more than --max-size ({max_bytes} bytes); refusing it "
                "(raise --max-size if you trust it)"
            )
        return
    if total > MAX_BYTES or (total > BOMB_FLOOR and total > MAX_RATIO * packed):
        raise DataError(
            f"{archive}: unpacks to {total} bytes from {packed} (limit {MAX_BYTES >> 30} GiB, and {MAX_RATIO}x the "
            "archive); refusing a likely decompression bomb (if you trust it, pass --max-size GIB, which replaces "
            "both limits)"
        )


def _extract_tar(archive: Path, dest: Path, max_bytes: int | None) -> None:
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()  # reads the whole stream: a truncated or corrupt archive fails here
        total = 0
        for m in members:
            path = _inside(dest, m.name, archive)
            if m.issym() or m.islnk():
                link = PurePosixPath(m.linkname)
                base = path.parent if m.issym() else dest
                if link.is_absolute() or not _stays_inside(dest, base, link):
                    raise DataError(
                        f"{archive}: link {m.name!r} -> {m.linkname!r} leads outside the target folder; refusing it"
                    )
            elif not (m.isfile() or m.isdir()):
                raise DataError(f"{archive}: member {m.name!r} is a device or pipe; refusing to extract this archive")
            total += m.size if m.isfile() else 0
        _check_size(archive, total, max_bytes)
        dest.mkdir(parents=True)
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.10.12: the library's own safety net as well
            tar.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - older Pythons; every member was checked above
            tar.extractall(dest, members=members)


def _stays_inside(dest: Path, base: Path, link: PurePosixPath) -> bool:
    parts = list(base.relative_to(dest).parts)
    for part in link.parts:
        if part == "..":
            if not parts:
                return False
            parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    return True


def _extract_zip(archive: Path, dest: Path, max_bytes: int | None) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _inside(dest, info.filename, archive)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DataError(
                    f"{archive}: member {info.filename!r} is a symbolic link; refusing to extract this archive"
                )
        # zipfile never writes more than a member's declared size, so the declared sizes bound what is written.
        _check_size(archive, sum(i.file_size for i in infos), max_bytes)
        dest.mkdir(parents=True)
        zf.extractall(dest)
