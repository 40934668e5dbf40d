"""Export writers: one module per format behind one interface, chosen in YAML as ``export.formats``.

A writer is a class with a ``name`` (its ``type``), a ``Config`` beside it and
``write(table, root, ctx) -> table``: it writes its files under ``root`` (the export being built, see
:mod:`curate.atomic`) and returns the table, possibly with columns of its own (the ImageNet writer
adds ``path``). The ``export`` stage selects the images, assigns the split and writes ``labels.csv``
and ``datasheet.json`` beside what the writers wrote.
"""

from typing import Any

from curate.registry import Registry

WRITERS: Registry[Any] = Registry("export writer")


def create_writer(config: Any) -> Any:
    return WRITERS.get(config.type)(config)


from curate.exporters import hf_imagefolder, imagenet, webdataset  # noqa: E402,F401  (register the writers)
