"""Data-driven cases for live queries (tests/testdata/live/<case>): commits in, emissions out.

Each case file is a script over one entity, ``LiveCaseItem(id, score, tag)`` (``score``
indexed), in the format of tests/support/datadriven.py (``QUANTA_REWRITE=1`` regenerates the expected output).
Commands:

* ``watch NAME list|diff|count [where FIELD OP VALUE] [order_by [-]FIELD ...] [limit N]``:
  subscribe a live query (an Rx observer on the running loop); prints its first emission.
* ``put ID SCORE TAG[, ID SCORE TAG ...]``: one transaction putting these records.
* ``delete ID[, ID ...]``: one transaction deleting them.

After a commit, every watch that emitted prints ``NAME: <emission>`` (in the order the watches
were made), or the block says ``nothing emitted``. A record prints as ``#id(score,tag)``; a
diff lists its non-empty parts: ``removed [pos #id]``, ``inserted [pos #id(...)]``, ``moved
[from->to #id]``, ``modified [pos #id(...)]``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pytest
from datadriven import OPS, run_case_file

import quanta
from quanta import Index, PrimaryKey
from quanta._storage.vfs import MemoryFileSystem

TESTDATA = Path(__file__).parent.parent / "testdata" / "live"


@quanta.entity
class LiveCaseItem:
    id: Annotated[int, PrimaryKey()]
    score: Annotated[int, Index()]
    tag: str


def _value(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def _item(obj: LiveCaseItem) -> str:
    return f"#{obj.id}({obj.score},{obj.tag})"


def _render(item: Any) -> str:
    if isinstance(item, int):
        return str(item)
    if isinstance(item, list):
        return "[" + " ".join(_item(o) for o in item) + "]"
    assert isinstance(item, quanta.ResultDiff)
    parts = []
    if item.removed:
        parts.append("removed [" + " ".join(f"{i} #{o.id}" for i, o in item.removed) + "]")
    if item.inserted:
        parts.append("inserted [" + " ".join(f"{i} {_item(o)}" for i, o in item.inserted) + "]")
    if item.moved:
        parts.append("moved [" + " ".join(f"{a}->{b} #{o.id}" for a, b, o in item.moved) + "]")
    if item.modified:
        parts.append("modified [" + " ".join(f"{i} {_item(o)}" for i, o in item.modified) + "]")
    return " ".join(parts) or "(no change)"


class LiveScript:
    """Runs one case file's commands against a fresh in-memory database."""

    def __init__(self, runner: asyncio.Runner) -> None:
        self.runner = runner
        self.db: quanta.Database = runner.run(self._open())
        self.items = self.db.collection(LiveCaseItem)
        self.watches: dict[str, list[Any]] = {}
        self.errors: dict[str, Exception] = {}
        self.seen: dict[str, int] = {}

    @staticmethod
    async def _open() -> quanta.Database:
        return await quanta.open("/live", fs=MemoryFileSystem())

    def run(self, cmd: str) -> list[str]:
        verb, _, rest = cmd.partition(" ")
        if verb == "watch":
            return self.runner.run(self._watch(rest.split()))
        if verb == "put":
            records = [LiveCaseItem(id=int(i), score=int(s), tag=t) for i, s, t in (r.split() for r in rest.split(","))]
            return self.runner.run(self._commit(lambda c: [c.put(r) for r in records]))
        if verb == "delete":
            ids = [int(r) for r in rest.split(",")]
            return self.runner.run(self._commit(lambda c: [c.delete(i) for i in ids]))
        raise AssertionError(f"unknown command {cmd!r}")

    async def _watch(self, words: list[str]) -> list[str]:
        name, kind, *opts = words
        q = self.items.query()
        i = 0
        while i < len(opts):
            word = opts[i]
            if word == "where":
                field, op, value = opts[i + 1 : i + 4]
                q = q.where(OPS[op](getattr(LiveCaseItem, field), _value(value)))
                i += 4
            elif word == "order_by":
                i += 1
                keys = []
                while i < len(opts) and opts[i] not in ("where", "limit"):
                    f = opts[i]
                    field = getattr(LiveCaseItem, f.removeprefix("-"))
                    keys.append(quanta.desc(field) if f.startswith("-") else field)
                    i += 1
                q = q.order_by(*keys)
            elif word == "limit":
                q = q.limit(int(opts[i + 1]))
                i += 2
            else:
                raise AssertionError(f"unknown watch option {word!r}")
        watches: dict[str, Callable[[], quanta.Watch[Any]]] = {
            "list": q.watch,
            "diff": q.watch_diff,
            "count": q.watch_count,
        }
        feed = watches[kind]()
        got: list[Any] = []
        self.watches[name] = got
        self.seen[name] = 0
        feed.subscribe(got.append, lambda e: self.errors.__setitem__(name, e))
        await self._settle()
        return self._emitted()

    async def _commit(self, write: Callable[[Any], Any]) -> list[str]:
        async def body(tx: quanta.Transaction) -> None:
            for pending in write(tx.collection(LiveCaseItem)):
                if asyncio.iscoroutine(pending):
                    await pending

        await self.db.run_transaction(body)
        await self._settle()
        return self._emitted() or ["nothing emitted"]

    async def _settle(self) -> None:
        for _ in range(5):  # deliveries are loop callbacks scheduled by the commit
            await asyncio.sleep(0)

    def _emitted(self) -> list[str]:
        out = []
        for name, got in self.watches.items():
            for item in got[self.seen[name] :]:
                out.append(f"{name}: {_render(item)}")
            self.seen[name] = len(got)
            if name in self.errors:
                out.append(f"{name}: error {type(self.errors.pop(name)).__name__}")
        return out

    def close(self) -> None:
        self.runner.run(self.db.close())


@pytest.mark.parametrize("case", sorted(TESTDATA.glob("*")), ids=lambda p: p.name)
def test_golden(case: Path) -> None:
    with asyncio.Runner() as runner:
        script = LiveScript(runner)
        try:
            run_case_file(case, script.run)
        finally:
            script.close()


def test_golden_cases_exist() -> None:
    names = {p.name for p in TESTDATA.glob("*")}
    assert {"window", "refill", "move", "count", "unchanged"} <= names
