"""Transactions: concurrent money transfers that never lose a cent.

    python examples/transactions.py

Twenty tasks move money between five accounts at random, each transfer a read-modify-write
transaction run with ``db.run_transaction``. Transfers that collide (two tasks changing the
same account at once) fail their commit with ``ConflictError`` and are retried in a fresh
transaction; nothing of a failed attempt is ever written. At the end the total is exactly what
it was, and ``stats()`` tells how many commits conflicted.

It also shows a read-only transaction (a consistent report while writers run) and what a
conflict looks like when you handle it yourself.

The database lives in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
from pathlib import Path

try:
    import quanta
except ImportError:  # a checkout without `pip install -e .`: use the package next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import quanta

ACCOUNTS = [b"acct:%d" % i for i in range(5)]
TASKS, TRANSFERS_PER_TASK = 20, 25


async def transfer(db: quanta.Database, src: bytes, dst: bytes, amount: int) -> bool:
    async def move(tx: quanta.Transaction) -> bool:
        balance = int(await tx.kv.get(src) or b"0")
        if balance < amount:
            return False  # nothing written: the transaction commits empty, for free
        target = int(await tx.kv.get(dst) or b"0")
        await tx.kv.put(src, b"%d" % (balance - amount))
        await tx.kv.put(dst, b"%d" % (target + amount))
        return True

    return await db.run_transaction(move, retries=50)


async def worker(db: quanta.Database, rng: random.Random) -> int:
    done = 0
    for _ in range(TRANSFERS_PER_TASK):
        src, dst = rng.sample(ACCOUNTS, 2)
        done += await transfer(db, src, dst, rng.randint(1, 40))
    return done


async def total(db: quanta.Database) -> int:
    # A read-only transaction: one consistent snapshot of every account, no commit, no conflict.
    async with db.transaction(read_only=True) as tx:
        return sum(int(v) for _, v in [kv async for kv in tx.kv.scan(prefix=b"acct:")])


async def main_async(path: str) -> None:
    # durability="sync": each commit waits for its fsync, so transactions overlap and collide.
    async with quanta.open(path, durability="sync") as db:
        await db.kv.put_many([(acct, b"100") for acct in ACCOUNTS])
        print(f"total before: {await total(db)}")

        rng = random.Random(7)
        async with asyncio.TaskGroup() as tg:
            jobs = [tg.create_task(worker(db, random.Random(rng.random()))) for _ in range(TASKS)]
            tg.create_task(total(db))  # a report running alongside the writers
        stats = await db.stats()
        print(
            f"{sum(j.result() for j in jobs)} transfers made, {stats['transactions_committed']} committed, "
            f"{stats['transaction_conflicts']} commits conflicted and were retried"
        )
        balances = [int(await db.kv.get(acct) or b"0") for acct in ACCOUNTS]
        print(f"balances: {balances}, total after: {sum(balances)}")
        assert sum(balances) == 100 * len(ACCOUNTS), "money was created or lost"

        # A conflict by hand: two transactions read the same account and both write it.
        first, second = db.transaction(), db.transaction()
        a = int(await first.kv.get(ACCOUNTS[0]) or b"0")
        b = int(await second.kv.get(ACCOUNTS[0]) or b"0")
        await first.kv.put(ACCOUNTS[0], b"%d" % (a + 1))
        await second.kv.put(ACCOUNTS[0], b"%d" % (b + 1))
        await first.commit()
        try:
            await second.commit()
        except quanta.ConflictError as exc:
            print(f"second commit refused: ConflictError on key {exc.key!r}; nothing was written")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="quanta-transactions-") as tmp:
        asyncio.run(main_async(os.path.join(tmp, "db")))


if __name__ == "__main__":
    main()
