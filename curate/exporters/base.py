"""The export writers' registry: :data:`WRITERS`, which every writer module registers itself in (the
package's ``__init__`` imports them all), and :func:`create_writer`.

Reads and writes nothing. Failure: an unknown ``type`` raises ``KeyError`` naming the known writers
(the pipeline model refuses it earlier, as a ConfigError).
"""

from typing import Any

from curate.registry import Registry

WRITERS: Registry[Any] = Registry("export writer")


def create_writer(config: Any) -> Any:
    return WRITERS.get(config.type)(config)
