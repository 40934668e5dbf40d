"""``synsets`` stage: choose WordNet 3.0 noun synsets and expand each into search queries.

Reads: the ``synsets`` config and WordNet. Writes: ``synsets`` and ``queries`` rows (idempotent:
queries already present are kept, so searches done for them are never repeated).
"""

from __future__ import annotations

import logging

from pydantic import Field, field_validator, model_validator

from curate.config import Section
from curate.errors import ConfigError
from curate.stages.base import Context, Stage, StageResult

log = logging.getLogger(__name__)


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

    @model_validator(mode="after")
    def _something_selected(self) -> SynsetsConfig:
        if not self.roots and not self.wnids:
            raise ValueError("give at least one of 'roots' or 'wnids'")
        return self


class SynsetsStage(Stage):
    name = "synsets"
    description = "select WordNet 3.0 noun synsets and expand them into queries"
    Config = SynsetsConfig

    def run(self, ctx: Context) -> StageResult:
        from curate import wordnet
        from curate.wordnet_data import ensure_wordnet

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
