"""Image sources, one module each. Importing this package registers them all."""

from curate.sources import local  # noqa: E402,F401,I001  (registers 'local')
from curate.sources.base import SOURCES, Query, SearchHit, Source, SourceError, create_source

__all__ = ["SOURCES", "Query", "SearchHit", "Source", "SourceError", "create_source"]
