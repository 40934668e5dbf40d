"""Image sources, one module each. Importing this package registers them all."""

from curate.sources import local  # noqa: E402,F401,I001  (registers 'local' first: the default)
from curate.sources import commons, flickr, openverse, urls  # noqa: E402,F401,I001  (registers the web sources)
from curate.sources import imagefolder  # noqa: E402,F401,I001  (registers 'imagefolder')
from curate.sources.base import (
    SOURCES,
    Query,
    SearchHit,
    Source,
    SourceError,
    create_source,
    create_sources,
    instance_problems,
)

__all__ = ["SOURCES", "Query", "SearchHit", "Source", "SourceError", "create_source", "create_sources",
           "instance_problems"]
