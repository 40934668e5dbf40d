"""What the report says about people and decisions: the review's decision and reason on each card and in the
tables, their counts, a published report written again with new decisions, and an audit's given labels
(not votes, no annotators)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from report_fixtures import CASSETTE, PWN, SPRINGER, TENCH, report_inputs, write_rich_report

from curate.report.content import DECISION_COLUMNS
from curate.report.noise_report import rewrite_with_decisions
from curate.report.summary import summary_lines

TABLES = ("label_issues", "all_labels", "class_summary", "issues", "annotators", "confident_joint")


def decisions_for(inputs: dict) -> pd.DataFrame:
    """A decision for each flagged image (one per outcome) and one for an outlier, with hostile reasons."""
    table = inputs["table"]
    flagged = table[table["is_label_issue"]].sort_values("issue_rank")
    outlier = inputs["issues"].iloc[0]
    return pd.DataFrame([
        {**_key(flagged.iloc[0]), "decision": "keep", "decided_by": "review", "new_label": None,
         "decision_reason": f"review confirmed it <script>{PWN}</script>"},
        {**_key(flagged.iloc[1]), "decision": "relabel", "decided_by": "policy", "new_label": CASSETTE,
         "decision_reason": "label issue, policy relabel"},
        {**_key(flagged.iloc[2]), "decision": "pending", "decided_by": "policy", "new_label": None,
         "decision_reason": "label issue, policy review: asked the crowd"},
        {"sha256": outlier["sha256"], "given_label": outlier["given_label"], "decision": "drop",
         "decided_by": "policy", "new_label": None, "decision_reason": "outlier (score 0.010), policy drop"},
    ])


def _key(row: pd.Series) -> dict:
    return {"sha256": row["sha256"], "given_label": row["given_label"]}


def test_each_flagged_image_shows_its_decision_and_the_counts(tmp_path: Path):
    inputs = report_inputs(tmp_path / "images")
    decisions = decisions_for(inputs)
    index = write_rich_report(tmp_path / "report", tmp_path / "images", decisions=decisions)
    flagged = pd.read_csv(index.parent / "label_issues.csv").sort_values("issue_rank")
    assert [c for c in flagged.columns if c in DECISION_COLUMNS] == list(DECISION_COLUMNS)
    assert list(flagged["decision"]) == ["keep", "relabel", "pending"]
    assert list(flagged["decided_by"]) == ["review", "policy", "policy"]
    assert pd.read_parquet(index.parent / "all_labels.parquet")["decision"].notna().sum() == 4  # the outlier too
    summary = json.loads((index.parent / "summary.json").read_text())
    assert summary["decisions"] == {"keep": 1, "drop": 1, "relabel": 1, "pending": 1}
    printed = summary_lines(summary)  # what curate report prints
    assert "  decisions about the flagged images: keep 1, drop 1, relabel 1, pending 1" in printed

    html = index.read_text()
    assert '<div class="decision decision-keep">review → keep</div>' in html
    assert '<div class="decision decision-relabel">policy → relabel to cassette $x^2$ player</div>' in html
    assert "review → pending (the crowd has not answered yet)" in html
    assert '<div class="decision decision-drop">policy → drop</div>' in html  # on the outlier's card
    assert "review confirmed it &lt;script&gt;" in html and f"<script>{PWN}" not in html
    assert "1 keep" in html and "1 pending" in html


def test_a_published_report_is_written_again_with_new_decisions(tmp_path: Path):
    inputs = report_inputs(tmp_path / "images")
    cards = write_rich_report(tmp_path / "plain", tmp_path / "images").read_text().count('class="card ')
    index = write_rich_report(tmp_path / "report", tmp_path / "images")
    before = {name: pd.read_parquet(index.parent / f"{name}.parquet") for name in TABLES}
    summary_before = json.loads((index.parent / "summary.json").read_text())
    decisions = decisions_for(inputs)

    for _ in range(2):  # a second rewrite replaces the first one's decisions
        assert rewrite_with_decisions(index.parent, decisions, inputs["image_path"]) == index
    after = {name: pd.read_parquet(index.parent / f"{name}.parquet") for name in TABLES}
    for name in TABLES:
        added = [c for c in after[name].columns if c not in before[name].columns]
        assert added == ([*DECISION_COLUMNS, "new_name"] if name in ("label_issues", "all_labels") else []), name
        pd.testing.assert_frame_equal(after[name][list(before[name].columns)], before[name], check_dtype=False)
    summary = json.loads((index.parent / "summary.json").read_text())
    assert summary["decisions"] == {"keep": 1, "drop": 1, "relabel": 1, "pending": 1}
    assert {k: v for k, v in summary.items() if k != "decisions"} == \
        {k: v for k, v in summary_before.items() if k != "decisions"}
    html = index.read_text()
    assert "review → keep" in html and html.count('class="card ') == cards
    assert "Near-duplicates: 2 groups of 4 images" in html and 'id="annotators"' in html


def test_nothing_to_rewrite_without_a_full_report(tmp_path: Path):
    inputs = report_inputs(tmp_path / "images")
    assert rewrite_with_decisions(tmp_path / "none", decisions_for(inputs), inputs["image_path"]) is None
    (tmp_path / "skipped").mkdir()
    (tmp_path / "skipped" / "index.html").write_text("no issue was looked for")
    assert rewrite_with_decisions(tmp_path / "skipped", decisions_for(inputs), inputs["image_path"]) is None


def test_given_labels_are_no_votes_and_counts_are_pluralised(tmp_path: Path):
    inputs = report_inputs(tmp_path / "images")
    table = inputs["table"].drop(columns=["votes", "n_votes"])  # an audit: the labels are given, no crowd voted
    issues = inputs["issues"][inputs["issues"]["kind"] != "outlier"]
    issues = pd.concat([issues, inputs["issues"].iloc[[0]]])  # one outlier
    index = write_rich_report(tmp_path / "report", tmp_path / "images", table=table, annotators=[], issues=issues)
    html = index.read_text()
    body = html.split("<body>")[1]
    assert "vote" not in body  # no "1 votes" where no crowd voted
    assert "given label: " in html and 'id="annotators"' not in html
    assert not (index.parent / "annotators.csv").exists()
    assert "Outliers: 1 image" in html and "Outliers: 1 images" not in html and "<b>1</b>outlier</div>" in html

    one_vote = inputs["table"].drop(columns="votes").assign(n_votes=1)
    html = write_rich_report(tmp_path / "one", tmp_path / "images", table=one_vote).read_text()
    assert '<div class="votes">1 vote</div>' in html and "1 votes" not in html


def test_a_decision_about_another_class_of_the_image_stays_off_its_card(tmp_path: Path):
    """Decisions join by (image, given label): the one about a cross-class duplicate (the image's other class,
    not in the report's rows) is on no card and not among the counts."""
    inputs = report_inputs(tmp_path / "images")
    row = inputs["table"][inputs["table"]["is_label_issue"] & (inputs["table"]["given_label"] == TENCH)].iloc[0]
    decisions = pd.DataFrame([{"sha256": row["sha256"], "given_label": SPRINGER, "decision": "drop",
                               "decided_by": "policy", "new_label": None, "decision_reason": "cross-class duplicate"}])
    index = write_rich_report(tmp_path / "report", tmp_path / "images", decisions=decisions)
    assert pd.read_csv(index.parent / "label_issues.csv")["decision"].isna().all()
    assert json.loads((index.parent / "summary.json").read_text())["decisions"] == {}  # not about what it shows
    assert 'class="decision ' not in index.read_text() and 'id="decisions"' not in index.read_text()


def test_an_audits_report_shows_given_labels_not_votes(tmp_path: Path, seeded_weights: Path):
    """The ``given`` crowd accepts each image's label as it is: no vote counts, no table of one "annotator"."""
    from test_audit import build_tree

    from curate.audit import AuditOptions, audit

    options = AuditOptions(build_tree(tmp_path / "data", per_class=6), tmp_path / "out", backbone="mobilenet_v3_small",
                           weights=str(seeded_weights), device="cpu", batch_size=16)
    report = audit(options, progress=False, quiet=True).layout.report
    assert not (report / "annotators.csv").exists() and 'id="annotators"' not in (report / "index.html").read_text()
    for name in ("all_labels", "label_issues"):
        columns = list(pd.read_csv(report / f"{name}.csv").columns)
        assert not [c for c in columns if "votes" in c], name
    html = (report / "index.html").read_text()
    assert 'class="votes"' not in html and "given label: " in html
    assert json.loads((report / "summary.json").read_text())["meta"]["labels"] == "as given (no crowd voted)"
