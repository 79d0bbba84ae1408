"""Damaged files: every outcome is the right data or a CorruptionError naming the file.

A real database is built once per module with data in every kind of file: two tables in
level 1 (compacted), a level-0 table (flushed), a WAL holding several commits (overwrites and
deletes of table data, so a lost WAL record shows up as wrong data), a MANIFEST and CURRENT.
The directory is copied while the database is open, so the WAL was never cleanly closed --
the state a crash leaves.

Each trial damages one file of a fresh copy (a flipped bit at some offset of some region, or
the whole file replaced by random bytes, zeros, a truncation, a future format version, a file
of another program), opens the copy and reads everything: every key with ``get`` and
``get_many``, forward and reverse scans, ``verify()``. The outcome must be

* ``intact``: exactly the data that was written, or
* ``detected``: a ``quanta.CorruptionError`` whose ``path`` is the damaged file,

and never another exception type, a hang, or wrong data (``silent``). One exception is the
documented limit of log recovery (quanta/_storage/log.py, "Departures and limits"): damage
confined to the *final* record of a WAL that was never closed cleanly -- or a WAL cut short --
is indistinguishable from a torn write, so recovery keeps the commits before it. Those trials
(``torn-tail``) are counted and reported, not failed; they are accepted only when the data
read is exactly the state after some prefix of the WAL's commits.

CI tries a few hundred damaged copies; the slow test (``-m slow``) tries >= 10,000 and prints
the detection rate. ``QUANTA_LONG=1`` multiplies that by five.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import sqlite3
import struct
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import pytest

import quanta
from quanta._storage import filenames

LONG = os.environ.get("QUANTA_LONG") == "1"
TRIAL_TIMEOUT = 30.0  # seconds: a trial that takes longer counts as a hang

# The on-disk layouts, written out here from the format docs rather than imported, so that a
# change to the format is a visible change to this test too.
HEADER_SIZE = 32  # format.py: magic 8, version u16, cipher u8, flags u8, key_id u32, number u64, reserved u32, crc u32
HEADER = struct.Struct("<8sHBBIQI")
FOOTER = struct.Struct("<QIQIQIHH8sI")  # sstable.py footer, 52 bytes
RECORD = struct.Struct("<IIB")  # log.py record header: crc32, length, type


# =============================================================================== the golden database


@dataclass
class Golden:
    path: Path
    model: dict[bytes, bytes]  # the full state
    all_keys: list[bytes]  # every key ever written, deleted ones too
    wal_states: list[dict[bytes, bytes]]  # state after the first k WAL commits, k = 0..len
    regions: dict[str, list[tuple[str, int, int]]]  # file name -> [(region, start, end)]
    kinds: dict[str, str]  # file name -> "wal" | "sst-L0" | "sst-L1" | "manifest" | "current"


async def build_golden(path: Path) -> Golden:
    rng = random.Random(2024)
    model: dict[bytes, bytes] = {}
    written: set[bytes] = set()
    opts = {"memtable_bytes": 1 << 20, "block_size": 512, "target_file_bytes": 12 * 1024}
    db = await quanta.open(str(path / "build"), **opts)
    try:
        # level 1: 600 keys, compacted (two or more tables at target_file_bytes)
        base = {
            b"key:%04d" % i: b"base-%d-" % i + bytes(rng.randrange(256) for _ in range(rng.randrange(30)))
            for i in range(600)
        }
        await db.kv.put_many(base.items())
        model.update(base)
        await db.compact()
        # level 0: overwrites, deletes and new keys, flushed
        batch = db.kv.batch()
        for i in range(0, 600, 7):
            batch.put(b"key:%04d" % i, b"l0-%d" % i)
            model[b"key:%04d" % i] = b"l0-%d" % i
        for i in range(3, 600, 11):
            batch.delete(b"key:%04d" % i)
            model.pop(b"key:%04d" % i, None)
        for i in range(50):
            batch.put(b"new:%03d" % i, b"l0-new-%d" % i)
            model[b"new:%03d" % i] = b"l0-new-%d" % i
        await batch.commit()
        await db.flush()
        written.update(base)
        written.update(model)
        # the WAL: separate commits, each changing something visible
        wal_states = [dict(model)]
        for c in range(12):
            ops: list[tuple[bytes, bytes | None]] = []
            for _ in range(rng.randrange(1, 6)):
                key = rng.choice([b"key:%04d" % rng.randrange(600), b"new:%03d" % rng.randrange(50), b"wal:%02d" % c])
                ops.append((key, None if rng.random() < 0.3 else b"wal-%d-%d" % (c, len(ops))))
            batch = db.kv.batch()
            for key, value in ops:
                written.add(key)
                if value is None:
                    batch.delete(key)
                    model.pop(key, None)
                else:
                    batch.put(key, value)
                    model[key] = value
            await batch.commit()
            wal_states.append(dict(model))
        s = await db.stats()
        assert s["levels"][0]["files"] == 1 and s["levels"][1]["files"] >= 2, s["levels"]
        shutil.copytree(path / "build", path / "golden", ignore=shutil.ignore_patterns("LOCK"))
    finally:
        await db.close()
    golden = path / "golden"
    regions, kinds = {}, {}
    [manifest] = [n for n in os.listdir(golden) if n.startswith("MANIFEST-")]
    level_of = table_levels((golden / manifest).read_bytes())
    for name in sorted(os.listdir(golden)):
        data = (golden / name).read_bytes()
        parsed = filenames.parse_name(name)
        if name == filenames.CURRENT:
            kinds[name], regions[name] = "current", [("current", 0, len(data))]
        elif parsed and parsed[0] == "sst":
            kinds[name], regions[name] = f"sst-L{level_of[parsed[1]]}", sstable_regions(data)
        elif parsed and parsed[0] in ("wal", "manifest"):
            kinds[name], regions[name] = parsed[0], log_regions(data)
    wal_names = [n for n, k in kinds.items() if k == "wal" and (golden / n).stat().st_size > HEADER_SIZE]
    assert len(wal_names) == 1  # one WAL holds the 12 commits
    assert sum(r[0] == "record" for r in regions[wal_names[0]]) == 11
    return Golden(golden, model, sorted(written), wal_states, regions, kinds)


def table_levels(manifest: bytes) -> dict[int, int]:
    """Live table number -> level, by replaying the MANIFEST's edits as manifest.py documents
    them: msgpack maps whose "a" lists [level, [number, ...]] added and "d" [level, number]
    deleted."""
    levels: dict[int, int] = {}
    for _, start, end in log_regions(manifest)[1:]:
        edit = msgpack.unpackb(manifest[start + RECORD.size : end])
        for level, meta in edit.get("a", []):
            levels[meta[0]] = level
        for _, number in edit.get("d", []):
            levels.pop(number, None)
    return levels


def sstable_regions(data: bytes) -> list[tuple[str, int, int]]:
    footer_at = len(data) - FOOTER.size
    bloom_at, bloom_size, index_at, index_size, props_at, props_size, *_ = FOOTER.unpack_from(data, footer_at)
    assert index_at == bloom_at + bloom_size and props_at == index_at + index_size
    assert props_at + props_size == footer_at
    return [
        ("header", 0, HEADER_SIZE),
        ("data", HEADER_SIZE, bloom_at),
        ("bloom", bloom_at, index_at),
        ("index", index_at, props_at),
        ("properties", props_at, footer_at),
        ("footer", footer_at, len(data)),
    ]


def log_regions(data: bytes) -> list[tuple[str, int, int]]:
    """Header, then each record; the last one is named "final record"."""
    out = [("header", 0, HEADER_SIZE)]
    pos = HEADER_SIZE
    while pos < len(data):
        _, length, _ = RECORD.unpack_from(data, pos)
        end = pos + RECORD.size + length
        out.append(("record", pos, end))
        pos = end
    assert pos == len(data)
    if len(out) > 1:
        out[-1] = ("final record", out[-1][1], out[-1][2])
    return out


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Golden:
    return asyncio.run(build_golden(tmp_path_factory.mktemp("corruption")))


# =============================================================================== one trial


@dataclass
class Damage:
    file: str
    kind: str  # the file's kind, see Golden.kinds
    how: str  # "flip header@12", "zeros", ...
    region: str  # "data", "final record", "whole file", ...
    torn_tail_ok: bool = False  # losing a suffix of the WAL's commits is the documented limit


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def add(self, damage: Damage, outcome: str, detail: str = "") -> None:
        self.outcomes[outcome] += 1
        self.by_kind.setdefault(f"{damage.kind}:{damage.region}", Counter())[outcome] += 1
        if outcome not in ("intact", "detected", "torn-tail"):
            self.failures.append(f"{outcome}: {damage.file} ({damage.kind}) {damage.how}: {detail}")

    def summary(self) -> str:
        total = sum(self.outcomes.values())
        changed = total - self.outcomes["intact"]
        rate = 100.0 * self.outcomes["detected"] / changed if changed else 100.0
        lines = [
            f"corruption: {total} damaged copies: {self.outcomes['detected']} detected ({rate:.1f}% of those not "
            f"read back intact), {self.outcomes['intact']} intact, {self.outcomes['torn-tail']} WAL torn-tail "
            f"(documented limit), {self.outcomes['silent']} silently wrong, "
            f"{total - sum(self.outcomes[o] for o in ('intact', 'detected', 'torn-tail', 'silent'))} other failures"
        ]
        for key in sorted(self.by_kind):
            lines.append(f"  {key:<28} " + ", ".join(f"{o} {n}" for o, n in sorted(self.by_kind[key].items())))
        return "\n".join(lines)


async def read_everything(path: Path, g: Golden) -> tuple[dict[bytes, bytes], str]:
    """Open and read every way there is; return the state (if all reads agree) and how the
    WAL's tail looked to recovery."""
    async with quanta.open(str(path), compaction_executor="loop") as db:
        tail = (await db.stats())["recovery_tail"]
        many = await db.kv.get_many(g.all_keys)
        singles = [await db.kv.get(k) for k in g.all_keys]
        forward = [item async for item in db.kv.scan()]
        backward = [item async for item in db.kv.scan(reverse=True)]
        await db.verify()
    state = dict(forward)
    by_get = {k: v for k, v in zip(g.all_keys, many, strict=True) if v is not None}
    if not (by_get == state and singles == many and backward == forward[::-1] and len(state) == len(forward)):
        raise AssertionError("reads disagree with each other")  # reported as silent
    return state, tail


def damaged_copy(g: Golden, scratch: Path, damage: Damage, mutate: Callable[[Path], None]) -> str:
    """A fresh copy of the golden directory at ``scratch`` with ``damage`` done; the damaged path."""
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(g.path, scratch)
    mutate(scratch / damage.file)
    return str(scratch / damage.file)


async def trial(g: Golden, scratch: Path, damage: Damage, mutate: Callable[[Path], None], tally: Tally) -> str:
    damaged = damaged_copy(g, scratch, damage, mutate)
    try:
        async with asyncio.timeout(TRIAL_TIMEOUT):
            state, tail = await read_everything(scratch, g)
    except TimeoutError:
        tally.add(damage, "hang")
        return "hang"
    except (quanta.CorruptionError, quanta.BackgroundError) as exc:
        err = exc if isinstance(exc, quanta.CorruptionError) else exc.__cause__
        if isinstance(err, quanta.CorruptionError) and err.path == damaged and damaged in str(err):
            tally.add(damage, "detected")
            return "detected"
        tally.add(damage, "misattributed", f"{exc!r} (cause {exc.__cause__!r})")
        return "misattributed"
    except AssertionError as exc:
        tally.add(damage, "silent", str(exc))
        return "silent"
    except Exception as exc:
        tally.add(damage, "wrong-exception", repr(exc))
        return "wrong-exception"
    if state == g.model:
        tally.add(damage, "intact")
        return "intact"
    if damage.torn_tail_ok and state in g.wal_states and tail == "torn":  # lost, but reported in stats
        tally.add(damage, "torn-tail")
        return "torn-tail"
    lost = sorted(set(g.model) - set(state))[:3]
    wrong = sorted(k for k in state if g.model.get(k) != state[k])[:3]
    tally.add(damage, "silent", f"missing {lost}, wrong {wrong}")
    return "silent"


# =============================================================================== kinds of damage


def flip(offset: int, bit: int) -> Callable[[Path], None]:
    def mutate(p: Path) -> None:
        data = bytearray(p.read_bytes())
        data[offset] ^= 1 << bit
        p.write_bytes(bytes(data))

    return mutate


def replace_with(make: Callable[[int], bytes]) -> Callable[[Path], None]:
    def mutate(p: Path) -> None:
        p.write_bytes(make(p.stat().st_size))

    return mutate


def truncate_to(fraction: float) -> Callable[[Path], None]:
    def mutate(p: Path) -> None:
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * fraction)])

    return mutate


def chop_last_byte(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-1])


def future_version(p: Path) -> None:
    """Format version 2 in the header, with a correct header checksum (and for a table, in
    the footer too): a file from a newer QuantaDB, not a damaged one."""
    data = bytearray(p.read_bytes())
    fields = list(HEADER.unpack_from(data))
    fields[1] = 2
    head = HEADER.pack(*fields)
    data[: HEADER.size] = head
    data[HEADER.size : HEADER_SIZE] = struct.pack("<I", zlib.crc32(head))
    if data[:8] == b"QNTASST\x00":
        at = len(data) - FOOTER.size
        f = list(FOOTER.unpack_from(data, at))
        f[6] = 2
        body = FOOTER.pack(*f)[:-4]
        data[at:] = body + struct.pack("<I", zlib.crc32(body))
    p.write_bytes(bytes(data))


def sqlite_file(p: Path) -> None:
    p.unlink()
    with sqlite3.connect(p) as conn:
        conn.execute("create table t (k blob primary key, v blob)")
        conn.executemany("insert into t values (?, ?)", [(b"k%d" % i, b"v" * 50) for i in range(200)])
    conn.close()


WHOLE_FILE: dict[str, Callable[[Path], None]] = {
    "random bytes": replace_with(lambda n: random.Random(n).randbytes(n)),
    "zeros": replace_with(lambda n: bytes(n)),
    "empty": replace_with(lambda n: b""),
    "truncated to 1/2": truncate_to(0.5),
    "truncated by 1 byte": chop_last_byte,
    "future format version": future_version,
    "an SQLite database": sqlite_file,
}


def whole_file_damages(g: Golden) -> list[tuple[Damage, Callable[[Path], None]]]:
    out = []
    for name, kind in g.kinds.items():
        size = (g.path / name).stat().st_size
        if kind == "wal" and size == HEADER_SIZE:
            continue  # a spare, empty segment: nothing to lose
        for how, mutate in WHOLE_FILE.items():
            if how == "truncated by 1 byte":
                mutate = truncate_to((size - 1) / size)
            if how == "future format version" and kind == "current":
                continue
            torn = kind == "wal" and how in ("truncated to 1/2", "truncated by 1 byte", "empty")
            out.append((Damage(name, kind, how, "whole file", torn_tail_ok=torn), mutate))
    return out


# Groups of bit-flip targets: (file kind, regions). A damaged final WAL record is the documented
# torn-tail limit. A damaged final MANIFEST record is not: that edit was synced and acted on (the
# WAL it retired is gone), so dropping it as a torn tail would silently lose its tables.
FLIP_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "wal": ("wal", ("header", "record")),
    "wal final record": ("wal", ("final record",)),
    "sst-L0": ("sst-L0", ("header", "data", "bloom", "index", "properties", "footer")),
    "sst-L1": ("sst-L1", ("header", "data", "bloom", "index", "properties", "footer")),
    "manifest": ("manifest", ("header", "record")),
    "manifest final record": ("manifest", ("final record",)),
    "current": ("current", ("current",)),
}


def bit_flip_damages(
    g: Golden, group: str, per_region: int, rng: random.Random
) -> list[tuple[Damage, Callable[[Path], None]]]:
    """Up to ``per_region`` distinct (offset, bit) flips in each region of the group's files:
    every bit of a region that has no more than that, a random sample of a larger one."""
    kind, wanted = FLIP_GROUPS[group]
    out = []
    for name, regions in g.regions.items():
        if g.kinds[name] != kind:
            continue
        for region, start, end in regions:
            if region not in wanted:
                continue
            bits = (end - start) * 8
            picks = range(bits) if bits <= per_region else rng.sample(range(bits), per_region)
            for pick in sorted(picks):
                offset, bit = start + pick // 8, pick % 8
                torn = kind == "wal" and region == "final record"
                out.append((Damage(name, kind, f"flip bit {bit} @{offset}", region, torn), flip(offset, bit)))
    return out


async def sweep(g: Golden, damages: list[tuple[Damage, Callable[[Path], None]]], scratch: Path) -> Tally:
    tally = Tally()
    for damage, mutate in damages:
        await trial(g, scratch, damage, mutate, tally)
    return tally


def report(tally: Tally, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + tally.summary())


# =============================================================================== tests


async def test_the_undamaged_copy_reads_back_intact(golden: Golden, tmp_path: Path) -> None:
    tally = Tally()
    assert (
        await trial(golden, tmp_path / "x", Damage("CURRENT", "current", "none", "none"), lambda p: None, tally)
        == "intact"
    )
    assert set(golden.kinds.values()) >= {"wal", "sst-L0", "sst-L1", "manifest", "current"}


@pytest.mark.parametrize("kind", ["wal", "sst-L0", "sst-L1", "manifest", "current"])
async def test_whole_file_damage_is_detected(
    golden: Golden, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """Random bytes, zeros, truncation, a newer format version, an SQLite database in place
    of each file."""
    tally = await sweep(golden, [d for d in whole_file_damages(golden) if d[0].kind == kind], tmp_path / "x")
    report(tally, capsys)
    assert sum(tally.outcomes.values()) >= 6
    assert not tally.failures, "\n".join(tally.failures[:20])


@pytest.mark.parametrize("group", list(FLIP_GROUPS))
async def test_bit_flips_are_detected_or_harmless(
    golden: Golden, tmp_path: Path, capsys: pytest.CaptureFixture[str], group: str
) -> None:
    """About 500 flips in all: 12 per region, 64 in the tiny CURRENT file."""
    per_region = 64 if group == "current" else 12
    tally = await sweep(golden, bit_flip_damages(golden, group, per_region, random.Random(group)), tmp_path / "x")
    report(tally, capsys)
    assert tally.outcomes["detected"] + tally.outcomes["torn-tail"] > 0
    assert not tally.failures, "\n".join(tally.failures[:20])


async def test_future_format_versions_are_refused_by_name(golden: Golden, tmp_path: Path) -> None:
    for name, kind in golden.kinds.items():
        if kind == "current" or (golden.path / name).stat().st_size == HEADER_SIZE:
            continue
        scratch = tmp_path / name
        shutil.copytree(golden.path, scratch)
        future_version(scratch / name)
        with pytest.raises(quanta.CorruptionError, match="format version 2") as info:
            await read_everything(scratch, golden)
        assert info.value.path == str(scratch / name)


async def test_missing_files_are_named(golden: Golden, tmp_path: Path) -> None:
    for name, kind in golden.kinds.items():
        if kind == "wal":
            continue  # a missing WAL is indistinguishable from a clean shutdown's removed one
        scratch = tmp_path / name
        shutil.copytree(golden.path, scratch)
        (scratch / name).unlink()
        with pytest.raises(quanta.CorruptionError) as info:
            await read_everything(scratch, golden)
        assert name in str(info.value) or "CURRENT" in str(info.value)


@pytest.mark.slow
@pytest.mark.timeout(6 * 3600)
@pytest.mark.parametrize("group", list(FLIP_GROUPS))
async def test_bit_flip_sweep_long(
    golden: Golden, tmp_path: Path, capsys: pytest.CaptureFixture[str], group: str
) -> None:
    """>= 10,000 damaged copies over all groups (five times more with QUANTA_LONG=1): every
    bit of the small regions (headers, footers, final records, CURRENT), samples of the rest."""
    per_region = 2500 if LONG else 500
    rng = random.Random(os.environ.get("QUANTA_SEED", group))
    tally = await sweep(golden, bit_flip_damages(golden, group, per_region, rng), tmp_path / "x")
    report(tally, capsys)
    assert not tally.failures, "\n".join(tally.failures[:20])
