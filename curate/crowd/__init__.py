"""Crowd annotation: backends (one module each) behind one protocol, and vote aggregators.

Importing this package registers them all: backends in :data:`BACKENDS`, aggregators in
:data:`AGGREGATORS`.
"""

from typing import Any

from curate.registry import Registry

BACKENDS: Registry[Any] = Registry("crowd backend")
AGGREGATORS: Registry[Any] = Registry("aggregator")

from curate.crowd import aggregate, auto, consensus, crowdlab, dawid_skene, given, labelstudio, simulated  # noqa: E402,F401  (register them)
