"""The run loop: stage order, fingerprints, resume hints, the run lock, waiting, timing.

Reads: a validated pipeline config and a stage registry handed in by the caller (the runner imports
no stage). Writes, through :class:`~curate.layout.RunLayout`: the run directory's lock, ``config.yaml``
as resolved, the catalog, ``logs/curate.log``, and one ``stage_runs`` row per stage execution with
its fingerprint, status and stats.

Each stage is incremental: it reads pending items from the catalog and writes outcomes back in
batches, so running again after a crash, a Ctrl-C or a SIGKILL continues where things stand. A stage
whose inputs did not change since its last successful run (same fingerprint) and that reports no
pending work is skipped with "nothing to do"; its published outputs are then confirmed up to date and
shown with those of the stages that ran (the summary names nothing an earlier run left behind). A stage
that ends *waiting* (a crowd still owes votes) stops the run there, unless ``allow_partial``, so later
stages never run on partial labels unasked.
A failing stage raises StageError carrying the exact command that resumes the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from curate import machine
from curate.catalog import Catalog
from curate.config import save_resolved
from curate.errors import ConfigError, CurateError, StageError
from curate.layout import RunLayout
from curate.lock import RunLock
from curate.registry import Registry
from curate.stages.base import Context, Stage, StageResult, Waiting, fingerprint

log = logging.getLogger("curate")


def select_stages(names: list[str], only: list[str] | None, start: str | None) -> list[str]:
    unknown = [n for n in (only or []) + ([start] if start else []) if n not in names]
    if unknown:
        raise ConfigError(f"unknown stage {', '.join(unknown)}; stages are: {', '.join(names)}")
    if only and start:
        raise ConfigError("--only and --from cannot be combined")
    if only:
        return [n for n in names if n in only]
    if start:
        return names[names.index(start) :]
    return list(names)


@dataclass
class RunSummary:
    layout: RunLayout
    results: dict[str, StageResult]
    seconds: float
    waiting: dict[str, Waiting] = field(default_factory=dict)
    not_run: list[str] = field(default_factory=list)  # stages held back by a waiting one


@contextmanager
def open_run(config: Any, progress: bool = True, resume_command: str | None = None, allow_partial: bool = False,
             quiet: bool = False) -> Iterator[Context]:
    """Lock the run directory, start its log, save the resolved config and open catalog and store."""
    from curate.store import ImageStore

    layout = RunLayout(config.run.dir).ensure()
    with RunLock(layout.lock):
        setup_logging(layout, config.run.log_level, quiet=quiet)
        try:
            catalog = Catalog(layout.catalog)  # first: a catalog this curate refuses leaves the run untouched
            try:
                save_resolved(config, layout.config)
                store = ImageStore(layout.images, jpeg_quality=config.candidates.download.jpeg_quality)
                yield Context(
                    config=config, catalog=catalog, store=store, layout=layout, seed=config.run.seed,
                    progress_enabled=progress, allow_partial=allow_partial,
                    resume_command=resume_command or f"curate run {layout.config}",
                )
            finally:
                catalog.close()
        finally:
            close_logging()


def run_pipeline(ctx: Context, registry: Registry[type[Stage]], only: list[str] | None = None,
                 start: str | None = None, force: bool = False) -> RunSummary:
    started = time.monotonic()
    summary = RunSummary(ctx.layout, {}, 0.0)
    selected = select_stages(registry.names(), only, start)
    for i, name in enumerate(selected):
        result = summary.results[name] = run_stage(registry.get(name)(), ctx, force=force)
        if result.waiting:
            summary.waiting[name] = result.waiting
            if not ctx.allow_partial:
                summary.not_run = selected[i + 1 :]
                log.warning("[%s] %s; later stages wait (or run with --allow-partial)", name, result.waiting)
                break
    summary.seconds = time.monotonic() - started
    return summary


def run_stage(stage: Stage, ctx: Context, force: bool = False) -> StageResult:
    current = fingerprint({"inputs": stage.fingerprint_inputs(ctx), "seed": ctx.seed})
    unchanged = ctx.catalog.last_ok_fingerprint(stage.name) == current
    if not force and unchanged and not stage.has_pending_work(ctx):
        log.info("[%s] nothing to do (inputs unchanged since the last successful run)", stage.name)
        return StageResult(nothing_to_do=True, outputs=stage.outputs(ctx))  # confirmed up to date
    log.info("[%s] %s", stage.name, stage.description)
    run_id = ctx.catalog.start_stage(stage.name, current)
    started = time.monotonic()
    try:
        result = stage.run(ctx)
    except KeyboardInterrupt:
        ctx.catalog.finish_stage(run_id, "interrupted", {})
        raise
    except CurateError as exc:
        ctx.catalog.finish_stage(run_id, "failed", {"error": str(exc)})
        if isinstance(exc, StageError):
            exc.stage = stage.name  # a plug-in (a crowd backend, a source) does not know which stage runs it
            if exc.resume_hint is None:
                exc.resume_hint = ctx.resume_command
        raise
    except Exception as exc:  # an unexpected failure: keep the cause, add the context and the way back
        if (trouble := machine.problem(exc)) is not None:  # a full disk, no memory: the machine's, said plainly
            _record_failure(ctx, run_id, f"{trouble[0]}")
            log.debug("[%s] error of the machine", stage.name, exc_info=True)
            raise StageError(stage.name, f"{trouble[0]}; {trouble[1]} and run again (nothing finished is lost)",
                             ctx.resume_command) from exc
        ctx.catalog.finish_stage(run_id, "failed", {"error": repr(exc)})
        log.exception("[%s] unexpected error", stage.name)
        raise StageError(stage.name, f"{type(exc).__name__}: {exc}", ctx.resume_command) from exc
    result.stats["seconds"] = round(time.monotonic() - started, 2)
    ctx.catalog.finish_stage(run_id, "waiting" if result.waiting else "ok", result.stats)
    log.info("[%s] %s: %s", stage.name, "waiting" if result.waiting else "done", _fmt_stats(result.stats))
    return result


def _record_failure(ctx: Context, run_id: int, error: str) -> None:
    """Mark the stage run failed where the catalog can still be written (a full disk may forbid even that:
    the run then stays 'running' in the catalog, which the next run treats as unfinished work)."""
    try:
        ctx.catalog.finish_stage(run_id, "failed", {"error": error})
    except Exception as exc:  # noqa: BLE001 (the original error is the one to report)
        log.debug("could not record the failure: %s", exc)


def _fmt_stats(stats: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in stats.items())


_HANDLER_NAME = "curate"


def close_logging() -> None:
    """Remove (and close) the handlers setup_logging installed; embedding programs keep theirs."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(handler)
        handler.close()


def _curate_or_warning(record: logging.LogRecord) -> bool:
    return record.name == "curate" or record.name.startswith("curate.") or record.levelno >= logging.WARNING


def setup_logging(layout: RunLayout | None, level: str = "info", quiet: bool = False) -> None:
    """Console (stderr) at ``level`` and, for a run, ``logs/curate.log`` at debug."""
    close_logging()
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    console = logging.StreamHandler()
    console.set_name(_HANDLER_NAME)
    console.setLevel(logging.WARNING if quiet else getattr(logging, level.upper()))
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    console.addFilter(_curate_or_warning)  # libraries' info lines (an SDK's every HTTP request) go to the log file
    root.addHandler(console)
    if layout is not None:
        layout.logs.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(layout.log_file, encoding="utf-8")
        file_handler.set_name(_HANDLER_NAME)
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(file_handler)
    for noisy in ("PIL", "urllib3", "matplotlib", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
