"""``dynamic_consensus``: ImageNet's voting (Deng et al., CVPR 2009), one confidence table per class.

For each class a few *seed* tasks get many votes (``seed_votes``, 10 as in ImageNet); their majority
is taken as their truth, and from them the class's confidence table is estimated: how often workers
say yes to a good image of this class (sensitivity), no to a wrong one (specificity), and how many
candidates are good (prior). P(good | y yes, n no) then follows in closed form, for any counts: that
is the table. Every other task gets one more vote per round until P(good) or P(wrong) reaches
``target_confidence``, or until the cap. Classes differ (some are easy to confuse, some candidate
pools are mostly wrong), which is why the table is per class; with few seeds each class's estimate
is shrunk toward the pool of all classes, and that pool toward ``prior_accuracy``.

Seeds are chosen deterministically and independently of source order (search rank correlates with
quality): the ``seed_tasks_per_class`` tasks of each class with the smallest sha256. While a class's
seeds still lack votes its other tasks wait (``more_votes`` asks only for seed votes); new images
with smaller hashes arriving later become seeds too.

Reads: vote rows; the model's scores only for the second look (a task the crowd rejects although
the model gives P >= ``second_look_score`` gets another vote). Writes nothing. The table assumes
votes independent given the truth, so it is overconfident on hard items (where votes stay split);
those run to the cap, as in ImageNet. Failure: see :mod:`curate.crowd.aggregate`.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from curate.crowd.aggregate import Scores, TaskVotes, below_cap, group_votes, label_row, second_look
from curate.crowd.base import AGGREGATORS
from curate.registry import Plugin
from curate.sections import Section

log = logging.getLogger(__name__)

PRIOR_VOTES = 10.0  # pseudo-votes behind ``prior_accuracy``: seeds' votes outweigh it quickly
CLASS_SHRINK_VOTES = 20.0  # pseudo-votes pulling a class's rates toward all classes' (two seeds' worth)
PRIOR_SEEDS = 2.0  # pseudo-seeds pulling a class's share of good images toward all classes' share


@dataclass(frozen=True)
class ClassTable:
    """One class's confidence table in closed form: P(good | yes, no) under independent votes."""

    prior_good: float
    sensitivity: float  # P(yes | good image)
    specificity: float  # P(no | wrong image)
    seeds: int = 0

    def p_good(self, yes: int, no: int) -> float:
        log_odds = (math.log(self.prior_good / (1 - self.prior_good))
                    + yes * math.log(self.sensitivity / (1 - self.specificity))
                    + no * math.log((1 - self.sensitivity) / self.specificity))
        return 1.0 / (1.0 + math.exp(-max(-700.0, min(700.0, log_odds))))


@dataclass
class _Counts:
    yes_on_good: float = 0.0
    votes_on_good: float = 0.0
    no_on_wrong: float = 0.0
    votes_on_wrong: float = 0.0
    good: float = 0.0
    seeds: float = 0.0

    def add(self, task: TaskVotes) -> None:
        good = task.yes > task.no
        self.seeds += 1
        self.good += good
        if good:
            self.yes_on_good += task.yes
            self.votes_on_good += task.yes + task.no
        else:
            self.no_on_wrong += task.no
            self.votes_on_wrong += task.yes + task.no


def _shrunk(hits: float, total: float, prior: float, weight: float) -> float:
    return (hits + weight * prior) / (total + weight)


@AGGREGATORS.register
class DynamicConsensus(Plugin):
    name = "dynamic_consensus"
    description = "ImageNet's dynamic consensus: per-class confidence table from seed tasks, votes until confident"

    class Config(Section):
        type: Literal["dynamic_consensus"] = "dynamic_consensus"
        # 0.99: at the 75-85 % accuracy of typical crowd workers a unanimous start reaches it after 4-5 votes
        # and every split vote costs about two more; higher targets mostly spend votes up to the cap on
        # hard items, whose votes stay split because they are not independent as the table assumes.
        target_confidence: float = Field(0.99, gt=0.5, lt=1.0, description="stop when P(good) or P(wrong) reaches it")
        seed_tasks_per_class: int = Field(10, ge=0, description="tasks per class that get seed_votes votes")
        seed_votes: int = Field(10, ge=3, description="votes per seed task (ImageNet: at least 10)")
        prior_accuracy: float = Field(0.75, gt=0.5, lt=1.0, description="worker accuracy assumed before seeds vote")
        second_look_score: float = Field(
            0.9, ge=0.5, le=1.0, description="model P(class) at which a crowd-rejected task gets another vote"
        )

    def aggregate(self, votes: Sequence[Mapping], scores: Scores | None = None) -> list[dict[str, Any]]:
        """``p_true`` = P(good | votes) from the class's table; accepted when it is above 0.5 with at least
        one yes (a task with only unsure votes is not accepted). Scores are unused."""
        tasks = group_votes(votes)
        tables = self.tables(tasks.values())
        rows = []
        for task in tasks.values():
            p_good = tables[task.wnid].p_good(task.yes, task.no)
            rows.append(label_row(task, self.name, p_good, p_good > 0.5 and task.yes > 0))
        return rows

    def more_votes(self, votes: Sequence[Mapping], scores: Scores | None, cap: int) -> set[int]:
        """Seed tasks below ``seed_votes``; then, per class once its seeds are complete, every task whose
        P(good) and P(wrong) are both below ``target_confidence``; plus the second look. All below ``cap``."""
        tasks = group_votes(votes)
        seeds = self.seeds(tasks.values())
        seed_target = min(self.config.seed_votes, cap)
        waiting = {t.wnid for t in seeds if t.n_votes < seed_target}
        tables = self.tables(tasks.values())
        target = self.config.target_confidence
        more = {t.task_id for t in below_cap(seeds, seed_target)}
        seed_keys = {(t.sha256, t.wnid) for t in seeds}
        for task in below_cap(tasks.values(), cap):
            if task.wnid in waiting or (task.sha256, task.wnid) in seed_keys:
                continue
            p_good = tables[task.wnid].p_good(task.yes, task.no)
            if max(p_good, 1 - p_good) < target:
                more.add(task.task_id)
        return more | second_look(tasks.values(), scores, self.config.second_look_score, cap)

    def seeds(self, tasks: Any) -> list[TaskVotes]:
        """The seed tasks: per class, the ``seed_tasks_per_class`` with the smallest sha256."""
        by_class: dict[str, list[TaskVotes]] = defaultdict(list)
        for task in tasks:
            by_class[task.wnid].append(task)
        n = self.config.seed_tasks_per_class
        return [t for group in by_class.values() for t in sorted(group, key=lambda t: t.sha256)[:n]]

    def tables(self, tasks: Any) -> dict[str, ClassTable]:
        """Every class's table, from its seed tasks that have their votes and a strict majority."""
        tasks = list(tasks)
        per_class: dict[str, _Counts] = defaultdict(_Counts)
        pool = _Counts()
        for seed in self.seeds(tasks):
            if seed.n_votes >= self.config.seed_votes and seed.yes != seed.no:
                per_class[seed.wnid].add(seed)
                pool.add(seed)
        acc = self.config.prior_accuracy
        pool_sens = _shrunk(pool.yes_on_good, pool.votes_on_good, acc, PRIOR_VOTES)
        pool_spec = _shrunk(pool.no_on_wrong, pool.votes_on_wrong, acc, PRIOR_VOTES)
        pool_prior = _shrunk(pool.good, pool.seeds, 0.5, PRIOR_SEEDS)
        tables = {}
        for wnid in {t.wnid for t in tasks}:
            c = per_class[wnid]
            tables[wnid] = ClassTable(
                prior_good=_shrunk(c.good, c.seeds, pool_prior, PRIOR_SEEDS),
                sensitivity=_shrunk(c.yes_on_good, c.votes_on_good, pool_sens, CLASS_SHRINK_VOTES),
                specificity=_shrunk(c.no_on_wrong, c.votes_on_wrong, pool_spec, CLASS_SHRINK_VOTES),
                seeds=int(c.seeds),
            )
        log.debug("dynamic consensus tables: %s", tables)
        return tables
