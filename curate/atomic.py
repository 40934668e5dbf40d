"""Publish a folder whole or not at all: write ``NAME.incomplete/``, then swap it in.

Reads/writes: ``NAME.incomplete/`` (the new version being written), ``NAME.previous/`` (the old
version during the swap) and ``NAME/``. The previous version survives any failure or kill until the
new one is complete: an exception removes the staging folder and leaves ``NAME/`` untouched; a kill
during writing leaves ``NAME.incomplete/``, which the next attempt discards; a kill between the two
renames of the swap leaves ``NAME.previous/``, which :func:`recover` (called before every write and
by a later writer through :func:`published`) puts back. A reader that sees ``NAME/`` sees a finished one.
Read-only readers (``curate report``, also while a run writes) use :func:`finished`, which changes nothing:
it never removes a ``NAME.incomplete/`` (it may be a stage's output being written right now).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def staging_path(target: Path) -> Path:
    return target.with_name(f"{target.name}.incomplete")


def previous_path(target: Path) -> Path:
    return target.with_name(f"{target.name}.previous")


def recover(target: Path) -> None:
    """Undo what a kill mid-swap left: the previous version back in place, stale staging removed."""
    previous = previous_path(target)
    if previous.exists():
        if target.exists():
            shutil.rmtree(previous)
        else:
            previous.rename(target)
    shutil.rmtree(staging_path(target), ignore_errors=True)


def published(target: Path) -> Path | None:
    """``target`` when a finished version exists (after recovering an interrupted swap), else None."""
    recover(target)
    return target if target.is_dir() else None


def finished(target: Path) -> Path | None:
    """Where the finished version of ``target`` lies, without changing anything: ``target``, or during a swap
    (or after a kill in one) ``NAME.previous/``; None when there is none."""
    for path in (target, previous_path(target)):
        if path.is_dir():
            return path
    return None


@contextmanager
def replace_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh ``NAME.incomplete/`` to write into; on success it becomes ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    staging = staging_path(target)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap(staging, target)


def _swap(staging: Path, target: Path) -> None:
    previous = previous_path(target)
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    shutil.rmtree(previous, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    """Write a file whole or not at all (temporary sibling, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
