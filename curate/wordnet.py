"""WordNet 3.0 access through nltk: synset selection and ImageNet-style query expansion.

Reads: WordNet 3.0 via ``nltk.corpus.wordnet`` (installed by :mod:`curate.wordnet_data`).
Writes: nothing; returns plain records the ``synsets`` stage stores in the catalog.
On failure: unknown synset names or wnids raise ConfigError listing every bad id at once.

Selection follows ImageNet: roots plus their hyponyms down to ``max_depth`` levels (optionally
leaves only) or an explicit wnid list; the imageability filter keeps descendants of
``physical_entity.n.01`` and drops instance nouns (named individuals, e.g. ``Eiffel Tower``).
Query expansion: every lemma of the synset; and, when a word of the parent synset appears in the
gloss, each lemma followed by that word (ImageNet's rule: "whippet" -> "whippet dog").
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

from curate.errors import ConfigError

IMAGEABLE_ROOT = "physical_entity.n.01"


def _lookup_errors() -> tuple[type[Exception], ...]:
    from nltk.corpus.reader.wordnet import WordNetError

    return (LookupError, ValueError, KeyError, WordNetError)


LOOKUP_ERRORS = _lookup_errors()


def _wn():
    from nltk.corpus import wordnet

    return wordnet


def wnid_of(synset) -> str:
    return f"{synset.pos()}{synset.offset():08d}"


def synset_from_id(ident: str):
    """``n02084071`` or ``dog.n.01`` -> nltk Synset. Raises one of LOOKUP_ERRORS when unknown."""
    wn = _wn()
    if re.fullmatch(r"n\d{8}", ident):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nltk warns and returns None for an unknown offset
            synset = wn.synset_from_pos_and_offset("n", int(ident[1:]))
        if synset is None:
            raise LookupError(f"no noun synset at offset {ident[1:]}")
        return synset
    synset = wn.synset(ident)
    if synset.pos() != "n":
        raise ValueError(f"{ident} is not a noun synset")
    return synset


def words(synset) -> list[str]:
    return [lemma.replace("_", " ") for lemma in synset.lemma_names()]


@dataclass(frozen=True)
class Query:
    wnid: str
    text: str
    kind: str  # synonym | parent | translation
    lang: str = "en"  # "en", or the Open Multilingual WordNet's code of a translation (cmn, spa, nld, ita, ...)


def describe(synset) -> dict:
    """The catalog row of one synset."""
    hypernyms = synset.hypernyms()
    return {
        "wnid": wnid_of(synset),
        "name": synset.name(),
        "lemmas": ", ".join(words(synset)),
        "gloss": synset.definition(),
        "depth": synset.min_depth(),
        "hypernym_wnid": wnid_of(hypernyms[0]) if hypernyms else None,
        "lexname": synset.lexname(),
    }


def is_imageable(synset) -> bool:
    """A physical thing (descendant of physical_entity.n.01) and a class, not a named instance."""
    if synset.instance_hypernyms():
        return False
    root = _wn().synset(IMAGEABLE_ROOT)
    return any(root in path for path in synset.hypernym_paths())


def resolve_ids(fields: dict[str, list[str]]) -> dict[str, list]:
    """Resolve every id of every field; all unknown ones are reported in one ConfigError."""
    resolved: dict[str, list] = {field: [] for field in fields}
    problems = []
    for field, idents in fields.items():
        for i, ident in enumerate(idents):
            try:
                resolved[field].append(synset_from_id(ident))
            except LOOKUP_ERRORS as exc:
                problems.append(f"synsets.{field}.{i}: unknown WordNet 3.0 noun synset {ident!r} ({exc})")
    if problems:
        raise ConfigError(problems)
    return resolved


def select_synsets(
    roots: list[str],
    max_depth: int = 0,
    leaves_only: bool = False,
    wnids: list[str] | None = None,
    imageable_only: bool = True,
    max_synsets: int | None = None,
) -> list:
    """Synsets in a stable order: each root's subtree breadth-first, then the explicit wnids."""
    chosen: dict[str, object] = {}
    resolved = resolve_ids({"roots": roots, "wnids": wnids or []})
    for root in resolved["roots"]:
        for synset in _subtree(root, max_depth):
            if not leaves_only or not synset.hyponyms():
                chosen.setdefault(wnid_of(synset), synset)
    for synset in resolved["wnids"]:
        chosen.setdefault(wnid_of(synset), synset)
    selected = [s for s in chosen.values() if not imageable_only or is_imageable(s)]
    return selected[:max_synsets] if max_synsets else selected


def _subtree(root, max_depth: int) -> list:
    level, seen, out = [root], {root}, [root]
    for _ in range(max_depth):
        level = [h for s in level for h in sorted(s.hyponyms(), key=lambda x: x.name()) if h not in seen]
        seen.update(level)
        out.extend(level)
    return out


def expand_queries(synset, parent_in_gloss: bool = True) -> list[Query]:
    """Lemmas as queries, plus 'lemma parentword' when the parent's word appears in the gloss."""
    wnid = wnid_of(synset)
    lemmas = words(synset)
    queries = [Query(wnid, lemma, "synonym") for lemma in lemmas]
    parent = _parent_word_in_gloss(synset) if parent_in_gloss else None
    if parent:
        queries += [Query(wnid, f"{lemma} {parent}", "parent") for lemma in lemmas if parent not in lemma.split()]
    return _unique(queries)


def translations(synset, languages: list[str]) -> tuple[list[Query], list[str]]:
    """The synset's lemmas in other languages through the Open Multilingual WordNet (ImageNet searched in
    Chinese, Spanish, Dutch and Italian too), and the languages whose OMW data is not installed."""
    wnid, queries, missing = wnid_of(synset), [], []
    for lang in languages:
        try:
            names = synset.lemma_names(lang=lang)
        except LOOKUP_ERRORS:
            missing.append(lang)
            continue
        queries += [Query(wnid, name.replace("_", " "), "translation", lang) for name in names]
    return _unique(queries), missing


def _parent_word_in_gloss(synset) -> str | None:
    gloss_words = set(re.findall(r"[a-z]+", synset.definition().lower()))
    for parent in synset.hypernyms():
        for word in words(parent):
            if word.lower() in gloss_words:
                return word
    return None


def _unique(queries: list[Query]) -> list[Query]:
    seen, out = set(), []
    for q in queries:
        key = (q.lang, q.text.lower())
        if key not in seen:
            seen.add(key)
            out.append(q)
    return out


def is_a(synset, ancestor) -> bool:
    """True when ``synset`` is ``ancestor`` or one of its hyponyms (instances included)."""
    if synset == ancestor:
        return True
    return any(ancestor in path for path in synset.hypernym_paths())
