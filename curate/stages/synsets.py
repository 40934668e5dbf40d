"""``synsets`` stage: choose the classes (WordNet 3.0 noun synsets) and expand each into search queries.

Reads: the ``synsets`` config and WordNet. Writes: ``synsets`` and ``queries`` rows (idempotent:
queries already present are kept, so searches done for them are never repeated).

With ``from_labels: true`` the classes are the labels the configured sources already carry (an
``imagefolder`` source's folder names), for auditing a dataset that exists. A label that is a WordNet
noun id (``n01440764``) gets its synset's words and gloss when WordNet 3.0 is installed; any other label
(``cat``, ``n01440764`` without WordNet) is its own word with an empty gloss, and WordNet is never
required or installed. Each class gets one query, its first word (such sources list a class's files
whatever the words). No labelled source, or a label that cannot name a class (empty, ``/``, a backslash,
``|``, a control character, spaces around it, over 200 bytes: :func:`curate.sources.base.label_problem`):
ConfigError naming each.
"""

from __future__ import annotations

import logging
import re

from pydantic import Field, field_validator, model_validator

from curate.errors import ConfigError
from curate.sections import Section
from curate.stages.base import Context, Stage, StageResult

log = logging.getLogger(__name__)
WNID = re.compile(r"n\d{8}")


class SynsetsConfig(Section):
    roots: list[str] = Field(default_factory=list, description="synset names (dog.n.01) or wnids; subtrees taken")
    max_depth: int = Field(0, ge=0, description="levels below each root; 0 = the roots themselves")
    leaves_only: bool = False
    wnids: list[str] = Field(default_factory=list, description="explicit ImageNet-style ids, n########")
    imageable_only: bool = True
    max_synsets: int = Field(1000, ge=1)
    parent_in_gloss: bool = True
    languages: list[str] = Field(
        default_factory=list,
        description="also search the lemmas' translations from the Open Multilingual WordNet, by its language "
                    "codes (ImageNet used cmn, spa, nld, ita); skipped with a warning where its data is not installed",
    )

    @field_validator("wnids")
    @classmethod
    def _wnid_format(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not (len(v) == 9 and v[0] == "n" and v[1:].isdigit())]
        if bad:
            raise ValueError(f"not a WordNet noun id of the form n######## : {', '.join(bad)}")
        return values

    from_labels: bool = Field(
        False, description="the classes are the labels of the sources (imagefolder folder names), not WordNet's"
    )

    @model_validator(mode="after")
    def _something_selected(self) -> SynsetsConfig:
        if self.from_labels and (self.roots or self.wnids):
            raise ValueError("from_labels takes the classes from the sources: leave 'roots' and 'wnids' empty")
        if not self.roots and not self.wnids and not self.from_labels:
            raise ValueError("give at least one of 'roots' or 'wnids' (or from_labels: true)")
        return self


class SynsetsStage(Stage):
    name = "synsets"
    description = "choose the classes (WordNet 3.0 noun synsets, or the sources' labels) and expand them into queries"
    Config = SynsetsConfig

    def fingerprint_inputs(self, ctx: Context) -> object:
        config = ctx.config.synsets.model_dump(mode="json")
        return {"config": config, "labels": source_labels(ctx)} if ctx.config.synsets.from_labels else config

    def run(self, ctx: Context) -> StageResult:
        from curate import wordnet
        from curate.wordnet_data import ensure_wordnet

        if ctx.config.synsets.from_labels:
            return self._from_labels(ctx)
        ensure_wordnet()
        synsets = self._select(ctx)
        ctx.catalog.upsert_synsets([wordnet.describe(s) for s in synsets])
        queries = [q for s in synsets for q in wordnet.expand_queries(s, ctx.config.synsets.parent_in_gloss)]
        queries += self._translations(ctx, synsets)
        added = ctx.catalog.add_queries([q.__dict__ for q in queries])
        return StageResult(stats={"synsets": len(synsets), "queries": len(queries), "new_queries": added})

    @staticmethod
    def _translations(ctx: Context, synsets: list) -> list:
        from curate import wordnet

        languages = ctx.config.synsets.languages
        found, missing = [], set()
        for synset in synsets if languages else []:
            queries, absent = wordnet.translations(synset, languages)
            found += queries
            missing.update(absent)
        if missing:
            log.warning("synsets: no Open Multilingual WordNet data for %s (where the internet is reachable: "
                        "python -m nltk.downloader omw-1.4); their translated queries are skipped",
                        ", ".join(sorted(missing)))
        return found

    def _select(self, ctx: Context) -> list:
        from curate import wordnet

        cfg = ctx.config.synsets
        synsets = wordnet.select_synsets(
            cfg.roots, cfg.max_depth, cfg.leaves_only, cfg.wnids, cfg.imageable_only, cfg.max_synsets
        )
        if not synsets:
            raise ConfigError("synsets: the selection is empty (check roots, max_depth, leaves_only, imageable_only)")
        return synsets

    @staticmethod
    def _from_labels(ctx: Context) -> StageResult:
        labels = source_labels(ctx)
        if not labels:
            raise ConfigError("synsets.from_labels: no configured source carries labels; add an imagefolder "
                              "source to candidates.sources")
        _check_labels(labels)
        _warn_over_cap(labels, ctx.config.candidates.max_per_class)
        rows = describe_labels(sorted(labels))
        ctx.catalog.upsert_synsets(rows)
        queries = [{"wnid": r["wnid"], "text": r["lemmas"].split(", ")[0], "lang": "en", "kind": "label"}
                   for r in rows]
        added = ctx.catalog.add_queries(queries)
        in_wordnet = sum(r["name"] != r["wnid"] for r in rows)  # a synset's name is dog.n.01, a label's itself
        return StageResult(stats={"synsets": len(rows), "from_wordnet": in_wordnet, "queries": len(queries),
                                  "new_queries": added})


def source_labels(ctx: Context) -> dict[str, int]:
    """Every label the configured sources carry, with its number of images (summed over sources)."""
    from curate.sources import create_source

    counts: dict[str, int] = {}
    for config in ctx.config.candidates.sources:
        labels = getattr(create_source(config), "labels", None)  # sources of labelled images have labels()
        for label, n in (labels() if labels else {}).items():
            counts[label] = counts.get(label, 0) + n
    return counts


def _check_labels(labels: dict[str, int]) -> None:
    """ConfigError naming every label that cannot be a class (:func:`curate.sources.base.label_problem`)."""
    from curate.sources.base import label_problem

    problems = [f"synsets.from_labels: label {label!r} {why}" for label in sorted(labels)
                if (why := label_problem(label))]
    if problems:
        more = len(problems) - 20
        raise ConfigError(problems[:20] + ([f"... and {more} more"] if more > 0 else []))


def _warn_over_cap(labels: dict[str, int], cap: int) -> None:
    over = {label: n for label, n in labels.items() if n > cap}
    if over:
        log.warning("synsets: %d classes have more images than candidates.max_per_class (%d), which takes only "
                    "that many of each: %s", len(over), cap, ", ".join(f"{k} ({n})" for k, n in sorted(over.items())))


def describe_labels(labels: list[str]) -> list[dict]:
    """Catalog rows of classes named by labels: a WordNet noun id gets its synset's words and gloss when
    WordNet 3.0 is installed (never installed from here); anything else is its own word, without a gloss."""
    described = _wordnet_rows([label for label in labels if WNID.fullmatch(label)])
    return [described.get(label) or {"wnid": label, "name": label, "lemmas": label.replace("_", " "), "gloss": "",
                                     "depth": 0, "hypernym_wnid": None, "lexname": ""}
            for label in labels]


def _wordnet_rows(wnids: list[str]) -> dict[str, dict]:
    """Catalog rows of those wnids that WordNet 3.0, if installed, knows."""
    if not wnids:
        return {}
    try:
        from curate import wordnet
        from curate.wordnet_data import probe

        info = probe()
    except ImportError:
        return {}
    if info is None or not info.version.startswith("3.0"):
        log.info("synsets: WordNet 3.0 is not installed; classes keep their labels as names (curate setup "
                 "installs it)")
        return {}
    found = {}
    for wnid in wnids:
        try:
            found[wnid] = wordnet.describe(wordnet.synset_from_id(wnid))
        except wordnet.LOOKUP_ERRORS:
            continue
    return found
