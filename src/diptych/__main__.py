"""`python -m diptych ...` (and `torchrun ... -m diptych train ...`) runs the command line; so does `diptych`."""

import sys


def run() -> int:
    """The `diptych` command: the command line, set up so that Ctrl-C or SIGTERM at any moment exits quietly."""
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
