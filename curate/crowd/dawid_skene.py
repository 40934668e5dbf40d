"""``dawid_skene``: each worker's yes/no confusion matrix and each task's truth, estimated together by EM.

Dawid and Skene (1979), as implemented by crowd-kit (``crowdkit.aggregation.DawidSkene``): starting
from the majority vote, EM alternates between the truth of every task and a 2x2 confusion matrix per
worker (P(answer | truth)). A worker who agrees with the others about as often as chance (a spammer)
gets a matrix whose yes and no rows are alike, so their votes barely move any posterior; a worker
who says yes too easily has their yes discounted. All classes share one matrix per worker.

Reads: vote rows (yes/no; ``unsure`` votes are left out of the model). Writes nothing. ``p_true`` is
the posterior P(yes); a task with only unsure votes gets the estimated share of yes-tasks and is not
accepted. ``more_votes`` asks one vote more for tasks whose posterior is below ``confidence`` either
way, and for the second look (the crowd rejects, the model's P >= ``second_look_score``); the
benchmark uses it at fixed votes. Failure: see :mod:`curate.crowd.aggregate`; crowd-kit is imported
only when votes are aggregated.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field

from curate.crowd.aggregate import Scores, TaskVotes, below_cap, group_votes, label_row, second_look
from curate.crowd.base import AGGREGATORS
from curate.registry import Plugin
from curate.sections import Section


@AGGREGATORS.register
class DawidSkene(Plugin):
    name = "dawid_skene"
    description = "Dawid-Skene EM (crowd-kit): per-worker confusion matrices, spammers down-weighted"

    class Config(Section):
        type: Literal["dawid_skene"] = "dawid_skene"
        max_iterations: int = Field(100, ge=1, description="EM iterations at most (crowd-kit's default)")
        # 0.99 as dynamic_consensus: both assume votes independent given the truth, so both overrate split
        # votes on hard items; a stricter target mostly spends votes up to the cap there
        confidence: float = Field(0.99, gt=0.5, lt=1.0, description="more_votes: ask while the posterior is below")
        second_look_score: float = Field(
            0.9, ge=0.5, le=1.0, description="model P(class) at which a crowd-rejected task gets another vote"
        )

    def aggregate(self, votes: Sequence[Mapping], scores: Scores | None = None) -> list[dict[str, Any]]:
        """Posterior P(yes) per task; accepted above 0.5. Scores are unused."""
        tasks = list(group_votes(votes).values())
        p_yes, prior = self.posteriors(tasks)
        return [label_row(t, self.name, p_yes.get(i, prior), i in p_yes and p_yes[i] > 0.5)
                for i, t in enumerate(tasks)]

    def more_votes(self, votes: Sequence[Mapping], scores: Scores | None, cap: int) -> set[int]:
        """Tasks whose posterior is below ``confidence`` either way (or that have no yes/no vote), plus the
        second look; all below ``cap``."""
        tasks = list(group_votes(votes).values())
        p_yes, _ = self.posteriors(tasks)
        target = self.config.confidence
        undecided = {t.task_id for i, t in enumerate(tasks) if max(p_yes.get(i, 0.5), 1 - p_yes.get(i, 0.5)) < target}
        more = {t.task_id for t in below_cap(tasks, cap) if t.task_id in undecided}
        return more | second_look(tasks, scores, self.config.second_look_score, cap)

    def posteriors(self, tasks: list[TaskVotes]) -> tuple[dict[int, float], float]:
        """(task index -> posterior P(yes) for tasks with a yes or no vote, estimated share of yes-tasks)."""
        rows = [(i, annotator, answer) for i, t in enumerate(tasks) for annotator, answer in t.answers
                if answer in ("yes", "no")]
        if not rows:
            return {}, 0.0
        import pandas as pd
        from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene

        model = CrowdKitDawidSkene(n_iter=self.config.max_iterations)
        with warnings.catch_warnings():  # crowd-kit 1.4 uses pandas idioms that pandas 3 deprecates
            warnings.filterwarnings("ignore", module=r"crowdkit\.")
            model.fit(pd.DataFrame(rows, columns=["task", "worker", "label"]))
        probas = model.probas_
        if "yes" in probas.columns:
            p_yes = probas["yes"]
        else:  # every vote was no
            p_yes = pd.Series(0.0, index=probas.index)
        prior = float(model.priors_.get("yes", 0.0))
        return {int(i): float(p) for i, p in p_yes.items()}, prior
