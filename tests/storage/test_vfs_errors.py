"""The file layer's error contract (quanta/_storage/vfs.py): every ``OSFileSystem`` method
raises ``StorageIOError`` carrying the errno and the path, never a bare ``OSError``, on real
files (the engine, backups and readers rely on ``errno`` to tell a vanished file from damage)."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quanta._storage.vfs import OSFileSystem
from quanta.errors import StorageIOError


def _calls(tmp: Path) -> dict[str, tuple[Callable[[], Any], int]]:
    fs = OSFileSystem()
    missing = str(tmp / "missing" / "file")
    a_file = tmp / "file"
    a_file.write_bytes(b"x")
    return {
        "create in a missing directory": (lambda: fs.create(missing), errno.ENOENT),
        "open_read of a missing file": (lambda: fs.open_read(missing), errno.ENOENT),
        "read_all of a missing file": (lambda: fs.read_all(missing), errno.ENOENT),
        "rename of a missing file": (lambda: fs.rename(missing, str(tmp / "other")), errno.ENOENT),
        "remove of a directory": (lambda: fs.remove(str(tmp)), errno.EISDIR),
        "link of a missing file": (lambda: fs.link(missing, str(tmp / "linked")), errno.ENOENT),
        "link onto an existing file": (lambda: fs.link(str(a_file), str(a_file)), errno.EEXIST),
        "listdir of a missing directory": (lambda: fs.listdir(str(tmp / "missing")), errno.ENOENT),
        "mkdir below a file": (lambda: fs.mkdir(str(a_file / "sub")), errno.ENOTDIR),
        "sync_dir of a missing directory": (lambda: fs.sync_dir(str(tmp / "missing")), errno.ENOENT),
    }


CASES = [
    "create in a missing directory",
    "open_read of a missing file",
    "read_all of a missing file",
    "rename of a missing file",
    "remove of a directory",
    "link of a missing file",
    "link onto an existing file",
    "listdir of a missing directory",
    "mkdir below a file",
    "sync_dir of a missing directory",
]


@pytest.mark.parametrize("case", CASES)
def test_every_failure_is_a_storage_io_error_with_its_errno(tmp_path: Path, case: str) -> None:
    call, expected = _calls(tmp_path)[case]
    with pytest.raises(StorageIOError) as info:
        call()
    assert info.value.errno == expected, info.value
    assert info.value.path


def test_remove_is_idempotent_and_samefile_of_a_missing_file_is_false(tmp_path: Path) -> None:
    fs = OSFileSystem()
    fs.remove(str(tmp_path / "missing"))  # a file already gone is what remove wanted
    (tmp_path / "a").write_bytes(b"x")
    fs.link(str(tmp_path / "a"), str(tmp_path / "b"))
    assert fs.samefile(str(tmp_path / "a"), str(tmp_path / "b"))
    assert not fs.samefile(str(tmp_path / "a"), str(tmp_path / "missing"))
