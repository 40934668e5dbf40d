"""``benchmark`` stage: train and score models on the export, one per configured mode.

Reads: ``export/train`` and ``export/val``. Writes: ``benchmark/<mode>.json`` per mode with top-1/top-5
on val, per-class top-1, the backbone actually used, device, timing and the export it measured.
Skipped with a warning when the export has no validation images. The backbone and weights default to
the noise stage's; the fingerprint holds the effective backbone and the weights it would load now.
"""

from __future__ import annotations

import hashlib
import json
import logging

from pydantic import Field

from curate.config import Section, plugin_config, weights_problem, weights_spec
from curate.modes import MODES
from curate.stages.base import Context, Stage, StageResult

log = logging.getLogger(__name__)


class BenchmarkConfig(Section):
    modes: list[plugin_config(MODES)] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [{"type": "linear_probe"}], validate_default=True, min_length=1,
        description="benchmark modes, by name or with settings: [{type: linear_probe, epochs: 30}]",
    )
    backbone: str | None = Field(None, description="defaults to noise.backbone")
    weights: str | None = Field(None, description="defaults to noise.weights")

    def resolve_paths(self, base) -> None:
        if self.weights:
            self.weights = weights_spec(self.weights, base)

    def check_inputs(self, where: str) -> list[str]:
        return weights_problem(self.weights, f"{where}.weights")


class BenchmarkStage(Stage):
    name = "benchmark"
    description = "benchmark models on the exported dataset (top-1 / top-5 on val)"
    Config = BenchmarkConfig

    def fingerprint_inputs(self, ctx: Context) -> object:
        from curate.vision.backbones import weights_identity

        name, weights = self._backbone_spec(ctx)
        labels_csv = ctx.layout.export / "labels.csv"
        digest = hashlib.sha256(labels_csv.read_bytes()).hexdigest() if labels_csv.is_file() else None
        return {"config": ctx.config.benchmark.model_dump(mode="json"), "export": digest,
                "backbone": name, "weights_now": weights_identity(name, weights),
                "fallback": ctx.config.noise.weights_fallback, "device": ctx.config.noise.device}

    def run(self, ctx: Context) -> StageResult:
        from curate.atomic import published, write_text
        from curate.modes import create_mode
        from curate.stages.common import load_backbone_with_fallback

        export = published(ctx.layout.export)  # a finished export (an interrupted swap is undone first)
        if export is None:
            log.warning("benchmark: there is no finished export yet; run the export stage first")
            return StageResult(stats={"skipped": "no export"})
        if not any((export / "val").glob("*/*.JPEG")):
            log.warning("benchmark: the export has no validation images; set export.val_fraction > 0")
            return StageResult(stats={"skipped": "no validation images"})
        noise = ctx.config.noise
        name, weights = self._backbone_spec(ctx)
        backbone = load_backbone_with_fallback(name, weights, noise.weights_fallback, noise.device, ctx.seed)
        stats, outputs = {}, {}
        for mode_config in ctx.config.benchmark.modes:
            result = create_mode(mode_config).run(export / "train", export / "val", backbone, ctx)
            out = ctx.layout.benchmark_result(mode_config.type)
            payload = {"mode": mode_config.type, "backbone": backbone.key, "export": str(export), **result}
            write_text(out, json.dumps(payload, indent=2))
            stats.update(self._summary(mode_config.type, result, several=len(ctx.config.benchmark.modes) > 1))
            outputs[f"benchmark {mode_config.type}" if len(ctx.config.benchmark.modes) > 1 else "benchmark"] = str(out)
        return StageResult(stats=stats, outputs=outputs)

    @staticmethod
    def _backbone_spec(ctx: Context) -> tuple[str, str]:
        cfg, noise = ctx.config.benchmark, ctx.config.noise
        return cfg.backbone or noise.backbone, cfg.weights or noise.weights

    @staticmethod
    def _summary(mode: str, result: dict, several: bool) -> dict:
        prefix = f"{mode}." if several else ""
        k = result.get("k_top5", 5)
        return {f"{prefix}top1": round(result["top1"], 4), f"{prefix}top{k}": round(result["top5"], 4),
                f"{prefix}train": result.get("n_train"), f"{prefix}val": result.get("n_val")}
