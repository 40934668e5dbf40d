"""The stage registry, in pipeline order. The runner is handed this registry and imports no stage;
the pipeline model's sections come from it (:func:`curate.config.pipeline_model`).

``STAGES`` is built on first access, so importing the stage contract (:mod:`curate.stages.base`)
does not import the stages.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from curate.registry import Registry


@cache
def _build() -> Registry[Any]:
    from curate.stages.annotate import AnnotateStage
    from curate.stages.benchmark import BenchmarkStage
    from curate.stages.candidates import CandidatesStage
    from curate.stages.export import ExportStage
    from curate.stages.noise import NoiseStage
    from curate.stages.review import ReviewStage
    from curate.stages.synsets import SynsetsStage

    registry: Registry[Any] = Registry("stage")
    for stage in (SynsetsStage, CandidatesStage, AnnotateStage, NoiseStage, ReviewStage, ExportStage,
                  BenchmarkStage):
        registry.register(stage)
    return registry


def __getattr__(name: str) -> Any:
    if name == "STAGES":
        return _build()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
