"""Errors of the machine, not of an item: a full disk or quota, a failing or read-only file system, too
many open files, no memory. Such an error says nothing about the candidate in hand when it struck;
recording it on the candidate (``failed``, never retried) would lose every remaining item for good, so
work stops with a message saying what to fix, and the items stay pending for a run once it is fixed.

The same holds for any stage: :func:`problem` names a machine error wherever it strikes (an ``OSError``
with one of these errnos, or SQLite's "database or disk is full" and disk I/O errors on the catalog), and
the runner stops the stage with that plain message instead of an internal error.

Reads and writes nothing; raises nothing. :data:`MACHINE_ERRNOS` is the one list of such errors.
"""

from __future__ import annotations

import errno
import os

_LESS_WORK = "or lower candidates.download.workers"

# errno -> (what is wrong, what to do about it)
MACHINE_ERRNOS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("the disk is full", "free space"),
    errno.EDQUOT: ("the disk quota is used up", "free space or raise the quota"),
    errno.EIO: ("the disk failed to read or write", "check the disk"),
    errno.EROFS: ("the file system is read-only", "make it writable"),
    errno.EMFILE: ("this process has too many open files", f"raise the open-file limit (ulimit -n) {_LESS_WORK}"),
    errno.ENFILE: ("the system has too many open files", "raise the system's open-file limit or close programs"),
    errno.ENOMEM: ("the machine is out of memory", f"free memory {_LESS_WORK}"),
}


# SQLite's primary result codes for the same kind of trouble (extended codes keep these in the low byte)
_SQLITE_CODES: dict[int, tuple[str, str]] = {
    13: ("the disk is full", "free space"),  # SQLITE_FULL
    10: ("the disk failed to read or write", "check the disk"),  # SQLITE_IOERR
    8: ("the file system is read-only", "make it writable"),  # SQLITE_READONLY
    7: ("the machine is out of memory", "free memory"),  # SQLITE_NOMEM
}


def is_machine_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in MACHINE_ERRNOS


def problem(exc: BaseException) -> tuple[str, str] | None:
    """(what is wrong, what to do) when ``exc`` or what caused it is an error of the machine, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if is_machine_error(current):
            what, todo = MACHINE_ERRNOS[current.errno]  # type: ignore[index]
            return f"{what} ({current.strerror or os.strerror(current.errno)})", todo  # type: ignore[arg-type]
        code = getattr(current, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in _SQLITE_CODES:
            what, todo = _SQLITE_CODES[code & 0xFF]
            return f"{what} (SQLite: {current})", todo
        current = current.__cause__ or current.__context__
    return None


def describe(exc: OSError, doing: str) -> str:
    """What went wrong and where, e.g. ``the disk is full (No space left on device) writing the image store
    at /runs/x/images``."""
    what, _ = MACHINE_ERRNOS[exc.errno]
    return f"{what} ({exc.strerror or os.strerror(exc.errno)}) {doing}"


def fix(exc: OSError) -> str:
    """What to do before running again, e.g. ``free space``."""
    return MACHINE_ERRNOS[exc.errno][1]
