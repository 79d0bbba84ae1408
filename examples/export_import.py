"""Export and import (JSON Lines): a database to a file and back, byte for byte.

    python examples/export_import.py

Declares an ``Author``/``Book`` pair with a unique email, a link, a datetime with a zone, a
Decimal, an enum, a set and a nested dataclass. It exports the database to a JSON Lines file
(shown), imports the file into an empty database and checks that every record and index entry
came back as the same bytes; then it shows an import that the validation pass refuses (with
the bad lines' numbers, nothing written), ``on_conflict="skip"`` and ``"replace"``, and
``Query.to_dicts()`` feeding ``json.dumps``.

The databases live in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import asyncio
import enum
import json
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

try:
    import quanta
except ImportError:  # a checkout without `pip install -e .`: use the package next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import quanta


class Format(enum.Enum):
    PAPER = "paper"
    EBOOK = "ebook"


@dataclass(frozen=True)
class Shelf:
    room: str
    row: int


@quanta.entity
class Author:
    id: int = quanta.auto()
    email: Annotated[str, quanta.Unique()] = ""
    name: str = ""


@quanta.entity
class Book:
    id: int = quanta.auto()
    title: Annotated[str, quanta.Index()] = ""
    author: quanta.Link[Author] = quanta.link(on_delete="cascade")
    published: datetime | None = None
    price: Decimal = Decimal("0")
    format: Format = Format.PAPER
    tags: set[str] = quanta.field(default_factory=set)
    shelf: Shelf | None = None


async def entity_bytes(db: quanta.Database) -> list[tuple[bytes, bytes]]:
    """Every record, index entry and unique entry, as raw bytes (kinds r, i, u of the
    reserved entity key space)."""
    out: list[tuple[bytes, bytes]] = []
    async with db.snapshot() as snap:
        for kind in b"riu":
            lo, hi = b"\x00Q" + bytes([kind]), b"\x00Q" + bytes([kind + 1])
            out += [kv async for kv in snap.kv.scan(lo, hi, include_reserved=True)]
    return out


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "library.jsonl"
        async with quanta.open(Path(tmp) / "src", entities=[Author, Book]) as src:
            ann = await src.collection(Author).put(Author(email="ann@example.com", name="Ann"))
            await src.collection(Book).put_many(
                [
                    Book(
                        title="Fjords",
                        author=ann,
                        published=datetime(2024, 5, 17, 10, 0, tzinfo=ZoneInfo("Europe/Oslo")),
                        price=Decimal("19.90"),
                        tags={"travel", "norway"},
                        shelf=Shelf("B", 3),
                    ),
                    Book(title="Glaciers", author=ann, format=Format.EBOOK, price=Decimal("7.5")),
                ]
            )
            await src.kv.put(b"settings:theme", b"dark")
            report = await src.export_jsonl(file, kv=True)
            print(f"exported {report.records} and {report.kv} kv pair(s) in {report.lines} lines")
            before = await entity_bytes(src)
            rows = await src.collection(Book).where(Book.title == "Fjords").to_dicts()
            print("to_dicts:", json.dumps(rows))

        lines = file.read_text().splitlines()
        print("the file (header shortened):")
        print(" ", lines[0][:100], "...")
        for line in lines[1:]:
            print(" ", line)

        async with quanta.open(Path(tmp) / "dst", entities=[Author, Book]) as dst:
            report = await dst.import_jsonl(file)
            print(f"imported {report.records}; same bytes: {await entity_bytes(dst) == before}")

            try:  # the same file again: every primary key exists now
                await dst.import_jsonl(file)
            except quanta.ImportValidationError as exc:
                print(f"refused, {exc.count} problem(s); first: line {exc.problems[0][0]}: {exc.problems[0][1]}")
            report = await dst.import_jsonl(file, on_conflict="skip")
            print(f"on_conflict='skip': {report.skipped} left as they were")
            report = await dst.import_jsonl(file, on_conflict="replace")
            print(f"on_conflict='replace': {report.replaced} overwritten")

            # A hand-edited file: a taken unique email and a link to no author.
            records = [json.loads(line) for line in lines[1:-1]]
            author = next(j for j in records if j.get("entity") == "Author")
            book = next(j for j in records if j.get("entity") == "Book")
            author["record"]["id"] = 5  # a new author ... with Ann's email
            book["record"].update(id=10, author=99)
            bad = Path(tmp) / "bad.jsonl"
            trailer = {"end": {"records": 2, "kv": 0}}
            bad.write_text("\n".join([lines[0], json.dumps(author), json.dumps(book), json.dumps(trailer)]) + "\n")
            try:
                await dst.import_jsonl(bad)
            except quanta.ImportValidationError as exc:
                for n, message in exc.problems:
                    print(f"refused: line {n}: {message}")


if __name__ == "__main__":
    asyncio.run(main())
