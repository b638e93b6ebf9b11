"""Stop signals: Ctrl-C (SIGINT) and SIGTERM (docker stop, Kubernetes, Slurm) end diptych the same way."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM received: raised as Ctrl-C raises KeyboardInterrupt, so cleanup (temporary files) runs before exit."""


def raise_on_sigterm() -> None:
    """Make SIGTERM raise Terminated in the main thread, unless the process was started with SIGTERM ignored."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_terminated)


@contextmanager
def deferred_stop_signals() -> Iterator[list[int]]:
    """Hold Ctrl-C and SIGTERM while a block runs (the libraries loading): the yielded list receives the signals
    that arrived, to act on afterwards. An interrupt raised inside torch's C++ import code aborts the process or is
    lost there, so none is raised until the block is done."""
    pending: list[int] = []
    previous = {
        stop: signal.signal(stop, lambda signum, frame: pending.append(signum))
        for stop in STOP_SIGNALS
        if signal.getsignal(stop) is not signal.SIG_IGN
    }
    try:
        yield pending
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def signal_name(signum: int) -> str:
    """How messages name a stop signal."""
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def exit_status(signum: int) -> int:
    """The conventional exit status of a process stopped by a signal: 128 + its number (130 Ctrl-C, 143 SIGTERM)."""
    return 128 + signum


def report_interrupt(exc: KeyboardInterrupt) -> int:
    """Print one line for an interrupted command and return its exit status."""
    return report_stop(signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def report_stop(signum: int) -> int:
    """Print one line for a command stopped by a signal and return its exit status."""
    terminated = signum == signal.SIGTERM
    print("diptych: terminated" if terminated else "diptych: interrupted", file=sys.stderr)
    return exit_status(signal.SIGTERM if terminated else signal.SIGINT)
