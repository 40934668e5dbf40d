"""Vote aggregation: votes of complete tasks -> one label row per (image, class).

Reads: vote rows (task_id, sha256, wnid, annotator, answer). Writes: nothing; returns label rows
(sha256, wnid, method, p_true, accepted, n_votes). ``unsure`` votes count toward n_votes but not
toward either side. An aggregator is one class with a ``name`` (``annotate.aggregate.type``), a
``Config`` and ``aggregate(votes)``, registered with ``@AGGREGATORS.register``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Literal

from curate.config import Section
from curate.crowd import AGGREGATORS
from curate.registry import Plugin


def create_aggregator(config: Any) -> Any:
    return AGGREGATORS.get(config.type)(config)


@AGGREGATORS.register
class Majority(Plugin):
    name = "majority"
    description = "accepted when yes-votes strictly outnumber no-votes (a tie is not a consensus)"

    class Config(Section):
        type: Literal["majority"] = "majority"


    def aggregate(self, votes: Iterable[Any]) -> list[dict[str, Any]]:
        tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        for vote in votes:
            counts = tally[(vote["sha256"], vote["wnid"])]
            counts[0] += vote["answer"] == "yes"
            counts[1] += vote["answer"] == "no"
            counts[2] += 1
        return [
            {"sha256": sha, "wnid": wnid, "method": self.name, "p_true": yes / (yes + no) if yes + no else 0.0,
             "accepted": int(yes > no), "n_votes": n}
            for (sha, wnid), (yes, no, n) in sorted(tally.items())
        ]
