"""Names of the files in a database directory.

```
CURRENT            text: the name of the live MANIFEST plus a newline (written via CURRENT.tmp)
LOCK               flock()ed by the writer, which writes its PID into it (advisory, for error messages)
MANIFEST-NNNNNN    log of version edits (which tables exist at which level, WAL number, seqs)
NNNNNN.wal         write-ahead log segment
NNNNNN.sst         sorted string table
*.tmp              a file being written; left over only by a crash, removed on open
BACKUP             in a backup's directory: what the backup holds (backup.py)
BACKUP-PENDING     in a backup's directory while it is written: open() refuses the directory
```
File numbers come from one counter (``next_file_number`` in the manifest), so no two files
ever share a number. These names are part of the on-disk format.
"""

from __future__ import annotations

import os
import re

__all__ = ["BACKUP", "BACKUP_PENDING", "CURRENT", "LOCK", "manifest_name", "parse_name", "table_name", "wal_name"]

CURRENT = "CURRENT"
LOCK = "LOCK"
BACKUP = "BACKUP"
BACKUP_PENDING = "BACKUP-PENDING"

_PATTERN = re.compile(r"^(?:(\d{6,})\.(wal|sst)|MANIFEST-(\d{6,}))$")


def wal_name(number: int) -> str:
    return f"{number:06d}.wal"


def table_name(number: int) -> str:
    return f"{number:06d}.sst"


def manifest_name(number: int) -> str:
    return f"MANIFEST-{number:06d}"


def parse_name(name: str) -> tuple[str, int] | None:
    """``("wal"|"sst"|"manifest", number)`` for a database file name, else ``None``."""
    m = _PATTERN.match(os.path.basename(name))
    if m is None:
        return None
    if m.group(3) is not None:
        return "manifest", int(m.group(3))
    return m.group(2), int(m.group(1))
