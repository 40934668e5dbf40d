"""The export's datasheet (after Gebru et al., "Datasheets for Datasets"), as JSON and as Markdown.

:func:`build_datasheet` gathers one dict: composition (images and classes, per class the counts per split,
sources and licences), collection (candidates by status, duplicates), labelling (the crowd, votes per exported
image), label noise and what was decided about it (issues by kind; the review stage's decisions per action and
per kind, action and source, with the policy; what they did to this export: dropped, relabeled, reviews
pending; classes left out under the minimum, images left out over the cap), the split (with the near-duplicate
groups kept on one side), the formats written with how to load each, and the resolved configuration that
produced the run (what ``config.yaml`` holds, local paths shortened to their last part so the export does not
carry the curator's directories). :func:`write_datasheet` writes it as ``datasheet.json`` and renders the same
dict as ``datasheet.md``, a table per topic; text from the web is HTML-escaped there.

Reads: the catalog (synsets, stage stats, candidate statuses, votes, issues, decisions), the config and the
export's table. Writes: ``datasheet.json`` and ``datasheet.md`` in the folder it is given (the export being
built). Failure: none of its own; an ``OSError`` writing propagates.
"""

from __future__ import annotations

import html
import json
import statistics
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path, PurePath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from curate import __version__
from curate.exporters.base import WRITERS
from curate.exporters.common import export_classes

if TYPE_CHECKING:
    import pandas as pd

ISSUE_KINDS = ("label", "outlier", "near_duplicate", "cross_class_duplicate")  # what the noise stage records


def build_datasheet(ctx: Any, table: pd.DataFrame, decisions: dict[str, Any]) -> dict[str, Any]:
    """The datasheet of an export: ``table`` is what was exported (one row per image, with ``split``);
    ``decisions`` are the export stage's selection and split facts (see ``ExportStage``)."""
    cfg = ctx.config.export
    return {
        "name": ctx.config.run.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "created_with": f"curate {__version__}",
        "wordnet": "WordNet 3.0",
        "formats": [f.type for f in cfg.formats],
        "loading": {f.type: getattr(WRITERS.get(f.type), "usage", "") for f in cfg.formats},
        "counts": {"images": len(table), "classes": int(table["wnid"].nunique()),
                   "train": int((table["split"] == "train").sum()), "val": int((table["split"] == "val").sum())},
        "classes": _classes(ctx, table),
        "collection": _collection(ctx, table),
        "labeling": _labeling(ctx, table),
        "label_noise": _label_noise(ctx, table, decisions),
        "decisions": _decisions(ctx, decisions),
        "selection": {
            "min_images_per_class": cfg.min_images_per_class,
            "classes_below_minimum": decisions["classes_below_minimum"],
            "max_images_per_class": cfg.max_images_per_class,
            "left_out_over_cap": decisions["left_out_over_cap"],
        },
        "split": {
            "val_fraction": cfg.val_fraction, "seed": ctx.seed, "stratified": True,
            "near_duplicate_distance": decisions["near_duplicate_distance"],
            "near_duplicate_groups": len(decisions["near_duplicate_groups"]),
            "images_in_near_duplicate_groups": sum(len(g) for g in decisions["near_duplicate_groups"]),
            "rule": "near duplicates (pHash within near_duplicate_distance bits) and the same picture are "
                    "assigned to one side together",
        },
        "config": portable(ctx.config.model_dump(mode="json")),
    }


def _classes(ctx: Any, table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    glosses = {r["wnid"]: r["gloss"] for r in ctx.catalog.synsets()}
    per_class = {}
    for cls in export_classes(ctx, table["wnid"]):
        rows = table[table["wnid"] == cls.wnid]
        per_class[cls.wnid] = {
            "index": cls.index, "name": cls.name, "words": cls.words, "gloss": glosses[cls.wnid],
            "train": int((rows["split"] == "train").sum()), "val": int((rows["split"] == "val").sum()),
            "images": len(rows), "flagged_kept": int(rows["label_issue"].sum()),
            "mean_p_true": round(float(rows["p_true"].mean()), 4),
            "sources": _counts(rows["source"]), "licenses": _counts(rows["license"]),
        }
    return per_class


def _collection(ctx: Any, table: pd.DataFrame) -> dict[str, Any]:
    statuses = ctx.catalog.candidate_status_counts()
    return {
        "sources": _counts(table["source"]),
        "licenses": _counts(table["license"]),
        "candidates_by_status": statuses,
        "exact_duplicates": {"within_class": statuses.get("duplicate", 0),
                             "across_classes": ctx.catalog.count_issues("cross_class_duplicate")},
        "near_duplicates_set_aside": ctx.catalog.count_near_duplicates(),
    }


# what one run of the annotate stage did, not what the dataset holds: a resumed or repeated run counts only
# its own part of these (the totals come from the catalog: votes, annotators, labels, accepted, rejected)
RUN_COUNTS = frozenset({"seconds", "new_tasks", "new_votes", "votes_revised", "labels_changed", "more_votes_asked"})


def _labeling(ctx: Any, table: pd.DataFrame) -> dict[str, Any]:
    stats = ctx.catalog.stage_stats().get("annotate", {})
    votes = [int(v) for v in table["n_votes"]]
    return {
        "backend": ctx.config.annotate.backend.type, "aggregation": ctx.config.annotate.aggregate.type,
        "votes_per_image": ctx.config.annotate.votes_per_image,
        **ctx.catalog.vote_totals(),
        "question": "Is this a <first lemma>? (<gloss>)",
        **{k: v for k, v in stats.items() if k not in RUN_COUNTS},
        "votes_per_exported_image": {
            "mean": round(statistics.fmean(votes), 3) if votes else None,
            "median": statistics.median(votes) if votes else None,
            "min": min(votes, default=None), "max": max(votes, default=None),
            "histogram": {str(k): v for k, v in sorted(Counter(votes).items())},
        },
    }


def _label_noise(ctx: Any, table: pd.DataFrame, decisions: dict[str, Any]) -> dict[str, Any]:
    stats = ctx.catalog.stage_stats().get("noise", {})
    return {
        "method": "cleanlab find_label_issues on out-of-sample logistic-regression probabilities "
                  f"over {ctx.config.noise.backbone} embeddings",
        "issues_by_kind": {kind: ctx.catalog.count_issues(kind) for kind in ISSUE_KINDS},
        "flagged": len(ctx.catalog.issue_shas("label")),
        "flags_trusted": decisions["label_issues_trusted"],
        "flagged_dropped_from_export": decisions["dropped_label_issues"],
        "exported_flagged": int(table["label_issue"].sum()),
        **{k: v for k, v in stats.items() if k != "seconds"},
    }


def _decisions(ctx: Any, decisions: dict[str, Any]) -> dict[str, Any]:
    """The review stage's decisions (all of them, per action and per kind, action and source), the policy
    that made them, and what they did to this export."""
    counts = [dict(r) for r in ctx.catalog.decision_counts()]
    by_action: Counter[str] = Counter()
    for row in counts:
        by_action[row["action"]] += row["n"]
    review = ctx.config.review
    unset = "unset (review where the crowd can answer, else keep)"
    policy = {k: v or unset for k, v in review.policy.model_dump().items()}
    return {"policy": policy, "pending_reviews": review.pending, "by_action": dict(sorted(by_action.items())),
            "by_kind_action_source": [{"kind": r["kind"], "action": r["action"], "source": r["source"],
                                       "images": r["n"]} for r in counts],
            "applied_to_export": decisions["applied"]}


def _counts(column: pd.Series) -> dict[str, int]:
    values = column.fillna("").astype(str).replace("", "unknown")
    return {k: int(v) for k, v in sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0]))}


def portable(value: Any) -> Any:
    """``value`` with absolute local paths shortened to ``…/<last part>`` (the curator's directories stay home)."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, str) and "://" not in value and (PurePath(value).is_absolute()
                                                          or PureWindowsPath(value).is_absolute()):
        return f"…/{PureWindowsPath(value).name}"
    return value


# ---------------------------------------------------------------------------------------------- writing
def write_datasheet(sheet: dict[str, Any], root: Path) -> None:
    (root / "datasheet.json").write_text(json.dumps(sheet, indent=2, default=str, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
    (root / "datasheet.md").write_text(render_markdown(sheet), encoding="utf-8")


def render_markdown(sheet: dict[str, Any]) -> str:
    """The datasheet for people: the same facts as datasheet.json, a table per topic."""
    parts = [_summary(sheet), _class_table(sheet), _collection_md(sheet), _labeling_md(sheet),
             _noise_md(sheet), _decisions_md(sheet), _split_md(sheet), _loading_md(sheet), _config_md(sheet)]
    return "\n\n".join(parts) + "\n"


def _summary(sheet: dict[str, Any]) -> str:
    counts = sheet["counts"]
    return (f"# Datasheet: {markdown_cell(sheet['name'])}\n\n"
            f"Created {sheet['created']} with {sheet['created_with']}; classes are {sheet['wordnet']} synsets.\n\n"
            + _table(["images", "classes", "train", "val", "formats"],
                     [[counts["images"], counts["classes"], counts["train"], counts["val"],
                       ", ".join(sheet["formats"])]]))


def _class_table(sheet: dict[str, Any]) -> str:
    rows = [[c["index"], wnid, c["name"], c["words"], c["train"], c["val"], c["images"], c["mean_p_true"],
             c["flagged_kept"], _inline(c["sources"]), _inline(c["licenses"])]
            for wnid, c in sheet["classes"].items()]
    return "## Classes\n\n" + _table(["index", "wnid", "name", "words", "train", "val", "images", "mean p_true",
                                      "flagged kept", "sources", "licences"], rows)


def _collection_md(sheet: dict[str, Any]) -> str:
    col = sheet["collection"]
    return ("## Collection\n\n"
            + _table(["source", "images"], list(col["sources"].items())) + "\n\n"
            + _table(["licence", "images"], list(col["licenses"].items())) + "\n\n"
            + _table(["candidate status", "candidates"], list(col["candidates_by_status"].items())) + "\n\n"
            f"Exact duplicates set aside: {col['exact_duplicates']['within_class']} within a class, "
            f"{col['exact_duplicates']['across_classes']} across classes (exported once, in the class with the "
            f"highest agreement); near duplicates set aside: {col['near_duplicates_set_aside']}.")


def _labeling_md(sheet: dict[str, Any]) -> str:
    lab = sheet["labeling"]
    votes = lab["votes_per_exported_image"]
    shown = {k: v for k, v in lab.items() if k != "votes_per_exported_image"}
    return ("## Labelling\n\n" + _table(["fact", "value"], list(shown.items())) + "\n\n"
            f"Votes per exported image: mean {votes['mean']}, median {votes['median']}, "
            f"min {votes['min']}, max {votes['max']}.\n\n"
            + _table(["votes", "images"], list(votes["histogram"].items())))


def _noise_md(sheet: dict[str, Any]) -> str:
    noise, sel = sheet["label_noise"], sheet["selection"]
    decisions = [
        ["label issues flagged", noise["flagged"]],
        ["flags trusted (a trained backbone)", noise["flags_trusted"]],
        ["flagged images left out by the decisions", noise["flagged_dropped_from_export"]],
        ["flagged images exported unsettled (label_issue in labels.csv)", noise["exported_flagged"]],
        *([f"issues of kind {k}", v] for k, v in noise["issues_by_kind"].items()),
        [f"classes left out (under {sel['min_images_per_class']} images)", _inline(sel["classes_below_minimum"])],
        [f"images left out over the cap ({sel['max_images_per_class'] or 'none'} per class)",
         _inline(sel["left_out_over_cap"])],
    ]
    skipped = (f"**The noise check did not run** ({markdown_cell(noise['skipped'])}): no label was checked, and "
               "`label_issue` in labels.csv is empty.\n\n") if noise.get("skipped") else ""
    return (f"## Label noise and selection\n\n{skipped}Method: {markdown_cell(noise['method'])}.\n\n"
            + _table(["decision", "value"], decisions))


def _decisions_md(sheet: dict[str, Any]) -> str:
    dec = sheet["decisions"]
    rows = [[r["kind"], r["action"], r["source"], r["images"]] for r in dec["by_kind_action_source"]]
    return ("## Noise decisions\n\n"
            f"Policy: {_inline(dec['policy'])}; an image whose review is pending: {dec['pending_reviews']}. "
            "The reason of each exported image's decision is in labels.csv (decision_reason).\n\n"
            + _table(["issue kind", "action", "decided by", "images"], rows) + "\n\n"
            f"In this export: {_inline(dec['applied_to_export'])}.")


def _split_md(sheet: dict[str, Any]) -> str:
    split = sheet["split"]
    return ("## Split\n\n"
            f"Per class, {split['val_fraction']:.0%} to val (seed {split['seed']}); {markdown_cell(split['rule'])}: "
            f"{split['near_duplicate_groups']} groups of {split['images_in_near_duplicate_groups']} images "
            f"(distance {split['near_duplicate_distance']} bits).")


def _loading_md(sheet: dict[str, Any]) -> str:
    blocks = [f"### {name}\n\n```python\n{usage}\n```" for name, usage in sheet["loading"].items() if usage]
    return "## Loading (from the export folder)\n\n" + "\n\n".join(blocks)


def _config_md(sheet: dict[str, Any]) -> str:
    import yaml

    text = yaml.safe_dump(sheet["config"], sort_keys=False, allow_unicode=True)
    return f"## Configuration that produced this export\n\n````yaml\n{text}````"


def _table(header: list[str], rows: list[list[Any]] | list[tuple[Any, Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _inline(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "none"


def markdown_cell(value: Any) -> str:
    """Text safe in a Markdown table cell: no HTML, no column break, one line."""
    text = html.escape(str(value), quote=False).replace("|", "\\|")
    return " ".join(text.split())
