"""The simulated crowd's realism: hard items, per-class confusions and "unsure" at the configured rates,
every answer still a pure function of (seed, task, worker)."""

from __future__ import annotations

import pytest

from curate.crowd.simulated import HARD_UNSURE_FACTOR, SimulatedCrowd, SimulatedCrowdConfig

REAL = dict(workers=30, accuracy=0.85, accuracy_spread=0.0, spammer_share=0.1, hard_share=0.2, hard_accuracy=0.6,
            confusion_share=0.2, confused_yes_rate=0.7, unsure_rate=0.1)
WNIDS = [f"n{k:08d}" for k in range(10)]


def tasks(n: int, votes: int) -> list[dict]:
    return [{"id": i, "sha256": f"img{i}", "wnid": WNIDS[i % 10], "votes_wanted": votes} for i in range(n)]


def truth(sha: str, wnid: str) -> bool:
    return int(sha[3:]) % 2 == 0


def crowd(seed: int = 0, **overrides) -> SimulatedCrowd:
    return SimulatedCrowd(SimulatedCrowdConfig(**{**REAL, **overrides}), seed=seed, truth=truth)


def answers(c: SimulatedCrowd, n: int = 400, votes: int = 10) -> dict[tuple[int, str], str]:
    return {(v.task_id, v.annotator): v.answer for v in c.pull(tasks(n, votes))}


def test_answers_are_pure_functions_of_seed_task_and_worker():
    assert answers(crowd(seed=1)) == answers(crowd(seed=1))
    assert answers(crowd(seed=1)) != answers(crowd(seed=2))
    more = crowd(seed=1).pull([{**t, "n_votes": 4} for t in tasks(400, 7)])  # a later round: 3 more each
    first = answers(crowd(seed=1), votes=7)
    assert len(more) == 1200 and all(first[(v.task_id, v.annotator)] == v.answer for v in more)


def test_each_feature_draws_from_its_own_stream():
    """Switching realism on changes only the answers it concerns: the old crowd is kept exactly."""
    plain = answers(crowd(hard_share=0.0, confusion_share=0.0, unsure_rate=0.0))
    with_unsure = answers(crowd(hard_share=0.0, confusion_share=0.0))
    changed = {k for k in plain if plain[k] != with_unsure[k]}
    assert changed and all(with_unsure[k] == "unsure" for k in changed)
    with_confusion = answers(crowd(hard_share=0.0, unsure_rate=0.0))
    assert all(truth(f"img{task}", "") is False for task, _ in
               (k for k in plain if plain[k] != with_confusion[k]))  # only wrong images get confused yeses


def test_hard_items_at_the_configured_share_and_accuracy():
    c = crowd(unsure_rate=0.0, confusion_share=0.0, spammer_share=0.0)
    hard = {i for i in range(4000) if c.item_accuracy(i) is not None}
    assert 0.18 < len(hard) / 4000 < 0.22
    assert all(0.4 - 1e-9 <= c.item_accuracy(i) <= 0.8 + 1e-9 for i in hard)
    votes = c.pull(tasks(2000, 10))
    right = {True: [], False: []}
    for v in votes:
        right[v.task_id in hard].append((v.answer == "yes") == truth(f"img{v.task_id}", ""))
    assert abs(sum(right[True]) / len(right[True]) - 0.6) < 0.03
    assert abs(sum(right[False]) / len(right[False]) - 0.85) < 0.02


def test_unsure_rate_is_higher_on_hard_items_and_spammers_never_abstain():
    c = crowd(confusion_share=0.0)
    spammers = {w.id for w in c.workers if w.spammer}
    assert len(spammers) == 3
    votes = c.pull(tasks(2000, 10))
    assert not [v for v in votes if v.annotator in spammers and v.answer == "unsure"]
    honest = [v for v in votes if v.annotator not in spammers]
    easy = [v.answer == "unsure" for v in honest if c.item_accuracy(v.task_id) is None]
    hard = [v.answer == "unsure" for v in honest if c.item_accuracy(v.task_id) is not None]
    assert abs(sum(easy) / len(easy) - 0.1) < 0.015
    assert abs(sum(hard) / len(hard) - 0.1 * HARD_UNSURE_FACTOR) < 0.03


def test_confused_workers_say_yes_to_wrong_images_of_their_classes():
    c = crowd(hard_share=0.0, unsure_rate=0.0, spammer_share=0.0)
    confused = {(w.id, wnid) for w in c.workers for wnid in WNIDS if c.confuses(w, wnid)}
    assert 0.12 < len(confused) / (len(c.workers) * len(WNIDS)) < 0.28
    votes = c.pull(tasks(2000, 10))
    wrong = [v for v in votes if not truth(f"img{v.task_id}", "")]
    yes_confused = [v.answer == "yes" for v in wrong if (v.annotator, WNIDS[v.task_id % 10]) in confused]
    yes_other = [v.answer == "yes" for v in wrong if (v.annotator, WNIDS[v.task_id % 10]) not in confused]
    assert abs(sum(yes_confused) / len(yes_confused) - 0.7) < 0.04
    assert abs(sum(yes_other) / len(yes_other) - 0.15) < 0.02


@pytest.mark.parametrize("field", ["hard_share", "hard_accuracy", "confusion_share", "unsure_rate"])
def test_rates_outside_zero_to_one_are_config_errors(field: str):
    with pytest.raises(ValueError):
        SimulatedCrowdConfig(**{field: 1.5})
