"""The storage engine: bytes in, bytes out. See docs/architecture.md for the tour.

This facade is what the layers above import; the modules behind it are the engine's own.
(``quanta._options`` imports ``vfs`` directly: the engine imports the options, so going
through this facade from there would be circular.)
"""

from . import filenames
from .backup import BackupInfo, backup
from .engine import MAX_SEQ, Engine
from .events import EventKind, SystemEvent
from .format import MANIFEST_MAGIC, SSTABLE_MAGIC, WAL_MAGIC
from .manifest import read_current, replay_manifest
from .sstable import TableReader
from .vfs import FaultInjectingFileSystem, FileSystem, MemoryFileSystem, OSFileSystem
from .wal import replay_wal

__all__ = [
    "MANIFEST_MAGIC",
    "MAX_SEQ",
    "SSTABLE_MAGIC",
    "WAL_MAGIC",
    "BackupInfo",
    "Engine",
    "EventKind",
    "FaultInjectingFileSystem",
    "FileSystem",
    "MemoryFileSystem",
    "OSFileSystem",
    "SystemEvent",
    "TableReader",
    "backup",
    "filenames",
    "read_current",
    "replay_manifest",
    "replay_wal",
]
