from __future__ import annotations

from curate.crowd.aggregate import Majority
from curate.crowd.simulated import SimulatedCrowd, SimulatedCrowdConfig, make_workers

majority = Majority().aggregate


def tasks(n: int, votes: int = 5) -> list[dict]:
    return [{"id": i, "sha256": f"img{i}", "wnid": "n1", "votes_wanted": votes} for i in range(n)]


def test_workers_spammer_share_and_accuracy_band():
    workers = make_workers(20, accuracy=0.8, spread=0.1, spammer_share=0.25, seed=1)
    assert sum(w.spammer for w in workers) == 5
    assert all(0.7 <= w.accuracy <= 0.9 for w in workers)


def test_votes_are_deterministic_distinct_and_accurate():
    cfg = SimulatedCrowdConfig(workers=10, accuracy=0.9, accuracy_spread=0.05, spammer_share=0.0)
    crowd = SimulatedCrowd(cfg, seed=3, truth=lambda sha, wnid: int(sha[3:]) % 2 == 0)
    votes = crowd.pull(tasks(400))
    again = SimulatedCrowd(cfg, seed=3, truth=crowd.truth).pull(tasks(400))
    assert [(v.remote_id, v.answer) for v in votes] == [(v.remote_id, v.answer) for v in again]
    per_task = {}
    for v in votes:
        per_task.setdefault(v.task_id, set()).add(v.annotator)
    assert all(len(a) == 5 for a in per_task.values())
    correct = sum((v.answer == "yes") == (v.task_id % 2 == 0) for v in votes) / len(votes)
    assert 0.85 < correct < 0.95


def test_unknown_truth_is_counted():
    crowd = SimulatedCrowd(SimulatedCrowdConfig(), seed=0, truth=lambda sha, wnid: None)
    crowd.pull(tasks(3))
    assert crowd.unknown_truth == 3


def test_majority_needs_strictly_more_yes():
    votes = [{"sha256": "a", "wnid": "n1", "answer": a} for a in ("yes", "yes", "no")]
    votes += [{"sha256": "b", "wnid": "n1", "answer": a} for a in ("yes", "no", "unsure")]
    labels = {row["sha256"]: row for row in majority(votes)}
    assert labels["a"]["accepted"] == 1 and abs(labels["a"]["p_true"] - 2 / 3) < 1e-9
    assert labels["b"]["accepted"] == 0 and labels["b"]["n_votes"] == 3 and labels["b"]["p_true"] == 0.5


def test_majority_vote_beats_single_workers():
    cfg = SimulatedCrowdConfig(workers=9, accuracy=0.75, accuracy_spread=0.0, spammer_share=0.0)
    crowd = SimulatedCrowd(cfg, seed=0, truth=lambda sha, wnid: True)
    votes = crowd.pull(tasks(300, votes=5))
    rows = [{"sha256": f"img{v.task_id}", "wnid": "n1", "answer": v.answer} for v in votes]
    accepted = sum(r["accepted"] for r in majority(rows)) / 300
    assert accepted > 0.85  # 5 votes at 0.75 each: P(majority right) = 0.896
