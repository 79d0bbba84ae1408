"""The record log (quanta/_storage/log.py): layout, torn tails, mid-file corruption, salvage."""

from __future__ import annotations

import random
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quanta._storage import log as logmod
from quanta._storage.format import HEADER_SIZE, MANIFEST_MAGIC, WAL_MAGIC, FileHeader
from quanta._storage.log import MAX_RECORD_LENGTH, RECORD_HEADER_SIZE, LogContents, LogWriter, read_log
from quanta._storage.vfs import FaultInjectingFileSystem, FileSystem, MemoryFileSystem
from quanta.errors import CorruptionError, LimitExceededError, StorageIOError


def write_log(fs: FileSystem, path: str, payloads: list[bytes], number: int = 1) -> LogWriter:
    w = LogWriter.create(fs, path, WAL_MAGIC, number)
    for p in payloads:
        w.add_record(p)
    w.sync()
    w.close()
    return w


def rewrite(fs: FileSystem, path: str, data: bytes) -> None:
    f = fs.create(path)
    f.write(data)
    f.sync()
    f.close()


def flip(data: bytes, offset: int, bit: int = 0) -> bytes:
    b = bytearray(data)
    b[offset] ^= 1 << bit
    return bytes(b)


def record(payload: bytes, rtype: int = 1) -> bytes:
    body = struct.pack("<IB", len(payload), rtype) + payload
    return struct.pack("<I", zlib.crc32(body)) + body


PAYLOADS = [b"alpha", b"", b"b" * 300, b"\x01" * 40, b"gamma-delta", b"\x00\x01\x02"]


def test_layout_matches_the_worked_example_in_the_docstring() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    write_log(fs, "/db/x", [b"hello"], number=7)
    data = fs.read_all("/db/x")
    assert data[:HEADER_SIZE] == FileHeader(WAL_MAGIC, 7).encode()
    assert data[HEADER_SIZE:] == bytes.fromhex("0c21cd3e 05000000 01 68656c6c6f")
    assert "0c 21 cd 3e   05 00 00 00   01" in (logmod.__doc__ or "")


def test_round_trip_on_both_file_layers(fsdir: tuple[FileSystem, str]) -> None:
    fs, d = fsdir
    path = f"{d}/000001.wal"
    w = write_log(fs, path, PAYLOADS)
    got = read_log(fs, path, WAL_MAGIC, 1)
    assert got.records == PAYLOADS
    assert got.tail == "clean" and got.dropped_bytes == 0
    assert got.valid_end == got.file_size == w.size == len(fs.read_all(path))
    expected_offsets, pos = [], HEADER_SIZE
    for p in PAYLOADS:
        expected_offsets.append(pos)
        pos += RECORD_HEADER_SIZE + len(p)
    assert got.offsets == expected_offsets


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_round_trip_any_payloads(payloads: list[bytes]) -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    write_log(fs, "/db/l", payloads)
    got = read_log(fs, "/db/l", WAL_MAGIC, 1)
    assert got.records == payloads and got.tail == "clean"


def test_header_only_log_is_clean_and_empty() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    write_log(fs, "/db/l", [])
    assert read_log(fs, "/db/l", WAL_MAGIC, 1) == LogContents([], [], HEADER_SIZE, "clean", 0, HEADER_SIZE)


def test_every_truncation_length_gives_a_prefix_never_an_error(fsdir: tuple[FileSystem, str]) -> None:
    fs, d = fsdir
    path = f"{d}/l"
    write_log(fs, path, PAYLOADS)
    full = fs.read_all(path)
    ends = [*read_log(fs, path, WAL_MAGIC, 1).offsets[1:], len(full)]
    for n in range(HEADER_SIZE, len(full) + 1):
        rewrite(fs, path, full[:n])
        got = read_log(fs, path, WAL_MAGIC, 1)
        complete = sum(1 for e in ends if e <= n)
        assert got.records == PAYLOADS[:complete], n
        assert got.valid_end + got.dropped_bytes == n
        assert got.tail == ("clean" if got.dropped_bytes == 0 else "torn")


def test_zero_byte_file_is_an_empty_torn_log() -> None:
    # Created, then a crash before the header reached the disk.
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    rewrite(fs, "/db/l", b"")
    assert read_log(fs, "/db/l", WAL_MAGIC, 1) == LogContents([], [], 0, "torn", 0, 0)


@pytest.mark.parametrize("n", [1, 8, 16, HEADER_SIZE - 1])
def test_short_header_is_corruption(n: int) -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    write_log(fs, "/db/l", [b"x"])
    rewrite(fs, "/db/l", fs.read_all("/db/l")[:n])
    with pytest.raises(CorruptionError) as ei:
        read_log(fs, "/db/l", WAL_MAGIC, 1)
    assert ei.value.path == "/db/l"


def test_every_bit_flip_in_the_header_is_corruption() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    write_log(fs, "/db/l", [b"x"])
    good = fs.read_all("/db/l")
    for offset in range(HEADER_SIZE):
        for bit in range(8):
            rewrite(fs, "/db/l", flip(good, offset, bit))
            with pytest.raises(CorruptionError) as ei:
                read_log(fs, "/db/l", WAL_MAGIC, 1)
            assert ei.value.path == "/db/l"
            assert ei.value.offset is not None and 0 <= ei.value.offset < HEADER_SIZE


def test_wrong_magic_and_wrong_file_number_are_corruption() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    write_log(fs, "/db/l", [b"x"], number=3)
    with pytest.raises(CorruptionError, match="MANIFEST"):
        read_log(fs, "/db/l", MANIFEST_MAGIC, 3)
    with pytest.raises(CorruptionError, match="file number mismatch") as ei:
        read_log(fs, "/db/l", WAL_MAGIC, 4)
    assert ei.value.offset == 16
    assert read_log(fs, "/db/l", WAL_MAGIC, None).records == [b"x"]


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=200))
def test_garbage_after_the_last_record_is_a_torn_tail(garbage: bytes) -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    write_log(fs, "/db/l", PAYLOADS)
    good = fs.read_all("/db/l")
    rewrite(fs, "/db/l", good + garbage)
    got = read_log(fs, "/db/l", WAL_MAGIC, 1)
    assert got.records == PAYLOADS
    assert got.tail == "torn" and got.dropped_bytes == len(garbage) and got.valid_end == len(good)


def test_zero_filled_tail_is_torn_and_scanned_fast() -> None:
    # Some file systems extend the size before the data lands: the tail reads as zeros.
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    write_log(fs, "/db/l", PAYLOADS)
    rewrite(fs, "/db/l", fs.read_all("/db/l") + bytes(8 << 20))
    got = read_log(fs, "/db/l", WAL_MAGIC, 1)
    assert got.records == PAYLOADS and got.tail == "torn" and got.dropped_bytes == 8 << 20


def test_large_random_tail_is_torn() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    write_log(fs, "/db/l", PAYLOADS)
    rewrite(fs, "/db/l", fs.read_all("/db/l") + random.Random(5).randbytes(1 << 20))
    got = read_log(fs, "/db/l", WAL_MAGIC, 1)
    assert got.records == PAYLOADS and got.tail == "torn"


def test_every_bit_flip_before_the_last_record_names_the_damaged_record() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    payloads = [b"one", b"two-two", b"\x01\x01\x01", b"four"]
    write_log(fs, "/db/l", payloads)
    good = fs.read_all("/db/l")
    offsets = read_log(fs, "/db/l", WAL_MAGIC, 1).offsets
    for k in range(len(payloads) - 1):
        for offset in range(offsets[k], offsets[k + 1]):
            for bit in range(8):
                rewrite(fs, "/db/l", flip(good, offset, bit))
                with pytest.raises(CorruptionError) as ei:
                    read_log(fs, "/db/l", WAL_MAGIC, 1)
                assert (ei.value.path, ei.value.offset) == ("/db/l", offsets[k]), (offset, bit)
                assert "/db/l at offset" in str(ei.value)
                salvaged = read_log(fs, "/db/l", WAL_MAGIC, 1, salvage=True)
                assert salvaged.records == payloads[:k] + payloads[k + 1 :]
                assert salvaged.tail == "salvaged"
                assert salvaged.dropped_bytes == offsets[k + 1] - offsets[k]


def test_damage_in_the_last_record_is_indistinguishable_from_a_torn_write() -> None:
    # A documented limit: the last record's damage is dropped as a torn tail, and reported.
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    write_log(fs, "/db/l", PAYLOADS)
    good = fs.read_all("/db/l")
    rewrite(fs, "/db/l", flip(good, len(good) - 1))
    got = read_log(fs, "/db/l", WAL_MAGIC, 1)
    assert got.records == PAYLOADS[:-1]
    assert got.tail == "torn" and got.dropped_bytes == RECORD_HEADER_SIZE + len(PAYLOADS[-1])


def test_salvage_across_several_damaged_records_and_a_torn_tail() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    payloads = [bytes([i]) * (10 + i) for i in range(8)]
    write_log(fs, "/db/l", payloads)
    good = fs.read_all("/db/l")
    offsets = read_log(fs, "/db/l", WAL_MAGIC, 1).offsets
    bad = flip(flip(good, offsets[1] + 12), offsets[4] + 2) + b"\x99" * 5
    rewrite(fs, "/db/l", bad)
    got = read_log(fs, "/db/l", WAL_MAGIC, 1, salvage=True)
    assert got.records == [p for i, p in enumerate(payloads) if i not in (1, 4)]
    assert got.tail == "salvaged"
    assert got.dropped_bytes == (offsets[2] - offsets[1]) + (offsets[5] - offsets[4]) + 5
    assert got.valid_end == len(good)


def test_unknown_record_type_with_good_checksum_is_corruption_even_at_the_end() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    write_log(fs, "/db/l", [b"a"])
    rewrite(fs, "/db/l", fs.read_all("/db/l") + record(b"future", rtype=7))
    with pytest.raises(CorruptionError, match="unknown record type 7"):
        read_log(fs, "/db/l", WAL_MAGIC, 1)
    rewrite(fs, "/db/l", fs.read_all("/db/l") + record(b"b"))
    got = read_log(fs, "/db/l", WAL_MAGIC, 1, salvage=True)
    assert got.records == [b"a", b"b"] and got.tail == "salvaged"


def test_length_over_the_maximum_is_never_allocated() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    write_log(fs, "/db/l", [b"a", b"b"])
    data = bytearray(fs.read_all("/db/l"))
    struct.pack_into("<I", data, HEADER_SIZE + 4, MAX_RECORD_LENGTH + 1)
    rewrite(fs, "/db/l", bytes(data))
    with pytest.raises(CorruptionError, match="over the limit") as ei:
        read_log(fs, "/db/l", WAL_MAGIC, 1)
    assert ei.value.offset == HEADER_SIZE


def test_a_torn_payload_that_embeds_a_whole_record_is_reported_loudly() -> None:
    # A documented limit: it reads as mid-file damage (loud, salvageable), never silent loss.
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    inner = record(b"looks like a record")
    write_log(fs, "/db/l", [b"a", b"xx" + inner + b"yy"])
    full = fs.read_all("/db/l")
    rewrite(fs, "/db/l", full[:-1])
    with pytest.raises(CorruptionError):
        read_log(fs, "/db/l", WAL_MAGIC, 1)
    assert read_log(fs, "/db/l", WAL_MAGIC, 1, salvage=True).records == [b"a", b"looks like a record"]


@settings(max_examples=300)
@given(st.binary(max_size=400), st.booleans())
def test_any_bytes_after_a_valid_header_give_corruption_or_an_accounted_result(body: bytes, salvage: bool) -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    rewrite(fs, "/db/l", FileHeader(WAL_MAGIC, 1).encode() + body)
    try:
        got = read_log(fs, "/db/l", WAL_MAGIC, 1, salvage=salvage)
    except CorruptionError as exc:
        assert exc.path == "/db/l" and exc.offset is not None
        return
    total = HEADER_SIZE + len(body)
    assert got.file_size == total
    assert sum(RECORD_HEADER_SIZE + len(r) for r in got.records) + got.dropped_bytes == len(body)
    if not salvage:
        assert got.valid_end + got.dropped_bytes == total


@settings(max_examples=100)
@given(st.binary(max_size=200))
def test_random_files_are_corruption_never_another_error(data: bytes) -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    rewrite(fs, "/db/l", data)
    try:
        got = read_log(fs, "/db/l", WAL_MAGIC, None)
    except CorruptionError:
        return
    assert data == b"" and got.tail == "torn"


@pytest.mark.parametrize("n", [1, 100, 4096])
def test_zero_files_are_corruption(n: int) -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    rewrite(fs, "/db/l", bytes(n))
    with pytest.raises(CorruptionError):
        read_log(fs, "/db/l", WAL_MAGIC, None)


@pytest.mark.parametrize("garble", [False, True])
def test_crash_keeps_every_synced_record_and_a_prefix_of_the_rest(garble: bool) -> None:
    for seed in range(40):
        rng = random.Random(seed)
        fs = MemoryFileSystem()
        fs.mkdir("/db")
        w = LogWriter.create(fs, "/db/l", WAL_MAGIC, 1)
        fs.sync_dir("/db")
        written: list[bytes] = []
        synced = 0
        for i in range(rng.randint(0, 12)):
            written.append(rng.randbytes(rng.randint(0, 60)) + bytes([i]))
            w.add_record(written[-1])
            if rng.random() < 0.3:
                w.sync()
                synced = len(written)
        after = fs.crash(garble_tail=garble, rng=rng)
        got = read_log(after, "/db/l", WAL_MAGIC, 1)
        assert got.records == written[: len(got.records)]
        assert len(got.records) >= synced
        assert got.tail in ("clean", "torn")


def test_one_write_call_per_record_and_size_counts_every_byte() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    fs.ops.clear()
    w = LogWriter.create(fs, "/db/l", WAL_MAGIC, 1)
    assert [(op.kind, op.arg) for op in fs.ops] == [("create", None), ("write", HEADER_SIZE), ("sync", None)]
    fs.ops.clear()
    w.add_record(b"abc")
    w.add_record(b"")
    assert [(op.kind, op.arg) for op in fs.ops] == [("write", RECORD_HEADER_SIZE + 3), ("write", RECORD_HEADER_SIZE)]
    assert w.size == len(fs.read_all("/db/l")) == HEADER_SIZE + 2 * RECORD_HEADER_SIZE + 3
    fs.ops.clear()
    w.add_records([b"x", b"yy", b"zzz"])
    w.add_records([])
    assert [op.kind for op in fs.ops] == ["write"]
    assert w.size == len(fs.read_all("/db/l"))
    assert read_log(fs, "/db/l", WAL_MAGIC, 1).records == [b"abc", b"", b"x", b"yy", b"zzz"]


def test_add_records_writes_the_same_bytes_as_add_record() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    one = LogWriter.create(fs, "/db/a", WAL_MAGIC, 1)
    for p in PAYLOADS:
        one.add_record(p)
    many = LogWriter.create(fs, "/db/b", WAL_MAGIC, 1)
    many.add_records(PAYLOADS)
    assert fs.read_all("/db/a") == fs.read_all("/db/b")


def test_record_over_the_limit_is_rejected_before_anything_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logmod, "MAX_RECORD_LENGTH", 10)
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    w = LogWriter.create(fs, "/db/l", WAL_MAGIC, 1)
    before = fs.read_all("/db/l")
    with pytest.raises(LimitExceededError):
        w.add_record(b"x" * 11)
    with pytest.raises(LimitExceededError):
        w.add_records([b"ok", b"x" * 11])
    assert fs.read_all("/db/l") == before
    w.add_record(b"x" * 10)
    assert read_log(fs, "/db/l", WAL_MAGIC, 1).records == [b"x" * 10]


def assert_unusable(fs: FaultInjectingFileSystem, w: LogWriter) -> None:
    n_ops = len(fs.ops)
    with pytest.raises(StorageIOError, match="unusable"):
        w.add_record(b"second")
    with pytest.raises(StorageIOError, match="unusable"):
        w.sync()
    assert len(fs.ops) == n_ops  # nothing more reached the file


def test_writer_refuses_records_after_a_failed_write() -> None:
    fs = FaultInjectingFileSystem(5)  # 1 mkdir, 2 create, 3 header write, 4 header sync, 5 record
    fs.mkdir("/db")
    w = LogWriter.create(fs, "/db/l", WAL_MAGIC, 1)
    with pytest.raises(StorageIOError, match="injected"):
        w.add_record(b"first")
    assert_unusable(fs, w)


def test_writer_refuses_records_after_a_failed_sync() -> None:
    fs = FaultInjectingFileSystem(6)  # ... 5 record write, 6 its sync
    fs.mkdir("/db")
    w = LogWriter.create(fs, "/db/l", WAL_MAGIC, 1)
    w.add_record(b"first")
    with pytest.raises(StorageIOError, match="injected"):
        w.sync()
    assert_unusable(fs, w)


def test_failed_create_closes_the_file() -> None:
    fs = FaultInjectingFileSystem(3)  # the header write
    fs.mkdir("/db")
    with pytest.raises(StorageIOError):
        LogWriter.create(fs, "/db/l", WAL_MAGIC, 1)


def test_closed_writer_refuses_records() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    w = LogWriter.create(fs, "/db/l", WAL_MAGIC, 1)
    w.close()
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.add_record(b"x")
