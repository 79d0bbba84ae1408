"""The write-ahead log (quanta/_storage/wal.py): batch payloads, segments, replay.

Golden cases live in tests/testdata/wal/ (commands, ``----``, expected output; blocks are
separated by blank lines). ``QUANTA_REWRITE=1`` regenerates the expected output.
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

from quanta._storage import wal as walmod
from quanta._storage.format import HEADER_SIZE, MANIFEST_MAGIC, WAL_MAGIC
from quanta._storage.log import LogWriter
from quanta._storage.vfs import FileSystem, MemoryFileSystem
from quanta._storage.wal import WalReplay, WalWriter, decode_batch, encode_batch, replay_wal
from quanta.errors import CorruptionError, LimitExceededError

TESTDATA = Path(__file__).parent.parent / "testdata" / "wal"

# --------------------------------------------------------------------------- golden runner


class WalScript:
    """Interprets the commands of tests/testdata/wal/* on a MemoryFileSystem at /db."""

    def __init__(self) -> None:
        self.fs = MemoryFileSystem()
        self.fs.mkdir("/db")
        self.number = 1
        self.writer: WalWriter | None = None

    @property
    def path(self) -> str:
        return f"/db/{self.number:06d}.wal"

    def _rewrite(self, data: bytes) -> None:
        self.writer = None  # the file is replaced; later appends need a new segment
        f = self.fs.create(self.path)
        f.write(data)
        f.sync()
        self.fs.sync_dir("/db")

    def run(self, line: str) -> list[str]:
        args = shlex.split(line)
        cmd, rest = args[0], args[1:]
        kw = dict(a.split("=", 1) for a in rest if "=" in a)
        try:
            handler: Callable[[list[str], dict[str, str]], list[str]] = getattr(self, "do_" + cmd.replace("-", "_"))
            return handler(rest, kw)
        except CorruptionError as exc:
            return [f"error: {type(exc).__name__}: {exc}"]

    def do_create(self, args: list[str], kw: dict[str, str]) -> list[str]:
        self.number = int(args[0])
        self.writer = WalWriter.create(self.fs, "/db", self.number)
        self.fs.sync_dir("/db")
        return [f"{os.path.basename(self.path)} size={self.writer.size}"]

    def do_append(self, args: list[str], kw: dict[str, str]) -> list[str]:
        assert self.writer is not None, "create a segment first"
        seq, ops = int(args[0]), " ".join(args[1:]).split("/")
        keys: list[bytes] = []
        values: list[bytes | None] = []
        for op in ops:
            words = op.split()
            if words[0] == "put":
                keys.append(words[1].encode())
                values.append(words[2].encode())
            elif words[0] == "del":
                keys.append(words[1].encode())
                values.append(None)
            else:
                raise ValueError(f"unknown op {op!r}")
        start = self.writer.size
        self.writer.append(encode_batch(seq, keys, values))
        return [f"@{start}..{self.writer.size}"]

    def do_sync(self, args: list[str], kw: dict[str, str]) -> list[str]:
        assert self.writer is not None
        self.writer.sync()
        return []

    def do_crash(self, args: list[str], kw: dict[str, str]) -> list[str]:
        self.fs = self.fs.crash(garble_tail="garble" in args, rng=random.Random(int(kw.get("seed", "0"))))
        self.writer = None
        return [f"size={len(self.fs.read_all(self.path))}"] if self.fs.exists(self.path) else ["segment lost"]

    def do_crash_truncate(self, args: list[str], kw: dict[str, str]) -> list[str]:
        data = self.fs.read_all(self.path)
        n = int(args[0])
        self._rewrite(data[:n])  # a negative N drops the last -N bytes
        return [f"size {len(data)} -> {len(self.fs.read_all(self.path))}"]

    def do_flip_bit(self, args: list[str], kw: dict[str, str]) -> list[str]:
        data = bytearray(self.fs.read_all(self.path))
        offset = int(args[0]) % len(data)
        data[offset] ^= 1 << int(args[1] if len(args) > 1 else 0)
        self._rewrite(bytes(data))
        return [f"flipped byte {offset}"]

    def do_append_garbage(self, args: list[str], kw: dict[str, str]) -> list[str]:
        rng = random.Random(int(kw.get("seed", "0")))
        self._rewrite(self.fs.read_all(self.path) + rng.randbytes(int(args[0])))
        return []

    def do_append_zeros(self, args: list[str], kw: dict[str, str]) -> list[str]:
        self._rewrite(self.fs.read_all(self.path) + bytes(int(args[0])))
        return []

    def do_hexdump(self, args: list[str], kw: dict[str, str]) -> list[str]:
        data = self.fs.read_all(self.path)
        lo = int(args[0]) if args else 0
        hi = int(args[1]) if len(args) > 1 else len(data)
        return [f"{o:04d}: {data[o : min(o + 16, hi)].hex(' ')}" for o in range(lo, hi, 16)]

    def do_replay(self, args: list[str], kw: dict[str, str]) -> list[str]:
        number = int(kw.get("number", self.number))
        r = replay_wal(self.fs, self.path, number, salvage="salvage" in args)
        return [*render_batches(r), f"tail={r.tail} valid_end={r.valid_end} dropped={r.dropped_bytes}"]


def render_batches(r: WalReplay) -> list[str]:
    out = []
    for seq, keys, values in r.batches:
        ops = [
            f"put {k.decode()} {v.decode()}" if v is not None else f"del {k.decode()}"
            for k, v in zip(keys, values, strict=True)
        ]
        out.append(f"seq={seq}: " + " / ".join(ops))
    return out


@pytest.mark.parametrize("case", sorted(TESTDATA.glob("*")), ids=lambda p: p.name)
def test_golden(case: Path) -> None:
    run_case_file(case, WalScript().run)


def test_golden_cases_exist() -> None:
    assert len(list(TESTDATA.glob("*"))) >= 5


# --------------------------------------------------------------------------- payloads

keys_st = st.lists(st.binary(max_size=40), max_size=30)


@st.composite
def batches(draw: st.DrawFn) -> tuple[int, list[bytes], list[bytes | None]]:
    keys = draw(keys_st)
    values = draw(st.lists(st.none() | st.binary(max_size=60), min_size=len(keys), max_size=len(keys)))
    return draw(st.integers(0, 2**64 - 1)), keys, values


@settings(max_examples=300)
@given(batches())
def test_batch_round_trip(batch: tuple[int, list[bytes], list[bytes | None]]) -> None:
    seq, keys, values = batch
    assert decode_batch(encode_batch(seq, keys, values), path="p", offset=0) == batch


def test_payload_matches_the_worked_example_in_the_docstring() -> None:
    payload = encode_batch(7, [b"k1", b"k2"], [b"v1", None])
    assert payload == bytes.fromhex("93 07 92 c4 02 6b 31 c4 02 6b 32 92 c4 02 76 31 c0")
    assert "92 c4 02 6b 31" in (walmod.__doc__ or "")


def test_encode_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        encode_batch(1, [b"a", b"b"], [b"x"])


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_decoding_random_bytes_is_corruption_or_a_valid_batch(data: bytes) -> None:
    try:
        seq, keys, values = decode_batch(data, path="/db/000009.wal", offset=77)
    except CorruptionError as exc:
        assert (exc.path, exc.offset) == ("/db/000009.wal", 77)
        return
    assert type(seq) is int and all(type(k) is bytes for k in keys)
    assert all(v is None or type(v) is bytes for v in values) and len(keys) == len(values)


@pytest.mark.parametrize(
    "obj",
    [
        {"a": 1},
        [1, [b"k"]],
        [1, [b"k"], [b"v"], 4],
        [-1, [b"k"], [b"v"]],
        [True, [b"k"], [b"v"]],
        [1.5, [b"k"], [b"v"]],
        [1, [b"k"], [b"v", b"w"]],
        [1, [b"k", b"j"], [b"v"]],
        [1, ["k"], [b"v"]],
        [1, [b"k"], ["v"]],
        [1, [b"k"], [3]],
        [1, [None], [b"v"]],
        [1, [b"k", 2], [b"v", b"w"]],
        [1, [b"k", b"j"], [b"v", [b"w"]]],
        [1, b"k", b"v"],
        [1, [msgpack.ExtType(5, b"x")], [b"v"]],
    ],
)
def test_malformed_payloads_are_corruption(obj: object) -> None:
    with pytest.raises(CorruptionError, match="malformed WAL batch") as ei:
        decode_batch(msgpack.packb(obj, use_bin_type=True), path="/db/w", offset=40)
    assert (ei.value.path, ei.value.offset) == ("/db/w", 40)


def test_payload_with_trailing_bytes_is_corruption() -> None:
    with pytest.raises(CorruptionError, match="not valid msgpack"):
        decode_batch(encode_batch(1, [b"k"], [b"v"]) + b"\x00", path="p", offset=0)


def test_encoding_a_large_batch_needs_no_per_operation_python_work() -> None:
    # Not a timing test: 100k operations must round-trip and stay in one record.
    keys = [b"key%010d" % i for i in range(100_000)]
    values: list[bytes | None] = [b"v" * 100] * 100_000
    payload = encode_batch(1, keys, values)
    assert len(payload) < 100_000 * 120
    assert decode_batch(payload, path="p", offset=0) == (1, keys, values)


# --------------------------------------------------------------------------- segments


def sample_batches(n: int) -> list[tuple[int, list[bytes], list[bytes | None]]]:
    out: list[tuple[int, list[bytes], list[bytes | None]]] = []
    for i in range(n):
        keys = [b"k%d-%d" % (i, j) for j in range(i % 3 + 1)]
        values: list[bytes | None] = [None if (i + j) % 4 == 0 else b"v%d" % j for j in range(len(keys))]
        out.append((10 + 3 * i, keys, values))
    return out


def test_segment_round_trip(fsdir: tuple[FileSystem, str]) -> None:
    fs, d = fsdir
    w = WalWriter.create(fs, d, 12)
    assert (w.number, w.path, w.size) == (12, os.path.join(d, "000012.wal"), HEADER_SIZE)
    batches_ = sample_batches(10)
    for b in batches_:
        w.append(encode_batch(*b))
    w.sync()
    w.close()
    assert w.size == len(fs.read_all(w.path))
    r = replay_wal(fs, w.path, 12)
    assert r.batches == batches_
    assert (r.tail, r.dropped_bytes, r.valid_end, r.last_seq) == ("clean", 0, w.size, batches_[-1][0])


def test_append_many_equals_separate_appends() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    payloads = [encode_batch(*b) for b in sample_batches(6)]
    a = WalWriter.create(fs, "/db", 1)
    for p in payloads:
        a.append(p)
    b = WalWriter.create(fs, "/db", 2)
    fs.ops.clear()
    b.append_many(payloads)
    assert [op.kind for op in fs.ops] == ["write"]
    assert fs.read_all(a.path)[HEADER_SIZE:] == fs.read_all(b.path)[HEADER_SIZE:]
    assert replay_wal(fs, b.path, 2).batches == sample_batches(6)


def test_empty_segment_replays_to_nothing() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    w = WalWriter.create(fs, "/db", 1)
    r = replay_wal(fs, w.path, 1)
    assert (r.batches, r.tail, r.last_seq) == ([], "clean", None)


@pytest.mark.parametrize("second", [10, 9])
def test_sequence_numbers_must_strictly_increase(second: int) -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    w = WalWriter.create(fs, "/db", 1)
    w.append(encode_batch(10, [b"a"], [b"1"]))
    offset = w.size
    w.append(encode_batch(second, [b"b"], [b"2"]))
    with pytest.raises(CorruptionError, match="does not increase") as ei:
        replay_wal(fs, w.path, 1)
    assert (ei.value.path, ei.value.offset) == (w.path, offset)


def test_every_truncation_gives_a_prefix_of_the_batches(fsdir: tuple[FileSystem, str]) -> None:
    fs, d = fsdir
    w = WalWriter.create(fs, d, 1)
    batches_ = sample_batches(5)
    for b in batches_:
        w.append(encode_batch(*b))
    w.close()
    full = fs.read_all(w.path)
    for n in range(HEADER_SIZE, len(full) + 1):
        f = fs.create(w.path)
        f.write(full[:n])
        f.close()
        r = replay_wal(fs, w.path, 1)
        assert r.batches == batches_[: len(r.batches)]
        assert (r.tail == "clean") == (r.valid_end == n)
    assert len(r.batches) == len(batches_)


def test_mid_file_damage_is_corruption_and_salvage_skips_it() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    w = WalWriter.create(fs, "/db", 1)
    batches_ = sample_batches(4)
    offsets = []
    for b in batches_:
        offsets.append(w.size)
        w.append(encode_batch(*b))
    data = bytearray(fs.read_all(w.path))
    data[offsets[1] + 12] ^= 0x40
    f = fs.create(w.path)
    f.write(bytes(data))
    with pytest.raises(CorruptionError, match="checksum mismatch") as ei:
        replay_wal(fs, w.path, 1)
    assert (ei.value.path, ei.value.offset) == ("/db/000001.wal", offsets[1])
    r = replay_wal(fs, w.path, 1, salvage=True)
    assert r.batches == [batches_[0], *batches_[2:]] and r.tail == "salvaged"


def test_checksummed_record_with_a_bad_payload_is_corruption_even_in_salvage() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    log = LogWriter.create(fs, "/db/000001.wal", WAL_MAGIC, 1)
    log.add_record(encode_batch(1, [b"a"], [b"1"]))
    log.add_record(b"\xc1")  # never-used msgpack byte
    for salvage in (False, True):
        with pytest.raises(CorruptionError, match="not valid msgpack"):
            replay_wal(fs, "/db/000001.wal", 1, salvage=salvage)


def test_segment_number_and_kind_are_checked() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    w = WalWriter.create(fs, "/db", 1)
    w.append(encode_batch(1, [b"a"], [b"1"]))
    fs.rename(w.path, "/db/000002.wal")
    with pytest.raises(CorruptionError, match="file number mismatch"):
        replay_wal(fs, "/db/000002.wal", 2)
    LogWriter.create(fs, "/db/000003.wal", MANIFEST_MAGIC, 3)
    with pytest.raises(CorruptionError, match="expected WAL, found a MANIFEST file"):
        replay_wal(fs, "/db/000003.wal", 3)


@pytest.mark.parametrize("garble", [False, True])
def test_crash_loses_no_synced_batch_and_never_half_a_batch(garble: bool) -> None:
    for seed in range(30):
        rng = random.Random(seed)
        fs = MemoryFileSystem()
        fs.mkdir("/db")
        w = WalWriter.create(fs, "/db", 1)
        fs.sync_dir("/db")
        written = sample_batches(rng.randint(0, 10))
        acknowledged = 0
        for i, b in enumerate(written):
            w.append(encode_batch(*b))
            if rng.random() < 0.4:
                w.sync()
                acknowledged = i + 1
        r = replay_wal(fs.crash(garble_tail=garble, rng=rng), w.path, 1)
        assert r.batches == written[: len(r.batches)]
        assert len(r.batches) >= acknowledged


def test_batch_over_the_record_limit_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    from quanta._storage import log as logmod

    monkeypatch.setattr(logmod, "MAX_RECORD_LENGTH", 100)
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    w = WalWriter.create(fs, "/db", 1)
    with pytest.raises(LimitExceededError):
        w.append(encode_batch(1, [b"k"], [b"v" * 200]))
    assert w.size == HEADER_SIZE
