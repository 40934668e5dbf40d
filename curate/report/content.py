"""What the noise report shows, computed from the noise stage's frames: cards, near-duplicate groups,
per-class counts, the worst confusions and the totals.

Reads only its arguments; writes nothing. Missing columns raise ``ValueError`` naming every one of them.
Issue kinds other than ``outlier`` and ``near_duplicate`` are kept and shown as their own sections.
Decisions about issues (the review stage's: keep, drop, relabel, or pending while the crowd reviews) join
each image's row by (sha256, given label) and replace those of an earlier build of the same tables.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

TABLE_COLUMNS = ("sha256", "given_label", "given_name", "predicted_label", "predicted_name", "label_score",
                 "is_label_issue", "issue_rank")
SUMMARY_COLUMNS = ("label", "name", "n_given", "n_label_issues", "estimated_noise_rate", "label_quality")
ISSUE_COLUMNS = ("sha256", "given_label", "kind", "score")
DECISION_COLUMNS = ("decision", "decided_by", "new_label", "decision_reason")
DECISION_ORDER = ("keep", "drop", "relabel", "pending")  # pending: sent to review, the crowd has not answered
INFO_COLUMNS = ("predicted_label", "predicted_name", "source", "caption", "url", "path", "votes", "n_votes",
                *DECISION_COLUMNS, "new_name")
LABEL, OUTLIER, NEAR_DUPLICATE = "label", "outlier", "near_duplicate"
TOP_CONFUSIONS = 15


@dataclass
class IssueSection:
    """One issue kind of the page: cards (most severe first) or, for near-duplicates, groups of cards."""

    kind: str
    n_images: int
    cards: list[dict] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)
    n_groups: int = 0


@dataclass
class ReportContent:
    table: pd.DataFrame  # every image, ``path`` second when present
    flagged: pd.DataFrame  # the label issues, rank 1 first
    classes: pd.DataFrame  # class summary with names and ``n_<kind>`` counts, noisiest first
    issues: pd.DataFrame  # the other issues, by kind and score, with the image's name and path
    joint: pd.DataFrame | None
    flagged_cards: list[dict]
    sections: list[IssueSection]
    kind_columns: list[tuple[str, str]]  # (kind, column of ``classes`` counting it)
    confusions: list[dict]
    dataset_checks: dict[str, dict]
    annotators: list[dict]
    noise_rate: float
    decision_counts: dict[str, int] = field(default_factory=dict)  # decision -> (image, class) pairs

    def tables(self) -> dict[str, pd.DataFrame]:
        """The report's tables by file stem; annotators and the confident joint only when given."""
        tables = {"label_issues": self.flagged, "all_labels": self.table, "class_summary": self.classes,
                  "issues": self.issues}
        if self.annotators:
            tables["annotators"] = pd.DataFrame(self.annotators)
        if self.joint is not None:
            tables["confident_joint"] = self.joint.rename_axis("given_label").reset_index()
        return tables

    def section(self, kind: str) -> IssueSection | None:
        return next((s for s in self.sections if s.kind == kind), None)


def build_content(table: pd.DataFrame, class_summary: pd.DataFrame, max_cards: int, *,
                  issues: pd.DataFrame | None = None, joint: pd.DataFrame | None = None,
                  dataset_checks: dict | None = None, annotators: list[dict] | None = None,
                  decisions: pd.DataFrame | None = None) -> ReportContent:
    """``max_cards``: the most cards per section (the tables hold every row); ``decisions``: one row per
    decided (sha256, given_label) with :data:`DECISION_COLUMNS`."""
    require_columns(table, TABLE_COLUMNS, "table")
    require_columns(class_summary, SUMMARY_COLUMNS, "class_summary")
    table = _path_second(with_names(table, {"given_name": "given_label", "predicted_name": "predicted_label"}))
    names = _class_names(table, class_summary)
    table = _with_decisions(table, decisions, names)
    flagged = table[table["is_label_issue"].astype(bool)].sort_values("issue_rank")
    issues = _normalise_issues(issues, table, names)
    joint = _square(joint) if joint is not None else None
    kind_columns = [(kind, f"n_{_slug(kind)}") for kind in _kinds(issues)]
    return ReportContent(
        table=table, flagged=flagged, classes=_classes(class_summary, issues, kind_columns), issues=issues,
        joint=joint, flagged_cards=_cards(flagged.head(max_cards), "label_score", LABEL),
        sections=[_section(kind, issues, table, max_cards) for kind in _kinds(issues)],
        kind_columns=kind_columns, confusions=_confusions(joint, names) if joint is not None else [],
        dataset_checks={str(k): dict(v) for k, v in (dataset_checks or {}).items()},
        annotators=[dict(a) for a in annotators or []], noise_rate=_noise_rate(class_summary),
        decision_counts=_decision_counts(table, issues),
    )


def require_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns: {', '.join(missing)}")


def with_names(frame: pd.DataFrame, name_to_label: dict[str, str]) -> pd.DataFrame:
    """Human names where known, the wnid where not (a synset without lemmas must not show "nan")."""
    return frame.assign(**{name: frame[name].fillna(frame[label]) for name, label in name_to_label.items()})


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with missing values as None (NaN is truthy in a template)."""
    return [{k: _none_if_missing(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _none_if_missing(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA else value


def _with_decisions(table: pd.DataFrame, decisions: pd.DataFrame | None, names: dict[str, str]) -> pd.DataFrame:
    """Each row with the decision about its given label (empty where none), the new class's name beside it."""
    table = table.drop(columns=[c for c in (*DECISION_COLUMNS, "new_name") if c in table.columns])
    if decisions is None:
        return table
    require_columns(decisions, ("sha256", "given_label", *DECISION_COLUMNS), "decisions")
    chosen = decisions[["sha256", "given_label", *DECISION_COLUMNS]].drop_duplicates(["sha256", "given_label"])
    table = table.merge(chosen, on=["sha256", "given_label"], how="left")
    return table.assign(new_name=table["new_label"].map(lambda w: names.get(str(w), w) if isinstance(w, str) else None))


def _decision_counts(table: pd.DataFrame, issues: pd.DataFrame) -> dict[str, int]:
    """The decisions about the images this report flags (label issues and the other issues) by outcome, keep,
    drop, relabel, pending first (not those about images no longer flagged, or about another class)."""
    if "decision" not in table.columns:
        return {}
    keys = set(zip(issues["sha256"], issues["given_label"], strict=True))
    flagged = table["is_label_issue"].astype(bool) | pd.Series(
        [key in keys for key in zip(table["sha256"], table["given_label"], strict=True)], index=table.index)
    counts = table.loc[flagged, "decision"].dropna().astype(str).value_counts()
    order = [d for d in DECISION_ORDER if d in counts] + sorted(set(counts.index) - set(DECISION_ORDER))
    return {d: int(counts[d]) for d in order}


def decision_text(row: dict[str, Any]) -> str | None:
    """A decision in words: who decided, then what (``policy → drop``, ``review → relabel to cat``,
    ``review → pending``)."""
    decision = row.get("decision")
    if not decision:
        return None
    if decision == "pending":
        return "review → pending (the crowd has not answered yet)"
    who = "review" if row.get("decided_by") == "review" else "policy"
    new = f" to {row.get('new_name') or row.get('new_label')}" if row.get("new_label") else ""
    return f"{who} → {decision}{new}"


def _path_second(frame: pd.DataFrame) -> pd.DataFrame:
    """An audited dataset's ``path`` right after ``sha256``, where analysts look for it first."""
    if "path" not in frame.columns:
        return frame
    rest = [c for c in frame.columns if c not in ("sha256", "path")]
    return frame[["sha256", "path", *rest]]


def _class_names(table: pd.DataFrame, class_summary: pd.DataFrame) -> dict[str, str]:
    names = dict(zip(table["predicted_label"], table["predicted_name"], strict=True))
    names.update(zip(table["given_label"], table["given_name"], strict=True))
    named = with_names(class_summary, {"name": "label"})
    names.update(zip(named["label"], named["name"], strict=True))
    return {str(k): str(v) for k, v in names.items()}


def _normalise_issues(issues: pd.DataFrame | None, table: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """Issues sorted by kind and severity, with the image's given name and (audited datasets) path."""
    if issues is None:
        issues = pd.DataFrame(columns=[*ISSUE_COLUMNS, "group"])
    require_columns(issues, ISSUE_COLUMNS, "issues")
    issues = issues.assign(kind=issues["kind"].astype(str), score=pd.to_numeric(issues["score"]))
    if "group" not in issues.columns:
        issues = issues.assign(group=float("nan"))
    issues = issues.assign(given_name=issues["given_label"].map(lambda w: names.get(str(w), w)))
    if "path" in table.columns and "path" not in issues.columns:
        issues = issues.merge(table[["sha256", "path"]].drop_duplicates("sha256"), on="sha256", how="left")
    return _path_second(issues.sort_values(["kind", "score"], kind="stable").reset_index(drop=True))


def _kinds(issues: pd.DataFrame) -> list[str]:
    """Outliers, then near-duplicates, then any other kind alphabetically."""
    present = set(issues["kind"])
    return [k for k in (OUTLIER, NEAR_DUPLICATE) if k in present] + sorted(present - {OUTLIER, NEAR_DUPLICATE})


def _slug(kind: str) -> str:
    return re.sub(r"\W+", "_", kind).strip("_").lower() or "other"


def _classes(class_summary: pd.DataFrame, issues: pd.DataFrame, kind_columns: list[tuple[str, str]]) -> pd.DataFrame:
    classes = with_names(class_summary, {"name": "label"})
    for kind, column in kind_columns:
        counts = issues.loc[issues["kind"] == kind, "given_label"].value_counts()
        classes = classes.assign(**{column: classes["label"].map(counts).fillna(0).astype(int)})
    return classes.sort_values(["estimated_noise_rate", "n_label_issues"], ascending=False, kind="stable")


def _noise_rate(class_summary: pd.DataFrame) -> float:
    """cleanlab's overall estimate: per-class rates weighted by class size (= 1 - trace of the joint)."""
    n = class_summary["n_given"].sum()
    return float((class_summary["n_given"] * class_summary["estimated_noise_rate"]).sum() / n) if n else 0.0


def _square(joint: pd.DataFrame) -> pd.DataFrame:
    """The joint with the same classes, in the same order, on both axes (absent pairs count 0)."""
    labels = [str(c) for c in joint.index] + [str(c) for c in joint.columns if str(c) not in map(str, joint.index)]
    joint = joint.rename(index=str, columns=str)
    return joint.reindex(index=labels, columns=labels, fill_value=0).fillna(0)


def _confusions(joint: pd.DataFrame, names: dict[str, str]) -> list[dict]:
    """The largest off-diagonal cells: images given one class that the classifier puts in another."""
    cells = joint.stack().rename("count").rename_axis(["given_label", "suggested_label"]).reset_index()
    cells = cells[(cells["given_label"] != cells["suggested_label"]) & (cells["count"] > 0)]
    row_totals = joint.sum(axis=1)
    top = cells.sort_values("count", ascending=False, kind="stable").head(TOP_CONFUSIONS)
    return [{"given_label": r.given_label, "given_name": names.get(r.given_label, r.given_label),
             "suggested_label": r.suggested_label, "suggested_name": names.get(r.suggested_label, r.suggested_label),
             "count": float(r.count), "share": float(r.count / row_totals[r.given_label])}
            for r in top.itertuples()]


def _image_info(table: pd.DataFrame) -> pd.DataFrame:
    columns = ["sha256", *[c for c in INFO_COLUMNS if c in table.columns]]
    return table[columns].drop_duplicates("sha256")


def _section(kind: str, issues: pd.DataFrame, table: pd.DataFrame, max_cards: int) -> IssueSection:
    rows = issues[issues["kind"] == kind].drop(columns=[c for c in INFO_COLUMNS if c in issues.columns])
    rows = rows.merge(_image_info(table), on="sha256", how="left")
    section = IssueSection(kind=kind, n_images=int(rows["sha256"].nunique()))
    if kind == NEAR_DUPLICATE:
        section.groups, section.n_groups = _groups(rows, max_cards)
    else:
        section.cards = _cards(rows.head(max_cards), "score", kind)
    return section


def near_duplicate_keys(rows: pd.DataFrame) -> pd.Series:
    """The group of each near-duplicate row; a row without a group is a group of its own."""
    return rows["group"].astype(object).where(rows["group"].notna(), "single:" + rows["sha256"].astype(str))


def _groups(rows: pd.DataFrame, max_cards: int) -> tuple[list[dict], int]:
    """Near-duplicate sets, most severe (lowest score) first, until ``max_cards`` images are shown."""
    keyed = rows.assign(_key=near_duplicate_keys(rows))
    ordered = sorted(keyed.groupby("_key", sort=False), key=lambda kv: (kv[1]["score"].min(), -len(kv[1])))
    groups, shown = [], 0
    for key, members in ordered:
        if shown >= max_cards:
            break
        cards = _cards(members.sort_values("score", kind="stable"), "score", NEAR_DUPLICATE)
        groups.append({"group": _group_label(key), "cards": cards,
                       "classes": sorted({c["given_label"] for c in cards}), "score": float(members["score"].min())})
        shown += len(cards)
    return groups, len(ordered)


def _group_label(key: Any) -> str:
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return "-" if str(key).startswith("single:") else str(key)


def _cards(rows: pd.DataFrame, score_column: str, kind: str) -> list[dict]:
    """What one thumbnail card shows; the same keys for every kind."""
    cards = []
    for row in records(rows):
        rank = row.get("issue_rank")
        cards.append({
            "kind": kind, "sha256": str(row["sha256"]), "given_label": str(row["given_label"]),
            "given_name": row.get("given_name") or str(row["given_label"]),
            "predicted_label": row.get("predicted_label") if kind == LABEL else None,
            "predicted_name": row.get("predicted_name") if kind == LABEL else None,
            "score": row.get(score_column), "rank": int(rank) if rank is not None else None,
            "source": row.get("source"), "caption": row.get("caption"), "path": row.get("path"),
            "votes": row.get("votes"), "n_votes": _count(row.get("n_votes")), "url": row.get("url"),
            "link": _web_link(row.get("url")), "decision": row.get("decision"),
            "decision_text": decision_text(row), "decision_reason": row.get("decision_reason"),
            "new_label": row.get("new_label"),
        })
    return cards


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


def _web_link(url: Any) -> str | None:
    """Only http(s) addresses become links: a ``javascript:`` or ``data:`` URL from the web stays text."""
    return url if isinstance(url, str) and re.match(r"https?://", url, re.IGNORECASE) else None
