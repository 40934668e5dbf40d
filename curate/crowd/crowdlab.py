"""``crowdlab``: the votes and the model's out-of-sample probabilities combined, each weighed by how
reliable it proves; more votes only where the combined posterior is not yet sure.

CROWDLAB (Goh, Tkachenko, Mueller 2022) combines a classifier's out-of-sample probabilities with the
workers' votes, each weighed by an estimate of its reliability; here the combination is the posterior
probability that the image shows the class, estimated by EM:

- the model's evidence: its log-odds for the class, plus the caption's own evidence. The model's P is
  one share of a softmax over the K classes it learned (:mod:`curate.crowd.scores`), whose prior for a
  class is its share of the images; a task proposes that class for the image, which is right for a
  share pi of the tasks, while a wrong proposal names one of K - 1 other classes. Under that model
  (wrong classes alike) the odds that a task is right are the model's odds times (K - 1) pi / (1 - pi).
  pi is estimated with everything else. (On benchmarks/crowd.py, fitting the shift freely found 3.26
  at 10 classes and 25 % wrong captions, where log(9) + logit(0.73) = 3.20.)
- each worker's evidence: a yes counts log(sens / (1 - spec)), a no log((1 - sens) / spec), with their
  sensitivity and specificity estimated from every task they voted on, shrunk toward all workers'
  (and those toward ``prior_accuracy``); a spammer's rates come out near sens + spec = 1: no evidence.

``p_true`` is that posterior; a task is accepted at ``accept_threshold``; ``more_votes`` asks one vote
more while the posterior is below ``target_confidence`` either way (below the cap). A task the crowd
rejects although the model believes in it is asked again by the same rule, as long as the posterior
stays unsure. Why not cleanlab's estimates: ``get_label_quality_multiannotator`` and ActiveLab
measure the workers' and the model's weights on tasks with two or more votes only, and with votes
from one per task those are the tasks chosen for being contested: on a 2-class set the workers'
weights fell to ~0 (mean 0.006), ActiveLab refit the model's temperature to 7.25 on the split votes
there, and a task the model was unsure of then stayed below any threshold however the votes went (9
yes to 1 no, rejected at the cap). A likelihood is not biased by asking more where the answers so far
were unclear: the choice depends only on answers it sees.

Reads: vote rows (``unsure`` is an abstention: no evidence) and the scores (a task without a score
has no model evidence, only the prior pi). Writes nothing. Assumes votes independent given the
truth, as ``dynamic_consensus`` does: on hard items, where votes stay split, it runs to the cap.
Failure: without scores ``aggregate`` and ``more_votes`` raise ``ValueError`` (this policy is the
model's help; choose ``dawid_skene`` or ``dynamic_consensus`` to aggregate votes alone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from curate.crowd.aggregate import Scores, TaskVotes, below_cap, group_votes, label_row
from curate.crowd.base import AGGREGATORS
from curate.registry import Plugin
from curate.sections import Section

NO_OPINION = 0.5  # the noise stage's annotator table: a task without a score
PROB_FLOOR = 1e-6  # the model's P is clipped to [1e-6, 1 - 1e-6]: finite log-odds
# Shrinkage, as dynamic_consensus's. benchmarks/crowd.py, 2 classes, seeds 0-1: 3 / 10 / 30 pseudo-votes
# per worker gave 2.20 / 1.99 / 2.16 and 1.96 / 1.95 / 2.00 votes per exported image, precision within
# 0.6 points; 3 or 30 behind prior_accuracy (and prior_accuracy 0.65 or 0.85) changed nothing.
PRIOR_VOTES = 10.0  # pseudo-votes behind prior_accuracy in all workers' rates
WORKER_SHRINK_VOTES = 10.0  # pseudo-votes pulling one worker's rates toward all workers'
RATE_BOUNDS = (0.01, 0.99)  # no vote is ever certain
SHARE_BOUNDS = (0.01, 0.99)  # pi: some tasks right, some wrong
EM_ITERATIONS, EM_TOLERANCE = 200, 1e-6


@dataclass
class Fit:
    """One EM fit: each task's posterior, in the order given, and what it was fitted with."""

    p_true: np.ndarray
    share_right: float  # pi: the estimated share of tasks whose image shows the class
    classes: int  # K: the classes the model scores
    caption_log_odds: float  # log((K - 1) pi / (1 - pi)), added to the model's log-odds
    sensitivity: dict[str, float]
    specificity: dict[str, float]


@AGGREGATORS.register
class Crowdlab(Plugin):
    name = "crowdlab"
    needs_scores = True  # annotate checks that annotate.model is enabled
    description = "CROWDLAB: votes and the model's out-of-sample probabilities, each by its reliability (EM)"

    class Config(Section):
        type: Literal["crowdlab"] = "crowdlab"
        # 0.5: the posterior's decision (accept what is more likely right than wrong)
        accept_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="accept when the posterior P(yes) reaches it")
        # 0.99, as dynamic_consensus and dawid_skene: a posterior, so 1 % of the tasks that stop may be
        # wrong. benchmarks/crowd.py, 10 classes, 25 % wrong captions, seed 0: 0.99 / 0.995 gave precision
        # 0.996 / 0.996 at 2.37 / 2.58 votes per exported image; 2 classes, seeds 1 and 2: 1.95 and 2.13
        # votes at precision 0.994 and 0.994 / 2.16 and 2.39 at 0.994 and 0.988. The tasks still wrong had
        # run to the cap undecided (hard items, votes split).
        target_confidence: float = Field(
            0.99, gt=0.5, lt=1.0, description="ask one vote more while the posterior is below it either way"
        )
        prior_accuracy: float = Field(
            0.75, gt=0.5, lt=1.0, description="worker sensitivity and specificity assumed before votes are compared"
        )

    def aggregate(self, votes: Sequence[Mapping], scores: Scores | None = None) -> list[dict[str, Any]]:
        tasks = list(group_votes(votes).values())
        p_true = self.fit(tasks, self._require(scores)).p_true
        threshold = self.config.accept_threshold
        return [label_row(t, self.name, float(p), bool(p >= threshold)) for t, p in zip(tasks, p_true, strict=True)]

    def more_votes(self, votes: Sequence[Mapping], scores: Scores | None, cap: int) -> set[int]:
        tasks = list(group_votes(votes).values())
        p_true = self.fit(tasks, self._require(scores)).p_true
        unsure = {t.task_id for t, p in zip(tasks, p_true, strict=True)
                  if max(p, 1 - p) < self.config.target_confidence}
        return unsure & {t.task_id for t in below_cap(tasks, cap)}

    def posteriors(self, tasks: list[TaskVotes], scores: Scores) -> list[float]:
        """The posterior P(yes) per task, in the order given."""
        return [float(p) for p in self.fit(tasks, scores).p_true]

    def fit(self, tasks: list[TaskVotes], scores: Scores) -> Fit:
        """EM over the tasks' truth, the workers' rates and the share of right tasks, from the votes and
        the model's log-odds (fixed)."""
        model, scored = _model_log_odds(tasks, scores)
        classes = max(2, len({wnid for _, wnid in scores}))
        votes = _VoteArrays.of(tasks)
        rates = _Rates.start(votes.n_workers, self.config.prior_accuracy)
        share = 0.5
        p_true = np.full(len(tasks), share)
        for _ in range(EM_ITERATIONS):
            caption = float(np.log(classes - 1) + np.log(share / (1 - share)))
            prior = np.where(scored, model + caption, np.log(share / (1 - share)))
            new = _sigmoid(prior + votes.evidence(rates, len(tasks)))
            converged = np.max(np.abs(new - p_true), initial=0.0) < EM_TOLERANCE
            p_true = new
            if converged:
                break
            share = float(np.clip(p_true.mean(), *SHARE_BOUNDS)) if len(tasks) else 0.5
            rates = _Rates.estimate(votes, p_true, self.config.prior_accuracy)
        return Fit(p_true, share, classes, float(np.log(classes - 1) + np.log(share / (1 - share))),
                   dict(zip(votes.workers, rates.sensitivity.tolist(), strict=True)),
                   dict(zip(votes.workers, rates.specificity.tolist(), strict=True)))

    @classmethod
    def annotator_quality(cls, tasks: list[TaskVotes], scores: Scores) -> dict[str, dict[str, float]]:
        """cleanlab's CROWDLAB per-annotator quality (0..1: how well their yes/no answers agree with the
        consensus, weighed against the model) and agreement with the consensus, for the noise stage's
        annotator table; {} while no task has two votes."""
        import cleanlab.multiannotator as multiannotator

        matrix, rated = cls._label_matrix(tasks)
        workers = sorted({a for t in tasks for a, answer in t.answers if answer in ("yes", "no")})
        if not rated.any() or not ((~np.isnan(matrix)).sum(axis=1) >= 2).any():
            return {}
        model_p = np.clip([scores.get((t.sha256, t.wnid), NO_OPINION) for t in tasks], PROB_FLOOR, 1 - PROB_FLOOR)
        model_p = model_p[rated]
        stats = multiannotator.get_label_quality_multiannotator(
            matrix, np.column_stack([1 - model_p, model_p]), verbose=False,
            return_detailed_quality=False, return_annotator_stats=True,
        )["annotator_stats"]
        return {workers[int(i)]: {"crowdlab_quality": float(r.annotator_quality),
                                  "agreement_with_consensus": float(r.agreement_with_consensus)}
                for i, r in stats.iterrows()}

    def _require(self, scores: Scores | None) -> Scores:
        if scores is None:
            raise ValueError("the crowdlab aggregator needs the model's scores (annotate.model.enabled: true); "
                             "to aggregate votes alone choose dawid_skene, dynamic_consensus or majority")
        return scores

    @staticmethod
    def _label_matrix(tasks: list[TaskVotes]) -> tuple[Any, Any]:
        """(tasks with a yes/no vote) x (workers who gave one): 1 yes, 0 no, NaN none; and which tasks."""
        rated = np.array([t.yes + t.no > 0 for t in tasks], dtype=bool)
        workers = sorted({a for t in tasks for a, answer in t.answers if answer in ("yes", "no")})
        column = {w: j for j, w in enumerate(workers)}
        matrix = np.full((int(rated.sum()), len(workers)), np.nan)
        for row, task in enumerate(t for t, r in zip(tasks, rated, strict=True) if r):
            for annotator, answer in task.answers:
                if answer in ("yes", "no"):
                    matrix[row, column[annotator]] = float(answer == "yes")
        return matrix, rated


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -700, 700)))


def _model_log_odds(tasks: list[TaskVotes], scores: Scores) -> tuple[np.ndarray, np.ndarray]:
    """The model's log-odds per task (0 where it has no score), and which tasks it scored."""
    scored = np.array([(t.sha256, t.wnid) in scores for t in tasks], dtype=bool)
    p = np.clip([scores.get((t.sha256, t.wnid), NO_OPINION) for t in tasks], PROB_FLOOR, 1 - PROB_FLOOR)
    return np.log(p / (1 - p)), scored


@dataclass
class _VoteArrays:
    """Every yes/no vote as (task index, worker index, yes?)."""

    workers: list[str]
    task: np.ndarray
    worker: np.ndarray
    yes: np.ndarray

    @property
    def n_workers(self) -> int:
        return len(self.workers)

    @classmethod
    def of(cls, tasks: list[TaskVotes]) -> _VoteArrays:
        workers = sorted({a for t in tasks for a, answer in t.answers if answer in ("yes", "no")})
        column = {w: j for j, w in enumerate(workers)}
        rows = [(i, column[a], answer == "yes") for i, t in enumerate(tasks) for a, answer in t.answers
                if answer in ("yes", "no")]
        task, worker, yes = (np.array(c) for c in zip(*rows, strict=True)) if rows else ([], [], [])
        return cls(workers, np.asarray(task, dtype=int), np.asarray(worker, dtype=int), np.asarray(yes, dtype=bool))

    def evidence(self, rates: _Rates, n_tasks: int) -> np.ndarray:
        """Each task's summed log-likelihood ratio of its votes (right vs wrong)."""
        sens, spec = rates.sensitivity[self.worker], rates.specificity[self.worker]
        ratio = np.where(self.yes, np.log(sens / (1 - spec)), np.log((1 - sens) / spec))
        return np.bincount(self.task, weights=ratio, minlength=n_tasks)


@dataclass
class _Rates:
    """Each worker's sensitivity P(yes | right task) and specificity P(no | wrong task)."""

    sensitivity: np.ndarray
    specificity: np.ndarray

    @classmethod
    def start(cls, n_workers: int, accuracy: float) -> _Rates:
        return cls(np.full(n_workers, accuracy), np.full(n_workers, accuracy))

    @classmethod
    def estimate(cls, votes: _VoteArrays, p_true: np.ndarray, accuracy: float) -> _Rates:
        """Expected hits over expected trials per worker, shrunk toward all workers' rates (those toward
        ``accuracy``); a worker who does worse than chance (sens + spec < 1) is set to no evidence."""
        right = p_true[votes.task]
        n = votes.n_workers
        yes_on_right = np.bincount(votes.worker, weights=votes.yes * right, minlength=n)
        on_right = np.bincount(votes.worker, weights=right, minlength=n)
        no_on_wrong = np.bincount(votes.worker, weights=~votes.yes * (1 - right), minlength=n)
        on_wrong = np.bincount(votes.worker, weights=1 - right, minlength=n)
        sens = _shrunk(yes_on_right, on_right, _shrunk(yes_on_right.sum(), on_right.sum(), accuracy, PRIOR_VOTES))
        spec = _shrunk(no_on_wrong, on_wrong, _shrunk(no_on_wrong.sum(), on_wrong.sum(), accuracy, PRIOR_VOTES))
        sens, spec = np.clip(sens, *RATE_BOUNDS), np.clip(spec, *RATE_BOUNDS)
        excess = np.minimum(sens + spec - 1, 0) / 2  # negative where worse than chance
        return cls(sens - excess, spec - excess)


def _shrunk(hits: Any, total: Any, prior: Any, weight: float = WORKER_SHRINK_VOTES) -> Any:
    return (hits + weight * prior) / (total + weight)
