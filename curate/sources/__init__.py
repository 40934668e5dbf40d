"""Image sources, one module each. Importing this package registers them all."""

from curate.sources import local  # noqa: F401  (registers the 'local' source)
from curate.sources.base import SearchHit, Source, create_source

__all__ = ["SearchHit", "Source", "create_source"]
