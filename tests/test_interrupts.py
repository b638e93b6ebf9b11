"""Stopping diptych: Ctrl-C during start-up, SIGTERM during translation, and temporary names of long outputs."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from diptych import Translator
from diptych.__main__ import printable_names
from diptych.atomic import temporary_path, write_text_atomic
from diptych.data.io import read_image, write_image
from diptych.errors import DataError
from diptych.train import train

from .conftest import CALLER_VARIABLES, SRC, TINY_FLAGS, dead_pid, photo_crops, start_cli, tiny_config, write_folders


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained for one step."""
    root = tmp_path_factory.mktemp("interrupts")
    data = write_folders(root / "data", [(c, 255 - c) for c in photo_crops("astronaut", 64, 4)])
    return train(tiny_config(data, max_steps=1), root / "run", progress=False).run_dir


@pytest.mark.parametrize("delay", [0.1, 0.3, 0.6, 1.0, 2.0])
def test_ctrl_c_during_start_up_exits_quietly(aligned_dataset: Path, tmp_path: Path, delay: float) -> None:
    """Ctrl-C while the command starts (libraries loading, data being scanned) or trains: status 130, no traceback."""
    args = ["train", "--data", aligned_dataset, "--run-dir", tmp_path / "run", "--max-steps", "100000", *TINY_FLAGS]
    proc = start_cli(args)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    # -SIGINT only when the signal came before Python set up its handler (nothing printed yet), and killed the
    # process as a shell's Ctrl-C does; once diptych said "interrupted", the status is 130.
    assert proc.returncode == 130 or (proc.returncode == -signal.SIGINT and not stderr), stderr
    assert "Traceback" not in stderr and "Error" not in stderr, stderr


def test_a_finished_command_ignores_a_late_stop_signal(run_dir: Path) -> None:
    """Once the command has returned, a Ctrl-C or SIGTERM during interpreter shutdown cannot replace its status."""
    code = (
        "import signal, sys; from diptych.__main__ import run; "
        f"sys.argv = ['diptych', 'info', {str(run_dir)!r}]; status = run(); "
        "print(status, *(signal.getsignal(s) is signal.SIG_IGN for s in (signal.SIGINT, signal.SIGTERM)))"
    )
    env = {k: v for k, v in os.environ.items() if k not in CALLER_VARIABLES}
    done = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": SRC}, capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "0 True True", done.stderr


def test_sigterm_during_tiled_translation_leaves_no_temporary_file(run_dir: Path, tmp_path: Path) -> None:
    """SIGTERM while a tiled TIFF is being streamed to disk: exit 143 with one line, and nothing left in --out."""
    big = np.tile(photo_crops("astronaut", 64, 1)[0], (24, 24, 1))  # 1536 x 1536
    src = write_image(tmp_path / "big.png", big)
    out = tmp_path / "out"
    proc = start_cli(["translate", run_dir, src, "--out", out, "--tile", "64", "--format", "tif", "--no-progress"])
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(p.name.endswith(".tmp") for p in out.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.001)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert stderr.strip() == "diptych: terminated"
    assert list(out.iterdir()) == []


def test_temporary_names_of_the_longest_names_are_legal(tmp_path: Path) -> None:
    """A final name of 255 bytes (the usual limit) gets a temporary name that fits; long names stay apart."""
    for name in ("x" * 255, "é" * 127, "x" * 250 + ".json"):
        tmp = temporary_path(tmp_path / name)
        assert len(tmp.name.encode()) <= 255 and tmp.name.startswith(".") and tmp.name.endswith(f".{os.getpid()}.tmp")
        write_text_atomic(tmp_path / name, name)
        assert (tmp_path / name).read_text() == name
    assert temporary_path(tmp_path / ("x" * 250 + ".png")) != temporary_path(tmp_path / ("x" * 250 + ".tif"))
    assert temporary_path(tmp_path / "short.png").name == f".short.png.{os.getpid()}.tmp"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(("x" * 255, "é" * 127, "x" * 250 + ".json"))


def test_long_input_names_are_translated_and_unwritable_outputs_skipped(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 245-character input name translates; an output name too long to exist is one error naming it before
    anything is written, or with skip_bad is listed as skipped while every other output is written."""
    photo = photo_crops("coffee", 40, 1)[0]
    inputs = tmp_path / "in"
    long_name = "a" * 241 + ".png"
    too_long = "z" * 251 + ".png"  # legal, but its .tiff output is 256 bytes
    for name in ("b.png", long_name, too_long):
        write_image(inputs / name, photo)
    translator = Translator.load(run_dir)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=f"{too_long[:-4]}.tiff: the name is 256 bytes, longer than the 255"):
        translator.translate_files([inputs], out, suffix=".tiff", progress=False)
    assert not out.exists()
    capsys.readouterr()
    written = translator.translate_files([inputs], out, suffix=".tiff", progress=False, skip_bad=True)
    assert sorted(p.name for p in written) == sorted(p.name for p in out.iterdir()) == ["a" * 241 + ".tiff", "b.tiff"]
    assert read_image(out / "b.tiff").shape == photo.shape
    err = capsys.readouterr().err
    assert "skipped 1 file(s)" in err and f"{too_long[:-4]}.tiff: the name is 256 bytes" in err
    written = translator.translate_files([inputs / long_name], tmp_path / "png", progress=False)
    assert [p.name for p in written] == [p.name for p in (tmp_path / "png").iterdir()] == [long_name]


@pytest.mark.parametrize("tile", [None, 32])
def test_names_that_are_not_utf8_are_translated_under_the_same_name(
    run_dir: Path, tmp_path: Path, tile: int | None
) -> None:
    """b'caf\\xe9.png' (Latin-1, shown by Python as 'caf\\udce9.png') and a long such name translate to outputs of
    the same bytes (their temporary names too: atomic writes must not str.encode() them)."""
    names = [os.fsdecode(b"caf\xe9.png"), os.fsdecode(b"\xe9" * 240 + b".png")]
    inputs = tmp_path / "in"
    for name in names:
        seed = write_image(inputs / "seed.png", photo_crops("coffee", 40, 1)[0])
        try:
            seed.rename(inputs / name)
        except OSError:
            pytest.skip("this file system only takes UTF-8 names")
    written = Translator.load(run_dir).translate_files([inputs], tmp_path / "out", tile=tile, progress=False)
    assert sorted(os.fsencode(p.name) for p in (tmp_path / "out").iterdir()) == sorted(map(os.fsencode, names))
    assert sorted(p.name for p in written) == sorted(names)


def test_a_strict_stdout_prints_undecodable_names_as_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a locale whose stdout is strict UTF-8, printing such a name raised UnicodeEncodeError mid-command."""
    buffer = io.BytesIO()
    stream = io.TextIOWrapper(buffer, encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", stream)
    printable_names()
    print(os.fsdecode(b"caf\xe9.png"), file=stream)
    stream.flush()
    assert buffer.getvalue() == b"caf\\udce9.png\n"


def test_an_output_that_cannot_be_written_is_skipped_and_listed(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A write that fails (here: a file stands where the output's folder should be) is one error naming the output;
    with skip_bad the run goes on, lists it, and leaves no temporary file."""
    photo = photo_crops("coffee", 40, 1)[0]
    inputs, out = tmp_path / "in", tmp_path / "out"
    write_image(inputs / "a.png", photo)
    write_image(inputs / "sub" / "b.png", photo)
    out.mkdir()
    (out / "sub").write_text("a file, not a folder")
    translator = Translator.load(run_dir)
    with pytest.raises(DataError, match=r"sub/b\.png: cannot write"):
        translator.translate_files([inputs], out, progress=False)
    capsys.readouterr()
    written = translator.translate_files([inputs], out, progress=False, skip_bad=True, overwrite=True)
    assert written == [out / "a.png"]
    assert "skipped 1 file(s)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "sub"]


def test_the_entry_point_starts_before_torch_loads() -> None:
    """`diptych` (pyproject's console script) and `python -m diptych` reach their Ctrl-C handling before any heavy
    import: importing the package and the entry point loads no torch; the public names still resolve."""
    pyproject = (Path(SRC).parent / "pyproject.toml").read_text()  # (tomllib is not in Python 3.10)
    assert re.search(r'^diptych = "diptych\.__main__:run"$', pyproject, re.MULTILINE)
    code = (
        "import sys, diptych, diptych.__main__; assert 'torch' not in sys.modules, 'torch imported'; "
        "import diptych.train; from diptych import train, Translator; print(train.__module__, Translator.__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC}, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split() == ["diptych.train", "Translator"]


def test_translate_removes_what_a_killed_run_left_of_its_outputs(run_dir: Path, tmp_path: Path) -> None:
    """Temporary files of the outputs being written, left by a translation killed outright (SIGKILL, out of
    memory), are removed; other hidden files, and a live process's temporaries, are left alone."""
    write_image(tmp_path / "in" / "b.png", photo_crops("coffee", 40, 1)[0])
    out = tmp_path / "out"
    out.mkdir()
    dead, live = dead_pid(), os.getppid()
    for name in (f".b.png.{dead}.tmp", f".b.png.{live}.tmp", f".notes.txt.{dead}.tmp"):
        (out / name).write_bytes(b"partial")
    Translator.load(run_dir).translate_files([tmp_path / "in"], out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == sorted([f".b.png.{live}.tmp", f".notes.txt.{dead}.tmp", "b.png"])


def test_an_interrupt_caught_inside_library_code_still_exits_130(tmp_path: Path) -> None:
    """A Ctrl-C that surfaced through the interpreter's PyRun_String (as in pybind11's exec during a lazy import)
    is marked unhandled by CPython even after diptych catches it; `python -m` would then kill itself by SIGINT at
    shutdown after printing "interrupted". The status must stay 130 (seen in CI as a death by signal)."""
    (tmp_path / "interrupted_main.py").write_text(
        "import ctypes, sys\n"
        "from diptych import cli\n"
        "from diptych.__main__ import run\n"
        "def interrupted_in_library(args):\n"
        "    run_string = ctypes.pythonapi.PyRun_String\n"
        "    run_string.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.py_object, ctypes.py_object]\n"
        "    run_string.restype = ctypes.py_object\n"
        "    run_string(b'raise KeyboardInterrupt', 257, {}, {})\n"
        "cli.COMMANDS['info'] = interrupted_in_library\n"
        "sys.argv = ['diptych', 'info', 'anything']\n"
        "sys.exit(run())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in CALLER_VARIABLES}
    done = subprocess.run(
        [sys.executable, "-m", "interrupted_main"],
        env={**env, "PYTHONPATH": os.pathsep.join([SRC, str(tmp_path)])},
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stderr) == (130, "diptych: interrupted\n")
