"""Stage registry, order, fingerprints and the run loop.

Reads: a validated :class:`~curate.config.PipelineConfig`. Writes: the run directory
(``config.yaml`` as resolved, ``catalog.sqlite``, ``images/``, ``logs/curate.log``) and one
``stage_runs`` row per stage execution with its fingerprint, status and stats.

Each stage is incremental: it reads pending items from the catalog and writes outcomes back in
batches, so running again after a crash, a Ctrl-C or a SIGKILL continues where things stand. A stage
whose inputs did not change since its last successful run (same fingerprint) and that reports no
pending work is skipped with "nothing to do". A failing stage raises StageError carrying the exact
command that resumes the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tqdm import tqdm

from curate.catalog import Catalog
from curate.config import STAGE_NAMES, PipelineConfig, save_resolved
from curate.errors import ConfigError, CurateError, StageError
from curate.store import ImageStore

log = logging.getLogger("curate")


@dataclass
class StageResult:
    """What a stage did: counters for the summary and stage_runs.stats; ``outputs`` are paths to show."""

    stats: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    nothing_to_do: bool = False


@dataclass
class Context:
    config: PipelineConfig
    catalog: Catalog
    store: ImageStore
    run_dir: Path
    seed: int
    progress_enabled: bool = True
    resume_command: str = "curate run pipeline.yaml"

    def progress(self, iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
        kwargs.setdefault("disable", not self.progress_enabled)
        kwargs.setdefault("leave", False)
        kwargs.setdefault("dynamic_ncols", True)
        return tqdm(iterable, **kwargs)

    def output_dir(self, name: str) -> Path:
        path = self.run_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


class Stage:
    """Base class: subclasses set ``name`` and ``description`` and implement :meth:`run`."""

    name: ClassVar[str]
    description: ClassVar[str]

    def fingerprint_inputs(self, ctx: Context) -> Any:
        """What the stage's result depends on; a change re-runs it. Default: its config section."""
        section = getattr(ctx.config, self.name, None)
        return section.model_dump(mode="json") if section is not None else None

    def has_pending_work(self, ctx: Context) -> bool:
        """Incremental stages say whether items are still pending even when the fingerprint matches."""
        return False

    def run(self, ctx: Context) -> StageResult:
        raise NotImplementedError


def fingerprint(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class Registry:
    """Explicit, ordered registry of stages; a duplicate name is an error."""

    def __init__(self) -> None:
        self._stages: dict[str, Callable[[], Stage]] = {}

    def register(self, stage_cls: type[Stage]) -> type[Stage]:
        if stage_cls.name in self._stages:
            raise ValueError(f"stage {stage_cls.name!r} registered twice")
        self._stages[stage_cls.name] = stage_cls
        return stage_cls

    def names(self) -> list[str]:
        return list(self._stages)

    def create(self, name: str) -> Stage:
        return self._stages[name]()

    def describe(self) -> list[tuple[str, str]]:
        return [(name, cls.description) for name, cls in self._stages.items()]


def default_registry() -> Registry:
    from curate.stages import STAGES

    registry = Registry()
    for stage_cls in STAGES:
        registry.register(stage_cls)
    if tuple(registry.names()) != STAGE_NAMES:
        raise RuntimeError(f"stage order {registry.names()} differs from the config's {STAGE_NAMES}")
    return registry


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
    run_dir: Path
    results: dict[str, StageResult]
    seconds: float


def open_run(config: PipelineConfig, progress: bool = True, resume_command: str | None = None) -> Context:
    run_dir = config.run.dir
    run_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(config, run_dir / "config.yaml")
    catalog = Catalog(run_dir / "catalog.sqlite")
    store = ImageStore(run_dir / "images", jpeg_quality=config.candidates.download.jpeg_quality)
    return Context(
        config=config, catalog=catalog, store=store, run_dir=run_dir, seed=config.run.seed,
        progress_enabled=progress, resume_command=resume_command or f"curate run {run_dir / 'config.yaml'}",
    )


def run_pipeline(
    ctx: Context, only: list[str] | None = None, start: str | None = None, registry: Registry | None = None,
    force: bool = False,
) -> RunSummary:
    registry = registry or default_registry()
    started = time.monotonic()
    results: dict[str, StageResult] = {}
    for name in select_stages(registry.names(), only, start):
        results[name] = run_stage(registry.create(name), ctx, force=force)
    return RunSummary(ctx.run_dir, results, time.monotonic() - started)


def run_stage(stage: Stage, ctx: Context, force: bool = False) -> StageResult:
    current = fingerprint({"inputs": stage.fingerprint_inputs(ctx), "seed": ctx.seed})
    unchanged = ctx.catalog.last_ok_fingerprint(stage.name) == current
    if not force and unchanged and not stage.has_pending_work(ctx):
        log.info("[%s] nothing to do (inputs unchanged since the last successful run)", stage.name)
        return StageResult(nothing_to_do=True)
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
        if isinstance(exc, StageError) and exc.resume_hint is None:
            exc.resume_hint = ctx.resume_command
        raise
    except Exception as exc:  # an unexpected failure: keep the cause, add the context and the way back
        ctx.catalog.finish_stage(run_id, "failed", {"error": repr(exc)})
        log.exception("[%s] unexpected error", stage.name)
        raise StageError(stage.name, f"{type(exc).__name__}: {exc}", ctx.resume_command) from exc
    result.stats["seconds"] = round(time.monotonic() - started, 2)
    ctx.catalog.finish_stage(run_id, "ok", result.stats)
    log.info("[%s] done: %s", stage.name, _fmt_stats(result.stats))
    return result


def _fmt_stats(stats: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in stats.items())


_HANDLER_NAME = "curate"


def close_logging() -> None:
    """Remove (and close) the handlers setup_logging installed; embedding programs keep theirs."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(handler)
        handler.close()


def setup_logging(run_dir: Path | None, level: str = "info", quiet: bool = False) -> None:
    """Console (stderr) at ``level`` and, for a run, ``logs/curate.log`` at debug."""
    close_logging()
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    console = logging.StreamHandler()
    console.set_name(_HANDLER_NAME)
    console.setLevel(logging.WARNING if quiet else getattr(logging, level.upper()))
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    root.addHandler(console)
    if run_dir is not None:
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(run_dir / "logs" / "curate.log", encoding="utf-8")
        file_handler.set_name(_HANDLER_NAME)
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(file_handler)
    for noisy in ("PIL", "urllib3", "matplotlib", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
