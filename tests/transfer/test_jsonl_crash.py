"""Issue 14 item 2, crash and corruption sweeps of the JSON Lines import (COMMON rules: every
new file format gets them).

* A power loss at any I/O of the database during an import's write phase leaves the state
  after a whole number of batches (never half of one), and re-running the import with
  ``on_conflict="replace"`` gives exactly what an uninterrupted import gives.
* A damaged export file (a flipped byte anywhere, a file cut at any line or byte) is refused
  by the validation pass with ``ImportValidationError`` and nothing is written.

``QUANTA_LONG=1`` checks every crash point and every byte; the default run samples them.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Annotated, Any

import pytest
from helpers_crash import LONG, SMALL_OPTIONS, RecordingFS, freeze

import quanta
from quanta._storage.vfs import MemoryFileSystem
from quanta._transfer import importer

PATH = "/db"
SAMPLE = 24


@quanta.entity(name="CrPerson")
class Person:
    id: int = quanta.auto()
    email: Annotated[str, quanta.Unique()] = ""
    city: Annotated[str, quanta.Index()] = ""
    friend: quanta.Link[Person | None] = quanta.link(default=None)


def people(n: int) -> list[Person]:
    # each links to the next one: every batch but the last links into a later batch
    return [
        Person(id=i, email=f"p{i}@x.io", city=f"c{i % 3}", friend=i + 1 if i < n else None) for i in range(1, n + 1)
    ]


async def space(db: quanta.Database) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    async with db.snapshot() as snap:
        for kind in b"riu":
            out += [kv async for kv in snap.kv._scan(b"\x00Q" + bytes([kind]), b"\x00Q" + bytes([kind + 1]))]
    return out


async def export_file(tmp_path: Path, n: int = 30) -> tuple[Path, list[tuple[bytes, bytes]]]:
    out = tmp_path / "people.jsonl"
    async with quanta.open(PATH, fs=MemoryFileSystem(), entities=[Person]) as db:
        coll = db.collection(Person)
        objs = people(n)
        for obj in reversed(objs):  # targets first, so every put's link check passes
            await coll.put(obj)
        await db.kv.put(b"k", b"v")
        await db.export_jsonl(out, kv=True)
        return out, await space(db)


def sample(items: list[Any], seed: int, k: int = SAMPLE) -> list[Any]:
    if LONG or len(items) <= k:
        return items
    rng = random.Random(seed)
    return [*sorted(rng.sample(items[:-1], k - 1), key=items.index), items[-1]]


async def test_a_crash_in_the_write_phase_leaves_whole_batches_and_replace_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "CHUNK", 4)
    file, want = await export_file(tmp_path)
    fs = RecordingFS()
    async with quanta.open(PATH, fs=fs, entities=[Person], **SMALL_OPTIONS):
        pass
    states: list[list[tuple[bytes, bytes]]] = [[]]
    images: list[MemoryFileSystem] = []

    def freeze_before(_: object) -> None:
        with fs._mutex:
            images.append(freeze(fs))

    async with quanta.open(PATH, fs=fs, entities=[Person], **SMALL_OPTIONS) as db:
        fs.fail_hook = freeze_before
        batches: list[int] = []
        original = importer._write_batch

        async def recording(*args: Any, **kwargs: Any) -> None:
            await original(*args, **kwargs)
            fs.fail_hook = None
            states.append(await space(db))
            batches.append(len(states))
            fs.fail_hook = freeze_before

        monkeypatch.setattr(importer, "_write_batch", recording)
        await db.import_jsonl(file)
        fs.fail_hook = None
        monkeypatch.setattr(importer, "_write_batch", original)
    assert states[-1] == want and len(batches) >= 8  # 31 lines in batches of 4
    images.append(freeze(fs))
    seen = set()
    for point, img in sample(list(enumerate(images)), 7):
        async with quanta.open(PATH, fs=img.crash(), entities=[Person], **SMALL_OPTIONS) as db:
            got = await space(db)
            assert got in states, f"crash point {point}: not the state after a whole number of batches"
            seen.add(states.index(got))
            await db.import_jsonl(file, on_conflict="replace")
            assert await space(db) == want, f"crash point {point}: the re-run did not finish the import"
    assert len(seen) >= 3, seen  # the sample met the import at several different batches


async def test_a_damaged_file_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    file, want = await export_file(tmp_path, n=6)
    data = file.read_bytes()
    rng = random.Random(11)
    cases: list[tuple[str, bytes]] = []
    offsets = range(len(data)) if LONG else sorted(rng.sample(range(len(data)), 60))
    for i in offsets:
        flipped = bytearray(data)
        flipped[i] ^= 1 << rng.randrange(8)
        cases.append((f"bit flip at byte {i}", bytes(flipped)))
    ends = [i + 1 for i, b in enumerate(data) if b == 0x0A][:-1]  # every line boundary but the end
    cuts = ends + (list(range(1, len(data) - 1)) if LONG else rng.sample(range(1, len(data) - 1), 20))
    cases += [(f"cut at byte {n}", data[:n]) for n in cuts]
    damaged = tmp_path / "damaged.jsonl"
    async with quanta.open(PATH, fs=MemoryFileSystem(), entities=[Person]) as db:
        for what, body in cases:
            damaged.write_bytes(body)
            with pytest.raises(quanta.ImportValidationError):
                await db.import_jsonl(damaged)
            assert await space(db) == [], what
            assert [kv async for kv in db.kv.scan()] == [], what
        damaged.write_bytes(data)  # and the intact file imports, exactly
        await db.import_jsonl(damaged)
        assert await space(db) == want
