"""Crowd annotation: backends (one module each) behind one protocol, and vote aggregators.

Importing this package registers them all: backends in :data:`BACKENDS`, aggregators in
:data:`AGGREGATORS` (both held by :mod:`.base`, which the plug-in modules import).
"""

from curate.crowd import aggregate, auto, consensus, crowdlab, dawid_skene, given, labelstudio, simulated  # noqa: F401  (register them)
from curate.crowd.base import AGGREGATORS, BACKENDS

__all__ = ["AGGREGATORS", "BACKENDS"]
