"""`diptych data download` against a local HTTP server (127.0.0.1, started here): resume, verification, safety."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from diptych.data import find_pairs
from diptych.data.io import read_image, write_image
from diptych.data.tools.download import safe_extract
from diptych.errors import DataError

from .conftest import photo_crops
from .test_data_tools import run_cli


class DatasetServer:
    """Serves byte strings by path with Range support; `cut[path] = n` sends only n bytes of the next full reply."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                header = self.headers.get("Range")
                server.ranges.append(header)
                start = int(header.removeprefix("bytes=").split("-")[0]) if header else 0
                if start >= len(data) and header:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206 if header else 200)
                if header:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if self.path in server.cut:
                    body = body[: server.cut.pop(self.path)]  # the connection drops mid-transfer
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/pix2pix/datasets"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def add(self, name: str, data: bytes) -> None:
        self.files[f"/pix2pix/datasets/{name}"] = data


@pytest.fixture
def server() -> Iterator[DatasetServer]:
    s = DatasetServer()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def facades_archive(tmp_path: Path) -> bytes:
    """A small facades.tar.gz shaped like the real one: facades/{train,val,test}/N.jpg, each an A|B image."""
    src = tmp_path / "archive_src"
    crops = photo_crops("astronaut", 32, 6)
    for i, c in enumerate(crops):
        split = ("train", "train", "train", "train", "val", "test")[i]
        write_image(src / "facades" / split / f"{i + 1}.png", np.concatenate([c, 255 - c], axis=1))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(src / "facades", arcname="facades")
    return buffer.getvalue()


def download(
    capsys: pytest.CaptureFixture[str], server: DatasetServer, root: Path, *extra: str
) -> tuple[int, str, str]:
    return run_cli(capsys, "data", "download", "facades", "--root", root, "--url", server.url, "--no-progress", *extra)


def test_download_and_extract(tmp_path: Path, capsys: pytest.CaptureFixture[str], server: DatasetServer) -> None:
    data = facades_archive(tmp_path)
    server.add("facades.tar.gz", data)
    digest = hashlib.sha256(data).hexdigest()
    code, out, err = download(capsys, server, tmp_path / "datasets", "--sha256", digest)
    assert code == 0, err
    assert f"downloaded {len(data)} bytes" in out and digest in out
    layout, _, pairs = find_pairs(tmp_path / "datasets" / "facades", "auto", "train")
    assert layout == "aligned" and len(pairs) == 4 and read_image(pairs[0].a_path).shape == (32, 64, 3)
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["facades"]  # archive and staging removed

    # an existing dataset is never replaced without --overwrite
    code, _, err = download(capsys, server, tmp_path / "datasets")
    assert code == 1 and "already exists" in err and "--overwrite" in err
    code, out, _ = download(capsys, server, tmp_path / "datasets", "--overwrite", "--keep-archive")
    assert code == 0 and (tmp_path / "datasets" / "facades.tar.gz").read_bytes() == data
    requests = len(server.ranges)
    code, out, _ = download(capsys, server, tmp_path / "datasets", "--overwrite")
    assert code == 0 and "used the existing archive" in out and len(server.ranges) == requests  # nothing fetched
    assert len(find_pairs(tmp_path / "datasets" / "facades", "auto", "val")[2]) == 1


def test_interrupted_download_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], server: DatasetServer
) -> None:
    data = facades_archive(tmp_path)
    server.add("facades.tar.gz", data)
    server.cut["/pix2pix/datasets/facades.tar.gz"] = len(data) // 3
    code, _, err = download(capsys, server, tmp_path / "ds")
    assert code == 1 and "interrupted" in err and "again to resume" in err
    part = tmp_path / "ds" / "facades.tar.gz.part"
    assert part.read_bytes() == data[: len(data) // 3]
    code, out, err = download(capsys, server, tmp_path / "ds")
    assert code == 0, err
    assert f"resumed at byte {len(data) // 3}" in out and server.ranges[-1] == f"bytes={len(data) // 3}-"
    assert hashlib.sha256(data).hexdigest() in out and not part.exists()
    assert len(find_pairs(tmp_path / "ds" / "facades", "auto", "test")[2]) == 1


def test_corrupted_download_is_detected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], server: DatasetServer
) -> None:
    data = facades_archive(tmp_path)
    corrupt = bytearray(data)
    corrupt[len(data) // 2] ^= 0xFF
    server.add("facades.tar.gz", bytes(corrupt))
    # with a checksum: the mismatch is named
    code, _, err = download(capsys, server, tmp_path / "a", "--sha256", hashlib.sha256(data).hexdigest())
    assert code == 1 and "does not match" in err and "deleted" in err
    assert not (tmp_path / "a" / "facades").exists() and not (tmp_path / "a" / "facades.tar.gz").exists()
    # without one: the gzip stream's own CRC catches it
    code, _, err = download(capsys, server, tmp_path / "b")
    assert code == 1 and "corrupt archive" in err
    assert not (tmp_path / "b" / "facades").exists() and not (tmp_path / "b" / "facades.tar.gz").exists()


def test_server_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], server: DatasetServer) -> None:
    code, _, err = download(capsys, server, tmp_path / "x")
    assert code == 1 and "HTTP 404" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "data", "download", "cityscapes")
    assert code == 1 and "cityscapes-dataset.com" in err


def tar_with(tmp_path: Path, *members: tarfile.TarInfo, data: bytes = b"x") -> Path:
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            if m.isfile():
                m.size = len(data)
                tar.addfile(m, io.BytesIO(data))
            else:
                tar.addfile(m)
    return path


def symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize(
    "members",
    [
        [tarfile.TarInfo("facades/../../escaped.txt")],
        [tarfile.TarInfo("/tmp/absolute.txt")],
        [symlink("facades/link", "../../outside")],
        [symlink("facades/link", "/etc/passwd")],
    ],
    ids=["dotdot", "absolute", "relative-link-out", "absolute-link"],
)
def test_traversal_archives_are_refused(tmp_path: Path, members: list[tarfile.TarInfo]) -> None:
    archive = tar_with(tmp_path, *members)
    with pytest.raises(DataError, match="outside the target folder"):
        safe_extract(archive, tmp_path / "out" / "dest")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escaped.txt").exists()


def test_traversal_archive_refused_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], server: DatasetServer
) -> None:
    archive = tar_with(tmp_path, tarfile.TarInfo("facades/../../../pwned.txt"))
    server.add("facades.tar.gz", archive.read_bytes())
    code, _, err = download(capsys, server, tmp_path / "root" / "ds")
    assert code == 1 and "pwned.txt" in err and "refusing" in err
    assert not list(tmp_path.rglob("pwned.txt")) and not (tmp_path / "root" / "ds" / "facades").exists()


def test_zip_traversal_and_bombs_are_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("../evil.txt", b"x")
    with pytest.raises(DataError, match="outside the target folder"):
        safe_extract(tmp_path / "evil.zip", tmp_path / "dest")
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(20 << 20))
    with pytest.raises(DataError, match="decompression bomb"):
        safe_extract(tmp_path / "bomb.zip", tmp_path / "dest")
    bomb = tar_with(tmp_path, tarfile.TarInfo("zeros.bin"), data=bytes(20 << 20))
    with pytest.raises(DataError, match="decompression bomb"):
        safe_extract(bomb, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    # a link inside the tree and an ordinary file are fine
    ok = tar_with(tmp_path, tarfile.TarInfo("d/a.txt"), symlink("d/b.txt", "a.txt"))
    safe_extract(ok, tmp_path / "dest")
    assert (tmp_path / "dest" / "d" / "b.txt").read_bytes() == b"x"


def test_max_size_overrides_the_bomb_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], server: DatasetServer
) -> None:
    """A trusted, very compressible archive is refused by default and extracted with an explicit --max-size."""
    bomb = tar_with(tmp_path, tarfile.TarInfo("facades/train/zeros.bin"), data=bytes(20 << 20))
    server.add("facades.tar.gz", bomb.read_bytes())
    code, _, err = download(capsys, server, tmp_path / "root")
    assert code == 1 and "decompression bomb" in err and "--max-size" in err
    code, _, err = download(capsys, server, tmp_path / "root", "--max-size", "0.01")
    assert code == 1 and "more than --max-size" in err
    code, _, err = download(capsys, server, tmp_path / "root", "--max-size", "1")
    assert code == 0, err
    assert (tmp_path / "root" / "facades" / "train" / "zeros.bin").stat().st_size == 20 << 20
