"""``export`` stage: write the dataset in the configured formats, with labels.csv and a datasheet.

Reads: final labels (one class per accepted image), the decisions of the ``review`` stage, label issues,
candidates' provenance, perceptual hashes, stage stats. Writes: ``<run_dir>/export/``, built in
``export.incomplete/`` and swapped in only when complete (:mod:`curate.atomic`), so the previous export
survives any failure or kill and a reader never sees half an export. Every writer of ``export.formats``
writes its files into that one folder, so several formats are published together by one swap:
``imagenet`` (``train/<wnid>/<wnid>_<n>.JPEG``, ``val/…``, ``synsets.txt``), ``hf_imagefolder`` (``hf/``)
and ``webdataset`` (``webdataset/``); the images of the first two are hard links into the run's image
store (``export.link: hardlink``, a copy where the file system refuses links) or copies (``copy``). Beside
them ``labels.csv`` (one row per exported image with provenance: URLs of local corpora relative to the
corpus root, text cells neutralised against spreadsheet formulas), ``datasheet.json`` and ``datasheet.md``.

Selection: the decisions applied (drop: left out; relabel: exported under ``new_wnid``; a review still
pending: left out or kept as ``review.pending`` says; keep, and an image accepted for two classes whose
second class was decided keep, exported under each), at most ``max_images_per_class`` per class (highest
crowd agreement first, then sha256), classes under ``min_images_per_class`` left out. labels.csv says per
image ``given_wnid`` (the class the crowd accepted), ``decision`` (keep, relabel, pending, or empty: no
issue), ``decision_reason`` and ``label_issue``: the noise stage flagged the label and no decision settled it
(kept by policy, flags of an untrained backbone, a review still pending, or no review stage run); a label
the crowd confirmed in review or a relabel is settled; empty where the noise stage skipped its check (no
trained backbone: the datasheet says why). Split: per class, stratified and seeded; near
duplicates (pHashes within ``candidates.quality.near_duplicate_distance`` bits) and the same picture never
straddle train and val. Failure: an error of a writer discards the half-built export and fails the stage.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from curate.exporters import WRITERS
from curate.sections import Section, plugin_config
from curate.stages.base import Context, Stage, StageResult, fingerprint

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


class ExportConfig(Section):
    formats: list[plugin_config(WRITERS)] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [{"type": "imagenet"}], validate_default=True, min_length=1,
        description="writers, by name or with settings: [imagenet, hf_imagefolder, webdataset]",
    )
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    drop_label_issues: bool | None = Field(
        None, description="deprecated: review.policy.label decides (where that is unset: true = drop, false = keep)")
    min_images_per_class: int = Field(1, ge=1)
    # None: every accepted image. With a cap, a class keeps the images the crowd agreed on most
    # (p_true, then sha256 for a reproducible choice among ties).
    max_images_per_class: int | None = Field(None, ge=1)
    # A hard link is the store's file under a second name (no extra space): editing an exported image
    # edits the run's image store too. ``copy`` gives every exported image a file of its own.
    link: Literal["hardlink", "copy"] = Field(
        "hardlink", description="hardlink: exported images are hard links into the image store (no extra space; "
                                "a copy where the file system refuses links); copy: files of their own")

    @model_validator(mode="after")
    def _cap_above_minimum(self) -> ExportConfig:
        cap, minimum = self.max_images_per_class, self.min_images_per_class
        if cap is not None and cap < minimum:
            raise ValueError(f"max_images_per_class ({cap}) must be at least min_images_per_class ({minimum})")
        return self


@dataclass
class Selection:
    """The images chosen for export and what was left out on the way (for the datasheet)."""

    table: pd.DataFrame
    dropped_label_issues: int = 0  # flagged images the decisions left out
    label_issues_trusted: bool = True
    applied: dict[str, int] = field(default_factory=dict)  # what the decisions did to this export
    left_out_over_cap: dict[str, int] = field(default_factory=dict)
    classes_below_minimum: dict[str, int] = field(default_factory=dict)


DECISION_COLUMNS = ["given_wnid", "decision", "decision_reason"]


class ExportStage(Stage):
    name = "export"
    description = "write the dataset in the configured formats with labels.csv and a datasheet"
    Config = ExportConfig

    def fingerprint_inputs(self, ctx: Context) -> object:
        labels = [tuple(r) for r in ctx.catalog.final_labels()]
        issues = sorted(ctx.catalog.issue_shas("label"))
        decisions = [(r["sha256"], r["wnid"], r["action"], r["new_wnid"], r["reason"]) for r in ctx.catalog.decisions()]
        noise = ctx.catalog.stage_stats().get("noise", {})  # what export reads of it: trusted, or skipped
        return {"config": ctx.config.export.model_dump(mode="json"), "labels": fingerprint(labels),
                "issues": fingerprint(issues), "noise": [self._issues_trustworthy(ctx), "skipped" in noise],
                "decisions": fingerprint(decisions), "pending": ctx.config.review.pending,
                "near_duplicate_distance": ctx.config.candidates.quality.near_duplicate_distance}

    def outputs(self, ctx: Context) -> dict[str, str]:
        from curate.atomic import published

        return {"export": str(ctx.layout.export)} if published(ctx.layout.export) else {}

    def run(self, ctx: Context) -> StageResult:
        from curate.atomic import replace_dir
        from curate.exporters import create_writer
        from curate.exporters.datasheet import build_datasheet, write_datasheet

        cfg = ctx.config.export
        selection = self._select(ctx)
        groups = split_groups(ctx, selection.table)
        table = assign_split(selection.table, cfg.val_fraction, ctx.seed, groups)
        noise_checked = "skipped" not in ctx.catalog.stage_stats().get("noise", {})
        with replace_dir(ctx.layout.export) as staging:
            for writer_config in cfg.formats:
                table = create_writer(writer_config).write(table, staging, ctx)
            self._write_labels(table, staging, noise_checked)
            write_datasheet(build_datasheet(ctx, table, self._decisions(ctx, selection, groups)), staging)
        counts = table["split"].value_counts()
        stats = {"classes": int(table["wnid"].nunique()), "train": int(counts.get("train", 0)),
                 "val": int(counts.get("val", 0)), "dropped_label_issues": selection.dropped_label_issues,
                 **{k: v for k, v in selection.applied.items() if v}}
        return StageResult(stats=stats, outputs={"export": str(ctx.layout.export)})

    # ------------------------------------------------------------------ steps
    def _select(self, ctx: Context) -> Selection:
        import pandas as pd

        from curate.stages.common import provenance

        cfg = ctx.config.export
        selection = Selection(pd.DataFrame(), label_issues_trusted=self._issues_trustworthy(ctx))
        decisions = {(r["sha256"], r["wnid"]): dict(r) for r in ctx.catalog.decisions()}
        if cfg.drop_label_issues and selection.label_issues_trusted:
            decisions = undecided_label_issues_dropped(ctx, decisions)
        rows = [dict(r) for r in ctx.catalog.final_labels()
                if r["rank"] == 1 or decisions.get((r["sha256"], r["wnid"]), {}).get("action") == "keep"]
        table = pd.DataFrame(rows, columns=["sha256", "wnid", "p_true", "n_votes", "path", "rank"])
        table = table.drop(columns="rank").rename(columns={"path": "store_path"})
        table = table.merge(provenance(ctx), on=["sha256", "wnid"], how="left")  # by the class the crowd accepted
        table, selection.applied = apply_decisions(table, decisions, ctx.catalog.issue_shas("label"),
                                                   ctx.config.review.pending)
        selection.dropped_label_issues = selection.applied.pop("dropped_label_issues")
        table, selection.left_out_over_cap = cap_per_class(table, cfg.max_images_per_class)
        counts = table["wnid"].value_counts()
        small = counts[counts < cfg.min_images_per_class]
        if len(small):
            log.warning("export: classes below %d images left out: %s", cfg.min_images_per_class, dict(small))
        selection.classes_below_minimum = {str(k): int(v) for k, v in sorted(small.items())}
        table = table[~table["wnid"].isin(small.index)]
        selection.table = table.sort_values(["wnid", "sha256"]).reset_index(drop=True)
        return selection

    @staticmethod
    def _issues_trustworthy(ctx: Context) -> bool:
        """Issues found on an untrained backbone (the ``weights_fallback: none`` path) are kept in the
        export (the review stage decides keep for them), marked in labels.csv."""
        from curate.stages.review import flags_trusted

        return flags_trusted(ctx.catalog.stage_stats())

    @staticmethod
    def _decisions(ctx: Context, selection: Selection, groups: list[list[str]]) -> dict[str, Any]:
        return {"dropped_label_issues": selection.dropped_label_issues,
                "label_issues_trusted": selection.label_issues_trusted,
                "applied": selection.applied,
                "left_out_over_cap": selection.left_out_over_cap,
                "classes_below_minimum": selection.classes_below_minimum,
                "near_duplicate_distance": ctx.config.candidates.quality.near_duplicate_distance,
                "near_duplicate_groups": groups}

    @staticmethod
    def _write_labels(table: pd.DataFrame, root: Path, noise_checked: bool) -> None:
        from curate.tables import write_csv

        table = table.drop(columns=["store_path"])
        write_csv(table if noise_checked else table.assign(label_issue=None), root / "labels.csv")


def undecided_label_issues_dropped(ctx: Context, decisions: dict[tuple[str, str], dict[str, Any]]
                                   ) -> dict[tuple[str, str], dict[str, Any]]:
    """The deprecated ``export.drop_label_issues: true`` where the review stage decided nothing (it did not
    run, as in a pipeline that names its stages): label issues are dropped, as before the review stage."""
    added = {(r["sha256"], r["wnid"]): {"action": "drop", "new_wnid": None, "source": "policy",
                                        "reason": f"{r['kind']} issue, export.drop_label_issues true (not reviewed)"}
             for r in ctx.catalog.issues_of(("label",)) if (r["sha256"], r["wnid"]) not in decisions}
    if added:
        log.warning("export: %d label issues without a decision dropped (export.drop_label_issues, deprecated: run "
                    "the review stage, which decides by review.policy)", len(added))
    return {**decisions, **added}


def apply_decisions(table: pd.DataFrame, decisions: dict[tuple[str, str], dict[str, Any]], flagged: set[str],
                    pending: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """The decisions of the review stage applied to the rows (sha256, wnid) they name: drop leaves a row out,
    relabel moves it to ``new_wnid``, a pending review leaves it out unless ``pending`` is keep. Adds
    ``label_issue`` (flagged, and not settled by a review or a relabel), ``given_wnid``, ``decision`` and
    ``decision_reason`` after ``store_path``. Returns the rows and counts of what was done
    (``dropped_label_issues``: flagged images left out)."""
    import pandas as pd

    found = pd.Series([decisions.get(key) for key in zip(table["sha256"], table["wnid"], strict=True)],
                      index=table.index, dtype=object)
    action = found.map(lambda d: d["action"] if d else "")
    settled = found.map(lambda d: bool(d) and (d["action"] == "relabel" or (d["source"], d["action"]) ==
                                               ("review", "keep"))).astype(bool)
    out = (action == "drop") | ((action == "review") & (pending == "exclude"))
    is_flagged = table["sha256"].isin(flagged)
    decided = table.assign(
        wnid=[d["new_wnid"] if a == "relabel" else w for d, a, w in zip(found, action, table["wnid"], strict=True)],
        label_issue=is_flagged & ~settled, given_wnid=table["wnid"], decision=action.replace("review", "pending"),
        decision_reason=found.map(lambda d: d["reason"] if d else ""))
    pending_rows = int((action == "review").sum())
    applied = {"dropped": int((action == "drop").sum()), "relabeled": int((action == "relabel").sum()),
               "pending_excluded": pending_rows if pending == "exclude" else 0,
               "pending_exported": pending_rows if pending == "keep" else 0,
               "dropped_label_issues": int((out & is_flagged).sum())}
    decided = decided[~out].drop_duplicates(["sha256", "wnid"])  # a relabel onto a class the picture already has
    columns = [c for c in table.columns if c != "label_issue"]
    at = columns.index("store_path") + 1
    return decided[[*columns[:at], "label_issue", *DECISION_COLUMNS, *columns[at:]]], applied


def cap_per_class(table: pd.DataFrame, cap: int | None) -> tuple[pd.DataFrame, dict[str, int]]:
    """At most ``cap`` images per class, those with the highest ``p_true`` (ties: lowest sha256); returns
    the kept rows and, per capped class, how many were left out."""
    if cap is None:
        return table, {}
    ranked = table.sort_values(["wnid", "p_true", "sha256"], ascending=[True, False, True])
    kept = ranked.groupby("wnid", sort=False).head(cap)
    over = ranked["wnid"].value_counts() - cap
    return kept, {str(k): int(v) for k, v in sorted(over[over > 0].items())}


def split_groups(ctx: Context, table: pd.DataFrame) -> list[list[str]]:
    """Exported images (sha256) that are near duplicates of each other: pHashes within
    ``candidates.quality.near_duplicate_distance`` bits (0: none), as the candidates stage groups them."""
    from curate.quality import near_duplicate_groups

    distance = ctx.config.candidates.quality.near_duplicate_distance
    if distance <= 0:
        return []
    hashes = ctx.catalog.image_phashes()
    items = [(sha, hashes[sha]) for sha in sorted(set(table["sha256"])) if sha in hashes]
    return near_duplicate_groups(items, distance)


def assign_split(table: pd.DataFrame, val_fraction: float, seed: int,
                 groups: Iterable[Iterable[str]] = ()) -> pd.DataFrame:
    """Per class: shuffle with a seed of its own and fill val up to round(n * val_fraction) (at least one
    when the class has two or more images and val_fraction > 0, never all). Numbering ``n`` follows sha256
    order within the class.

    Rows that must not be separated (the same sha256 on several rows, and the sha256s of each of
    ``groups``: near duplicates) form one unit that goes to val only when it fits the val quota of every
    class it touches, else to train: near duplicates never straddle the split. A unit is decided where its
    first row comes up (classes in sorted order, rows in the class's shuffled order). Without groups, the
    result is the plain per-class shuffle and cut."""
    table = table.copy()
    table["n"] = table.groupby("wnid").cumcount() + 1
    wnids = table["wnid"].tolist()
    units = _units(table["sha256"].tolist(), groups)
    members: dict[int, list[int]] = {}
    for position, unit in enumerate(units):
        members.setdefault(unit, []).append(position)
    quota = _val_quota(Counter(wnids), val_fraction)
    in_val: Counter[str] = Counter()
    split = ["train"] * len(table)
    decided: set[int] = set()
    for wnid, positions in sorted(_positions_by_class(wnids).items()):
        random.Random(f"{seed}:split:{wnid}").shuffle(positions)
        for position in positions:
            unit = units[position]
            if unit in decided:
                continue
            decided.add(unit)
            need = Counter(wnids[p] for p in members[unit])
            if all(in_val[w] + k <= quota[w] for w, k in need.items()):
                in_val.update(need)
                for p in members[unit]:
                    split[p] = "val"
    table["split"] = split
    return table


def _val_quota(sizes: Counter[str], val_fraction: float) -> dict[str, int]:
    quota = {}
    for wnid, n in sizes.items():
        n_val = round(n * val_fraction)
        if val_fraction > 0 and n >= 2:
            n_val = min(max(n_val, 1), n - 1)
        quota[wnid] = n_val
    return quota


def _positions_by_class(wnids: list[str]) -> dict[str, list[int]]:
    by_class: dict[str, list[int]] = {}
    for position, wnid in enumerate(wnids):
        by_class.setdefault(wnid, []).append(position)
    return by_class


def _units(shas: list[str], groups: Iterable[Iterable[str]]) -> list[int]:
    """For each row, the id of the unit it belongs to: rows sharing a sha256, or sha256s of one group,
    joined transitively (union-find over sha256s)."""
    parent: dict[str, str] = {sha: sha for sha in shas}

    def find(sha: str) -> str:
        while parent[sha] != sha:
            parent[sha] = parent[parent[sha]]
            sha = parent[sha]
        return sha

    for group in groups:
        present = [sha for sha in group if sha in parent]
        for sha in present[1:]:
            parent[find(sha)] = find(present[0])
    ids: dict[str, int] = {}
    return [ids.setdefault(find(sha), len(ids)) for sha in shas]
