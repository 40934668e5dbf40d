"""An exclusive lock on a run directory, so two ``curate run`` never work on one run at once.

Reads/writes: ``RUN_DIR/.lock`` (``flock``; the holder writes its pid and command line into it).
The kernel releases the lock when the holder exits, however it exits (SIGKILL included), so a stale
file never blocks a later run. A second run gets :class:`RunDirectoryBusy` (exit 2) naming the holder.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import IO

from curate.errors import CurateError


class RunDirectoryBusy(CurateError):
    exit_code = 2


class RunLock:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._file: IO[str] | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(handle)
            handle.close()
            raise RunDirectoryBusy(
                f"run directory {self.path.parent} is in use by another curate ({holder}); wait for it to "
                "finish or stop it, then run again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}: {' '.join(sys.argv)}\n")
        handle.flush()
        self._file = handle
        return self

    @staticmethod
    def _holder(handle: IO[str]) -> str:
        handle.seek(0)
        text = handle.read().strip()
        return text or "pid unknown"

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
