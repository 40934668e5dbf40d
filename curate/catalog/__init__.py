"""The run's catalog: one SQLite file holding every item's state; the only place with SQL.

Split by noun: :mod:`.db` (connection, transactions, migrations of :mod:`.schema`),
:mod:`.collection` (synsets, queries, searches, candidates, images), :mod:`.crowd` (tasks, votes),
:mod:`.labels` (labels, embeddings, issues), :mod:`.decisions` (decisions about issues, review-round tasks)
and :mod:`.runs` (stage runs, status tables).
Stages write in batches inside transactions, so a crash loses at most the batch in flight and a
re-run picks up pending rows. Votes are never deleted.
"""

from __future__ import annotations

from curate.catalog.annotations import AnnotationTables
from curate.catalog.collection import CollectionTables
from curate.catalog.crowd import CrowdTables
from curate.catalog.db import CatalogError
from curate.catalog.decisions import DecisionTables
from curate.catalog.labels import LabelTables
from curate.catalog.runs import PER_CLASS_COLUMNS, PER_SOURCE_COLUMNS, RunTables
from curate.catalog.schema import SCHEMA_VERSION


class Catalog(CollectionTables, CrowdTables, AnnotationTables, LabelTables, DecisionTables, RunTables):
    """Every noun's queries on one connection: ``Catalog(path)`` opens (and upgrades) a catalog;
    ``Catalog(path, readonly=True)`` reads one without changing it."""


__all__ = ["PER_CLASS_COLUMNS", "PER_SOURCE_COLUMNS", "SCHEMA_VERSION", "Catalog", "CatalogError"]
