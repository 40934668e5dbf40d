"""``benchmark`` stage: train and score models on the export, one per configured mode.

Reads: ``export/train``, ``export/val`` and ``export/labels.csv``; with ``compare_noisy`` also the
catalog's label issues and final labels (the images the export dropped as label issues, with their given
labels, from the image store); the catalog's cached embeddings for the linear probe (computed and
cached where missing). Writes: ``benchmark/<mode>.json`` per mode (top-1/top-5 on val, per-class top-1,
per-epoch history, settings, the backbone actually used, device, timing, the export it measured; with
``compare_noisy`` the same for the noisy and the cleaned labels), ``benchmark/<name>.png`` (loss and
accuracy per epoch), with ``learning_curve`` ``benchmark/learning_curve.json`` and ``.png``, and
``benchmark/index.html`` showing all of it. Trainings checkpoint every epoch into
``benchmark/checkpoints/`` (removed once the stage finished, unless a mode sets ``keep_checkpoint``), so an
interrupted benchmark resumes at its last finished epoch, and trainings that had finished only evaluate.
Skipped with a warning when the export has no validation images. The backbone and weights default to
the noise stage's; the fingerprint holds the effective backbone and the weights it would load now, and the
export's content as trainings see it (:func:`export_digest`), so a new export with the same images, classes
and splits (more votes, other reasons) trains nothing again. Numbers
that say little about the dataset are marked on the page, in the log and in the stats' ``warning`` (so
the run summary and ``curate status`` show it): modes that use the backbone's weights on an untrained
backbone (``weights: none`` or the fallback taken: a linear probe on random features), and a top-1 no
better than chance, each with what to do.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, field_validator

from curate.modes import MODES
from curate.sections import Section, plugin_config, weights_problem, weights_spec
from curate.stages.base import Context, Stage, StageResult, fingerprint

if TYPE_CHECKING:
    from curate.vision.backbones import Backbone
    from curate.vision.data import ImageData, Split

log = logging.getLogger(__name__)


TRAINED_ON = ("path", "sha256", "wnid", "split")  # the columns of labels.csv a training reads


class LearningCurveConfig(Section):
    samples_per_class: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [5, 20, 80], min_length=1,
        description="training images per class of each point (a seeded subset of the export's train split)")
    modes: list[str] = Field(default_factory=lambda: ["linear_probe", "finetune", "scratch"], min_length=1,
                             description="modes to train per point, with their settings from benchmark.modes")

    @field_validator("modes")
    @classmethod
    def _known_modes(cls, modes: list[str]) -> list[str]:
        unknown = [m for m in modes if m not in MODES.names()]
        if unknown:
            raise ValueError(f"unknown benchmark mode {', '.join(unknown)}; known: {', '.join(MODES.names())}")
        return modes


class BenchmarkConfig(Section):
    modes: list[plugin_config(MODES)] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [{"type": "linear_probe"}], validate_default=True, min_length=1,
        description="benchmark modes, by name or with settings: [linear_probe, {type: finetune, epochs: 5}]",
    )
    backbone: str | None = Field(None, description="defaults to noise.backbone")
    weights: str | None = Field(None, description="defaults to noise.weights")
    compare_noisy: bool = Field(False, description="also train each mode on the labels before the noise "
                                                   "stage's decisions and on the cleaned ones")
    learning_curve: LearningCurveConfig | None = Field(None, description="top-1 against images per class")

    def resolve_paths(self, base) -> None:
        if self.weights:
            self.weights = weights_spec(self.weights, base)

    def check_inputs(self, where: str) -> list[str]:
        return weights_problem(self.weights, f"{where}.weights")


@dataclass
class LabelSets:
    """The training split under the labels before the noise decisions and after them."""

    noisy: Split  # the export's train split plus the label issues the export dropped, with their given labels
    cleaned: Split  # the export's train split without label issues
    flagged: int
    flagged_dropped_by_export: int


class BenchmarkStage(Stage):
    name = "benchmark"
    description = "benchmark models on the exported dataset (top-1 / top-5 on val)"
    Config = BenchmarkConfig

    def fingerprint_inputs(self, ctx: Context) -> object:
        from curate.vision.backbones import weights_identity

        name, weights = self._backbone_spec(ctx)
        compare = ctx.config.benchmark.compare_noisy
        digest = export_digest(ctx.layout.export / "labels.csv", TRAINED_ON + (("label_issue",) if compare else ()))
        inputs = {"config": ctx.config.benchmark.model_dump(mode="json"), "export": digest,
                  "backbone": name, "weights_now": weights_identity(name, weights),
                  "fallback": ctx.config.noise.weights_fallback, "device": ctx.config.noise.device}
        if ctx.config.benchmark.compare_noisy:  # the dropped label issues come from the catalog
            inputs["label_issues"] = fingerprint(sorted(ctx.catalog.issue_shas("label")))
        return inputs

    def outputs(self, ctx: Context) -> dict[str, str]:
        return {"benchmark": str(ctx.layout.benchmark_index)} if ctx.layout.benchmark_index.is_file() else {}

    def run(self, ctx: Context) -> StageResult:
        from curate.atomic import published
        from curate.stages.common import load_backbone_with_fallback

        export = published(ctx.layout.export)  # a finished export (an interrupted swap is undone first)
        if export is None:
            log.warning("benchmark: there is no finished export yet; run the export stage first")
            return StageResult(stats={"skipped": "no export"})
        if not any((export / "val").glob("*/*.JPEG")):
            log.warning("benchmark: the export has no validation images; set export.val_fraction > 0")
            return StageResult(stats={"skipped": "no validation images"})
        cfg, noise = ctx.config.benchmark, ctx.config.noise
        name, weights = self._backbone_spec(ctx)
        backbone = load_backbone_with_fallback(name, weights, noise.weights_fallback, noise.device, ctx.seed)
        data = export_data(ctx, export, backbone)
        label_sets = label_sets_of(ctx, export, data) if cfg.compare_noisy else None
        results = {c.type: self._benchmark_mode(ctx, c, data, backbone, label_sets, export) for c in cfg.modes}
        curve = self._learning_curve(ctx, cfg.learning_curve, data, backbone) if cfg.learning_curve else None
        warnings = result_warnings(results, backbone, "benchmark.weights" if cfg.weights else "noise.weights")
        page = self._write_page(ctx, results, curve, backbone, warnings)
        self._remove_checkpoints(ctx)
        stats = self._summary(results, curve) | ({"warning": "; ".join(warnings)} if warnings else {})
        return StageResult(stats=stats, outputs={"benchmark": str(page)})

    # ------------------------------------------------------------------ steps
    def _benchmark_mode(self, ctx: Context, mode_config: Any, data: ImageData, backbone: Backbone,
                        label_sets: LabelSets | None, export: Path) -> dict[str, Any]:
        from curate.atomic import write_text

        mode = mode_config.type
        result = train(ctx, mode_config, data, backbone, mode)
        payload = {"mode": mode, "backbone": backbone.key, "export": str(export), **result}
        if label_sets is not None:
            payload["compare_noisy"] = self._compare_noisy(ctx, mode_config, data, backbone, label_sets, result)
        write_text(ctx.layout.benchmark_result(mode), json.dumps(payload, indent=2))
        return payload

    def _compare_noisy(self, ctx: Context, mode_config: Any, data: ImageData, backbone: Backbone,
                       label_sets: LabelSets, export_result: dict) -> dict[str, Any]:
        """The mode on the noisy and the cleaned labels; the one equal to the export's reuses its result."""
        mode, comparison = mode_config.type, {}
        for labels in ("noisy", "cleaned"):
            split = getattr(label_sets, labels)
            same = split.paths == data.train.paths and split.targets == data.train.targets
            comparison[labels] = export_result if same else \
                train(ctx, mode_config, data.with_train(split), backbone, f"{mode}.{labels}")
        return {"flagged": label_sets.flagged, "flagged_dropped_by_export": label_sets.flagged_dropped_by_export,
                **comparison}

    def _learning_curve(self, ctx: Context, cfg: LearningCurveConfig, data: ImageData,
                        backbone: Backbone) -> dict[str, Any]:
        from curate.atomic import write_text
        from curate.modes import mode_config
        from curate.vision.data import per_class_subset
        from curate.vision.plots import plot_learning_curve

        curve: dict[str, list[dict]] = {}
        for mode in cfg.modes:
            settings = mode_config(mode, ctx.config.benchmark.modes)
            for n in cfg.samples_per_class:
                subset = data.with_train(per_class_subset(data.train, n, ctx.seed))
                result = train(ctx, settings, subset, backbone, f"learning_curve.{mode}.{n}", plot=False)
                curve.setdefault(mode, []).append(
                    {"samples_per_class": n, "n_train": result["n_train"], "top1": result["top1"],
                     "top5": result["top5"], "k_top5": result["k_top5"], "epochs": result["epochs"],
                     "seconds": result["seconds"]})
        plot = plot_learning_curve(ctx.layout.benchmark_learning_curve_plot, curve,
                                   title=f"learning curve ({backbone.key})")
        payload = {"samples_per_class": cfg.samples_per_class, "n_val": len(data.val), "backbone": backbone.key,
                   "modes": curve, "plot": plot.name}
        write_text(ctx.layout.benchmark_learning_curve, json.dumps(payload, indent=2))
        return payload

    def _write_page(self, ctx: Context, results: dict[str, dict], curve: dict | None, backbone: Backbone,
                    warnings: list[str]) -> Path:
        from curate.vision.results_page import write_results_page

        comparisons = [{"mode": mode, **{k: r["compare_noisy"][k] for k in ("noisy", "cleaned")}}
                       for mode, r in results.items() if "compare_noisy" in r]
        trainings = [r for mode in results.values() for r in (mode, *comparison_results(mode))]
        plots = list(dict.fromkeys(r["plot"] for r in trainings if r.get("plot")))
        meta = {"run": ctx.config.run.name, "backbone": backbone.key, "device": str(backbone.device)}
        return write_results_page(ctx.layout.benchmark_index, f"Benchmark: {ctx.config.run.name}", meta,
                                  list(results.values()), comparisons, curve, plots, warnings)

    def _remove_checkpoints(self, ctx: Context) -> None:
        """Checkpoints were for resuming; a mode with ``keep_checkpoint`` keeps its trained model."""
        keep = {c.type for c in ctx.config.benchmark.modes if getattr(c, "keep_checkpoint", False)}
        folder = ctx.layout.benchmark_checkpoints
        for path in folder.glob("*.pt") if folder.is_dir() else []:
            if path.stem not in keep:
                path.unlink()
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()

    @staticmethod
    def _backbone_spec(ctx: Context) -> tuple[str, str]:
        cfg, noise = ctx.config.benchmark, ctx.config.noise
        return cfg.backbone or noise.backbone, cfg.weights or noise.weights

    @staticmethod
    def _summary(results: dict[str, dict], curve: dict | None) -> dict:
        stats: dict[str, Any] = {}
        for mode, result in results.items():
            prefix = f"{mode}." if len(results) > 1 else ""
            k = result.get("k_top5", 5)
            stats.update({f"{prefix}top1": round(result["top1"], 4), f"{prefix}top{k}": round(result["top5"], 4)})
            if "compare_noisy" in result:
                stats[f"{prefix}noisy_top1"] = round(result["compare_noisy"]["noisy"]["top1"], 4)
                stats[f"{prefix}cleaned_top1"] = round(result["compare_noisy"]["cleaned"]["top1"], 4)
        first = next(iter(results.values()))
        stats.update(train=first.get("n_train"), val=first.get("n_val"))
        if curve is not None:
            stats["learning_curve_points"] = sum(len(points) for points in curve["modes"].values())
        return stats


def result_warnings(results: dict[str, dict], backbone: Backbone, weights_key: str) -> list[str]:
    """What makes these numbers say little about the dataset, with what to do: modes that use the backbone's
    weights (every mode but ``scratch``, see ``uses_backbone_weights``) on an untrained backbone, and a
    top-1 no better than guessing the class."""
    warnings = []
    weighted = [m for m in results if getattr(MODES.get(m), "uses_backbone_weights", True)]
    if weighted and not backbone.trained:
        warnings.append(f"untrained backbone ({backbone.key}): {', '.join(weighted)} ran on random weights, not "
                        f"ImageNet's; give ImageNet weights with --set {weights_key}=FILE or put the checkpoint in "
                        "the torch hub cache")
    for mode, result in results.items():
        chance = 1 / result["num_classes"] if result.get("num_classes") else None
        if chance is not None and result["top1"] <= chance:
            warnings.append(f"{mode}: top-1 {100 * result['top1']:.1f} % is no better than chance "
                            f"({100 * chance:.1f} % with {result['num_classes']} classes)")
    for warning in warnings:
        log.warning("benchmark: %s", warning)
    return warnings


def export_digest(labels_csv: Path, columns: tuple[str, ...]) -> str | None:
    """A digest of what a training sees of the export, from its ``labels.csv``: these ``columns`` of every
    row (each image's file, bytes, class and split), not the crowd's agreement or the reasons beside them,
    which change with every vote while the images and classes stay. None before there is an export."""
    if not labels_csv.is_file():
        return None
    digest = hashlib.sha256()
    with labels_csv.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            digest.update(json.dumps([row.get(c) for c in columns]).encode())
    return digest.hexdigest()


def comparison_results(result: dict[str, Any]) -> list[dict[str, Any]]:
    compared = result.get("compare_noisy") or {}
    return [compared[labels] for labels in ("noisy", "cleaned") if labels in compared]


def train(ctx: Context, mode_config: Any, data: ImageData, backbone: Backbone, name: str,
          plot: bool = True) -> dict[str, Any]:
    """One training of a mode (checkpointed as ``name``), its per-epoch chart drawn as ``<name>.png``."""
    from curate.modes import Job, create_mode
    from curate.vision.plots import plot_history

    job = Job(data, backbone, ctx.layout.benchmark_checkpoint(name), label=name, seed=ctx.seed,
              progress=ctx.progress_enabled)
    result = create_mode(mode_config).run(job)
    if plot and result.get("history"):
        result["plot"] = plot_history(ctx.layout.benchmark_plot(name), name, result["history"]).name
    log.info("benchmark %s: top-1 %.4f, top-%d %.4f on %d val images (%d train)", name, result["top1"],
             result.get("k_top5", 5), result["top5"], result["n_val"], result["n_train"])
    return result


def export_data(ctx: Context, export: Path, backbone: Backbone) -> ImageData:
    """The export's splits, each image keyed by its sha256 (labels.csv), with the catalog's embedding cache."""
    import pandas as pd

    from curate.vision.data import load_image_data

    data = load_image_data(export / "train", export / "val")
    labels_csv = export / "labels.csv"
    if labels_csv.is_file() and "path" in (table := pd.read_csv(labels_csv, dtype=str)).columns:
        sha_of = dict(zip(table["path"], table["sha256"], strict=True))
        for split in (data.train, data.val):
            keys = [sha_of.get(path.relative_to(export).as_posix()) for path in split.paths]
            split.keys = keys if all(keys) else None
    if data.train.keys is not None and data.val.keys is not None:
        data.embed = _cached_embedder(ctx, backbone)
    return data


def _cached_embedder(ctx: Context, backbone: Backbone):
    """Features of a split's images by sha256, from the catalog (the stored image is the exported file)."""
    import numpy as np

    from curate.stages.common import cached_embeddings

    def embed(split: Split) -> np.ndarray:
        if not len(split):
            return np.zeros((0, backbone.feature_dim), dtype=np.float32)
        return cached_embeddings(ctx, backbone, list(split.keys))
    return embed


def label_sets_of(ctx: Context, export: Path, data: ImageData) -> LabelSets:
    """The export's training split with the label issues back in (noisy) and without any (cleaned)."""
    import pandas as pd

    from curate.vision.data import Split

    table = pd.read_csv(export / "labels.csv", dtype={"sha256": str, "wnid": str})
    issues = ctx.catalog.issue_shas("label")
    kept_flagged = set(table.loc[table["label_issue"].astype(str) == "True", "sha256"])
    exported = set(table["sha256"])
    class_to_idx = {wnid: i for i, wnid in enumerate(data.class_names)}
    dropped = [r for r in ctx.catalog.final_labels()
               if r["rank"] == 1 and r["sha256"] in issues and r["sha256"] not in exported
               and r["wnid"] in class_to_idx]
    keys = data.train.keys or [None] * len(data.train)
    clean_idx = [i for i, key in enumerate(keys) if key not in kept_flagged]
    relabelled = _relabelled_from(table, class_to_idx)  # noisy: back under the class the crowd gave them
    given_targets = [relabelled.get(key, target) for key, target in zip(keys, data.train.targets, strict=True)]
    noisy = Split(data.train.paths + [ctx.layout.stored(r["path"]) for r in dropped],
                  given_targets + [class_to_idx[r["wnid"]] for r in dropped],
                  (data.train.keys + [r["sha256"] for r in dropped]) if data.train.keys is not None else None)
    if not dropped and not kept_flagged:
        log.warning("benchmark: compare_noisy: the noise stage flagged no training image; noisy = cleaned labels")
    log.info("benchmark: noisy labels %d training images (%d label issues dropped by the export added back), "
             "cleaned %d", len(noisy), len(dropped), len(clean_idx))
    return LabelSets(noisy, data.train.subset(clean_idx), len(dropped) + len(kept_flagged), len(dropped))


def _relabelled_from(table, class_to_idx: dict[str, int]) -> dict[str, int]:
    """sha256 -> index of the class an image had before the review relabelled it (labels.csv)."""
    if "decision" not in table.columns or "given_wnid" not in table.columns:
        return {}
    moved = table[(table["decision"].astype(str) == "relabel") & table["given_wnid"].isin(list(class_to_idx))]
    return {sha: class_to_idx[wnid] for sha, wnid in zip(moved["sha256"], moved["given_wnid"], strict=True)}
