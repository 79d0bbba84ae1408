"""Schema versions and migrations: one entity through three releases of an application.

Release 1 stores users. Release 2 adds an index: built in the background after the database
opens, used by queries once complete. Release 3 splits ``name`` into ``first`` and ``last``
(a ``@quanta.migration`` step, run once at open) and adds a field with a default (filled in
automatically). Going back to release 1 is refused, with the data untouched.

Run: ``python examples/migrations.py`` (it works in a temporary directory).
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Annotated, Any

import quanta
from quanta import Index, Unique

# Three releases of one entity, stored as "User": each class is what one release declares.


@quanta.entity(name="User")
class UserV1:
    id: int = quanta.auto()
    email: Annotated[str, Unique()]
    name: str


@quanta.entity(name="User")
class UserV2:
    id: int = quanta.auto()
    email: Annotated[str, Unique()]
    name: Annotated[str, Index()]  # a new index


@quanta.entity(name="User", version=2)
class UserV3:
    id: int = quanta.auto()
    email: Annotated[str, Unique()]
    first: str
    last: Annotated[str, Index()]
    city: str = "Oslo"  # a new field with a default


@quanta.migration(UserV3, from_version=1, to_version=2)
async def split_name(record: dict[str, Any]) -> dict[str, Any]:
    first, _, last = record.pop("name").partition(" ")
    return {**record, "first": first, "last": last}


def show(p: quanta.SchemaProgress) -> None:
    if p.finished:
        what = f"index {p.index!r}" if p.index else f"{p.task} to version {p.to_version}"
        print(f"   progress: {p.entity}: {what} done ({p.done:,} records)")


async def main(path: str) -> None:
    async with quanta.open(path, entities=[UserV1]) as db:
        await db.collection(UserV1).put_many(UserV1(email=f"u{i}@example.com", name=f"User {i}") for i in range(5_000))
        print("1. release 1 stored 5,000 users")

    async with quanta.open(path, entities=[UserV2], on_progress=show) as db:
        users = db.collection(UserV2)
        query = users.where(UserV2.name == "User 42")
        print(f"2. release 2: while the new index builds, a query on name scans: {query.plan().access}")
        found = await query.all()
        await db.indexes_ready()
        query = users.where(UserV2.name == "User 42")
        same = await query.all() == found
        print(f"   once it is built, the query uses it: {query.plan().access}; same result: {same}")

    async with quanta.open(path, entities=[UserV3], on_progress=show) as db:
        u = await db.collection(UserV3).get(42)
        print(f"3. release 3 migrated every record once: {u}")
        state = await db.schema_state()  # also: python -m quanta schema PATH
        for h in state.schemas["User"].history:
            print(f"   history: v{h.version} {h.event}: {h.detail}")

    try:
        async with quanta.open(path, entities=[UserV1]):
            print("4. release 1 opened the migrated data (it should not)")
    except quanta.SchemaMismatchError as exc:
        first = str(exc).splitlines()[1].strip()
        print(f"4. release 1 again is refused (SchemaMismatchError): {first}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(f"{tmp}/app"))
