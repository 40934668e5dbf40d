"""``synsets`` stage: choose WordNet 3.0 noun synsets and expand each into search queries.

Reads: the ``synsets`` config and WordNet. Writes: ``synsets`` and ``queries`` rows (idempotent:
queries already present are kept, so searches done for them are never repeated).
"""

from __future__ import annotations

from curate import wordnet
from curate.errors import ConfigError
from curate.runner import Context, Stage, StageResult
from curate.wordnet_data import ensure_wordnet


class SynsetsStage(Stage):
    name = "synsets"
    description = "select WordNet 3.0 noun synsets and expand them into queries"

    def run(self, ctx: Context) -> StageResult:
        ensure_wordnet()
        synsets = self._select(ctx)
        ctx.catalog.upsert_synsets([wordnet.describe(s) for s in synsets])
        queries = [q for s in synsets for q in wordnet.expand_queries(s, ctx.config.synsets.parent_in_gloss)]
        added = ctx.catalog.add_queries([q.__dict__ for q in queries])
        return StageResult(stats={"synsets": len(synsets), "queries": len(queries), "new_queries": added})

    def _select(self, ctx: Context) -> list:
        cfg = ctx.config.synsets
        synsets = wordnet.select_synsets(
            cfg.roots, cfg.max_depth, cfg.leaves_only, cfg.wnids, cfg.imageable_only, cfg.max_synsets
        )
        if not synsets:
            raise ConfigError("synsets: the selection is empty (check roots, max_depth, leaves_only, imageable_only)")
        return synsets
