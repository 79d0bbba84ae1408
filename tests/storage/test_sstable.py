"""SSTables (quanta/_storage/sstable.py) and their data blocks (quanta/_storage/block.py).

Golden cases live in tests/testdata/sstable/ (commands, ``----``, expected output; blocks are
separated by blank lines; each file opens with a comment saying why it exists).
``QUANTA_REWRITE=1`` regenerates the expected output.
"""

from __future__ import annotations

import random
import shlex
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgpack
import pytest
from datadriven import run_case_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quanta._storage import block as blockmod
from quanta._storage import sstable as sstmod
from quanta._storage.block import BLOCK_OVERHEAD_BOUND, decode_block, encode_block, entry_overhead, entry_size
from quanta._storage.bloom import build_bloom
from quanta._storage.cache import BlockCache
from quanta._storage.format import BLOCK_TRAILER_SIZE, HEADER_SIZE, checksum, frame_block, unframe_block
from quanta._storage.sstable import FOOTER_SIZE, TableBuilder, TableProperties, TableReader
from quanta._storage.vfs import FileSystem, MemoryFileSystem, OSFileSystem, ReadableFile
from quanta.errors import CorruptionError

TESTDATA = Path(__file__).parent.parent / "testdata" / "sstable"
Entry = tuple[bytes, int, bytes | None]
PATH = "/db/000007.sst"

# --------------------------------------------------------------------------- golden runner


def parse_entry(token: str) -> Entry:
    """``key@seq=value`` (``value*N`` repeats it N times) or ``key@seq`` for a tombstone."""
    key, _, rest = token.partition("@")
    seq, eq, value = rest.partition("=")
    if not eq:
        return key.encode(), int(seq), None
    text, star, count = value.partition("*")
    return key.encode(), int(seq), (text * int(count) if star else text).encode()


def show_value(value: bytes | None) -> str:
    if value is None:
        return "<del>"
    text = value.decode("utf-8", "backslashreplace")
    return text if len(text) <= 24 else f"{text[:8]}...({len(text)} bytes)"


def show_entry(entry: Entry) -> str:
    key, seq, value = entry
    return f"{key.decode('utf-8', 'backslashreplace')}@{seq}={show_value(value)}"


@dataclass
class Region:
    name: str
    offset: int
    size: int


class TableScript:
    """Interprets the commands of tests/testdata/sstable/* on a MemoryFileSystem at /db."""

    def __init__(self) -> None:
        self.fs = MemoryFileSystem()
        self.fs.mkdir("/db")
        self.number = 7
        self.builder: TableBuilder | None = None
        self.reader: TableReader | None = None
        self.cache: BlockCache | None = None
        self.filter = b""

    @property
    def path(self) -> str:
        return f"/db/{self.number:06d}.sst"

    def run(self, line: str) -> list[str]:
        args = shlex.split(line)
        cmd, rest = args[0], args[1:]
        kw = dict(a.split("=", 1) for a in rest if "=" in a and "@" not in a)
        pos = [a for a in rest if "=" not in a or "@" in a]
        try:
            out: list[str] = getattr(self, "do_" + cmd.replace("-", "_"))(pos, kw)
            return out
        except (CorruptionError, ValueError) as exc:
            return [f"error: {type(exc).__name__}: {exc}"]

    # -- building ---------------------------------------------------------------------

    def do_build(self, args: list[str], kw: dict[str, str]) -> list[str]:
        self.number = int(kw.get("number", "7"))
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        file = self.fs.create(self.path)
        self.builder = TableBuilder(
            file,
            self.number,
            block_size=int(kw.get("block_size", "4096")),
            bits_per_key=int(kw.get("bits_per_key", "10")),
        )
        return []

    def do_add(self, args: list[str], kw: dict[str, str]) -> list[str]:
        """One ``add`` call per entry."""
        assert self.builder is not None
        for token in args:
            self.builder.add(*parse_entry(token))
        return []

    def do_add_many(self, args: list[str], kw: dict[str, str]) -> list[str]:
        """One ``add_many`` call with all the entries."""
        assert self.builder is not None
        self.builder.add_many([parse_entry(t) for t in args])
        return []

    def do_gen(self, args: list[str], kw: dict[str, str]) -> list[str]:
        """``gen N [prefix=k] [versions=1] [value=v] [seq=1]``: N keys via add_many."""
        assert self.builder is not None
        n, versions = int(args[0]), int(kw.get("versions", "1"))
        prefix, value, seq = kw.get("prefix", "k"), kw.get("value", "v"), int(kw.get("seq", "1"))
        entries: list[Entry] = []
        for i in range(n):
            for v in range(versions):
                s = seq + i * versions + versions - 1 - v
                entries.append((f"{prefix}{i:04d}".encode(), s, f"{value}{i}.{s}".encode()))
        self.builder.add_many(entries)
        return []

    def do_finish(self, args: list[str], kw: dict[str, str]) -> list[str]:
        assert self.builder is not None
        builder, self.builder = self.builder, None
        p = builder.finish()
        return [
            f"entries={p.entries} tombstones={p.tombstones} blocks={p.num_blocks} size={p.file_size}"
            f" keys={p.smallest.decode()}..{p.largest.decode()} seqs={p.min_seq}..{p.max_seq}"
        ]

    # -- inspecting -------------------------------------------------------------------

    def regions(self) -> list[Region]:
        """The file's regions, parsed from the footer directly (no reader involved)."""
        data = self.fs.read_all(self.path)
        footer_at = len(data) - FOOTER_SIZE
        bloom_at, bloom_size, index_at, index_size, props_at, props_size, *_ = struct.unpack_from(
            "<QIQIQIHH8s", data, footer_at
        )
        _, offsets, sizes = msgpack.unpackb(data[index_at : index_at + index_size - BLOCK_TRAILER_SIZE])
        out = [Region("header", 0, HEADER_SIZE)]
        out += [Region(f"data{i}", o, s) for i, (o, s) in enumerate(zip(offsets, sizes, strict=True))]
        out += [
            Region("bloom", bloom_at, bloom_size),
            Region("index", index_at, index_size),
            Region("props", props_at, props_size),
            Region("footer", footer_at, FOOTER_SIZE),
        ]
        return out

    def do_layout(self, args: list[str], kw: dict[str, str]) -> list[str]:
        data = self.fs.read_all(self.path)
        out = []
        for r in self.regions():
            line = f"{r.name:>7}: offset={r.offset} size={r.size}"
            if r.name.startswith("data"):
                payload = unframe_block(data[r.offset : r.offset + r.size], path=self.path, offset=r.offset)
                b = decode_block(payload)
                line += f" payload={len(payload)} entries={len(b)} {show_entry((b.keys[0], b.seqs[0], b.values[0]))}"
                line += f"..{show_entry((b.keys[-1], b.seqs[-1], b.values[-1]))}"
            elif r.name == "bloom":
                flt = unframe_block(data[r.offset : r.offset + r.size], path=self.path, offset=r.offset)
                line += f" bits={(len(flt) - 1) * 8 if flt else 0} k={flt[-1] if flt else 0}"
            out.append(line)
        out.append(f"   file: size={len(data)}")
        return out

    def do_index(self, args: list[str], kw: dict[str, str]) -> list[str]:
        r = {x.name: x for x in self.regions()}["index"]
        data = self.fs.read_all(self.path)
        last_keys, offsets, sizes = msgpack.unpackb(data[r.offset : r.offset + r.size - BLOCK_TRAILER_SIZE])
        return [f"{k.decode()} -> {o}+{s}" for k, o, s in zip(last_keys, offsets, sizes, strict=True)]

    def do_props(self, args: list[str], kw: dict[str, str]) -> list[str]:
        r = {x.name: x for x in self.regions()}["props"]
        data = self.fs.read_all(self.path)
        props = msgpack.unpackb(data[r.offset : r.offset + r.size - BLOCK_TRAILER_SIZE])
        return [f"{k}={v!r}" for k, v in props.items()]

    def do_hexdump(self, args: list[str], kw: dict[str, str]) -> list[str]:
        data = self.fs.read_all(self.path)
        regions = {r.name: r for r in self.regions()}
        if args and args[0] in regions:
            lo, hi = regions[args[0]].offset, regions[args[0]].offset + regions[args[0]].size
        else:
            lo = int(args[0]) if args else 0
            hi = int(args[1]) if len(args) > 1 else len(data)
        return [f"{o:04d}: {data[o : min(o + 16, hi)].hex(' ')}" for o in range(lo, hi, 16)]

    # -- damaging ---------------------------------------------------------------------

    def _rewrite(self, data: bytes) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        f = self.fs.create(self.path)
        f.write(data)
        f.close()

    def do_flip(self, args: list[str], kw: dict[str, str]) -> list[str]:
        """``flip REGION [delta=N] [bit=B]``: flip one bit of the region (delta < 0 counts from its end)."""
        region = {r.name: r for r in self.regions()}[args[0]]
        delta = int(kw.get("delta", "0"))
        offset = region.offset + (delta if delta >= 0 else region.size + delta)
        bit = int(kw.get("bit", "0"))
        data = bytearray(self.fs.read_all(self.path))
        data[offset] ^= 1 << bit
        self._rewrite(bytes(data))
        return [f"flipped bit {bit} of byte {offset} ({args[0]})"]

    def do_truncate(self, args: list[str], kw: dict[str, str]) -> list[str]:
        data = self.fs.read_all(self.path)
        n = int(args[0])
        self._rewrite(data[:n])
        return [f"size {len(data)} -> {len(self.fs.read_all(self.path))}"]

    def do_append(self, args: list[str], kw: dict[str, str]) -> list[str]:
        self._rewrite(self.fs.read_all(self.path) + bytes.fromhex(args[0]))
        return []

    def do_write_file(self, args: list[str], kw: dict[str, str]) -> list[str]:
        """``write-file zeros=N`` or ``write-file random=N [seed=S]``: replace the file."""
        if "zeros" in kw:
            self._rewrite(bytes(int(kw["zeros"])))
        else:
            self._rewrite(random.Random(int(kw.get("seed", "0"))).randbytes(int(kw["random"])))
        return []

    # -- reading ----------------------------------------------------------------------

    def do_open(self, args: list[str], kw: dict[str, str]) -> list[str]:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if "cache" in kw:
            self.cache = BlockCache(int(kw["cache"]))
        number = int(kw.get("number", self.number))
        self.reader = TableReader.open(self.fs, self.path, number, self.cache)
        p = self.reader.properties
        return [f"ok: {p.entries} entries in {self.reader.num_blocks} blocks"]

    def do_get(self, args: list[str], kw: dict[str, str]) -> list[str]:
        """``get KEY@SNAPSHOT ...``"""
        assert self.reader is not None, "open first"
        out = []
        for token in args:
            key, _, snap = token.partition("@")
            try:
                found = self.reader.get(key.encode(), int(snap))
            except CorruptionError as exc:
                out.append(f"{token}: error: {exc}")
                continue
            out.append(f"{token}: " + ("not found" if found is None else f"seq={found[0]} {show_value(found[1])}"))
        return out

    def do_may_contain(self, args: list[str], kw: dict[str, str]) -> list[str]:
        assert self.reader is not None, "open first"
        return [f"{k}: {'maybe' if self.reader.may_contain(k.encode()) else 'no'}" for k in args]

    def _scan(self, it: Iterator[Entry]) -> list[str]:
        out = []
        try:
            for e in it:
                out.append(show_entry(e))
        except CorruptionError as exc:
            out.append(f"error: CorruptionError: {exc}")
        return [" ".join(out[i : i + 8]) for i in range(0, len(out), 8)] or ["(empty)"]

    def do_scan(self, args: list[str], kw: dict[str, str]) -> list[str]:
        assert self.reader is not None, "open first"
        return self._scan(self.reader.iter_entries(kw["start"].encode() if "start" in kw else None))

    def do_rscan(self, args: list[str], kw: dict[str, str]) -> list[str]:
        assert self.reader is not None, "open first"
        return self._scan(self.reader.iter_entries_reverse(kw["stop"].encode() if "stop" in kw else None))

    def do_verify(self, args: list[str], kw: dict[str, str]) -> list[str]:
        assert self.reader is not None, "open first"
        return [f"ok: {self.reader.verify()} entries"]

    def do_cache_stats(self, args: list[str], kw: dict[str, str]) -> list[str]:
        assert self.cache is not None
        s = self.cache.stats
        return [f"hits={s.hits} misses={s.misses} entries={s.entries} bytes={s.bytes}"]

    # -- blocks and filters on their own ------------------------------------------------

    def do_encode_block(self, args: list[str], kw: dict[str, str]) -> list[str]:
        entries = [parse_entry(t) for t in args]
        payload = encode_block([e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries])
        frame = frame_block(payload)
        out = [f"payload {len(payload)} bytes, frame {len(frame)} bytes"]
        out += [f"{o:04d}: {frame[o : o + 16].hex(' ')}" for o in range(0, len(frame), 16)]
        return out

    def do_bloom(self, args: list[str], kw: dict[str, str]) -> list[str]:
        """``bloom BITS_PER_KEY KEY...``: build a filter; print its size, k and bytes."""
        self.filter = build_bloom([a.encode() for a in args[1:]], int(args[0]))
        if not self.filter:
            return ["no filter (empty payload)"]
        out = [f"{len(self.filter)} bytes, {(len(self.filter) - 1) * 8} bits, k={self.filter[-1]}"]
        out += [f"{o:04d}: {self.filter[o : o + 16].hex(' ')}" for o in range(0, min(len(self.filter), 64), 16)]
        return out

    def do_probe(self, args: list[str], kw: dict[str, str]) -> list[str]:
        from quanta._storage.bloom import bloom_may_contain

        return [" ".join(f"{a}={'maybe' if bloom_may_contain(self.filter, a.encode()) else 'no'}" for a in args)]


@pytest.mark.parametrize("case", sorted(TESTDATA.glob("*")), ids=lambda p: p.name)
def test_golden(case: Path) -> None:
    run_case_file(case, TableScript().run)


def test_golden_cases_exist() -> None:
    assert len(list(TESTDATA.glob("*"))) >= 6


# --------------------------------------------------------------------------- helpers


def build_table(
    entries: Sequence[Entry],
    *,
    fs: FileSystem | None = None,
    path: str = PATH,
    number: int = 7,
    block_size: int = 4096,
    bits_per_key: int = 10,
    mode: str = "many",
    chunk: int = 3,
) -> tuple[FileSystem, TableProperties]:
    """Write ``entries`` as a table: ``mode`` is "many" (one add_many), "add" (add each),
    or "mixed" (chunks of ``chunk`` entries alternating between add_many and add)."""
    if fs is None:
        fs = MemoryFileSystem()
        fs.mkdir("/db")
    file = fs.create(path)
    b = TableBuilder(file, number, block_size=block_size, bits_per_key=bits_per_key)
    if mode == "many":
        b.add_many(entries)
    elif mode == "add":
        for e in entries:
            b.add(*e)
    else:
        for i in range(0, len(entries), chunk):
            part = entries[i : i + chunk]
            if (i // chunk) % 2:
                for e in part:
                    b.add(*e)
            else:
                b.add_many(part)
    props = b.finish()
    file.sync()
    file.close()
    return fs, props


def model_get(entries: Sequence[Entry], key: bytes, snapshot: int) -> tuple[int, bytes | None] | None:
    for k, s, v in entries:  # newest first within a key
        if k == key and s <= snapshot:
            return s, v
    return None


def make_entries(n: int, versions: int = 1, value_size: int = 20, seed: int = 0) -> list[Entry]:
    rng = random.Random(seed)
    out: list[Entry] = []
    for i in range(n):
        for v in range(versions):
            seq = i * versions + versions - v
            value = None if rng.random() < 0.1 else rng.randbytes(rng.randrange(value_size + 1))
            out.append((b"key%05d" % i, seq, value))
    return out


@st.composite
def tables(draw: st.DrawFn) -> list[Entry]:
    """Sorted entries: distinct keys, 1-4 versions each with distinct seqs, some tombstones."""
    keys = sorted(draw(st.sets(st.binary(max_size=12), min_size=1, max_size=60)))
    entries: list[Entry] = []
    for key in keys:
        seqs = sorted(
            draw(st.sets(st.integers(0, 2**64 - 1) | st.integers(0, 50), min_size=1, max_size=4)), reverse=True
        )
        for seq in seqs:
            value = draw(st.none() | st.binary(max_size=300))
            entries.append((key, seq, value))
    return entries


# --------------------------------------------------------------------------- round trips


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tables(),
    st.integers(64, 4096) | st.sampled_from([64, 100, 128]),
    st.sampled_from([0, 1, 8, 10, 16, 32]),
    st.sampled_from(["many", "add", "mixed"]),
    st.sampled_from([None, 0, 300, 1 << 20]),
    st.data(),
)
def test_round_trip_matches_the_model(
    entries: list[Entry], block_size: int, bits_per_key: int, mode: str, cache_bytes: int | None, data: st.DataObject
) -> None:
    fs, props = build_table(entries, block_size=block_size, bits_per_key=bits_per_key, mode=mode, chunk=5)
    assert (props.entries, props.smallest, props.largest) == (len(entries), entries[0][0], entries[-1][0])
    assert props.min_seq == min(e[1] for e in entries) and props.max_seq == max(e[1] for e in entries)
    assert props.tombstones == sum(e[2] is None for e in entries)
    assert props.file_size == len(fs.read_all(PATH))
    cache = None if cache_bytes is None else BlockCache(cache_bytes)
    with TableReader.open(fs, PATH, 7, cache) as reader:
        assert reader.properties == props
        assert list(reader.iter_entries()) == entries
        assert list(reader.iter_entries_reverse()) == entries[::-1]
        keys = sorted({e[0] for e in entries})
        probes = keys + [k + b"\x00" for k in keys] + [b"", b"\xff" * 13] + data.draw(st.lists(st.binary(max_size=12)))
        seqs = sorted({e[1] for e in entries})
        snaps = [0, 2**64 - 1, *seqs, *(s - 1 for s in seqs if s), *(s + 1 for s in seqs)]
        for key in probes:
            for snap in data.draw(st.lists(st.sampled_from(snaps), min_size=1, max_size=4)):
                assert reader.get(key, snap) == model_get(entries, key, snap), (key, snap)
            assert reader.may_contain(key) or key not in keys
            assert list(reader.iter_entries(key)) == [e for e in entries if e[0] >= key]
            assert list(reader.iter_entries_reverse(key)) == [e for e in entries if e[0] < key][::-1]
        assert reader.verify() == len(entries)
        # Every block holds what the builder promised.
        for i in range(reader.num_blocks):
            b = reader.read_block(i)
            payload_size = reader._sizes[i] - BLOCK_TRAILER_SIZE
            assert payload_size <= block_size or len(b) == 1
            assert b.keys[-1] == reader.last_keys[i]


@settings(max_examples=60, deadline=None)
@given(tables(), st.integers(64, 600))
def test_add_cuts_a_block_only_when_the_next_entry_would_not_fit(entries: list[Entry], block_size: int) -> None:
    """With ``add`` sizes are exact, so no block could have taken the next block's first entry."""
    fs, _ = build_table(entries, block_size=block_size, mode="add")
    with TableReader.open(fs, PATH, 7) as reader:
        for i in range(reader.num_blocks - 1):
            b, nxt = reader.read_block(i), reader.read_block(i + 1)
            used = sum(
                len(k) + len(v or b"") + entry_overhead(len(k), None if v is None else len(v), s)
                for k, s, v in zip(b.keys, b.seqs, b.values, strict=True)
            )
            k, s, v = nxt.keys[0], nxt.seqs[0], nxt.values[0]
            extra = len(k) + len(v or b"") + entry_overhead(len(k), None if v is None else len(v), s)
            assert used + extra > block_size - BLOCK_OVERHEAD_BOUND


def test_add_and_add_many_agree_for_uniform_entries() -> None:
    """Uniform entries: the batch size bound is exact, so both paths cut the same blocks."""
    entries = [(b"user:%08d" % i, 1000 + i, b"v" * 100) for i in range(2000)]
    fs1, p1 = build_table(entries, mode="many")
    fs2, p2 = build_table(entries, mode="add")
    assert p1 == p2
    assert fs1.read_all(PATH) == fs2.read_all(PATH)


def test_versions_straddling_blocks() -> None:
    entries = [(b"a", 1, b"a1")] + [(b"k", s, b"k%d" % s) for s in range(40, 0, -1)] + [(b"z", 5, b"z5")]
    entries.sort(key=lambda e: (e[0], -e[1]))
    fs, _ = build_table(entries, block_size=64)
    with TableReader.open(fs, PATH, 7, BlockCache(1 << 20)) as reader:
        assert reader.num_blocks > 5
        assert reader.last_keys.count(b"k") >= 4  # several blocks end with b"k"
        for snap in range(0, 45):
            assert reader.get(b"k", snap) == model_get(entries, b"k", snap)
        assert reader.get(b"z", 4) is None and reader.get(b"z", 5) == (5, b"z5")
        assert [e[1] for e in reader.iter_entries(b"k") if e[0] == b"k"] == list(range(40, 0, -1))


def test_large_entries_get_their_own_block() -> None:
    entries = [(b"a", 1, b"x" * 10), (b"b", 1, b"y" * 5000), (b"c", 1, b"z" * 10), (b"d", 1, b"w" * 9000)]
    for mode in ("many", "add"):
        fs, props = build_table(entries, block_size=4096, mode=mode)
        assert props.num_blocks == 4
        with TableReader.open(fs, PATH, 7) as reader:
            assert [len(reader.read_block(i)) for i in range(4)] == [1, 1, 1, 1]
            assert reader.get(b"d", 1) == (1, b"w" * 9000)


def test_a_key_larger_than_a_block_and_empty_keys_and_values() -> None:
    entries = [(b"", 3, b""), (b"", 2, None), (b"k" * 5000, 1, b""), (b"l", 2**64 - 1, None)]
    fs, _ = build_table(entries, block_size=64)
    with TableReader.open(fs, PATH, 7) as reader:
        assert list(reader.iter_entries()) == entries
        assert reader.get(b"", 2**64 - 1) == (3, b"") and reader.get(b"", 2) == (2, None)
        assert reader.get(b"l", 2**64 - 1) == (2**64 - 1, None)
        assert reader.verify() == 4


def test_estimated_size_tracks_the_file() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    file = fs.create(PATH)
    b = TableBuilder(file, 7, block_size=1024)
    sizes = []
    for e in make_entries(500, value_size=50):
        b.add(*e)
        sizes.append(b.estimated_size)
    assert sizes == sorted(sizes) and sizes[0] >= HEADER_SIZE
    props = b.finish()
    assert 0.9 * props.file_size < sizes[-1] <= props.file_size


def test_on_real_files(tmp_path: Path) -> None:
    fs = OSFileSystem()
    path = str(tmp_path / "000007.sst")
    entries = make_entries(3000, versions=2)
    _, props = build_table(entries, fs=fs, path=path, block_size=512)
    with TableReader.open(fs, path, 7, BlockCache(1 << 20)) as reader:
        assert list(reader.iter_entries()) == entries
        assert reader.verify() == len(entries) == props.entries


# --------------------------------------------------------------------------- the read path


class CountingFS(MemoryFileSystem):
    """Counts preads, to see which reads touch the file."""

    reads = 0

    def open_read(self, path: str) -> ReadableFile:
        inner = super().open_read(path)
        outer = self

        class Counting:
            def __init__(self) -> None:
                self.path = inner.path

            def pread(self, offset: int, size: int) -> bytes:
                outer.reads += 1
                return inner.pread(offset, size)

            def size(self) -> int:
                return inner.size()

            def close(self) -> None:
                inner.close()

        return Counting()


def test_warm_get_uses_the_cache_and_not_the_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    fs = CountingFS()
    fs.mkdir("/db")
    entries = make_entries(400)
    build_table(entries, fs=fs, block_size=256)
    cache = BlockCache(1 << 20)
    reader = TableReader.open(fs, PATH, 7, cache)
    list(reader.iter_entries())  # warm every block
    calls = []

    def counting_filter(flt: bytes, key: bytes) -> bool:
        calls.append(key)
        return True

    monkeypatch.setattr(sstmod, "bloom_may_contain", counting_filter)
    reads = fs.reads
    for k, _, _ in entries:
        assert reader.get(k, 2**64 - 1) is not None
        assert reader.get(k + b"x", 2**64 - 1) is None  # absent, but its block is cached
    assert fs.reads == reads and calls == []
    cache.evict_file(7)
    assert reader.get(b"key00100x", 2**64 - 1) is None
    assert calls == [b"key00100x"]
    reader.close()


def test_cold_get_of_an_absent_key_usually_reads_nothing() -> None:
    fs = CountingFS()
    fs.mkdir("/db")
    build_table(make_entries(2000), fs=fs, block_size=256, bits_per_key=10)
    reader = TableReader.open(fs, PATH, 7, None)
    reads = fs.reads
    for i in range(2000):
        assert reader.get(b"key%05dx" % i, 2**64 - 1) is None
    assert fs.reads - reads < 60  # ~1% false positives at 10 bits per key
    reads = fs.reads
    reader.get(b"key00007", 2**64 - 1)
    assert fs.reads == reads + 1
    reader.close()


def test_blocks_are_cached_with_their_size_as_charge() -> None:
    fs, props = build_table(make_entries(300), block_size=256)
    cache = BlockCache(1 << 20)
    with TableReader.open(fs, PATH, 7, cache) as reader:
        assert reader.get(b"key00000", 10**9) is not None
        assert cache.stats.entries == 1 and cache.bytes == reader._sizes[0]
        list(reader.iter_entries(fill_cache=False))
        assert cache.stats.entries == 1
        list(reader.iter_entries())
        assert cache.stats.entries == reader.num_blocks and cache.bytes == props.data_size


# --------------------------------------------------------------------------- builder misuse


@pytest.mark.parametrize(
    "entries",
    [
        [(b"b", 1, b""), (b"a", 1, b"")],
        [(b"a", 1, b""), (b"a", 1, b"")],
        [(b"a", 1, b""), (b"a", 2, b"")],
        [(b"a", 5, b""), (b"b", 1, b""), (b"b", 1, None)],
    ],
)
@pytest.mark.parametrize("mode", ["many", "add", "mixed"])
def test_entries_out_of_order_are_refused(entries: list[Entry], mode: str) -> None:
    with pytest.raises(ValueError, match="out of order"):
        build_table(entries, mode=mode, chunk=1)


def test_order_is_checked_across_calls() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    b = TableBuilder(fs.create(PATH), 7)
    b.add_many([(b"a", 3, b""), (b"c", 3, b"")])
    with pytest.raises(ValueError, match="out of order"):
        b.add(b"b", 1, b"")
    with pytest.raises(ValueError, match="out of order"):
        b.add_many([(b"c", 3, b"")])
    b.add_many([(b"c", 2, b""), (b"d", 2, b"")])
    b.add(b"d", 1, None)
    assert b.finish().entries == 5


def test_seq_out_of_range_is_refused() -> None:
    for bad in (-1, 2**64):
        fs = MemoryFileSystem()
        fs.mkdir("/db")
        b = TableBuilder(fs.create(PATH), 7)
        with pytest.raises(ValueError, match="seq"):
            b.add(b"a", bad, b"")
        with pytest.raises(ValueError, match="seq"):
            b.add_many([(b"a", bad, b"")])


def test_empty_table_and_use_after_finish_are_refused() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    b = TableBuilder(fs.create(PATH), 7)
    with pytest.raises(ValueError, match="no entries"):
        b.finish()
    b.add(b"a", 1, b"")
    b.finish()
    with pytest.raises(ValueError):
        b.add(b"b", 1, b"")
    with pytest.raises(ValueError):
        b.finish()


@pytest.mark.parametrize("kw", [{"block_size": 0}, {"bits_per_key": -1}, {"bits_per_key": 65}])
def test_bad_options_are_refused(kw: dict[str, int]) -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    with pytest.raises(ValueError):
        TableBuilder(fs.create(PATH), 7, **kw)


def test_builder_needs_an_empty_file() -> None:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    f = fs.create(PATH)
    f.write(b"x")
    with pytest.raises(ValueError, match="empty file"):
        TableBuilder(f, 7)


# --------------------------------------------------------------------------- blocks


def test_block_worked_example_in_the_docstring() -> None:
    payload = encode_block([b"a", b"a", b"b"], [2, 1, 5], [b"x", None, b"yz"])
    assert payload == bytes.fromhex("93 93 c4 01 61 c4 01 61 c4 01 62 93 02 01 05 93 c4 01 78 c0 c4 02 79 7a")
    assert frame_block(payload)[-5:] == bytes.fromhex("00 b8 97 97 5f")
    assert "00 b8 97 97 5f" in (blockmod.__doc__ or "")
    b = decode_block(payload)
    assert (b.keys, b.seqs, b.values) == ([b"a", b"a", b"b"], [2, 1, 5], [b"x", None, b"yz"])


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.binary(max_size=300), st.integers(0, 2**64 - 1), st.none() | st.binary(max_size=70000)),
        min_size=1,
        max_size=20,
    )
)
def test_entry_overhead_is_exact(entries: list[Entry]) -> None:
    keys, seqs, values = [e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries]
    payload = encode_block(keys, seqs, values)
    body = sum(len(k) + len(v or b"") + entry_overhead(len(k), None if v is None else len(v), s) for k, s, v in entries)
    headers = len(payload) - body
    assert body == sum(entry_size(k, s, v) for k, s, v in entries)
    assert headers == 1 + 3 * (1 if len(entries) <= 15 else 3) <= BLOCK_OVERHEAD_BOUND


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_decoding_random_bytes_is_corruption_or_a_block(data: bytes) -> None:
    try:
        b = decode_block(data, path="/db/000009.sst", offset=77)
    except CorruptionError as exc:
        assert (exc.path, exc.offset) == ("/db/000009.sst", 77)
        return
    assert len(b.keys) == len(b.seqs) == len(b.values) > 0


@pytest.mark.parametrize(
    "obj",
    [{"a": 1}, [[b"k"], [1]], [[b"k"], [1], [b"v"], []], [[], [], []], [[b"k"], [1, 2], [b"v"]], [b"k", [1], [b"v"]]],
)
def test_decoding_the_wrong_shape_is_corruption(obj: object) -> None:
    with pytest.raises(CorruptionError, match="data block"):
        decode_block(msgpack.packb(obj), path="p", offset=0)


# --------------------------------------------------------------------------- corruption


def small_table(bits_per_key: int = 10) -> tuple[bytes, list[Entry]]:
    entries = make_entries(40, versions=2, value_size=12, seed=3)
    fs, _ = build_table(entries, block_size=128, bits_per_key=bits_per_key)
    return fs.read_all(PATH), entries


def write_file(data: bytes) -> MemoryFileSystem:
    fs = MemoryFileSystem()
    fs.mkdir("/db")
    f = fs.create(PATH)
    f.write(data)
    return fs


def check_damaged(data: bytes, entries: list[Entry]) -> str:
    """Open, read and verify ``data``: never wrong data; returns where the damage was caught."""
    fs = write_file(data)
    try:
        reader = TableReader.open(fs, PATH, 7, BlockCache(1 << 20))
    except CorruptionError as exc:
        assert exc.path == PATH and PATH in str(exc)
        return "open"
    with reader:
        keys = sorted({e[0] for e in entries})
        for key in [*keys, b"key00003x"]:
            for snap in (0, 3, 2**64 - 1):
                try:
                    assert reader.get(key, snap) == model_get(entries, key, snap)
                except CorruptionError as exc:
                    assert exc.path == PATH
        seen = []
        try:
            for e in reader.iter_entries():
                seen.append(e)
        except CorruptionError as exc:
            assert exc.path == PATH
        assert seen == entries[: len(seen)]
        try:
            reader.verify()
        except CorruptionError as exc:
            assert exc.path == PATH
            return "verify"
    return "undetected"


@pytest.mark.parametrize("bits_per_key", [10, 0])
def test_every_bit_flip_is_detected(bits_per_key: int) -> None:
    data, entries = small_table(bits_per_key)
    rng = random.Random(1)
    caught = {"open": 0, "verify": 0, "undetected": 0}
    for offset in range(len(data)):
        damaged = bytearray(data)
        damaged[offset] ^= 1 << rng.randrange(8)
        caught[check_damaged(bytes(damaged), entries)] += 1
    assert caught["undetected"] == 0
    assert caught["open"] and caught["verify"]  # metadata is checked on open, data blocks on read


def test_every_truncation_is_detected() -> None:
    data, entries = small_table()
    for n in range(len(data)):
        assert check_damaged(data[:n], entries) == "open", n


@pytest.mark.parametrize("tail", [b"\x00", b"\x00" * 52, b"garbage!" * 20])
def test_appended_bytes_are_detected(tail: bytes) -> None:
    data, entries = small_table()
    assert check_damaged(data + tail, entries) == "open"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_are_corruption(data: bytes) -> None:
    with pytest.raises(CorruptionError) as info:
        TableReader.open(write_file(data), PATH, 7)
    assert info.value.path == PATH


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=FOOTER_SIZE, max_size=2000))
def test_random_bytes_behind_a_valid_header_are_corruption(data: bytes) -> None:
    good, _ = small_table()
    with pytest.raises(CorruptionError):
        TableReader.open(write_file(good[:HEADER_SIZE] + data), PATH, 7)


@pytest.mark.parametrize("size", [0, 1, 31, 32, 100, 4096])
def test_zero_files_are_corruption(size: int) -> None:
    with pytest.raises(CorruptionError):
        TableReader.open(write_file(bytes(size)), PATH, 7)


def test_wrong_file_number_is_corruption() -> None:
    data, _ = small_table()
    with pytest.raises(CorruptionError, match="header says table 7, expected 8") as info:
        TableReader.open(write_file(data), PATH, 8)
    assert info.value.offset == 16


# Forged files: every checksum valid, the structure wrong. Catches readers that trust a CRC to
# mean "well-formed" (a writer bug, or a file from a newer version, must not crash the reader).


def forge(
    data: bytes,
    *,
    bloom: bytes | None = None,
    index: object = None,
    props: object = None,
    footer: tuple[int, ...] | None = None,
    data_blocks: dict[int, bytes] | None = None,
) -> bytes:
    """Rebuild a table with replaced payloads (re-framed, offsets and footer recomputed)."""
    f_at = len(data) - FOOTER_SIZE
    fields = list(struct.unpack_from("<QIQIQIHH8s", data, f_at))
    bloom_at, bloom_size, index_at, index_size, props_at, props_size = fields[:6]
    last_keys, offsets, sizes = msgpack.unpackb(data[index_at : index_at + index_size - BLOCK_TRAILER_SIZE])
    blocks = [data[o : o + s] for o, s in zip(offsets, sizes, strict=True)]
    for i, payload in (data_blocks or {}).items():
        blocks[i] = frame_block(payload)
    out = bytearray(data[:HEADER_SIZE])
    new_offsets, new_sizes = [], []
    for blk in blocks:
        new_offsets.append(len(out))
        new_sizes.append(len(blk))
        out += blk
    old = {
        "bloom": data[bloom_at : bloom_at + bloom_size - BLOCK_TRAILER_SIZE],
        "props": msgpack.unpackb(data[props_at : props_at + props_size - BLOCK_TRAILER_SIZE]),
    }
    old["props"]["data_size"] = sum(new_sizes)
    handles = []
    for payload in (
        old["bloom"] if bloom is None else bloom,
        msgpack.packb([last_keys, new_offsets, new_sizes] if index is None else index),
        msgpack.packb(old["props"] if props is None else props),
    ):
        framed = frame_block(payload)
        handles += [len(out), len(framed)]
        out += framed
    fields[:6] = handles if footer is None else footer
    head = struct.pack("<QIQIQIHH8s", *fields)
    return bytes(out + head + struct.pack("<I", checksum(head)))


def test_forge_without_changes_is_the_identity() -> None:
    data, entries = small_table()
    assert forge(data) == data
    assert check_damaged(forge(data), entries) == "undetected"


def _index_and_props(data: bytes) -> tuple[list[list[object]], dict[str, object], tuple[int, ...]]:
    f_at = len(data) - FOOTER_SIZE
    fields = struct.unpack_from("<QIQIQIHH8s", data, f_at)
    index = msgpack.unpackb(data[fields[2] : fields[2] + fields[3] - BLOCK_TRAILER_SIZE])
    props = msgpack.unpackb(data[fields[4] : fields[4] + fields[5] - BLOCK_TRAILER_SIZE])
    return index, props, fields[:6]


FORGERIES: dict[str, Callable[[bytes], bytes]] = {}


def forgery(fn: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    FORGERIES[fn.__name__] = fn
    return fn


@forgery
def footer_handle_past_the_end(data: bytes) -> bytes:
    _, _, h = _index_and_props(data)
    return forge(data, footer=(h[0], h[1], h[2], h[3], h[4], 2**32 - 1))


@forgery
def footer_handles_huge(data: bytes) -> bytes:
    return forge(data, footer=(2**63, 2**32 - 1, 2**63, 2**32 - 1, 2**63, 2**32 - 1))


@forgery
def footer_handles_overlap(data: bytes) -> bytes:
    _, _, h = _index_and_props(data)
    return forge(data, footer=(h[0], h[1] + 1, h[2], h[3], h[4], h[5]))


@forgery
def footer_bloom_inside_the_header(data: bytes) -> bytes:
    _, _, h = _index_and_props(data)
    return forge(data, footer=(8, h[2] - 8, h[2], h[3], h[4], h[5]))


@forgery
def index_sizes_huge(data: bytes) -> bytes:
    (keys, offsets, sizes), _, _ = _index_and_props(data)
    return forge(data, index=[keys, offsets, [2**40] * len(sizes)])


@forgery
def index_offsets_shifted(data: bytes) -> bytes:
    (keys, offsets, sizes), _, _ = _index_and_props(data)
    return forge(data, index=[keys, [o + 1 for o in offsets], sizes])  # type: ignore[operator]


@forgery
def index_middle_offset_shifted(data: bytes) -> bytes:
    (keys, offsets, sizes), _, _ = _index_and_props(data)
    assert isinstance(offsets[1], int)
    return forge(data, index=[keys, [offsets[0], offsets[1] + 1, *offsets[2:]], sizes])


@forgery
def index_too_short(data: bytes) -> bytes:
    (keys, offsets, sizes), _, _ = _index_and_props(data)
    return forge(data, index=[keys[:-1], offsets[:-1], sizes[:-1]])


@forgery
def index_keys_unsorted(data: bytes) -> bytes:
    (keys, offsets, sizes), _, _ = _index_and_props(data)
    return forge(data, index=[[keys[1], keys[0], *keys[2:]], offsets, sizes])


@forgery
def index_key_not_bytes(data: bytes) -> bytes:
    (keys, offsets, sizes), _, _ = _index_and_props(data)
    return forge(data, index=[["text", *keys[1:]], offsets, sizes])


@forgery
def index_not_a_list(data: bytes) -> bytes:
    return forge(data, index={"keys": []})


@forgery
def index_not_msgpack(data: bytes) -> bytes:
    return forge(data, index=msgpack.ExtType(1, b""))


@forgery
def props_missing_entries(data: bytes) -> bytes:
    _, props, _ = _index_and_props(data)
    return forge(data, props={k: v for k, v in props.items() if k != "entries"})


@forgery
def props_wrong_type(data: bytes) -> bytes:
    _, props, _ = _index_and_props(data)
    return forge(data, props={**props, "smallest": "key"})


@forgery
def props_wrong_file_number(data: bytes) -> bytes:
    _, props, _ = _index_and_props(data)
    return forge(data, props={**props, "file_number": 8})


@forgery
def props_largest_disagrees(data: bytes) -> bytes:
    _, props, _ = _index_and_props(data)
    return forge(data, props={**props, "largest": b"zzz"})


@forgery
def props_no_blocks(data: bytes) -> bytes:
    _, props, _ = _index_and_props(data)
    return forge(data, props={**props, "num_blocks": 0})


@forgery
def props_not_a_map(data: bytes) -> bytes:
    return forge(data, props=[1, 2, 3])


@forgery
def bloom_bad_probe_count(data: bytes) -> bytes:
    return forge(data, bloom=bytes(16) + b"\x63")


@forgery
def bloom_too_short(data: bytes) -> bytes:
    return forge(data, bloom=b"\x07")


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_metadata_is_corruption_on_open(name: str) -> None:
    data, _ = small_table()
    forged = FORGERIES[name](data)
    with pytest.raises(CorruptionError) as info:
        TableReader.open(write_file(forged), PATH, 7)
    assert info.value.path == PATH


def _data_block(data: bytes, i: int) -> tuple[list[bytes], list[int], list[bytes | None]]:
    (_, offsets, sizes), _, _ = _index_and_props(data)
    o, s = offsets[i], sizes[i]
    assert isinstance(o, int) and isinstance(s, int)
    result: tuple[list[bytes], list[int], list[bytes | None]] = msgpack.unpackb(data[o : o + s - BLOCK_TRAILER_SIZE])
    return result


@pytest.mark.parametrize(
    ("what", "where"),
    [
        ("last key differs from the index", "read"),
        ("first key before the previous block", "read"),
        ("keys out of order inside the block", "verify"),
        ("a seq that is not an int", "verify"),
        ("a value that is not bytes", "verify"),
        ("one entry fewer", "verify"),
        ("the wrong shape", "read"),
    ],
)
def test_forged_data_blocks_are_corruption(what: str, where: str) -> None:
    data, _ = small_table()
    keys, seqs, values = _data_block(data, 1)
    if what == "last key differs from the index":
        keys[-1] = keys[-1] + b"!"
    elif what == "first key before the previous block":
        keys[0] = b"key"
    elif what == "keys out of order inside the block":
        keys[0], keys[1] = keys[1], keys[0]
        seqs[0], seqs[1] = seqs[1], seqs[0]
        values[0], values[1] = values[1], values[0]
    elif what == "a seq that is not an int":
        seqs[1] = b"1"  # type: ignore[call-overload]
    elif what == "a value that is not bytes":
        values[1] = "text"  # type: ignore[call-overload]
    elif what == "one entry fewer":
        del keys[0], seqs[0], values[0]
    payload = msgpack.packb({"keys": keys} if what == "the wrong shape" else [keys, seqs, values])
    forged = forge(data, data_blocks={1: payload})
    reader = TableReader.open(write_file(forged), PATH, 7)
    if where == "read":
        with pytest.raises(CorruptionError, match="data block") as info:
            reader.read_block(1)
        assert info.value.path == PATH and info.value.offset == reader._offsets[1]
    else:
        reader.read_block(1)
    with pytest.raises(CorruptionError):
        reader.verify()
    reader.close()


def test_a_table_reports_the_first_damaged_block_offset() -> None:
    data, entries = small_table()
    (_, offsets, _), _, _ = _index_and_props(data)
    damaged = bytearray(data)
    o = offsets[2]
    assert isinstance(o, int)
    damaged[o + 3] ^= 0x10
    with TableReader.open(write_file(bytes(damaged)), PATH, 7) as reader:
        with pytest.raises(CorruptionError, match="block checksum mismatch") as info:
            reader.verify()
        assert info.value.offset == o
        # Blocks before and after the damage still read.
        first, last = reader.read_block(0), reader.read_block(reader.num_blocks - 1)
        assert reader.get(first.keys[0], 2**64 - 1) == model_get(entries, first.keys[0], 2**64 - 1)
        assert reader.get(last.keys[-1], 2**64 - 1) == model_get(entries, last.keys[-1], 2**64 - 1)


def test_model_get_helper_is_right() -> None:
    """The brute-force model the tests trust, checked by hand once."""
    entries: list[Entry] = [(b"a", 9, b"x"), (b"a", 4, None), (b"a", 2, b"y"), (b"b", 1, b"z")]
    assert [model_get(entries, b"a", s) for s in (1, 2, 3, 4, 8, 9, 10)] == [
        None,
        (2, b"y"),
        (2, b"y"),
        (4, None),
        (4, None),
        (9, b"x"),
        (9, b"x"),
    ]
    assert model_get(entries, b"c", 10) is None
