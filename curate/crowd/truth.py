"""Ground truth of a corpus that carries it: is an image truly of a class? (hyponyms count: a puppy is
a dog; a hot dog is not). Used by the simulated crowd and by measurements against ground truth."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache


def make_truth(truth: dict[str, set[str]]) -> Callable[[str, str], bool | None]:
    """(sha256, wnid) -> True/False from the corpus's true wnids, None when unknown."""
    from curate import wordnet

    @cache
    def synset(ident: str):
        try:
            return wordnet.synset_from_id(ident)
        except wordnet.LOOKUP_ERRORS:
            return None

    def is_true(sha256: str, wnid: str) -> bool | None:
        known = truth.get(sha256)
        if not known:
            return None
        target = synset(wnid)
        return any(s is not None and wordnet.is_a(s, target) for s in map(synset, known))

    return is_true
