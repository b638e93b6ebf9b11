"""`python -m diptych ...` (and `torchrun ... -m diptych train ...`) runs the command line; so does `diptych`."""

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
    try:
        # Imported here, not above: a Ctrl-C while the libraries (torch above all) load is then caught below.
        from .signals import raise_on_sigterm

        raise_on_sigterm()
        from .cli import main

        return main()
    except KeyboardInterrupt as exc:
        from .signals import report_interrupt

        return report_interrupt(exc)


if __name__ == "__main__":
    sys.exit(run())
