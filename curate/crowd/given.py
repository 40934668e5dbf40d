"""``given`` crowd: trusts the labels the images came with (an audit of an existing dataset).

Reads: nothing but the open tasks. Writes: nothing; returns votes. Every task is one (image, class) pair
that a source gave, such as an ``imagefolder`` file in its class folder, so the answer is always "yes":
one vote from the annotator ``given`` per task (remote id ``given:<task id>``, so pulling again stores
nothing twice), and a majority label of ``p_true`` 1.0. ``annotate`` completes in one run and the
``noise`` stage then judges the given labels. Failure: a pipeline that asks for more than one vote per
image is a ConfigError (that crowd could never finish); it answers no review questions (``can_review``).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from curate.crowd.base import BACKENDS, Vote
from curate.errors import ConfigError
from curate.sections import Section

ANNOTATOR = "given"


class GivenConfig(Section):
    type: Literal["given"] = "given"


@BACKENDS.register
class GivenLabels:
    name = "given"
    description = "the labels the images came with, taken as they are (auditing an existing dataset)"
    Config = GivenConfig
    can_review = False  # it knows one answer per image and cannot be asked anything new

    def __init__(self, config: GivenConfig):
        self.config = config

    @classmethod
    def from_context(cls, config: GivenConfig, ctx: Any) -> GivenLabels:
        annotate = ctx.config.annotate
        if annotate.votes_per_image != 1 or annotate.max_votes_per_image != 1:
            raise ConfigError("annotate.backend: the given labels are one vote per image; set "
                              "annotate.votes_per_image: 1 and annotate.max_votes_per_image: 1")
        return cls(config)

    def push(self, tasks: list[Any]) -> dict[int, str]:
        return {task["id"]: f"{ANNOTATOR}:{task['id']}" for task in tasks}

    def pull(self, tasks: list[Any]) -> list[Vote]:
        now = time.time()
        return [Vote(task["id"], ANNOTATOR, "yes", f"{ANNOTATOR}:{task['id']}", now) for task in tasks]

    def next_step(self, missing_votes: int) -> str:
        return "the given labels answer at once; run the same command again"

    def close(self) -> None:
        pass
