"""Entities: declared classes, typed collections, indexes and planned queries.

    python examples/entities.py

Declares a ``User`` entity with an auto-increment key, a unique email, an index on the name, a
composite index on (city, age) and a multi-entry index on tags; loads 20,000 users in one
atomic batch; then runs the queries an application runs, printing each plan the first time.
It also shows a unique violation (nothing written) and a transaction over a collection.

The database lives in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

try:
    import quanta
except ImportError:  # a checkout without `pip install -e .`: use the package next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import quanta

from quanta import Index, PrimaryKey, Unique

CITIES = ["Oslo", "Rome", "Lima", "Pune", "Kyiv", "Oaxaca"]
TAGS = ["admin", "beta", "ops", "sales"]


@quanta.entity(indexes=[Index("city", "age")])
class User:
    id: Annotated[int, PrimaryKey(auto=True)] = 0
    email: Annotated[str, Unique()]
    name: Annotated[str, Index()]
    city: str
    age: int = 0
    tags: Annotated[list[str], Index(multi=True)] = quanta.field(default_factory=list)


def people(n: int) -> list[User]:
    rng = random.Random(42)
    return [
        User(
            email=f"user{i}@example.com",
            name=f"{rng.choice('ABCDEFGHJKLMNPRSTW')}{rng.randrange(10**6):06d}",
            city=rng.choice(CITIES),
            age=rng.randrange(18, 90),
            tags=rng.sample(TAGS, rng.randrange(0, 3)),
        )
        for i in range(n)
    ]


async def show(title: str, query: quanta.Query[User]) -> None:
    t = time.perf_counter()
    rows = await query.all()
    ms = (time.perf_counter() - t) * 1e3
    print(f"\n{title}: {len(rows)} row(s) in {ms:.1f} ms")
    print("  " + query.explain().replace("\n", "\n  "))


async def main_async(path: str) -> None:
    async with quanta.open(path) as db:
        users = db.collection(User)
        t = time.perf_counter()
        await users.put_many(people(20_000))
        print(f"put_many: 20,000 users with 4 indexes in one durable batch, {time.perf_counter() - t:.2f} s")

        await show(
            "Oslo, 30 and over, by name, 10 after the first 20",
            users.where(User.city == "Oslo", User.age >= 30).order_by(User.name).limit(10).offset(20),
        )
        await show("by email (unique index)", users.where(User.email == "user123@example.com"))
        await show(
            "two cities, aged 40-45",
            users.where(quanta.in_(User.city, ["Lima", "Pune"]), quanta.between(User.age, 40, 45)),
        )
        await show("tagged admin", users.where(quanta.contains(User.tags, "admin")).limit(5))
        await show(
            "names starting with A, oldest first",
            users.where(User.name.startswith("A")).order_by(quanta.desc(User.age)).limit(3),
        )
        await show(
            "not in Oslo, under 20 (a != on the first field of the composite index)",
            users.where(~(User.city == "Oslo"), User.age < 20),
        )

        oslo = users.where(User.city == "Oslo")
        print(
            f"\nOslo: {await oslo.count()} users, ages {await oslo.min(User.age)}-{await oslo.max(User.age)}, "
            f"mean {await oslo.avg(User.age):.1f}; cities: {sorted(await users.query().distinct(User.city))}"
        )

        try:
            await users.put(User(email="user7@example.com", name="Copycat", city="Oslo"))
        except quanta.UniqueViolationError as exc:
            print(f"\nUniqueViolationError: {exc}")

        async with db.transaction() as tx:  # a read-modify-write over the collection
            members = tx.collection(User)
            first = await members.get(1)
            assert first is not None
            first.tags = [*first.tags, "founder"]
            await members.put(first)
        print(f"user 1 after the transaction: {await users.get(1)}")
        print(f"deleted everyone in Kyiv under 25: {await users.where(User.city == 'Kyiv', User.age < 25).delete()}")
        print(f"users now: {await users.count()}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="quanta-entities-") as tmp:
        asyncio.run(main_async(os.path.join(tmp, "db")))


if __name__ == "__main__":
    main()
