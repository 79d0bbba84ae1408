"""Data-driven cases for the query executor (tests/testdata/executor/<case>): one corpus of
queries, run over the executor's three read views, which must all answer exactly as the
case file says:

* ``snapshot``: every write committed; queries of the database's collection (one snapshot
  per call, the paced async driver);
* ``transaction``: the writes after ``begin`` are buffered in one open transaction (never
  committed) and the queries after it run on the transaction's collection, so they read
  the committed state with the transaction's own writes merged in;
* ``live``: every write committed; each query is opened as a live query (``watch()``,
  ``watch_count()``, ``watch_min()`` ...) and its first emission is the answer (the
  synchronous core, read inside the bus's publish path).

Each case is a script over one entity, ``ExecItem`` (see below), in the format of
tests/support/datadriven.py (``QUANTA_REWRITE=1`` regenerates the expected output).
Commands:

* ``put id=1 score=10 tag=a [code=X] [labels=p,q] [weight=1.5]; id=2 ...``: one commit (or,
  in the transaction after ``begin``, buffered writes) putting these records.
* ``delete 1, 2``: deleting these primary keys.
* ``begin``: from here on the transaction mode buffers its writes (at most once per file).
* ``query [where TERM [and TERM ...]] [order_by [-]FIELD ...] [limit N] [offset N] [AGG]``:
  prints ``plan: <access path>`` and then the result as ``#id(score,tag)`` items on one line
  (``(empty)`` when none), or for ``AGG`` (``count``, ``min F``, ``max F``, ``sum F``,
  ``avg F``) ``<agg>: <value>``. A term is ``FIELD OP VALUE`` with OP one of ``== != < <= >
  >=``, ``FIELD in V,V,...``, ``FIELD contains V``, ``FIELD startswith V``, ``FIELD is_none``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pytest
from datadriven import OPS, run_case_file

import quanta
from quanta import Index, PrimaryKey, Unique
from quanta._storage.vfs import MemoryFileSystem

TESTDATA = Path(__file__).parent.parent / "testdata" / "executor"
MODES = ("snapshot", "transaction", "live")


@quanta.entity(indexes=[Index("tag", "score")])
class ExecItem:
    id: Annotated[int, PrimaryKey()]
    score: Annotated[int, Index()]
    tag: str
    code: Annotated[str | None, Unique()] = None
    labels: Annotated[list[str], Index(multi=True)] = quanta.field(default_factory=list)
    weight: float = 0.0


def _value(text: str) -> Any:
    if text == "None":
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    if text in ("nan", "inf", "-inf") or "." in text:
        try:
            return float(text)
        except ValueError:
            return text
    return text


def _record(text: str) -> ExecItem:
    fields: dict[str, Any] = {}
    for word in text.split():
        name, _, raw = word.partition("=")
        if name == "labels":
            fields[name] = [v for v in raw.split(",") if v]
        elif name == "weight":
            fields[name] = float(raw)
        elif name in ("tag", "code"):
            fields[name] = None if raw == "None" else raw
        else:
            fields[name] = int(raw)
    return ExecItem(**fields)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return repr(value)


def _items(objs: list[ExecItem]) -> str:
    return " ".join(f"#{o.id}({o.score},{o.tag})" for o in objs) or "(empty)"


class ExecutorScript:
    """Runs one case file's commands in one mode against a fresh in-memory database."""

    def __init__(self, runner: asyncio.Runner, mode: str) -> None:
        self.runner = runner
        self.mode = mode
        self.db: quanta.Database = runner.run(self._open())
        self.tx: quanta.Transaction | None = None

    @staticmethod
    async def _open() -> quanta.Database:
        return await quanta.open("/executor", entities=[ExecItem], fs=MemoryFileSystem())

    def _collection(self) -> quanta.Collection[ExecItem]:
        if self.tx is not None:
            return self.tx.collection(ExecItem)
        return self.db.collection(ExecItem)

    def run(self, cmd: str) -> list[str]:
        verb, _, rest = cmd.partition(" ")
        if verb == "begin":
            if self.mode == "transaction":
                self.tx = self.runner.run(self._begin())
            return ["ok"]
        if verb == "put":
            records = [_record(r) for r in rest.split(";")]
            self.runner.run(self._write(lambda c: c.put_many(records)))
            return ["ok"]
        if verb == "delete":
            pks = [int(r) for r in rest.split(",")]
            self.runner.run(self._write(lambda c: c.delete_many(pks)))
            return ["ok"]
        if verb == "query":
            return self.runner.run(self._query(rest.split()))
        raise AssertionError(f"unknown command {cmd!r}")

    async def _begin(self) -> quanta.Transaction:
        return await self.db.transaction().__aenter__()

    async def _write(self, op: Callable[[quanta.Collection[ExecItem]], Any]) -> None:
        await op(self._collection())

    def _build(self, words: list[str]) -> tuple[quanta.Query[ExecItem], tuple[str, ...]]:
        q = self._collection().query()
        agg: tuple[str, ...] = ()
        i = 0
        while i < len(words):
            word = words[i]
            if word in ("where", "and"):
                name, op = words[i + 1], words[i + 2]
                field = getattr(ExecItem, name)
                if op == "is_none":
                    q, i = q.where(field.is_none()), i + 3
                    continue
                raw = words[i + 3]
                if op == "in":
                    q = q.where(quanta.in_(field, [_value(v) for v in raw.split(",")]))
                elif op == "contains":
                    q = q.where(quanta.contains(field, raw))
                elif op == "startswith":
                    q = q.where(field.startswith(raw))
                else:
                    q = q.where(OPS[op](field, _value(raw)))
                i += 4
            elif word == "order_by":
                i += 1
                keys = []
                while i < len(words) and words[i] not in ("where", "and", "limit", "offset", *AGGS):
                    f = words[i]
                    field = getattr(ExecItem, f.removeprefix("-"))
                    keys.append(quanta.desc(field) if f.startswith("-") else field)
                    i += 1
                q = q.order_by(*keys)
            elif word == "limit":
                q, i = q.limit(int(words[i + 1])), i + 2
            elif word == "offset":
                q, i = q.offset(int(words[i + 1])), i + 2
            elif word == "count":
                agg, i = ("count",), i + 1
            elif word in AGGS:
                agg, i = (word, words[i + 1]), i + 2
            else:
                raise AssertionError(f"unknown query word {word!r}")
        return q, agg

    async def _query(self, words: list[str]) -> list[str]:
        q, agg = self._build(words)
        out = [f"plan: {q.plan().access}"]
        if self.mode == "live" and self.tx is None:
            answer = await self._live(q, agg)
        else:
            answer = await self._run(q, agg)
        return [*out, answer]

    async def _run(self, q: quanta.Query[ExecItem], agg: tuple[str, ...]) -> str:
        if not agg:
            return _items(await q.all())
        if agg == ("count",):
            return f"count: {await q.count()}"
        kind, name = agg
        value = await getattr(q, kind)(getattr(ExecItem, name))
        return f"{kind} {name}: {_show(value)}"

    async def _live(self, q: quanta.Query[ExecItem], agg: tuple[str, ...]) -> str:
        if not agg:
            return _items(await _first(q.watch()))
        if agg == ("count",):
            return f"count: {await _first(q.watch_count())}"
        kind, name = agg
        value = await _first(getattr(q, f"watch_{kind}")(getattr(ExecItem, name)))
        return f"{kind} {name}: {_show(value)}"

    def close(self) -> None:
        if self.tx is not None:
            self.runner.run(self.tx.rollback())
        self.runner.run(self.db.close())


AGGS = ("min", "max", "sum", "avg")


async def _first(watch: quanta.Watch[Any]) -> Any:
    try:
        return await anext(watch)
    finally:
        await watch.aclose()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(TESTDATA.glob("*")), ids=lambda p: p.name)
def test_golden(case: Path, mode: str) -> None:
    with asyncio.Runner() as runner:
        script = ExecutorScript(runner, mode)
        try:
            run_case_file(case, script.run)
        finally:
            script.close()


def test_golden_cases_cover_every_access_path() -> None:
    text = "\n".join(p.read_text() for p in TESTDATA.glob("*"))
    for access in ("pk_get", "pk_range", "unique_get", "index_range", "full_scan"):
        assert f"plan: {access}" in text, access
    assert text.count("begin") >= 3  # own writes merged into every kind of path
