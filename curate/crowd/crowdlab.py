"""``crowdlab``: the votes and the model's out-of-sample probabilities combined (cleanlab.multiannotator).

CROWDLAB (Goh, Tkachenko, Mueller 2022) estimates each task's P(yes) as a weighted average of the
model's P(image shows class) and the workers' votes, each weighted by how well it agrees with the
others (a spammer's weight falls to almost nothing; a model that agrees with the consensus more often
than a typical worker outweighs a single vote). ActiveLab (``get_active_learning_scores``) scores how
sure that consensus is, lower for tasks with few or split votes or a model that disagrees; adaptive
voting asks one vote more where the score is below ``activelab_threshold``, plus the second look:
a task the crowd rejects (no more yes than no) while the model gives P >= ``second_look_score``.

Reads: vote rows (``unsure`` votes are left out: an abstention is no label) and the scores
(:func:`curate.crowd.scores.verification_scores`); a task without a score gets P = 0.5, no opinion.
Writes nothing. ``p_true`` is CROWDLAB's P(yes); accepted at ``accept_threshold`` or above. While no
task has two yes/no votes, CROWDLAB cannot weigh workers against each other, and, as ActiveLab does
for single labels, the model's P decides. Tasks with only unsure votes are decided by the model too.
Failure: without scores ``aggregate`` and ``more_votes`` raise ``ValueError`` (this policy is the
model's help; choose ``dawid_skene`` or ``dynamic_consensus`` to aggregate votes alone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field

from curate.config import Section
from curate.crowd import AGGREGATORS
from curate.crowd.aggregate import Scores, TaskVotes, below_cap, group_votes, label_row, second_look
from curate.registry import Plugin

NO_OPINION = 0.5
PROB_FLOOR = 1e-6  # keeps cleanlab's log-based temperature search finite for a model that says 0 or 1


@AGGREGATORS.register
class Crowdlab(Plugin):
    name = "crowdlab"
    needs_scores = True  # annotate checks that annotate.model is enabled
    description = "CROWDLAB: votes weighed against the model's out-of-sample probabilities; ActiveLab asks more"

    class Config(Section):
        type: Literal["crowdlab"] = "crowdlab"
        # 0.5: CROWDLAB's consensus label (its P(yes) is a weighted average, not a calibrated probability)
        accept_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="accept when CROWDLAB's P(yes) reaches it")
        # ActiveLab scores of a yes/no task start at 0.5 (no information). With one vote, 0.55 means the model
        # agrees with it at P >= 0.575; with more, that CROWDLAB's posterior for its consensus, discounted for
        # thin evidence, is clear of a coin flip (it stays below the workers' agreement rate, ~0.8, however many
        # agree, so high thresholds are never met). Benchmark (benchmarks/crowd.py, seed 0): 0.52 / 0.55 / 0.6
        # gave the same precision and recall within 0.3 points at 1.9 / 2.1 / 2.6 votes per image; 0.75 sent
        # most tasks to the cap.
        activelab_threshold: float = Field(
            0.55, gt=0.0, lt=1.0, description="ask one vote more while the task's ActiveLab score is below"
        )
        # 0.9: with the robustly calibrated scores (curate.crowd.scores) 99-100 % of such images are true
        second_look_score: float = Field(
            0.9, ge=0.5, le=1.0, description="model P(class) at which a crowd-rejected task gets another vote"
        )

    def aggregate(self, votes: Sequence[Mapping], scores: Scores | None = None) -> list[dict[str, Any]]:
        tasks = list(group_votes(votes).values())
        p_yes = self.posteriors(tasks, self._require(scores))
        threshold = self.config.accept_threshold
        return [label_row(t, self.name, p, p >= threshold) for t, p in zip(tasks, p_yes, strict=True)]

    def more_votes(self, votes: Sequence[Mapping], scores: Scores | None, cap: int) -> set[int]:
        tasks = list(group_votes(votes).values())
        active = self.activelab_scores(tasks, self._require(scores))
        more = {t.task_id for t, a in zip(tasks, active, strict=True) if a < self.config.activelab_threshold}
        more &= {t.task_id for t in below_cap(tasks, cap)}
        return more | second_look(tasks, scores, self.config.second_look_score, cap)

    def posteriors(self, tasks: list[TaskVotes], scores: Scores) -> list[float]:
        """CROWDLAB's P(yes) per task, in the order given."""
        import cleanlab.multiannotator as multiannotator
        import numpy as np

        model_p = self._model_probs(tasks, scores)
        matrix, rated = self._label_matrix(tasks)
        p_yes = model_p.copy()
        if rated.any() and ((~np.isnan(matrix)).sum(axis=1) >= 2).any():
            quality = multiannotator.get_label_quality_multiannotator(
                matrix, np.column_stack([1 - model_p[rated], model_p[rated]]), verbose=False,
                return_detailed_quality=False, return_annotator_stats=False,
            )["label_quality"]
            consensus = quality["consensus_label"].to_numpy()
            score = quality["consensus_quality_score"].to_numpy()
            p_yes[rated] = np.where(consensus == 1, score, 1 - score)
        return [float(p) for p in p_yes]

    @classmethod
    def annotator_quality(cls, tasks: list[TaskVotes], scores: Scores) -> dict[str, dict[str, float]]:
        """CROWDLAB's per-annotator quality (0..1: how well their yes/no answers agree with the consensus,
        weighed against the model) and agreement with the consensus; {} while no task has two votes."""
        import cleanlab.multiannotator as multiannotator
        import numpy as np

        matrix, rated = cls._label_matrix(tasks)
        workers = sorted({a for t in tasks for a, answer in t.answers if answer in ("yes", "no")})
        if not rated.any() or not ((~np.isnan(matrix)).sum(axis=1) >= 2).any():
            return {}
        model_p = cls._model_probs(tasks, scores)[rated]
        stats = multiannotator.get_label_quality_multiannotator(
            matrix, np.column_stack([1 - model_p, model_p]), verbose=False,
            return_detailed_quality=False, return_annotator_stats=True,
        )["annotator_stats"]
        return {workers[int(i)]: {"crowdlab_quality": float(r.annotator_quality),
                                  "agreement_with_consensus": float(r.agreement_with_consensus)}
                for i, r in stats.iterrows()}

    def activelab_scores(self, tasks: list[TaskVotes], scores: Scores) -> list[float]:
        """ActiveLab's score per task (lower: another vote is worth more), in the order given."""
        import cleanlab.multiannotator as multiannotator
        import numpy as np

        model_p = self._model_probs(tasks, scores)
        matrix, rated = self._label_matrix(tasks)
        probs = np.column_stack([1 - model_p, model_p])
        active = np.zeros(len(tasks))
        labelled, unlabelled = multiannotator.get_active_learning_scores(
            matrix if rated.any() else None, probs[rated] if rated.any() else None,
            probs[~rated] if (~rated).any() else None,
        )
        active[rated], active[~rated] = labelled, unlabelled
        return [float(a) for a in active]

    def _require(self, scores: Scores | None) -> Scores:
        if scores is None:
            raise ValueError("the crowdlab aggregator needs the model's scores (annotate.model.enabled: true); "
                             "to aggregate votes alone choose dawid_skene, dynamic_consensus or majority")
        return scores

    @staticmethod
    def _model_probs(tasks: list[TaskVotes], scores: Scores) -> Any:
        import numpy as np

        p = np.array([scores.get((t.sha256, t.wnid), NO_OPINION) for t in tasks], dtype=float)
        return np.clip(p, PROB_FLOOR, 1 - PROB_FLOOR)

    @staticmethod
    def _label_matrix(tasks: list[TaskVotes]) -> tuple[Any, Any]:
        """(tasks with a yes/no vote) x (workers who gave one): 1 yes, 0 no, NaN none; and which tasks."""
        import numpy as np

        rated = np.array([t.yes + t.no > 0 for t in tasks], dtype=bool)
        workers = sorted({a for t in tasks for a, answer in t.answers if answer in ("yes", "no")})
        column = {w: j for j, w in enumerate(workers)}
        matrix = np.full((int(rated.sum()), len(workers)), np.nan)
        for row, task in enumerate(t for t, r in zip(tasks, rated, strict=True) if r):
            for annotator, answer in task.answers:
                if answer in ("yes", "no"):
                    matrix[row, column[annotator]] = float(answer == "yes")
        return matrix, rated
