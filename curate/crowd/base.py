"""The crowd-backend protocol: push verification tasks, pull votes.

A task asks one yes/no question about one image and one class: "Is this a <lemma>? <gloss>".
Backends return votes with a stable ``remote_id`` so pulling twice never stores a vote twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Vote:
    task_id: int
    annotator: str
    answer: str  # yes | no | unsure
    remote_id: str
    created_at: float

    def as_row(self) -> dict[str, Any]:
        return self.__dict__.copy()


def task_question(synset: Any) -> str:
    """The question annotators see, with the gloss so the sense is unambiguous (mouse: rodent, not device)."""
    first = synset["lemmas"].split(", ")[0]
    article = "an" if first[:1].lower() in "aeiou" else "a"
    return f"Is this {article} {first}? ({synset['gloss']})"


class CrowdBackend:
    name: ClassVar[str]

    def push(self, tasks: list[Any]) -> dict[int, str]:
        """Publish tasks; return task id -> remote id for those newly published."""
        raise NotImplementedError

    def pull(self, tasks: list[Any]) -> list[Vote]:
        """Votes available now for these tasks (already-stored ones may be returned again)."""
        raise NotImplementedError
