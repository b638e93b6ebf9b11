"""`python -m diptych ...` (and `torchrun ... -m diptych train ...`) runs the command line; so does `diptych`."""

import os
import signal
import sys


def printable_names() -> None:
    """Let stdout and stderr print any file name: one that is not valid UTF-8 (bytes Python holds as surrogate
    escapes, e.g. b'caf\\xe9.png') is written as escapes instead of raising UnicodeEncodeError mid-command."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def run() -> int:
    """The `diptych` command: the command line, set up so that Ctrl-C or SIGTERM at any moment exits quietly."""
    printable_names()
    from .signals import (
        STOP_SIGNALS,
        deferred_stop_signals,
        exit_status,
        raise_on_sigterm,
        report_interrupt,
        report_stop,
    )

    interrupted = {exit_status(stop) for stop in STOP_SIGNALS}
    with deferred_stop_signals() as stops:
        # torch and the other libraries load here; a Ctrl-C or SIGTERM meanwhile is acted on once they have.
        from .cli import main
    if stops:
        status = report_stop(stops[0])
    else:
        raise_on_sigterm()
        try:
            status = main()
        except KeyboardInterrupt as exc:
            status = report_interrupt(exc)
    if status in interrupted:
        # Cleanup already ran as the exception unwound. Exit now: when the interrupt landed in code a library ran
        # through the interpreter's own entry points (PyRun_String: pybind11's exec, a lazy import), CPython has
        # recorded it as unhandled even though diptych caught it, and `python -m` would end the process by SIGINT
        # at shutdown, replacing this status (the caller would see a death by signal after "interrupted").
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    # The command is over: a Ctrl-C or SIGTERM arriving while the interpreter shuts down must not turn its exit
    # status into a death by signal.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)
    return status


if __name__ == "__main__":
    sys.exit(run())
