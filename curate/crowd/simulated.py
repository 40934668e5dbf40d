"""``simulated`` crowd: workers with an accuracy, a spammer share and a seed, answering from ground truth.

Reads: each task's image truth (the corpus's ``true_wnids``; an image is a <class> when one of its
true synsets is that class or one of its hyponyms). Writes: nothing; returns votes.
Every answer is a pure function of (seed, task id, worker), so re-running, resuming or asking for
more votes per image reproduces the same crowd and adds only the missing votes (the next workers in
the task's fixed order). Images without ground truth get coin-flip answers and are counted in
:attr:`SimulatedCrowd.unknown_truth`. ``answers_per_pull`` makes it a slow crowd, as a real one is:
each pull returns at most that many new votes, so ``annotate`` ends *waiting* until later runs.
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

from curate.config import Section
from curate.crowd import BACKENDS
from curate.crowd.base import Vote

log = logging.getLogger(__name__)


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
    def from_context(cls, config: SimulatedCrowdConfig, ctx: Any) -> SimulatedCrowd:
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
                answer = self._answer(worker, task["id"], is_true)
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

    def _answer(self, worker: Worker, task_id: int, is_true: bool | None) -> str:
        rng = self._rng("answer", task_id, worker.id)
        if worker.spammer or is_true is None:
            return "yes" if rng.random() < 0.5 else "no"
        correct = rng.random() < worker.accuracy
        return "yes" if correct == is_true else "no"
