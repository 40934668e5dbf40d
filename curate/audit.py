"""``curate audit``: judge the labels of a dataset that already exists, without WordNet and without a crowd.

Reads: ``PATH``, an ImageFolder tree (``<label>/<file>``) or a CSV, TSV or Parquet table with columns
``path`` and ``label``; symbolic links in it are followed unless ``--no-follow-symlinks`` (then files and
class folders that lead outside ``PATH``, or outside the table's root, are skipped or refused). Writes:
``OUT/pipeline.yaml``, the pipeline the audit runs, and the run itself in ``OUT`` (``catalog.sqlite``,
``images/``, ``logs/``, ``report/``; ``export/`` with ``clean_copy``).

There is one mechanism: the generated pipeline is an ``imagefolder`` source reading ``PATH``, classes taken
from its labels (``synsets.from_labels``), the ``given`` crowd (each image's label accepted as it is), the
``noise`` stage with the chosen backbone and, for a cleaned copy, the ``review`` stage (flagged labels
dropped) and the ``export`` stage (ImageFolder layout, no validation split). The run resumes like any
other: the same ``curate audit`` command again (or ``curate run OUT/pipeline.yaml --only ...``, see the
file's header) continues where it stopped and recomputes nothing unchanged.

Images are copied once: the store keeps one normalized JPEG per image (longest side
``candidates.download.max_side_px``, 512 px by default, metadata removed), as every run does; it cannot
hard-link a user's file, since what it stores is keyed by the bytes as read and may differ from them.
The clean copy's files are hard links into the store. The originals in ``PATH`` are only read.

Failure: a missing ``PATH`` or weights file, ``--weights none`` (an untrained backbone judges nothing),
fewer than two classes with images, a table without the columns or naming missing files, an ``OUT``
holding something else (another folder's run, another listing of ``PATH``): ConfigError (exit 2) before
any work. Unreadable images are skipped and counted (failed or
rejected candidates), never fatal.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from curate.errors import ConfigError
from curate.layout import RunLayout
from curate.sections import weights_spec

log = logging.getLogger(__name__)
PIPELINE_NAME = "pipeline.yaml"
AUDIT_STAGES = ["synsets", "candidates", "annotate", "noise"]


@dataclass
class AuditOptions:
    """What ``curate audit`` was asked; None leaves the noise stage's default."""

    path: Path
    out: Path
    backbone: str | None = None
    weights: str | None = None
    device: str | None = None
    batch_size: int | None = None
    root: Path | None = None  # for a table: the folder its files lie in (default: the table's folder)
    clean_copy: bool = False
    follow_symlinks: bool = True  # False: files and class folders that lead outside PATH are skipped

    def command(self) -> str:
        """The command line that runs (and resumes) this audit."""
        words = ["curate", "audit", str(self.path), "--out", str(self.out)]
        for flag, value in (("--backbone", self.backbone), ("--weights", self.weights), ("--device", self.device),
                            ("--batch-size", self.batch_size), ("--root", self.root)):
            words += [flag, str(value)] if value is not None else []
        words += ["--clean-copy"] if self.clean_copy else []
        words += [] if self.follow_symlinks else ["--no-follow-symlinks"]
        return shlex.join(words)


@dataclass
class AuditResult:
    layout: RunLayout
    images: int = 0
    classes: int = 0
    flagged: int = 0
    noise_rate: float | None = None
    skipped: dict[str, int] = field(default_factory=dict)  # candidate status -> count (failed, rejected, ...)
    exported: bool = False

    @property
    def report(self) -> Path:
        return self.layout.report_index

    @property
    def label_issues(self) -> Path:
        return self.layout.report / "label_issues.csv"


def audit(options: AuditOptions, progress: bool = True, quiet: bool = False) -> AuditResult:
    """Check the input, write ``OUT/pipeline.yaml`` and run it; raises ConfigError or StageError."""
    from curate.config import load_config, validate
    from curate.runner import open_run, run_pipeline
    from curate.stages import STAGES

    source = source_config(options)
    labels, listing = scan(source)
    data = build_pipeline(options, {**source, "listing_sha256": listing}, labels)
    validate(data, source="curate audit")  # before anything is written
    pipeline = write_pipeline(options.out, data)
    config = load_config(pipeline)
    stages = AUDIT_STAGES + (CLEAN_COPY_STAGES if options.clean_copy else [])
    with open_run(config, progress=progress, resume_command=options.command(), quiet=quiet) as ctx:
        run_pipeline(ctx, STAGES, only=stages)
        return summarize(ctx, exported=options.clean_copy)


def source_config(options: AuditOptions) -> dict[str, Any]:
    """The ``imagefolder`` source's settings for ``PATH``, after the checks that need no scan."""
    path = options.path.resolve()
    if not path.exists():
        raise ConfigError(f"{options.path}: no such folder or file")
    if options.weights == "none":
        raise ConfigError("--weights none: an untrained backbone cannot judge labels (the noise stage would skip "
                          "its check); give a state_dict file with --weights FILE, or use --weights imagenet with the "
                          "checkpoint in the torch hub cache")
    if options.weights and options.weights != "imagenet" and not Path(options.weights).is_file():
        raise ConfigError(f"weights file not found: {options.weights}")
    if path.is_dir():
        if options.root is not None:
            raise ConfigError("--root is for a table of path, label; a folder is its own root")
        if options.out.resolve().is_relative_to(path):
            raise ConfigError(f"the output folder {options.out} lies inside the dataset {path}: its images would "
                              "be read as a class; choose a folder outside it")
        return {"type": "imagefolder", "root": str(path), **_links(options)}
    root = (options.root or path.parent).resolve()
    if not root.is_dir():
        raise ConfigError(f"--root: folder not found: {options.root}")
    return {"type": "imagefolder", "root": str(root), "table": str(path), **_links(options)}


def _links(options: AuditOptions) -> dict[str, Any]:
    """``follow_symlinks: false`` when asked; nothing by default, so earlier audits' pipelines stay as they are."""
    return {} if options.follow_symlinks else {"follow_symlinks": False}


def scan(source: dict[str, Any]) -> tuple[dict[str, int], str]:
    """The labels of ``PATH`` with their image counts, and the listing's fingerprint; ConfigError for an
    input that cannot be audited."""
    from curate.sources import create_source
    from curate.sources.imagefolder import ImageFolderConfig

    config = ImageFolderConfig.model_validate(source)
    problems = config.check_inputs("input")
    if problems:
        raise ConfigError(problems)
    reader = create_source(config)
    labels = reader.labels()
    if len(labels) < 2:
        kind = "labels in the table" if config.table else "class folders with images"
        found = f" ({', '.join(labels)})" if labels else ""
        raise ConfigError(f"{config.table or config.root}: {len(labels)} {kind}{found}; an audit needs at least 2 "
                          "(an ImageFolder tree holds <label>/<image> files)")
    return labels, reader.listing_sha256()


def build_pipeline(options: AuditOptions, source: dict[str, Any], labels: dict[str, int]) -> dict[str, Any]:
    """The audit's pipeline as a YAML-ready mapping."""

    noise = {"backbone": options.backbone, "device": options.device, "batch_size": options.batch_size,
             "weights": weights_spec(options.weights, Path.cwd()) if options.weights else None}
    name = Path(source.get("table") or source["root"]).name
    return {
        "run": {"name": f"audit of {name}", "dir": "."},
        "synsets": {"from_labels": True},
        "candidates": {
            "sources": [source],
            "max_per_class": max(labels.values()),  # every image of every class
            # the audit judges every readable image: no image is dropped as dark, blurry or a near duplicate
            "quality": {"enabled": False, "near_duplicate_distance": 0},
        },
        "annotate": {"backend": "given", "votes_per_image": 1, "max_votes_per_image": 1},
        "noise": {k: v for k, v in noise.items() if v is not None},
        **CLEAN_COPY_SECTIONS,
    }


# The stages after ``noise`` that write the cleaned copy: ``review`` decides, ``export`` applies. Flagged
# labels are dropped (the given labels cannot be reviewed by people); every image goes to ``train``.
CLEAN_COPY_STAGES = ["review", "export"]
CLEAN_COPY_SECTIONS: dict[str, Any] = {"review": {"policy": {"label": "drop"}},
                                       "export": {"formats": ["imagenet"], "val_fraction": 0.0}}


def write_pipeline(out: Path, data: dict[str, Any]) -> Path:
    """Write ``OUT/pipeline.yaml``, unless ``OUT`` holds a run of something else."""
    path = out / PIPELINE_NAME
    _check_out(out, path, data)
    out.mkdir(parents=True, exist_ok=True)

    only = " ".join(f"--only {s}" for s in AUDIT_STAGES)
    clean = " ".join(f"--only {s}" for s in CLEAN_COPY_STAGES)
    header = ("# Written by `curate audit`: the labels of the dataset under candidates.sources, judged as given.\n"
              f"# Resume or re-run the audit with the same curate audit command, or: curate run {path} {only}\n"
              f"# (add {clean} for the cleaned copy in export/; a plain `curate run` also benchmarks it).\n")
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _check_out(out: Path, path: Path, data: dict[str, Any]) -> None:
    if path.is_file():
        try:
            previous = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            sources = previous["candidates"]["sources"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            raise ConfigError(f"{path}: not a pipeline written by curate audit; choose another --out") from None
        if sources != data["candidates"]["sources"]:
            raise ConfigError(f"{out} holds an audit of other data, or of this dataset before its files or labels "
                              "changed; choose a new --out folder (or delete this one)")
    elif out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty and holds no audit; choose a new or empty --out folder")
    elif out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; --out names a folder")


def summarize(ctx: Any, exported: bool) -> AuditResult:
    stats = ctx.catalog.stage_stats().get("noise", {})
    counts = ctx.catalog.candidate_status_counts()
    result = AuditResult(ctx.layout, images=int(stats.get("images", 0)),
                         classes=int(stats.get("classes_evaluated", 0)), flagged=int(stats.get("label_issues", 0)),
                         noise_rate=stats.get("estimated_noise_rate"), exported=exported)
    result.skipped = {s: counts[s] for s in ("pending", "failed", "rejected", "duplicate") if counts.get(s)}
    return result
