"""The MANIFEST and CURRENT (quanta/_storage/manifest.py): edits, replay, the CURRENT protocol.

Golden cases live in tests/testdata/manifest/ (commands, ``----``, expected output; blocks
are separated by blank lines). ``QUANTA_REWRITE=1`` regenerates the expected output.
"""

from __future__ import annotations

import os
import random
import shlex
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
from datadriven import run_case_file
from hypothesis import given, settings
from hypothesis import strategies as st

from quanta._storage import manifest as manmod
from quanta._storage.format import HEADER_SIZE
from quanta._storage.manifest import (
    FileMeta,
    ManifestWriter,
    VersionEdit,
    read_current,
    replay_manifest,
    set_current,
)
from quanta._storage.vfs import MemoryFileSystem, Op, OSFileSystem
from quanta._storage.wal import WalWriter
from quanta.errors import CorruptionError, StorageIOError

TESTDATA = Path(__file__).parent.parent / "testdata" / "manifest"

# --------------------------------------------------------------------------- golden runner


def parse_edit(args: list[str]) -> VersionEdit:
    """``log=N next=N seq=N add=L:NUM:SMALLEST:LARGEST:MINSEQ:MAXSEQ:ENTRIES:SIZE del=L:NUM``"""
    edit = VersionEdit()
    for arg in args:
        key, value = arg.split("=", 1)
        if key == "log":
            edit.log_number = int(value)
        elif key == "next":
            edit.next_file_number = int(value)
        elif key == "seq":
            edit.last_seq = int(value)
        elif key == "add":
            level, num, lo, hi, s0, s1, entries, size = value.split(":")
            meta = FileMeta(int(num), int(size), lo.encode(), hi.encode(), int(s0), int(s1), int(entries))
            edit.added.append((int(level), meta))
        elif key == "del":
            level, num = value.split(":")
            edit.deleted.append((int(level), int(num)))
        else:
            raise ValueError(f"unknown edit field {arg!r}")
    return edit


def render_edit(edit: VersionEdit) -> str:
    parts = []
    for name, value in (("log", edit.log_number), ("next", edit.next_file_number), ("seq", edit.last_seq)):
        if value is not None:
            parts.append(f"{name}={value}")
    for level, m in edit.added:
        lo, hi = m.smallest.decode(), m.largest.decode()
        parts.append(f"add L{level} #{m.number} {lo}..{hi} seq={m.min_seq}..{m.max_seq} n={m.entries} size={m.size}")
    for level, num in edit.deleted:
        parts.append(f"del L{level} #{num}")
    return " | ".join(parts) or "(empty)"


class ManifestScript:
    """Interprets the commands of tests/testdata/manifest/* on a MemoryFileSystem at /db."""

    def __init__(self) -> None:
        self.fs = MemoryFileSystem()
        self.fs.mkdir("/db")
        self.writer: ManifestWriter | None = None
        self.number = 0
        self.fail_next: str | None = None
        self.seen_ops = 0

    @property
    def path(self) -> str:
        return f"/db/MANIFEST-{self.number:06d}"

    def _hook(self, op: Op) -> None:
        if self.fail_next == op.kind:
            self.fail_next = None
            raise StorageIOError(f"{op.kind} failed for {op.path} (injected)", errno=5, path=op.path)

    def _rewrite(self, path: str, data: bytes) -> None:
        f = self.fs.create(path)
        f.write(data)
        f.sync()
        self.fs.sync_dir("/db")

    def run(self, line: str) -> list[str]:
        args = shlex.split(line)
        self.fs.fail_hook = self._hook
        try:
            handler: Callable[[list[str]], list[str]] = getattr(self, "do_" + args[0].replace("-", "_"))
            return handler(args[1:])
        except (CorruptionError, StorageIOError) as exc:
            return [f"error: {type(exc).__name__}: {exc}"]

    def do_create(self, args: list[str]) -> list[str]:
        self.number = int(args[0])
        self.writer = ManifestWriter.create(self.fs, "/db", self.number, parse_edit(args[1:]))
        return [f"MANIFEST-{self.number:06d} size={self.writer.size}"]

    def do_edit(self, args: list[str]) -> list[str]:
        assert self.writer is not None
        start = self.writer.size
        self.writer.append(parse_edit(args))
        return [f"@{start}..{self.writer.size}"]

    def do_replay(self, args: list[str]) -> list[str]:
        """``replay [number=N]``: the manifest last created, its header checked against N."""
        kw = dict(a.split("=", 1) for a in args)
        edits = replay_manifest(self.fs, self.path, int(kw.get("number", self.number)))
        return [render_edit(e) for e in edits]

    def do_replay_current(self, args: list[str]) -> list[str]:
        """What recovery does: read CURRENT, then replay the manifest it names."""
        number = read_current(self.fs, "/db")
        edits = replay_manifest(self.fs, f"/db/MANIFEST-{number:06d}", number)
        return [f"MANIFEST-{number:06d}:", *(render_edit(e) for e in edits)]

    def do_set_current(self, args: list[str]) -> list[str]:
        set_current(self.fs, "/db", int(args[0]))
        return []

    def do_read_current(self, args: list[str]) -> list[str]:
        return [f"MANIFEST-{read_current(self.fs, '/db'):06d}"]

    def do_cat(self, args: list[str]) -> list[str]:
        return [repr(self.fs.read_all(f"/db/{args[0]}"))]

    def do_write_current(self, args: list[str]) -> list[str]:
        self._rewrite("/db/CURRENT", args[0].encode().decode("unicode_escape").encode("latin-1"))
        return []

    def do_fail_next(self, args: list[str]) -> list[str]:
        self.fail_next = args[0]
        return []

    def do_ops(self, args: list[str]) -> list[str]:
        ops = self.fs.ops[self.seen_ops :]
        self.seen_ops = len(self.fs.ops)
        return [" ".join(str(x) for x in (op.kind, op.path, op.arg) if x is not None) for op in ops]

    def do_ls(self, args: list[str]) -> list[str]:
        return [" ".join(self.fs.listdir("/db")) or "(empty)"]

    def do_crash(self, args: list[str]) -> list[str]:
        self.fs = self.fs.crash(keep_unsynced_dir_entries="keep-dir" in args, rng=random.Random(0))
        self.writer = None
        self.seen_ops = 0
        return self.do_ls([])

    def do_crash_truncate(self, args: list[str]) -> list[str]:
        data = self.fs.read_all(self.path)
        self._rewrite(self.path, data[: int(args[0])])  # a negative N drops the last -N bytes
        return [f"size {len(data)} -> {len(self.fs.read_all(self.path))}"]

    def do_flip_bit(self, args: list[str]) -> list[str]:
        data = bytearray(self.fs.read_all(self.path))
        offset = int(args[0]) % len(data)
        data[offset] ^= 1 << int(args[1] if len(args) > 1 else 0)
        self._rewrite(self.path, bytes(data))
        return [f"flipped byte {offset}"]


@pytest.mark.parametrize("case", sorted(TESTDATA.glob("*")), ids=lambda p: p.name)
def test_golden(case: Path) -> None:
    run_case_file(case, ManifestScript().run)


def test_golden_cases_exist() -> None:
    assert len(list(TESTDATA.glob("*"))) >= 4


# --------------------------------------------------------------------------- encodings

uint = st.integers(0, 2**64 - 1)
metas = st.builds(FileMeta, uint, uint, st.binary(max_size=20), st.binary(max_size=20), uint, uint, uint)
levels = st.integers(0, 6)
edits = st.builds(
    VersionEdit,
    st.none() | uint,
    st.none() | uint,
    st.none() | uint,
    st.lists(st.tuples(levels, metas), max_size=5),
    st.lists(st.tuples(levels, uint), max_size=5),
)


@settings(max_examples=300)
@given(metas)
def test_file_meta_wire_round_trip(meta: FileMeta) -> None:
    wire = meta.to_wire()
    assert FileMeta.from_wire(msgpack.unpackb(msgpack.packb(wire))) == meta


@settings(max_examples=300)
@given(edits)
def test_version_edit_round_trip(edit: VersionEdit) -> None:
    assert VersionEdit.decode(edit.encode(), path="p", offset=0) == edit


def test_edit_encoding_matches_the_worked_example_in_the_docstring() -> None:
    edit = VersionEdit(added=[(0, FileMeta(7, 4096, b"a", b"f", 1, 20, 20))], deleted=[(1, 3)])
    expected = "82 a1 61 91 92 00 97 07 cd 10 00 c4 01 61 c4 01 66 01 14 14 a1 64 91 92 01 03"
    assert edit.encode() == bytes.fromhex(expected)
    assert "a1 64  91 92 01 03" in (manmod.__doc__ or "")


def test_empty_edit_is_an_empty_map() -> None:
    assert VersionEdit().encode() == b"\x80"
    assert VersionEdit.decode(b"\x80", path="p", offset=0) == VersionEdit()


@pytest.mark.parametrize(
    "wire",
    [
        [1, 2, b"a", b"b", 1, 2],
        [1, 2, b"a", b"b", 1, 2, 3, 4],
        [-1, 2, b"a", b"b", 1, 2, 3],
        [1, 2, "a", b"b", 1, 2, 3],
        [1, 2, b"a", None, 1, 2, 3],
        [1, 2.0, b"a", b"b", 1, 2, 3],
        [True, 2, b"a", b"b", 1, 2, 3],
        {"n": 1},
        b"xx",
    ],
)
def test_bad_file_meta_wire_is_corruption(wire: object) -> None:
    with pytest.raises(CorruptionError) as ei:
        FileMeta.from_wire(wire, path="/db/MANIFEST-000002", offset=32)
    assert (ei.value.path, ei.value.offset) == ("/db/MANIFEST-000002", 32)


@pytest.mark.parametrize(
    "obj",
    [
        [1, 2],
        {"x": 1},
        {"l": -1},
        {"n": "5"},
        {"s": 1.0},
        {"l": True},
        {"a": [[0]]},
        {"a": [[-1, [1, 2, b"a", b"b", 1, 2, 3]]]},
        {"a": [[0, [1, 2, b"a", b"b", 1, 2]]]},
        {"a": {"0": 1}},
        {"d": [[0, -3]]},
        {"d": [[0, b"3"]]},
        {"d": [0, 3]},
        {b"l": 1},
    ],
)
def test_malformed_edits_are_corruption(obj: object) -> None:
    with pytest.raises(CorruptionError) as ei:
        VersionEdit.decode(msgpack.packb(obj, use_bin_type=True), path="/db/M", offset=99)
    assert (ei.value.path, ei.value.offset) == ("/db/M", 99)


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_decoding_random_bytes_is_corruption_or_a_valid_edit(data: bytes) -> None:
    try:
        edit = VersionEdit.decode(data, path="p", offset=0)
    except CorruptionError:
        return
    assert VersionEdit.decode(edit.encode(), path="p", offset=0) == edit


# --------------------------------------------------------------------------- manifest files


def base_edit() -> VersionEdit:
    return VersionEdit(
        log_number=4, next_file_number=9, last_seq=100, added=[(0, FileMeta(5, 10, b"a", b"z", 1, 9, 3))]
    )


@pytest.mark.parametrize("kind", ["memory", "os"])
def test_manifest_round_trip(kind: str, tmp_path: Path) -> None:
    fs = MemoryFileSystem() if kind == "memory" else OSFileSystem()
    d = "/db" if kind == "memory" else str(tmp_path)
    fs.mkdir(d)
    w = ManifestWriter.create(fs, d, 6, base_edit())
    assert (w.number, w.path) == (6, os.path.join(d, "MANIFEST-000006"))
    more = [VersionEdit(deleted=[(0, 5)]), VersionEdit(last_seq=200, added=[(1, FileMeta(7, 1, b"b", b"c", 2, 3, 1))])]
    for e in more:
        w.append(e)
    w.close()
    assert w.size == len(fs.read_all(w.path))
    assert replay_manifest(fs, w.path, 6) == [base_edit(), *more]


def test_create_syncs_the_base_and_append_syncs_every_edit() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    fs.ops.clear()
    w = ManifestWriter.create(fs, "/db", 2, base_edit())
    p = "/db/MANIFEST-000002"
    assert [(op.kind, op.path) for op in fs.ops] == [
        ("create", p),
        ("write", p),
        ("sync", p),
        ("write", p),
        ("sync", p),
    ]
    fs.ops.clear()
    w.append(VersionEdit(last_seq=5))
    assert [op.kind for op in fs.ops] == ["write", "sync"]
    # what a crash keeps is exactly what was acknowledged (directory synced for the test)
    fs.sync_dir("/db")
    assert replay_manifest(fs.crash(), p, 2) == [base_edit(), VersionEdit(last_seq=5)]


def test_torn_manifest_tail_is_tolerated_but_the_base_is_required() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    w = ManifestWriter.create(fs, "/db", 2, base_edit())
    base_end = w.size
    edits = [VersionEdit(last_seq=i) for i in range(1, 6)]
    for e in edits:
        w.append(e)
    full = fs.read_all(w.path)
    for n in range(HEADER_SIZE, len(full) + 1):
        f = fs.create(w.path)
        f.write(full[:n])
        if n < base_end:
            with pytest.raises(CorruptionError, match="no base version edit"):
                replay_manifest(fs, w.path, 2)
        else:
            got = replay_manifest(fs, w.path, 2)
            assert got[0] == base_edit() and got[1:] == edits[: len(got) - 1]


def test_mid_file_damage_in_a_manifest_is_corruption() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    w = ManifestWriter.create(fs, "/db", 2, base_edit())
    w.append(VersionEdit(last_seq=1))
    data = bytearray(fs.read_all(w.path))
    data[HEADER_SIZE + 15] ^= 1
    f = fs.create(w.path)
    f.write(bytes(data))
    with pytest.raises(CorruptionError, match="checksum mismatch") as ei:
        replay_manifest(fs, w.path, 2)
    assert (ei.value.path, ei.value.offset) == (w.path, HEADER_SIZE)


def test_a_wal_is_not_a_manifest() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    WalWriter.create(fs, "/db", 2)
    fs.rename("/db/000002.wal", "/db/MANIFEST-000002")
    with pytest.raises(CorruptionError, match="expected MANIFEST, found a WAL file"):
        replay_manifest(fs, "/db/MANIFEST-000002", 2)


# --------------------------------------------------------------------------- CURRENT


def test_set_current_follows_the_protocol_in_order() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    fs.ops.clear()
    set_current(fs, "/db", 5)
    assert [(op.kind, op.path, op.arg) for op in fs.ops] == [
        ("create", "/db/CURRENT.tmp", None),
        ("write", "/db/CURRENT.tmp", len(fs.read_all("/db/CURRENT"))),
        ("sync", "/db/CURRENT.tmp", None),
        ("rename", "/db/CURRENT.tmp", "/db/CURRENT"),
        ("sync_dir", "/db", None),
    ]
    assert fs.read_all("/db/CURRENT") == b"MANIFEST-000005\ncrc32 f486b7ba\n"
    assert read_current(fs, "/db") == 5
    assert not fs.exists("/db/CURRENT.tmp")


@pytest.mark.parametrize("kind", ["memory", "os"])
def test_current_round_trip(kind: str, tmp_path: Path) -> None:
    fs = MemoryFileSystem() if kind == "memory" else OSFileSystem()
    d = "/db" if kind == "memory" else str(tmp_path)
    fs.mkdir(d)
    for n in (1, 999_999, 1_234_567):
        set_current(fs, d, n)
        assert read_current(fs, d) == n


def test_missing_current_is_a_storage_error() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    with pytest.raises(StorageIOError):
        read_current(fs, "/db")


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"MANIFEST-000005\n",
        b"MANIFEST-000005",
        b"MANIFEST-000005\ncrc32 f486b7ba",
        b"MANIFEST-000005\ncrc32 f486b7ba\n\n",
        b"MANIFEST-000006\ncrc32 f486b7ba\n",
        b"MANIFEST-000005\ncrc32 F486B7BA\n",
        b"MANIFEST-5\ncrc32 f486b7ba\n",
        b"000005.wal\ncrc32 f486b7ba\n",
        b"\x00" * 31,
        b"\xff\xfe garbage",
    ],
)
def test_garbage_current_is_corruption_naming_current(text: bytes) -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    f = fs.create("/db/CURRENT")
    f.write(text)
    with pytest.raises(CorruptionError) as ei:
        read_current(fs, "/db")
    assert ei.value.path == "/db/CURRENT"


def test_every_bit_flip_in_current_is_detected() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    set_current(fs, "/db", 5)
    good = fs.read_all("/db/CURRENT")
    for offset in range(len(good)):
        for bit in range(8):
            data = bytearray(good)
            data[offset] ^= 1 << bit
            f = fs.create("/db/CURRENT")
            f.write(bytes(data))
            with pytest.raises(CorruptionError):
                read_current(fs, "/db")


def make_db_with_two_manifests() -> tuple[MemoryFileSystem, list[Op]]:
    """MANIFEST-2 current and durable, then the switch to MANIFEST-3; returns the switch's ops."""
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    ManifestWriter.create(fs, "/db", 2, base_edit())
    set_current(fs, "/db", 2)
    start = len(fs.ops)
    ManifestWriter.create(fs, "/db", 3, VersionEdit(log_number=8))
    set_current(fs, "/db", 3)
    return fs, fs.ops[start:]


def test_a_crash_at_any_point_of_the_switch_leaves_a_readable_current() -> None:
    _, switch_ops = make_db_with_two_manifests()
    for fail_at in range(len(switch_ops) + 1):
        for keep_dir in (False, True):
            fs = MemoryFileSystem()
            fs.mkdir("/db")
            ManifestWriter.create(fs, "/db", 2, base_edit())
            set_current(fs, "/db", 2)
            count = 0

            def hook(op: Op, fail_at: int = fail_at) -> None:
                nonlocal count
                count += 1
                if count == fail_at + 1:
                    raise StorageIOError("power loss", errno=5, path=op.path)

            fs.fail_hook = hook
            try:
                ManifestWriter.create(fs, "/db", 3, VersionEdit(log_number=8))
                set_current(fs, "/db", 3)
                finished = True
            except StorageIOError:
                finished = False
            after = fs.crash(keep_unsynced_dir_entries=keep_dir)
            number = read_current(after, "/db")
            assert number in (2, 3)
            if finished:
                assert number == 3
            edits = replay_manifest(after, f"/db/MANIFEST-{number:06d}", number)
            assert edits == ([base_edit()] if number == 2 else [VersionEdit(log_number=8)])


def test_crash_after_set_current_without_sync_dir_keeps_old_or_new() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    ManifestWriter.create(fs, "/db", 2, base_edit())
    set_current(fs, "/db", 2)
    ManifestWriter.create(fs, "/db", 3, VersionEdit(log_number=8))

    def no_sync_dir(op: Op) -> None:
        if op.kind == "sync_dir":
            raise StorageIOError("crash before the directory sync", errno=5, path=op.path)

    fs.fail_hook = no_sync_dir
    with pytest.raises(StorageIOError):
        set_current(fs, "/db", 3)
    assert read_current(fs, "/db") == 3  # the running process sees the rename
    old = fs.crash()
    assert read_current(old, "/db") == 2
    assert replay_manifest(old, "/db/MANIFEST-000002", 2) == [base_edit()]
    new = fs.crash(keep_unsynced_dir_entries=True)
    assert read_current(new, "/db") == 3
    assert replay_manifest(new, "/db/MANIFEST-000003", 3) == [VersionEdit(log_number=8)]
