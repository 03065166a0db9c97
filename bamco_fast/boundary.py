"""One error boundary for every command line of the project.

A command's ``main(argv) -> int`` runs its work through :func:`run_command`. A known error — bad input
(``ValueError`` and its subclasses: config, data, run-folder, model-location errors), a missing or
unreadable file, a full disk or a read-only folder (``OSError``), a checkpoint that cannot be used —
prints one line ``error: <what was expected, what was found>`` and exits with status 2. Ctrl-C
exits with 130. Anything else is a bug: its traceback is printed and the status is 1. With
``BAMCO_FAST_DEBUG=1`` the traceback of a known error is printed too.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Callable

__all__ = ["DEBUG_ENV", "EXIT_ERROR", "EXIT_INTERRUPTED", "UsageError", "error_line", "run_command"]

DEBUG_ENV = "BAMCO_FAST_DEBUG"
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class UsageError(ValueError):
    """A command-line argument cannot be used; the message names it, the expected and the received."""


_OS_HINTS = {
    errno.ENOSPC: "no space left on the device; free some space (files written earlier are intact)",
    errno.EDQUOT: "disk quota exceeded (files written earlier are intact)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def _known(exc: BaseException) -> bool:
    if isinstance(exc, (ValueError, OSError, UnicodeError)):
        return True
    # Errors of this project that are not ValueErrors (e.g. checkpoint errors) declare themselves.
    return bool(getattr(exc, "user_error", False))


def error_line(exc: BaseException) -> str:
    """The error as one line: the message with runs of whitespace collapsed; an ``OSError`` as
    ``<what happened>: <file>``."""
    if isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError,)) and exc.errno in _OS_HINTS:
        where = exc.filename or ""
        return f"{_OS_HINTS[exc.errno]}: {where}".rstrip(": ")
    if isinstance(exc, OSError) and exc.strerror and exc.filename and str(exc).startswith("["):
        return f"{exc.strerror}: {exc.filename}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def run_command(prog: str, work: Callable[[], int]) -> int:
    """Run ``work()`` inside the error boundary (see the module docstring); returns the exit status.

    ``prog`` names the command in the messages of an interrupt or of running out of memory.
    """
    debug = os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")
    try:
        return int(work() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        if isinstance(exc, MemoryError):
            print(
                f"error: out of memory in {prog} ({error_line(exc)}); lower the batch size", file=sys.stderr
            )
            return 1
        if not _known(exc):
            traceback.print_exc()
            return 1
        if debug:
            traceback.print_exc()
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
