"""The shipped demo pipeline, end to end on the shipped corpus (with a small backbone for speed).

Measures what the pipeline is for: the share of exported images that truly show their class, against
the raw keyword search, using the corpus's hand-checked ground truth.
"""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

from conftest import MOBILENET, REPO

from curate.cli import main
from curate.crowd.truth import make_truth

DEMO = REPO / "pipelines" / "demo.yaml"


def precision(pairs: list[tuple[str, str]], truth: dict[str, set[str]]) -> float:
    is_true = make_truth(truth)
    return sum(bool(is_true(sha, wnid)) for sha, wnid in pairs) / len(pairs)


def test_demo_pipeline_cleans_the_keyword_search(tmp_path: Path, capsys):
    weights = ["--set", "noise.backbone=mobilenet_v2", "--set", f"noise.weights={MOBILENET}"] if MOBILENET.is_file() \
        else ["--set", "noise.backbone=mobilenet_v3_small", "--set", "noise.weights=none"]
    assert main(["run", str(DEMO), "--run-dir", str(tmp_path / "run"), "--no-progress", *weights]) == 0
    with sqlite3.connect(tmp_path / "run" / "catalog.sqlite") as con:
        truth: dict[str, set[str]] = {}
        for sha, wnids in con.execute("SELECT sha256, true_wnids FROM candidates WHERE sha256 IS NOT NULL"):
            truth.setdefault(sha, set()).update(wnids.split())
        searched = con.execute("SELECT sha256, wnid FROM candidates WHERE status = 'downloaded'").fetchall()
        crowd = con.execute("SELECT sha256, wnid FROM labels WHERE accepted = 1").fetchall()
    with (tmp_path / "run" / "export" / "labels.csv").open() as fh:
        exported = [(row["sha256"], row["wnid"]) for row in csv.DictReader(fh)]
    p_search, p_crowd, p_export = (precision(x, truth) for x in (searched, crowd, exported))
    out = capsys.readouterr().out
    with capsys.disabled():
        print(f"\ndemo precision: keyword search {p_search:.3f} ({len(searched)}), after crowd {p_crowd:.3f} "
          f"({len(crowd)}), export {p_export:.3f} ({len(exported)})")
    assert p_search < 0.9 and p_crowd > p_search + 0.05
    assert len({w for _, w in exported}) == 8
    if MOBILENET.is_file():  # with pretrained features cleanlab must not make the export worse (by more
        assert p_export >= p_crowd - 1 / len(exported)  # than one image: the crowd's set holds cross-class pairs)
    assert "report:" in out
