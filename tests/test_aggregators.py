"""Every aggregator on the same hand-made votes, and the behaviour each one is chosen for: Dawid-Skene
discounts a spammer, dynamic consensus stops early where votes agree and asks more where they split,
CROWDLAB follows the model on a split task and lets clear votes outweigh an unsure model, nobody asks
past the cap, and a task the crowd rejects although the model strongly believes in it gets another
look. CROWDLAB's rounds stay few on a small two-class set (simulated crowd, calibrated model)."""

from __future__ import annotations

import numpy as np
import pytest

from curate.crowd import AGGREGATORS
from curate.crowd.aggregate import Majority, group_votes
from curate.crowd.consensus import ClassTable, DynamicConsensus
from curate.crowd.crowdlab import Crowdlab
from curate.crowd.dawid_skene import DawidSkene
from curate.crowd.scores import current_labels, fit_temperature, verification_scores
from curate.crowd.simulated import SimulatedCrowd, SimulatedCrowdConfig

GOOD = ("ann", "bob", "cid")  # always right
SPAMMER = "sam"  # answers by a fixed pattern, unrelated to the truth
N_CALIBRATION = 24


def vote(task_id: int, annotator: str, answer: str, wnid: str = "n1") -> dict:
    return {"task_id": task_id, "sha256": f"img{task_id:03d}", "wnid": wnid, "annotator": annotator,
            "answer": answer, "is_gold": 0}


def is_true(task_id: int) -> bool:
    return task_id % 2 == 0


def calibration_votes() -> list[dict]:
    """Tasks 0..23: the three good workers right, the spammer yes on every third task whatever the truth."""
    votes = []
    for i in range(N_CALIBRATION):
        votes += [vote(i, w, "yes" if is_true(i) else "no") for w in GOOD]
        votes.append(vote(i, SPAMMER, "yes" if i % 3 == 0 else "no"))
    return votes


# the shared vote set: calibration tasks, then
SPLIT_GOOD_YES = 100  # ann yes, sam no: majority cannot decide
SPLIT_GOOD_NO = 101  # ann no, sam yes
SPLIT_EVEN = 102  # bob yes, cid no
UNSURE_ONLY = 103  # one abstention
VOTES = calibration_votes() + [
    vote(SPLIT_GOOD_YES, "ann", "yes"), vote(SPLIT_GOOD_YES, SPAMMER, "no"),
    vote(SPLIT_GOOD_NO, "ann", "no"), vote(SPLIT_GOOD_NO, SPAMMER, "yes"),
    vote(SPLIT_EVEN, "bob", "yes"), vote(SPLIT_EVEN, "cid", "no"),
    vote(UNSURE_ONLY, "ann", "unsure"),
]
ALL_TASKS = list(range(N_CALIBRATION)) + [SPLIT_GOOD_YES, SPLIT_GOOD_NO, SPLIT_EVEN, UNSURE_ONLY]


def model_scores(split_even: float = 0.5) -> dict[tuple[str, str], float]:
    """A good model: 0.9 for true images, 0.1 for wrong ones; ``split_even`` for the evenly split task."""
    scores = {(f"img{i:03d}", "n1"): 0.9 if is_true(i) else 0.1 for i in range(N_CALIBRATION)}
    scores |= {("img100", "n1"): 0.8, ("img101", "n1"): 0.2, ("img102", "n1"): split_even, ("img103", "n1"): 0.5}
    return scores


def by_task(rows: list[dict]) -> dict[int, dict]:
    return {int(r["sha256"][3:]): r for r in rows}


@pytest.mark.parametrize("name", ["majority", "dynamic_consensus", "dawid_skene", "crowdlab"])
def test_every_aggregator_labels_every_task_with_votes(name: str):
    aggregator = AGGREGATORS.get(name)()
    rows = by_task(aggregator.aggregate(VOTES, model_scores()))
    assert sorted(rows) == ALL_TASKS
    for task_id, row in rows.items():
        assert set(row) == {"sha256", "wnid", "method", "p_true", "accepted", "n_votes"}
        assert row["method"] == name and 0.0 <= row["p_true"] <= 1.0 and row["accepted"] in (0, 1)
        assert row["n_votes"] == sum(v["task_id"] == task_id for v in VOTES)  # unsure counts as a vote
    agreed = [i for i in range(N_CALIBRATION) if i % 3 != 0]  # the spammer agrees or is outvoted 3 to 1
    assert all(rows[i]["accepted"] == is_true(i) for i in agreed)
    assert rows[UNSURE_ONLY]["n_votes"] == 1


@pytest.mark.parametrize("name", ["majority", "dynamic_consensus", "dawid_skene", "crowdlab"])
def test_no_aggregator_asks_past_the_cap(name: str):
    aggregator = AGGREGATORS.get(name)()
    assert aggregator.more_votes(VOTES, model_scores(), cap=1) == set()  # every task has a vote
    counts = {t.task_id: t.n_votes for t in group_votes(VOTES).values()}
    for cap in (2, 4, 5):
        assert all(counts[i] < cap for i in aggregator.more_votes(VOTES, model_scores(), cap=cap))
    assert bool(aggregator.more_votes(VOTES, model_scores(), cap=10)) == (name != "majority")


def test_the_cap_counts_abstentions():
    votes = [vote(7, w, "unsure") for w in ("ann", "bob", "cid")]
    assert DynamicConsensus().more_votes(votes, None, cap=4) == {7}
    assert DynamicConsensus().more_votes(votes, None, cap=3) == set()


def test_majority_is_fixed_voting():
    assert Majority().more_votes(VOTES, model_scores(), cap=10) == set()
    rows = by_task(Majority().aggregate(VOTES))
    assert rows[SPLIT_GOOD_YES]["accepted"] == 0 and rows[SPLIT_GOOD_NO]["accepted"] == 0


def test_dawid_skene_discounts_the_spammer():
    rows = by_task(DawidSkene().aggregate(VOTES))
    assert rows[SPLIT_GOOD_YES]["accepted"] == 1 and rows[SPLIT_GOOD_YES]["p_true"] > 0.9
    assert rows[SPLIT_GOOD_NO]["accepted"] == 0 and rows[SPLIT_GOOD_NO]["p_true"] < 0.1
    spam_yes = [i for i in range(N_CALIBRATION) if i % 3 == 0 and not is_true(i)]  # 3 good no, spammer yes
    assert all(rows[i]["p_true"] < 0.01 for i in spam_yes)


def test_dawid_skene_without_yes_or_no_votes_accepts_nothing():
    rows = DawidSkene().aggregate([vote(1, "ann", "unsure")])
    assert rows[0]["accepted"] == 0 and rows[0]["n_votes"] == 1


# --------------------------------------------------------------------------- dynamic consensus


def seeded_votes(wnid: str, accuracy_pattern: list[list[str]], first_id: int) -> list[dict]:
    """Seed tasks for one class: each a list of answers (10 votes), task ids from ``first_id``."""
    votes = []
    for offset, answers in enumerate(accuracy_pattern):
        votes += [vote(first_id + offset, f"w{k}", a, wnid) for k, a in enumerate(answers)]
    return votes


def test_dynamic_consensus_stops_on_agreement_and_asks_more_on_a_split():
    config = DynamicConsensus.Config(seed_tasks_per_class=0, prior_accuracy=0.75)
    dc = DynamicConsensus(config)
    votes = [vote(1, f"w{k}", "yes") for k in range(5)]  # unanimous: P(good) = 1 / (1 + 3^-5) > 0.99
    votes += [vote(2, f"w{k}", a) for k, a in enumerate(["yes", "no", "yes", "no", "yes"])]
    votes += [vote(3, f"w{k}", "yes") for k in range(3)]  # unanimous, but 3 votes are not yet 0.99
    assert dc.more_votes(votes, None, cap=10) == {2, 3}
    assert dc.more_votes(votes, None, cap=5) == {3}
    rows = by_task(dc.aggregate(votes))
    assert rows[1]["accepted"] == 1 and rows[1]["p_true"] > 0.99 and rows[2]["p_true"] == pytest.approx(0.75)


def test_dynamic_consensus_learns_a_table_per_class_from_its_seeds():
    """Class n1's seeds show careful workers, n2's show sloppy ones: three yes settle n1, not n2."""
    careful = [["yes"] * 10, ["no"] * 10, ["yes"] * 10, ["no"] * 10]
    sloppy = [["yes"] * 6 + ["no"] * 4, ["no"] * 7 + ["yes"] * 3, ["yes"] * 7 + ["no"] * 3, ["no"] * 6 + ["yes"] * 4]
    votes = seeded_votes("n1", careful, 0) + seeded_votes("n2", sloppy, 10)
    votes += [vote(20, f"w{k}", "yes", "n1") for k in range(3)] + [vote(21, f"w{k}", "yes", "n2") for k in range(3)]
    dc = DynamicConsensus(DynamicConsensus.Config(seed_tasks_per_class=4, seed_votes=10))
    tables = dc.tables(group_votes(votes).values())
    assert tables["n1"].sensitivity > 0.9 > 0.75 > tables["n2"].sensitivity and tables["n1"].seeds == 4
    assert dc.more_votes(votes, None, cap=10) == {21}


def test_dynamic_consensus_seeds_vote_first_and_the_others_wait():
    votes = [vote(i, "w0", "yes") for i in range(6)]  # one vote each; seeds: the 2 smallest sha256
    dc = DynamicConsensus(DynamicConsensus.Config(seed_tasks_per_class=2, seed_votes=4))
    assert dc.more_votes(votes, None, cap=10) == {0, 1}
    votes += [vote(i, f"w{k}", "yes") for i in (0, 1) for k in (1, 2, 3)]
    assert dc.more_votes(votes, None, cap=10) == {2, 3, 4, 5}  # seeds done: the table decides


def test_class_table_is_symmetric_for_symmetric_workers():
    table = ClassTable(prior_good=0.5, sensitivity=0.8, specificity=0.8)
    assert table.p_good(0, 0) == pytest.approx(0.5)
    assert table.p_good(3, 1) == pytest.approx(1 - table.p_good(1, 3)) == pytest.approx(16 / 17)


# --------------------------------------------------------------------------- crowdlab and the second look


def test_crowdlab_follows_the_model_on_a_split_task():
    crowdlab = Crowdlab()
    believes = by_task(crowdlab.aggregate(VOTES, model_scores(split_even=0.95)))
    doubts = by_task(crowdlab.aggregate(VOTES, model_scores(split_even=0.05)))
    assert believes[SPLIT_EVEN]["accepted"] == 1 and doubts[SPLIT_EVEN]["accepted"] == 0
    assert believes[SPLIT_EVEN]["p_true"] > doubts[SPLIT_EVEN]["p_true"]


def test_crowdlab_needs_scores():
    with pytest.raises(ValueError, match="needs the model's scores"):
        Crowdlab().aggregate(VOTES)
    with pytest.raises(ValueError, match="needs the model's scores"):
        Crowdlab().more_votes(VOTES, None, cap=10)


def test_crowdlab_asks_more_where_votes_and_model_disagree_not_where_all_agree():
    more = Crowdlab().more_votes(VOTES, model_scores(), cap=10)
    assert {SPLIT_EVEN, UNSURE_ONLY} <= more
    assert not more & {i for i in range(N_CALIBRATION) if i % 3 != 0}


@pytest.mark.parametrize("aggregator", [DynamicConsensus(), DawidSkene()])
def test_a_rejected_image_the_model_believes_in_gets_another_look(aggregator):
    """Five no votes are a confident rejection; a model at 0.97 asks for one vote more, up to the cap."""
    votes = calibration_votes() + [vote(50, w, "no") for w in ("ann", "bob", "cid", "w3", "w4")]
    believes = model_scores() | {("img050", "n1"): 0.97}
    doubts = model_scores() | {("img050", "n1"): 0.3}
    assert 50 in aggregator.more_votes(votes, believes, cap=10)
    assert 50 not in aggregator.more_votes(votes, believes, cap=5)
    assert 50 not in aggregator.more_votes(votes, doubts, cap=10)  # votes alone: nothing to look at again
    assert 50 not in aggregator.more_votes(votes, None, cap=10)


def test_crowdlab_looks_again_at_a_rejection_while_its_posterior_is_unsure():
    """The model is part of CROWDLAB's posterior: two no votes from workers not yet known against a model
    at 0.97 leave it unsure (one vote more, up to the cap); five, three of them from workers right on
    every calibration task, settle it."""
    believes = model_scores() | {("img050", "n1"): 0.97}
    two = calibration_votes() + [vote(50, w, "no") for w in ("w3", "w4")]
    five = calibration_votes() + [vote(50, w, "no") for w in ("ann", "bob", "cid", "w3", "w4")]
    assert 50 in Crowdlab().more_votes(two, believes, cap=10)
    assert 50 not in Crowdlab().more_votes(two, believes, cap=2)
    assert 50 not in Crowdlab().more_votes(five, believes, cap=10)
    assert by_task(Crowdlab().aggregate(five, believes))[50]["accepted"] == 0


def test_crowdlab_lets_clear_votes_outweigh_an_unsure_model():
    """Adaptive voting gives a second vote to the tasks where the first vote and the model disagree, so
    the tasks with two or more votes are the contested ones. Six agreeing votes on a task the model is
    unsure of (0.4) settle it, whatever the contested tasks look like (cleanlab's CROWDLAB measured the
    workers' weights on those tasks only: about zero here, and the model alone decided, asking on)."""
    votes = []
    for i in range(60):  # one vote each, agreeing with a confident model
        votes.append(vote(i, f"w{i % 12}", "yes" if is_true(i) else "no"))
    for i in range(60, 90):  # contested: the first vote against the model, the second with it
        votes += [vote(i, f"w{i % 12}", "no" if is_true(i) else "yes"),
                  vote(i, f"w{(i + 5) % 12}", "yes" if is_true(i) else "no")]
    votes += [vote(90, f"w{k}", "yes") for k in range(6)]
    scores = {(f"img{i:03d}", "n1"): 0.95 if is_true(i) else 0.05 for i in range(90)}
    scores |= {(f"img{i:03d}", "n2"): 0.05 if is_true(i) else 0.95 for i in range(90)}
    scores |= {("img090", "n1"): 0.4, ("img090", "n2"): 0.6}
    rows = by_task(Crowdlab().aggregate(votes, scores))
    assert rows[90]["accepted"] == 1 and rows[90]["p_true"] > 0.99
    assert 90 not in Crowdlab().more_votes(votes, scores, cap=10)


def two_class_set(n_images: int, wrong_share: float, seed: int) -> tuple[list[dict], dict, set]:
    """Images of two classes, each captioned once (wrong at ``wrong_share``), and a calibrated model: its
    top P drawn around 0.95 (log-odds 3 +- 1), and its top class right with that probability."""
    rng = np.random.default_rng(seed)
    tasks, scores, truth = [], {}, set()
    for i in range(n_images):
        sha, shown = f"img{i:04d}", ("n1", "n2")[i % 2]
        other = "n2" if shown == "n1" else "n1"
        caption = other if rng.random() < wrong_share else shown
        p_top = 1 / (1 + np.exp(-abs(rng.normal(3.0, 1.0))))
        p_shown = p_top if rng.random() < p_top else 1 - p_top
        scores |= {(sha, shown): p_shown, (sha, other): 1 - p_shown}
        tasks.append({"id": i, "sha256": sha, "wnid": caption})
        truth.add((sha, shown))
    return tasks, scores, truth


def play_rounds(aggregator, tasks: list[dict], scores: dict, truth: set, cap: int = 10) -> tuple[dict, list]:
    """Votes from one per task, then one more for each task ``more_votes`` names, as the annotate stage
    plays them with a crowd that answers at once; returns each task's number of votes, and the labels."""
    crowd = SimulatedCrowd(SimulatedCrowdConfig(workers=30, accuracy=0.8, accuracy_spread=0.1, spammer_share=0.1),
                           seed=0, truth=lambda sha, wnid: (sha, wnid) in truth)
    state = {t["id"]: {**t, "votes_wanted": 1, "n_votes": 0} for t in tasks}
    votes: list[dict] = []
    for _ in range(cap):
        for v in crowd.pull([t for t in state.values() if t["n_votes"] < t["votes_wanted"]]):
            state[v.task_id]["n_votes"] += 1
            votes.append({"task_id": v.task_id, "sha256": state[v.task_id]["sha256"],
                          "wnid": state[v.task_id]["wnid"], "annotator": v.annotator, "answer": v.answer})
        more = aggregator.more_votes(votes, scores, cap)
        if not more:
            break
        for task_id in more:
            state[task_id]["votes_wanted"] += 1
    return {i: t["n_votes"] for i, t in state.items()}, aggregator.aggregate(votes, scores)


def test_crowdlab_asks_a_second_vote_only_where_needed_on_a_small_two_class_set():
    """400 images, 2 classes, 20 % wrong captions, a calibrated model at about 0.95: a second vote for about
    half the tasks (a 0.95 model and one vote of an 80 % worker are not yet 99 % sure), labels 99 % precise.
    cleanlab's CROWDLAB and ActiveLab, whose weights and temperature were fit on the contested tasks,
    asked a second vote for 395 of the 400 and exported 98.3 % precise labels at 94 % recall."""
    tasks, scores, truth = two_class_set(400, 0.2, seed=0)
    n_votes, labels = play_rounds(Crowdlab(), tasks, scores, truth)
    accepted = {(r["sha256"], r["wnid"]) for r in labels if r["accepted"]}
    right = {(t["sha256"], t["wnid"]) for t in tasks} & truth
    assert sum(n > 1 for n in n_votes.values()) < 0.6 * len(tasks)
    assert sum(n >= 10 for n in n_votes.values()) < 0.05 * len(tasks)
    assert len(accepted & truth) >= 0.99 * len(accepted) and len(accepted & truth) >= 0.97 * len(right)


def test_sqlite_rows_work_as_votes():
    import sqlite3

    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.execute("CREATE TABLE v (task_id, sha256, wnid, annotator, answer, is_gold)")
    db.executemany("INSERT INTO v VALUES (:task_id, :sha256, :wnid, :annotator, :answer, :is_gold)", VOTES)
    rows = db.execute("SELECT * FROM v").fetchall()
    for name in ("majority", "dynamic_consensus", "dawid_skene", "crowdlab"):
        aggregator = AGGREGATORS.get(name)()
        assert aggregator.aggregate(rows, model_scores()) == aggregator.aggregate(VOTES, model_scores())


# --------------------------------------------------------------------------- the model's scores


def test_current_labels_take_the_largest_positive_margin_and_skip_ties():
    votes = [vote(1, "a", "yes", "n1"), vote(1, "b", "yes", "n1"), vote(1, "c", "unsure", "n1")]
    votes += [{"sha256": "img001", "wnid": "n2", "answer": "yes"}]  # margin 2 against 1: n1
    votes += [{"sha256": "img002", "wnid": w, "answer": "yes"} for w in ("n1", "n2")]  # a tie: no label
    votes += [{"sha256": "img003", "wnid": "n1", "answer": a} for a in ("no", "unsure")]  # nothing positive
    assert current_labels(votes) == {"img001": "n1"}


def clustered(n_per_class: int, wnids: list[str], seed: int = 0) -> tuple[list[str], np.ndarray, dict[str, str]]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(wnids), 32)) * 3
    shas, rows, truth = [], [], {}
    for k, wnid in enumerate(wnids):
        for i in range(n_per_class):
            shas.append(f"{wnid}-{i}")
            rows.append(centers[k] + rng.normal(size=32))
            truth[shas[-1]] = wnid
    return shas, np.array(rows), truth


def test_verification_scores_are_out_of_sample_and_cover_unlabelled_images():
    wnids = ["n1", "n2", "n3"]
    shas, features, truth = clustered(30, wnids)
    labels = {sha: w for sha, w in truth.items() if not sha.endswith("-0")}  # one image per class unlabelled
    wrong = {"n1-1": "n2", "n2-1": "n3", "n3-1": "n1"}  # a wrong crowd label cannot vouch for itself
    scores = verification_scores(shas, features, labels | wrong, wnids, seed=0)
    assert set(scores) == {(sha, w) for sha in shas for w in wnids}
    for sha in ("n1-0", "n2-0", "n3-0", *wrong):
        assert scores[(sha, truth[sha])] > 0.9
    assert all(abs(sum(scores[(sha, w)] for w in wnids) - 1) < 1e-9 for sha in shas)


def test_verification_scores_leave_out_classes_too_thin_to_learn():
    shas, features, truth = clustered(10, ["n1", "n2", "n3"])
    labels = {sha: w for sha, w in truth.items() if w != "n3"} | {"n3-0": "n3"}
    scores = verification_scores(shas, features, labels, ["n1", "n2", "n3"], seed=0)
    assert {w for _, w in scores} == {"n1", "n2"}
    assert verification_scores(shas, features, {"n1-0": "n1", "n1-1": "n1"}, ["n1", "n2"], seed=0) == {}


def test_temperature_fit_is_not_softened_by_wrong_labels():
    """Sharp, right probabilities with 20 % wrong labels: plain scaling would soften them, the fit keeps them."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=500)
    probs = np.full((500, 4), 0.1 / 3)
    probs[np.arange(500), labels] = 0.9
    noisy = np.where(rng.random(500) < 0.2, (labels + 1) % 4, labels)
    assert fit_temperature(probs, noisy) < 1.0
