"""``simulated`` crowd: workers with an accuracy, a spammer share and a seed, answering from ground truth.

Reads: each task's image truth (the corpus's ``true_wnids``; an image is a <class> when one of its
true synsets is that class or one of its hyponyms). Writes: nothing; returns votes.
Every answer is a pure function of (seed, task id, worker), so re-running, resuming or asking for
more votes per image reproduces the same crowd and adds only the missing votes (the next workers in
the task's fixed order). Images without ground truth get coin-flip answers and are counted in
:attr:`SimulatedCrowd.unknown_truth`. ``answers_per_pull`` makes it a slow crowd, as a real one is:
each pull returns at most that many new votes, so ``annotate`` ends *waiting* until later runs.

What real crowds have, each off by default (so a pipeline's labels stay as they were) and switched on
in YAML or by ``benchmarks/crowd.py``:

- ``hard_share``: hard items (a task is hard by a draw from (seed, task id)). On a hard item an honest
  worker is right with the item's own accuracy, drawn uniformly within ``hard_accuracy`` +- 0.2 and
  shifted by the worker's skill, so some hard items are coin flips and some mislead (below chance).
- ``confusion_share``: each honest worker confuses that share of the classes (drawn per (worker,
  wnid)); on a wrong image of such a class they say "yes" with probability ``confused_yes_rate``.
- ``unsure_rate``: honest workers answer "unsure" (an abstention) that often, three times as often on
  hard items. Spammers answer yes or no at random and never abstain.

Turning these on leaves every other answer as it was: each feature draws from its own random stream.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from curate.crowd.base import BACKENDS, Vote
from curate.sections import Section

log = logging.getLogger(__name__)
HARD_ACCURACY_SPREAD = 0.2  # hard items range from misleading to nearly easy around ``hard_accuracy``
HARD_UNSURE_FACTOR = 3.0  # workers abstain more where the image is hard to judge


@dataclass(frozen=True)
class Worker:
    id: str
    accuracy: float
    spammer: bool


def _stored(task: Any) -> int:
    try:
        return int(task["n_votes"])
    except (KeyError, IndexError):
        return 0


def make_workers(n: int, accuracy: float, spread: float, spammer_share: float, seed: int) -> list[Worker]:
    rng = random.Random(f"workers:{seed}")
    n_spammers = round(n * spammer_share)
    workers = []
    for i in range(n):
        acc = min(1.0, max(0.0, rng.uniform(accuracy - spread, accuracy + spread)))
        workers.append(Worker(f"sim-{i:03d}", round(acc, 3), spammer=i < n_spammers))
    return workers


class SimulatedCrowdConfig(Section):
    type: Literal["simulated"] = "simulated"
    workers: int = Field(12, ge=1)
    accuracy: float = Field(0.85, ge=0.0, le=1.0, description="mean accuracy of honest workers")
    accuracy_spread: float = Field(0.1, ge=0.0, le=0.5)
    spammer_share: float = Field(0.1, ge=0.0, le=1.0, description="share of workers answering at random")
    seed: int | None = None
    answers_per_pull: int | None = Field(None, ge=1, description="a slow crowd: new votes per pull; null = all")
    hard_share: float = Field(0.0, ge=0.0, le=1.0, description="share of hard items (0 = every item is easy)")
    hard_accuracy: float = Field(
        0.6, ge=0.0, le=1.0, description="honest workers' mean accuracy on hard items (0.5 = chance), +- 0.2 per item"
    )
    confusion_share: float = Field(
        0.0, ge=0.0, le=1.0, description="share of the classes each honest worker confuses (says yes to wrong images)"
    )
    confused_yes_rate: float = Field(0.7, ge=0.0, le=1.0, description="P(yes) for a wrong image of a confused class")
    unsure_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="how often honest workers answer 'unsure' (three times as often on hard items)"
    )


@BACKENDS.register
class SimulatedCrowd:
    name = "simulated"
    description = "simulated workers answering from the corpus's ground truth (offline demos and tests)"
    Config = SimulatedCrowdConfig

    def __init__(self, config: SimulatedCrowdConfig, seed: int, truth: Callable[[str, str], bool | None]):
        self.config = config
        self.seed = config.seed if config.seed is not None else seed
        self.workers = make_workers(config.workers, config.accuracy, config.accuracy_spread,
                                    config.spammer_share, self.seed)
        self.truth = truth
        self.unknown_truth = 0

    @classmethod
    def from_context(cls, config: SimulatedCrowdConfig, ctx: Any, queue: str | None = None,
                     votes_per_task: int | None = None) -> SimulatedCrowd:
        """(Any queue alike: the simulated crowd gives each task the ``votes_wanted`` its row carries.)"""
        from curate.crowd.truth import make_truth

        return cls(config, ctx.seed, truth=make_truth(ctx.catalog.truth_table()))

    def push(self, tasks: list[Any]) -> dict[int, str]:
        return {task["id"]: f"sim-task-{task['id']}" for task in tasks}

    def pull(self, tasks: list[Any]) -> list[Vote]:
        """Votes of the workers a task still lacks (the ones after its ``n_votes`` in the task's worker order)."""
        votes: list[Vote] = []
        budget = self.config.answers_per_pull
        for task in tasks:
            is_true = self.truth(task["sha256"], task["wnid"])
            self.unknown_truth += is_true is None
            for worker in self._assign(task["id"], task["votes_wanted"])[_stored(task):]:
                if budget is not None and len(votes) >= budget:
                    return votes
                answer = self._answer(worker, task["id"], task["wnid"], is_true)
                votes.append(Vote(task["id"], worker.id, answer, f"sim:{task['id']}:{worker.id}", time.time()))
        return votes

    def next_step(self, missing_votes: int) -> str:
        return "the simulated crowd answers more on every run; run the same command again"

    def close(self) -> None:
        if self.unknown_truth:
            log.warning("%d tasks had no ground truth; the simulated crowd answered them at random",
                        self.unknown_truth)

    def _rng(self, *parts: Any) -> random.Random:
        digest = hashlib.sha256(":".join(map(str, (self.seed, *parts))).encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def _assign(self, task_id: int, n_votes: int) -> list[Worker]:
        """Distinct workers per task (as many as exist), a fixed order so more votes extend the list."""
        order = self.workers[:]
        self._rng("assign", task_id).shuffle(order)
        return order[: min(n_votes, len(order))]

    def item_accuracy(self, task_id: int) -> float | None:
        """The honest workers' mean accuracy on this item when it is hard; None for an easy item."""
        rng = self._rng("hard", task_id)
        if rng.random() >= self.config.hard_share:
            return None
        return min(1.0, max(0.0, self.config.hard_accuracy + HARD_ACCURACY_SPREAD * (2 * rng.random() - 1)))

    def confuses(self, worker: Worker, wnid: str) -> bool:
        """Whether this honest worker tends to say "yes" to wrong images of this class."""
        share = self.config.confusion_share
        return share > 0 and self._rng("confused", worker.id, wnid).random() < share

    def _answer(self, worker: Worker, task_id: int, wnid: str, is_true: bool | None) -> str:
        rng = self._rng("answer", task_id, worker.id)
        if worker.spammer or is_true is None:
            return "yes" if rng.random() < 0.5 else "no"
        draw = rng.random()
        hard = self.item_accuracy(task_id)
        unsure = self.config.unsure_rate * (HARD_UNSURE_FACTOR if hard is not None else 1.0)
        if unsure > 0 and self._rng("unsure", task_id, worker.id).random() < unsure:
            return "unsure"
        if not is_true and self.confuses(worker, wnid):
            return "yes" if draw < self.config.confused_yes_rate else "no"
        if hard is not None:  # the item's accuracy, shifted by how much better or worse this worker is
            accuracy = min(1.0, max(0.0, hard + worker.accuracy - self.config.accuracy))
        else:
            accuracy = worker.accuracy
        correct = draw < accuracy
        return "yes" if correct == is_true else "no"
