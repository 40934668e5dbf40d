"""``auto``: the default aggregation, chosen by the annotate stage when it runs.

- ``crowdlab`` with the model's scores (:mod:`curate.crowd.crowdlab`) where the noise stage's backbone
  has real weights (ImageNet, or a weights file): on ``benchmarks/crowd.py`` (a 2-class and a 10-class
  set, seeds 0 and 1) it exported 99.4-99.6 % precise labels at 1.95-2.37 votes per exported image and
  98-100 % recall, where majority of 3 votes spent 4.30-4.81 for 91-96 % at 77-82 % (README, crowd);
- ``dynamic_consensus`` (:mod:`curate.crowd.consensus`) where it has not (``noise.weights: none``, or
  the ``weights_fallback: none`` path taken): an untrained backbone's scores are no evidence, and
  ImageNet's voting gets from votes alone 93-98 % precision at 92-96 % recall, for 8.8-9.8 votes per
  exported image;
- ``majority`` where no task can get a vote more (``max_votes_per_image`` equal to
  ``votes_per_image``, as for the ``given`` labels of an audit): fixed voting, as before.

With ``auto`` an unset ``annotate.votes_per_image`` is 1 (both adaptive policies ask for more where
needed); with any other aggregator it is 3. The stage logs the policy it used and reports it in its
stats (``aggregate``). Reads and writes nothing; an ``auto`` aggregator cannot aggregate (resolve it
with :func:`choose` first: ``aggregate`` and ``more_votes`` raise ``TypeError``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from curate.crowd.aggregate import Majority, Scores
from curate.crowd.base import AGGREGATORS
from curate.crowd.consensus import DynamicConsensus
from curate.crowd.crowdlab import Crowdlab
from curate.registry import Plugin
from curate.sections import Section

FIRST_VOTES = 1  # annotate.votes_per_image when unset under auto
FIRST_VOTES_OTHERWISE = 3  # ... and under any other aggregator (the default before auto)


def choose(trained_backbone: bool, fixed_voting: bool) -> tuple[Section, bool]:
    """The aggregator config ``auto`` stands for, and whether the model scores the tasks."""
    if fixed_voting:
        return Majority.Config(), False
    if trained_backbone:
        return Crowdlab.Config(), True
    return DynamicConsensus.Config(), False


def first_votes(aggregate: Any) -> int:
    """``annotate.votes_per_image`` when unset, from the raw ``aggregate`` value (a name, a mapping or a
    config; absent means ``auto``)."""
    if isinstance(aggregate, str):
        kind = aggregate
    elif isinstance(aggregate, Mapping):
        kind = aggregate.get("type")
    else:
        kind = getattr(aggregate, "type", None)
    return FIRST_VOTES if kind == "auto" else FIRST_VOTES_OTHERWISE


@AGGREGATORS.register
class Auto(Plugin):
    name = "auto"
    description = ("the default: crowdlab with the model where the noise backbone has real weights, "
                   "dynamic_consensus where it has not, majority where no task can get a vote more")

    class Config(Section):
        type: Literal["auto"] = "auto"

    def aggregate(self, votes: Sequence[Mapping], scores: Scores | None = None) -> list[dict[str, Any]]:
        raise TypeError("'auto' stands for another aggregator: resolve it with curate.crowd.auto.choose")

    def more_votes(self, votes: Sequence[Mapping], scores: Scores | None, cap: int) -> set[int]:
        raise TypeError("'auto' stands for another aggregator: resolve it with curate.crowd.auto.choose")
