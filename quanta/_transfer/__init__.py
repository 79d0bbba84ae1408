"""Export and import: a database's records (and, optionally, kv pairs) to and from a JSON
Lines file. ``format.py`` is the file format, ``exporter.py`` the export (a snapshot, a
chunk at a time), ``importer.py`` the two-pass import (validate everything, then write in
batches) with ``scratch.py``, its on-disk scratch store. The JSON mapping of values is the
entity layer's (``quanta/_entity/jsonmap.py``), shared with ``Query.to_dicts()``.

Sits above the catalog (it reads stored schemas and records an entity's first schema) and
below the database (``quanta/_db.py`` calls it).
"""

from .exporter import Progress, TransferReport, check_path, check_progress, export_jsonl
from .format import FORMAT, FormatVersion
from .importer import ON_CONFLICT, ImportContext, check_on_conflict, header_modules, import_jsonl

__all__ = [
    "FORMAT",
    "ON_CONFLICT",
    "FormatVersion",
    "ImportContext",
    "Progress",
    "TransferReport",
    "check_on_conflict",
    "check_path",
    "check_progress",
    "export_jsonl",
    "header_modules",
    "import_jsonl",
]
