"""Unique indexes stay enforced across ``db.repair()`` (Catalog.unique_checkable).

A repair deletes an entity's unique entries and builds them again from the records. A put
checked in between would not see the entry of a value whose record is not re-claimed yet:
before this was fixed, a concurrent duplicate was accepted, and the rebuild then found two
records sharing a value and removed the unique index. Now:

* while a repair rebuilds an entity's unique indexes, puts of that entity wait (as
  PostgreSQL's ``REINDEX`` blocks writes to its table), then are checked against the
  complete index: a duplicate raises UniqueViolationError, a new value is written; puts of
  other entities and reads go on meanwhile; so does a put once only the entity's non-unique
  indexes are left;
* (a transaction whose snapshot is older than the deletion checks against the entries of
  its snapshot, which are complete: nothing to wait for there, nothing tested here);
* after a repair that stopped part-way with a unique index half-rebuilt, puts of that entity
  raise IntegrityError (nothing written) until a second repair finishes it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import pytest

import quanta
from quanta import Index, IntegrityError, PrimaryKey, Unique, UniqueViolationError
from quanta._catalog import builder as builder_module
from quanta._storage.vfs import MemoryFileSystem


@quanta.entity
class Account:
    id: Annotated[int, PrimaryKey()]
    code: Annotated[str, Unique()]
    team: Annotated[str, Index()] = ""


@quanta.entity
class Note:
    id: Annotated[int, PrimaryKey()]
    text: Annotated[str, Unique()] = ""


N = 50


async def opened() -> quanta.Database:
    db = await quanta.open("/db", fs=MemoryFileSystem(), entities=[Account, Note])
    await db.collection(Account).put_many([Account(id=i, code=f"c{i}", team="ab"[i % 2]) for i in range(N)])
    return db


def pause_builds(monkeypatch: pytest.MonkeyPatch, hook: Callable[[str], Awaitable[None]]) -> list[str]:
    """Run ``hook(index)`` before each ``builder.build`` of the repair (the index's entries are
    deleted then); returns the indexes reached, in order."""
    real = builder_module.build
    reached: list[str] = []

    async def build(store: Any, transactions: Any, info: Any, index: Any, job: Any, report: Any) -> None:
        reached.append(f"{info.name}.{index.name}")
        await hook(f"{info.name}.{index.name}")
        await real(store, transactions, info, index, job, report)

    monkeypatch.setattr(builder_module, "build", build)
    return reached


async def turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_put_during_a_unique_rebuild_waits_and_is_checked_against_the_whole_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = await opened()
    accounts, notes = db.collection(Account), db.collection(Note)
    tasks: dict[str, asyncio.Task[Any]] = {}

    async def hook(index: str) -> None:
        if index == "Account.code":  # its entries are deleted: c3's claim is gone
            tasks["dup"] = asyncio.create_task(accounts.put(Account(id=100, code="c3")))
            tasks["new"] = asyncio.create_task(accounts.put(Account(id=101, code="fresh")))
            await turns()
            assert not tasks["dup"].done() and not tasks["new"].done()  # they wait
            await notes.put(Note(id=1, text="elsewhere"))  # another entity: not held up
            assert await accounts.get(3) == Account(id=3, code="c3", team="b")  # reads go on
        elif index == "Account.team":  # only a non-unique index left: puts go on
            await asyncio.wait_for(accounts.put(Account(id=102, code="later")), 5)

    reached = pause_builds(monkeypatch, hook)
    report = await db.repair()
    assert "Account.code" in report.indexes  # the unique index survived the repair
    assert reached.index("Account.code") < reached.index("Account.team")
    with pytest.raises(UniqueViolationError):
        await tasks["dup"]
    assert await tasks["new"] == 101
    assert await accounts.get(100) is None
    assert await accounts.where(Account.code == "c3").all() == [Account(id=3, code="c3", team="b")]
    assert (await db.verify(deep=True)).ok
    with pytest.raises(UniqueViolationError):  # and it still rejects duplicates afterwards
        await accounts.put(Account(id=103, code="fresh"))
    await db.close()


async def test_without_the_wait_the_duplicate_slips_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """The previous test can fail: with the wait taken out, the duplicate is written and the
    repair removes the unique index."""
    monkeypatch.setattr(quanta._catalog.catalog.Catalog, "unique_pending", lambda self, name: False)
    db = await opened()
    accounts = db.collection(Account)

    async def hook(index: str) -> None:
        if index == "Account.code":
            await accounts.put(Account(id=100, code="c3"))

    pause_builds(monkeypatch, hook)
    with pytest.raises(quanta.SchemaMismatchError, match="records 3 and 100 both have 'c3'"):
        await db.repair()
    await db.close()


async def test_after_a_repair_stopped_mid_unique_rebuild_puts_are_refused_until_it_is_finished(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = await opened()
    accounts, notes = db.collection(Account), db.collection(Note)
    waiting: list[asyncio.Task[Any]] = []

    class Stop(Exception):
        pass

    async def hook(index: str) -> None:
        if index == "Account.code":
            waiting.append(asyncio.create_task(accounts.put(Account(id=100, code="c3"))))
            await turns()
            raise Stop

    pause_builds(monkeypatch, hook)
    with pytest.raises(Stop) as caught:
        await db.repair()
    assert any("IntegrityError" in note for note in caught.value.__notes__)
    # The put that waited, and every later put of Account, is refused; nothing is written.
    with pytest.raises(IntegrityError, match=r"'code'.*stopped part-way"):
        await waiting[0]
    with pytest.raises(IntegrityError, match="nothing was written"):
        await accounts.put(Account(id=101, code="new"))
    assert await accounts.get(100) is None and await accounts.get(101) is None
    await notes.put(Note(id=1, text="fine"))  # other entities are not affected
    await accounts.delete(5)  # a delete needs no uniqueness check
    monkeypatch.undo()
    await db.repair()  # finishes it
    with pytest.raises(UniqueViolationError):
        await accounts.put(Account(id=100, code="c3"))
    assert await accounts.put(Account(id=101, code="new")) == 101
    assert (await db.verify(deep=True)).ok
    await db.close()
