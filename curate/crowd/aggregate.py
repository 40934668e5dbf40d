"""Vote aggregation: votes of complete tasks -> one label row per (image, class), and which tasks want
one more vote.

Reads: vote rows (``sqlite3.Row`` or mappings with task_id, sha256, wnid, annotator, answer; ``is_gold``
is ignored here, the stage applies gold answers) and, optionally, the model's out-of-sample
P(image shows class) per (sha256, wnid) (:mod:`curate.crowd.scores`). Writes: nothing; returns label
rows (sha256, wnid, method, p_true, accepted, n_votes) and task ids.

An aggregator is one class with a ``name`` (``annotate.aggregate.type``), a ``Config`` and two methods
(:class:`Aggregator`), registered with ``@AGGREGATORS.register``: ``majority`` here, ``dynamic_consensus``
(:mod:`~curate.crowd.consensus`), ``dawid_skene`` (:mod:`~curate.crowd.dawid_skene`) and ``crowdlab``
(:mod:`~curate.crowd.crowdlab`). Conventions shared by all of them:

- ``unsure`` is an abstention: it counts toward ``n_votes`` (it was asked for and paid) but for neither side.
- ``cap`` in :meth:`Aggregator.more_votes` counts *all* votes of a task, abstentions included, as the
  stage's ``max_votes_per_image`` and the catalog's ``votes_wanted`` do: a task with ``cap`` votes never
  gets another, whatever they said.
- The second look (:func:`second_look`): an adaptive policy also asks one more vote for a task the crowd
  rejected (no more yes than no votes) while the model is confident the image shows the class, since a
  wrong "no" loses a good image for good. Fixed voting (``majority``) asks for nothing.

Failure: a vote row without sha256/wnid/answer raises ``KeyError``; ``more_votes`` needs ``task_id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from curate.crowd.base import AGGREGATORS
from curate.registry import Plugin
from curate.sections import Section

Scores = Mapping[tuple[str, str], float]


class Aggregator(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[Section]]

    def aggregate(self, votes: Sequence[Mapping], scores: Scores | None = None) -> list[dict]:
        """Label rows for every task that has votes; ``scores``: the model's out-of-sample P(image shows
        wnid) per (sha256, wnid), or None."""
        ...

    def more_votes(self, votes: Sequence[Mapping], scores: Scores | None, cap: int) -> set[int]:
        """Task ids that should get one more vote now: not confident yet and fewer than ``cap`` votes
        (abstentions included); never a task already at the cap."""
        ...


def create_aggregator(config: Any) -> Any:
    return AGGREGATORS.get(config.type)(config)


@dataclass
class TaskVotes:
    """The votes of one task (one image, one class), in the order given."""

    sha256: str
    wnid: str
    task_id: int | None = None
    answers: list[tuple[str, str]] = field(default_factory=list)  # (annotator, yes|no|unsure)

    @property
    def yes(self) -> int:
        return sum(a == "yes" for _, a in self.answers)

    @property
    def no(self) -> int:
        return sum(a == "no" for _, a in self.answers)

    @property
    def n_votes(self) -> int:
        return len(self.answers)


def _get(row: Mapping, key: str, default: Any = None) -> Any:
    try:
        return row[key]
    except (KeyError, IndexError):  # sqlite3.Row raises IndexError for a missing column
        return default


def group_votes(votes: Iterable[Mapping]) -> dict[tuple[str, str], TaskVotes]:
    """(sha256, wnid) -> its votes, sorted by key so every aggregator returns rows in the same order."""
    tasks: dict[tuple[str, str], TaskVotes] = {}
    for i, vote in enumerate(votes):
        key = (vote["sha256"], vote["wnid"])
        task = tasks.get(key)
        if task is None:
            task = tasks[key] = TaskVotes(key[0], key[1], _get(vote, "task_id"))
        task.answers.append((str(_get(vote, "annotator", f"anonymous-{i}")), vote["answer"]))
    return dict(sorted(tasks.items()))


def label_row(task: TaskVotes, method: str, p_true: float, accepted: bool) -> dict[str, Any]:
    return {"sha256": task.sha256, "wnid": task.wnid, "method": method, "p_true": float(p_true),
            "accepted": int(accepted), "n_votes": task.n_votes}


def below_cap(tasks: Iterable[TaskVotes], cap: int) -> list[TaskVotes]:
    """Tasks that may still get a vote: a known task id and fewer than ``cap`` votes."""
    return [t for t in tasks if t.task_id is not None and t.n_votes < cap]


def second_look(tasks: Iterable[TaskVotes], scores: Scores | None, min_score: float, cap: int) -> set[int]:
    """Tasks the crowd rejects so far (yes <= no) although the model gives P(class) >= ``min_score``."""
    if not scores:
        return set()
    return {t.task_id for t in below_cap(tasks, cap)
            if t.yes <= t.no and scores.get((t.sha256, t.wnid), 0.0) >= min_score}


@AGGREGATORS.register
class Majority(Plugin):
    name = "majority"
    description = "accepted when yes-votes strictly outnumber no-votes (a tie is not a consensus); fixed voting"

    class Config(Section):
        type: Literal["majority"] = "majority"

    def aggregate(self, votes: Sequence[Mapping], scores: Scores | None = None) -> list[dict[str, Any]]:
        """``p_true`` is the share of yes among yes and no (0 when every vote was unsure); scores are unused."""
        rows = []
        for task in group_votes(votes).values():
            yes, no = task.yes, task.no
            rows.append(label_row(task, self.name, yes / (yes + no) if yes + no else 0.0, yes > no))
        return rows

    def more_votes(self, votes: Sequence[Mapping], scores: Scores | None, cap: int) -> set[int]:
        """Nothing: majority is fixed voting; ``annotate.votes_per_image`` sets how many votes each task gets."""
        return set()
