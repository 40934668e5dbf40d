"""Image sources, one module each. Importing this package registers them all."""

from curate.sources import local  # noqa: E402,F401,I001  (registers 'local')
from curate.sources.base import SOURCES, SearchHit, Source, create_source

__all__ = ["SOURCES", "SearchHit", "Source", "create_source"]
