"""Export writers: one module per format behind one interface, chosen in YAML as ``export.formats``.

A writer is a class with a ``name`` (its ``type``), a ``Config`` beside it and
``write(table, root, ctx) -> table``: it writes its files under ``root`` (the export being built, see
:mod:`curate.atomic`) and returns the table, possibly with columns of its own (the ImageNet writer
adds ``path``). The ``export`` stage selects the images, assigns the split and writes ``labels.csv``
and ``datasheet.json`` beside what the writers wrote. The registry, :data:`WRITERS`, lives in :mod:`.base`,
which the writer modules import; importing this package registers them all.
"""

from curate.exporters import hf_imagefolder, imagenet, webdataset  # noqa: F401  (register the writers)
from curate.exporters.base import WRITERS, create_writer

__all__ = ["WRITERS", "create_writer"]
