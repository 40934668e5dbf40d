"""The crowd-backend protocol (push verification tasks, pull votes, say what the crowd still owes) and the
crowd's registries, :data:`BACKENDS` and :data:`AGGREGATORS`, which every backend and aggregator module
registers itself in (the package's ``__init__`` imports them all).

A task asks one yes/no question about one image and one class: "Is this a <lemma>? <gloss>".
A backend is one module: a class with a ``name`` (``annotate.backend.type`` in YAML), a ``Config``
beside it, registered with ``@BACKENDS.register``, constructed by ``Backend.from_context(config, ctx)``; a
backend that can review (``can_review``, default True) also takes ``queue`` (the catalog's ``tasks.backend`` of
the tasks it serves, e.g. ``<name>/review``) and ``votes_per_task`` (that queue's votes per task).

- :meth:`CrowdBackend.push` publishes tasks and returns their remote ids (kept in the catalog, so a
  rerun never publishes a task twice).
- :meth:`CrowdBackend.pull` returns the votes available now for open tasks, each with a stable
  ``remote_id`` (pulling twice never stores a vote twice). Each task row carries ``votes_wanted`` and
  ``n_votes`` (the votes stored already): a backend asks only for the missing ones.
- A real crowd answers later: after a pull, open tasks that still lack votes mean the stage is
  *waiting*; :meth:`CrowdBackend.next_step` tells the user what to do meanwhile.
- ``answers_change`` (class attribute, default False): True for a crowd whose people may edit or
  delete answers after a task completed; ``annotate`` then looks at the crowd on every run instead of
  skipping itself when no task is open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from curate.registry import Registry
from curate.sections import Section

BACKENDS: Registry[Any] = Registry("crowd backend")
AGGREGATORS: Registry[Any] = Registry("aggregator")


@dataclass(frozen=True)
class Vote:
    task_id: int
    annotator: str
    answer: str  # yes | no | unsure
    remote_id: str
    created_at: float
    lead_time_s: float | None = None  # seconds the annotator spent on the task, when the backend knows

    def as_row(self) -> dict[str, Any]:
        return self.__dict__.copy()


def task_question(synset: Any) -> str:
    """The question annotators see, with the gloss so the sense is unambiguous (mouse: rodent, not device)."""
    first = synset["lemmas"].split(", ")[0]
    article = "an" if first[:1].lower() in "aeiou" else "a"
    return f"Is this {article} {first}? ({synset['gloss']})"


class CrowdBackend(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[Section]]

    def push(self, tasks: list[Any]) -> dict[int, str]:
        """Publish tasks; return task id -> remote id for those newly published."""
        ...

    def pull(self, tasks: list[Any]) -> list[Any]:
        """Votes available now for these open tasks (already-stored ones may be returned again)."""
        ...

    def next_step(self, missing_votes: int) -> str:
        """What the user can do while ``missing_votes`` votes are outstanding."""
        ...

    def close(self) -> None:
        """Log a summary, release connections."""
        ...
