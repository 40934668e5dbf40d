"""``benchmark`` stage: train and score a model on the export (linear probe: frozen backbone, new head).

Reads: ``export/train`` and ``export/val``. Writes: ``benchmark/<mode>.json`` with top-1/top-5 on
val, per-class top-1, the backbone, device, timing and the export it measured. Skipped with a
warning when the export has no validation images.
"""

from __future__ import annotations

import hashlib
import json
import logging

from curate.runner import Context, Stage, StageResult
from curate.stages.common import load_backbone_with_fallback
from curate.vision.train import linear_probe

log = logging.getLogger(__name__)


class BenchmarkStage(Stage):
    name = "benchmark"
    description = "benchmark a model on the exported dataset (top-1 / top-5 on val)"

    def fingerprint_inputs(self, ctx: Context) -> object:
        labels_csv = ctx.run_dir / "export" / "labels.csv"
        digest = hashlib.sha256(labels_csv.read_bytes()).hexdigest() if labels_csv.is_file() else None
        return {"config": ctx.config.benchmark.model_dump(mode="json"), "export": digest}

    def run(self, ctx: Context) -> StageResult:
        cfg, noise = ctx.config.benchmark, ctx.config.noise
        export = ctx.run_dir / "export"
        if not any((export / "val").glob("*/*.JPEG")):
            log.warning("benchmark: the export has no validation images; set export.val_fraction > 0")
            return StageResult(stats={"skipped": "no validation images"})
        backbone = load_backbone_with_fallback(
            cfg.backbone or noise.backbone, cfg.weights or noise.weights, noise.weights_fallback, noise.device, ctx.seed
        )
        result = linear_probe(export / "train", export / "val", backbone, epochs=cfg.epochs, lr=cfg.lr,
                              batch_size=cfg.batch_size, seed=ctx.seed, progress=ctx.progress_enabled)
        out = ctx.output_dir("benchmark") / f"{cfg.mode}.json"
        payload = {"mode": cfg.mode, "backbone": backbone.key, "export": str(export), **result.to_dict()}
        out.write_text(json.dumps(payload, indent=2), encoding="utf-8")
        stats = {"top1": round(result.top1, 4), f"top{result.k_top5}": round(result.top5, 4),
                 "train": result.n_train, "val": result.n_val}
        return StageResult(stats=stats, outputs={"benchmark": str(out)})
