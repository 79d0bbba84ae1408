"""A writer process for the browser test: opens the database, loads people, then commits one
more person per ``put`` line on stdin (answering ``seq N``), until ``quit``."""

from __future__ import annotations

import asyncio
import sys

from inspector_models import Person, people

import quanta


async def main(path: str) -> None:
    async with quanta.open(path, entities=[Person]) as db:
        users = db.collection(Person)
        await users.put_many(people(0, 40))
        await db.flush()  # a table file, so the engine page has a level to show
        await users.put_many(people(40, 60))
        print(f"ready {db.seq}", flush=True)
        loop = asyncio.get_running_loop()
        n = 1000
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line in ("", "quit"):
                return
            if line == "put":
                await users.put(Person(id=n, name=f"live{n}", city="Oslo", age=42))
                n += 1
                print(f"seq {db.seq}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
