"""The stage contract: :class:`Stage`, the :class:`Context` it runs in, the :class:`StageResult` it returns,
and :func:`fingerprint`.

A stage is a class with a ``name`` (its YAML section, registry key and log label), a one-line
``description``, a typed ``Config`` (its YAML section's model, beside the stage) and one method
``run(ctx) -> StageResult`` that reads like a table of contents. Stages never call each other, never
build run-directory paths by hand (``ctx.layout`` has them) and never write SQL (``ctx.catalog`` has the
queries). Stage modules import lightly at module level (no torch, cleanlab or pandas) so that
``curate stages`` and ``curate validate`` start fast; heavy modules are imported inside ``run``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from curate.sections import Section

if TYPE_CHECKING:
    from tqdm import tqdm

    from curate.catalog import Catalog
    from curate.layout import RunLayout
    from curate.store import ImageStore


@dataclass
class StageResult:
    """What a stage did: counters for the summary and stage_runs.stats; ``outputs`` are paths to show.

    ``waiting`` says the stage could not finish its items yet (a crowd still owes votes): it holds
    the count and what the user can do next. Later stages then do not run on partial results unless
    the run was started with ``--allow-partial``.
    """

    stats: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    nothing_to_do: bool = False
    waiting: Waiting | None = None


@dataclass(frozen=True)
class Waiting:
    count: int
    what: str  # "votes"
    next_step: str  # what the user can do now

    def __str__(self) -> str:
        return f"waiting for {self.count} {self.what}: {self.next_step}"


@dataclass
class Context:
    """What a stage runs with: the config, the catalog, the image store, the run's layout, the seed."""

    config: Any  # the assembled PipelineConfig
    catalog: Catalog
    store: ImageStore
    layout: RunLayout
    seed: int
    progress_enabled: bool = True
    resume_command: str = "curate run pipeline.yaml"
    allow_partial: bool = False

    def progress(self, iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
        from tqdm import tqdm

        kwargs.setdefault("disable", not self.progress_enabled)
        kwargs.setdefault("leave", False)
        kwargs.setdefault("dynamic_ncols", True)
        return tqdm(iterable, **kwargs)

    def section(self, name: str) -> Any:
        return getattr(self.config, name)


class Stage:
    """Base class: subclasses set ``name``, ``description``, ``Config`` and implement :meth:`run`."""

    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[Section]]

    def fingerprint_inputs(self, ctx: Context) -> Any:
        """Exactly what the stage's result depends on: a change re-runs it, anything else must not (no
        timestamps, no whole config where one key is read, no file a run rewrites with the same content).
        Default: its config section."""
        return ctx.section(self.name).model_dump(mode="json")

    def has_pending_work(self, ctx: Context) -> bool:
        """Incremental stages say whether items are still pending even when the fingerprint matches."""
        return False

    def outputs(self, ctx: Context) -> dict[str, str]:
        """The paths to show of what the stage's last run published and that exists now; the runner shows
        them when it skips the stage as up to date (a run's summary names only what is current)."""
        return {}

    def run(self, ctx: Context) -> StageResult:
        raise NotImplementedError


def fingerprint(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
