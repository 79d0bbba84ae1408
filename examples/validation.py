"""Validation: constraints and validators checked before anything is written.

    python examples/validation.py

Declares a ``Booking`` entity with field constraints (``Range``, ``Length``, ``Pattern``,
``OneOf``, on a field, inside ``| None`` and on list elements), a field validator and two
entity-level (cross-field) rules. Then it shows what a ``ValidationError`` holds, that a batch
with one invalid booking writes nothing, that a transaction goes on after an invalid ``put``,
and that the fixed batch then loads in one atomic ``put_many``.

The database lives in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

try:
    import quanta
except ImportError:  # a checkout without `pip install -e .`: use the package next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import quanta

from quanta import Index, Length, OneOf, Pattern, PrimaryKey, Range


def ends_after_start(b: Booking) -> None:
    """An entity-level rule: a plain function of the object, given to @quanta.entity."""
    if b.end <= b.start:
        raise ValueError("must end after it starts")


@quanta.entity(validators=[ends_after_start])
class Booking:
    id: Annotated[int, PrimaryKey(auto=True)] = 0
    guest: Annotated[str, Length(min=1, max=80)]
    code: Annotated[str, Pattern(r"[A-Z]{3}-\d{4}"), Index()]
    room: Annotated[str, OneOf("single", "double", "suite")] = "single"
    guests: Annotated[int, Range(1, 4)] = 1
    start: date
    end: date
    notes: Annotated[str, Length(max=200)] | None = None
    tags: list[Annotated[str, Length(min=1, max=12)]] = quanta.field(default_factory=list)

    @quanta.validator("guest")
    @staticmethod
    def _no_digits(value: str) -> None:
        """A field rule: called with the value (a staticmethod, so type checkers agree)."""
        if any(c.isdigit() for c in value):
            raise ValueError("must not contain digits")

    @quanta.validator()
    def _suite_for_groups(self) -> bool:
        """A cross-field rule in the class body: returning False rejects."""
        return self.room == "suite" or self.guests <= 2


def booking(n: int, **changes: object) -> Booking:
    start = date(2025, 1, 1) + timedelta(days=n % 300)
    values: dict[str, object] = {
        "guest": f"Guest {chr(65 + n % 26)}",
        "code": f"BKG-{n % 10_000:04d}",
        "start": start,
        "end": start + timedelta(days=1 + n % 7),
        "tags": ["late"] if n % 5 == 0 else [],
    }
    values.update(changes)
    return Booking(**values)  # type: ignore[arg-type]


async def main_async(path: str) -> None:
    async with quanta.open(path) as db:
        bookings = db.collection(Booking)

        print("1. one put, several broken rules, one error listing all of them:")
        bad = booking(1, guest="", code="bkg-1", guests=9, notes="x" * 300, tags=["ok", ""])
        try:
            await bookings.put(bad)
        except quanta.ValidationError as exc:
            print("   " + str(exc).replace("\n", "\n   "))
            print(f"   exc.violations[2]: {exc.violations[2]!r}")

        print("\n2. field rules first; cross-field rules once every field is valid:")
        for wrong in (booking(2, guest="R2D2"), booking(3, end=date(2024, 1, 1)), booking(4, guests=3)):
            try:
                await bookings.put(wrong)
            except quanta.ValidationError as exc:
                print(f"   {exc}")

        print("\n3. a batch with one invalid booking writes nothing:")
        batch = [booking(n) for n in range(1_000)]
        batch[617].guests = 0
        try:
            await bookings.put_many(batch)
        except quanta.ValidationError as exc:
            print(f"   {exc}")
        print(f"   stored: {await bookings.count()}")

        print("\n4. in a transaction, an invalid put raises and the transaction goes on:")
        async with db.transaction() as tx:
            c = tx.collection(Booking)
            await c.put(booking(10))
            try:
                await c.put(booking(11, room="penthouse"))
            except quanta.ValidationError as exc:
                print(f"   {exc}")
            await c.put(booking(12))
        print(f"   committed: {await bookings.count()} bookings")

        print("\n5. fixed, the batch loads in one atomic put_many:")
        batch[617].guests = 1
        t = time.perf_counter()
        await bookings.put_many(batch)
        elapsed = time.perf_counter() - t
        print(f"   {len(batch):,} bookings validated and stored in {elapsed * 1e3:.0f} ms")
        print(f"   stored: {await bookings.count()}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main_async(str(Path(tmp) / "db")))


if __name__ == "__main__":
    main()
