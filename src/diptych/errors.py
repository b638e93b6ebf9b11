"""The one exception family for mistakes a user can make (bad files, bad options)."""

from __future__ import annotations


class DiptychError(Exception):
    """A problem the user can fix; the message names the file or option and the fix."""


class ConfigError(DiptychError):
    """An invalid configuration value or option."""


class DataError(DiptychError):
    """An unreadable, inconsistent or missing data file."""


class CheckpointError(DiptychError):
    """A checkpoint that is missing, truncated or not written by diptych."""


class ExportError(DiptychError):
    """A generator that cannot be exported, or whose export does not match PyTorch."""


def one_line(exc: BaseException) -> str:
    """Return the user-facing single line for an exception, unwrapping DataLoader worker reports."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if len(lines) > 1 and "Original Traceback" in text:
        # torch.utils.data re-raises worker errors with the whole worker traceback in the message.
        last = lines[-1]
        for prefix in ("diptych.errors.DataError:", "diptych.errors.DiptychError:", "DataError:"):
            if last.startswith(prefix):
                last = last[len(prefix) :].strip()
        return last
    return " ".join(lines)


def exception_summary(exc: BaseException, limit: int = 200) -> str:
    """A third-party exception's message squeezed onto one short line (its type name when it has none)."""
    text = " ".join(str(exc).split())
    return text[:limit] if text else type(exc).__name__
