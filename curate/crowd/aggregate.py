"""Vote aggregation: votes of complete tasks -> one label row per (image, class).

Reads: vote rows (task_id, sha256, wnid, annotator, answer). Writes: nothing; returns label rows
(sha256, wnid, method, p_true, accepted, n_votes). ``unsure`` votes count toward n_votes but not
toward either side. Aggregators are registered by name; a duplicate name is an error.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

Aggregator = Callable[[Iterable[Any]], list[dict[str, Any]]]
_AGGREGATORS: dict[str, Aggregator] = {}


def register(name: str) -> Callable[[Aggregator], Aggregator]:
    def wrap(fn: Aggregator) -> Aggregator:
        if name in _AGGREGATORS:
            raise ValueError(f"aggregator {name!r} registered twice")
        _AGGREGATORS[name] = fn
        return fn

    return wrap


def aggregate(method: str, votes: Iterable[Any]) -> list[dict[str, Any]]:
    return _AGGREGATORS[method](votes)


@register("majority")
def majority(votes: Iterable[Any]) -> list[dict[str, Any]]:
    """Accept when yes-votes strictly outnumber no-votes (a tie is not a consensus)."""
    tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for vote in votes:
        counts = tally[(vote["sha256"], vote["wnid"])]
        counts[0] += vote["answer"] == "yes"
        counts[1] += vote["answer"] == "no"
        counts[2] += 1
    return [
        {"sha256": sha, "wnid": wnid, "method": "majority", "p_true": yes / (yes + no) if yes + no else 0.0,
         "accepted": int(yes > no), "n_votes": n}
        for (sha, wnid), (yes, no, n) in sorted(tally.items())
    ]
