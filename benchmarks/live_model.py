"""The live-query rows (``live_*``): QuantaDB's live queries, and the naive strategy (re-run
every query on each commit) measured in the same trial.

The data: ``Item(id, owner, ts, title)`` entities with an index on ``(owner, ts)``; ``live_items``
items spread over ``live_owners`` owners (two per owner at the default sizes). A live query
is the one a UI list would hold: ``items.where(Item.owner == k).order_by(desc(Item.ts))
.limit(10)``, query ``k`` for owner ``k``, each subscribed with an Rx observer
(``q.watch().subscribe(on_next)``, delivered on the running loop). Options:
``durability="os"`` (propagation, not fsync, is measured; the change-latency rows cover
fsync), ``memtable_bytes=256 MiB`` (no flush while measuring).

Rows:

- ``live_latency_{1,100,10000}``: 1, 100 or 10,000 live queries open; then ``live_commits``
  single puts of new items, one at a time, commit ``j`` for owner ``7919 j mod Q`` (each commit
  changes exactly one query's result: the new item tops its list). As in the change-latency
  rows (``_harness.change_ping_pong``), the writer awaits the put, stamps ``t1``, then waits
  until the affected observer received the new result (checked: its first item is the item
  just written) before the next commit. ``p50/p99/max_us`` = observer's stamp - ``t1``;
  ``from_call_*`` = observer's stamp - the moment the put was called (this includes the
  incremental maintenance, which runs inside the commit). A 1 ms ticker measures event-loop
  lag meanwhile (``lag_*``; ``lag_on_cpu_p99_ms``: the part of it the loop thread spent
  running, see ``_harness.LagMonitor``). ``open_us_per_query``: opening the live queries (plan, first
  read, registration), per query.
- ``live_write_10000``: the cost of a write (``await items.put(...)`` of a new item for the
  last owner, which no other row writes; yielding to the loop every 10 puts, deliveries
  included) with 10,000 live queries open, of which the written owner's one is affected,
  against the same writes with no live query open (``us_per_write_none``), alternating
  rounds in one database;
  ``vs_no_live_queries`` is the ratio (target <= 2), ``cpu_*`` the same in CPU time of the
  loop thread (less sensitive to a shared machine); ``lag_*`` / ``lag_none_*``: event-loop
  lag during the rounds with / without the live queries.
- ``live_big_result``: one ``watch_diff()`` over a result of every item (``live_items``
  rows, no limit), opened before the other rows write; then ``live_big_commits`` single puts,
  each rewriting the title of item ``7919 j mod live_items`` (a record in the middle of the
  result, which stays in place). The writer stamps ``t0``, awaits the put and waits until the
  observer received the diff that holds the new title (checked: one ``modified`` entry, that
  item). ``p50/p99/max_us`` = observer's stamp - ``t0``: from the call, because the diff is
  made inside the commit's publish, before the put returns; ``put_*``: the put alone, with no
  live query open, in the same database just before. ``rerun_ms`` = the median time of
  ``await q.all()`` of the same query (what the naive strategy pays per commit), measured
  before. The diff must cost O(change): the result's size must not show in the latency.
- ``live_naive_{1,100,10000}``: the same ping-pong as ``live_latency_*``, but the queries are
  maintained the naive way: one change-bus subscriber on the items' records that, for each
  commit, re-runs every query (``await q.all()``, in the order they were opened) and emits
  to a query's observer when its result changed. Fewer commits where it is slow
  (``live_naive_commits_*``); ``rerun_ms_per_commit`` = time to re-run all the queries once.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Annotated, Any

from _harness import LagMonitor, Trial, cpu_ns, lag_summary, latency_summary, median, now_ns, percentile

import quanta
from quanta import Index, PrimaryKey, desc
from quanta._schema.keyspace import record_prefix

BIG_MEMTABLE = 256 << 20
LIMIT = 10
WARMUP = 200
YIELD_EVERY = 10
COUNTS = (1, 100, 10_000)


@quanta.entity(indexes=[Index("owner", "ts")])
class Item:
    """A query by owner, newest first, is one reverse scan of the (owner, ts) index that
    stops after ``LIMIT`` entries, for the live queries' first read and for the naive
    strategy's re-runs alike."""

    id: Annotated[int, PrimaryKey()]
    owner: int
    ts: int
    title: str


def item_query(items: Any, owner: int) -> Any:
    return items.where(Item.owner == owner).order_by(desc(Item.ts)).limit(LIMIT)


class Receiver:
    """The observers' side of a ping-pong: the writer sets ``expect`` (the id it writes), an
    observer calls ``took(rows)`` first thing on receipt."""

    def __init__(self) -> None:
        self.got = asyncio.Event()
        self.at = 0
        self.expect = -1
        self.mismatches = 0
        self.received = 0

    def took(self, rows: list[Any]) -> None:
        t = now_ns()
        if not rows or rows[0].id != self.expect:
            return  # another query's unrelated emission (none are expected)
        self.at = t
        self.received += 1
        self.got.set()


async def _ping_pong(
    items: Any, receiver: Receiver, first_id: int, commits: int, queries: int, warmup: int
) -> dict[str, Any]:
    """``warmup + commits`` puts of new items, owner ``j mod queries``, each awaited, then
    awaited until the affected observer has it. Returns latencies and event-loop lag."""
    lat: list[int] = []
    from_call: list[int] = []
    put_lat: list[int] = []
    monitor = LagMonitor()
    ticker = asyncio.create_task(monitor.run())
    await asyncio.sleep(0.01)
    got = receiver.got
    async with asyncio.timeout(300 + 0.5 * (warmup + commits)):
        for j in range(warmup + commits):
            pk = first_id + j
            receiver.expect = pk
            got.clear()
            obj = Item(id=pk, owner=(j * 7919) % queries, ts=pk, title=f"item {pk}")  # spread over the queries
            t0 = now_ns()
            await items.put(obj)
            t1 = now_ns()
            if not got.is_set():
                await got.wait()
            if j >= warmup:
                lat.append(receiver.at - t1)
                from_call.append(receiver.at - t0)
                put_lat.append(t1 - t0)
    monitor.stop()
    await ticker
    return {
        **latency_summary(lat, ""),
        "p999_us": percentile(lat, 99.9) / 1e3,
        **latency_summary(from_call, "from_call_"),
        **latency_summary(put_lat, "put_"),
        **lag_summary(monitor.samples, "lag_"),
        "lag_on_cpu_p99_ms": percentile(monitor.on_cpu, 99) / 1e6,
        "commits": len(lat),
        "mismatches": (warmup + commits) - receiver.received,
    }


async def _open_live(items: Any, queries: int, receiver: Receiver) -> tuple[list[Any], float]:
    t = now_ns()
    subs = [item_query(items, k).watch().subscribe(receiver.took) for k in range(queries)]
    elapsed = now_ns() - t
    await asyncio.sleep(0)  # the current results are delivered (none matches `expect`)
    return subs, elapsed / 1e3 / queries


class Naive:
    """The naive strategy: every commit to the items re-runs every query."""

    def __init__(self, db: Any, items: Any, queries: int, receiver: Receiver) -> None:
        self.queries = [item_query(items, k) for k in range(queries)]
        self.last: list[list[tuple[int, int]] | None] = [None] * queries
        self.receiver = receiver
        self.rerun_ns: list[int] = []
        self.stream = db.changes(prefix=record_prefix("Item")[0])  # every record of Item
        self.task = asyncio.create_task(self._run())

    async def refresh(self) -> None:
        t = now_ns()
        for i, q in enumerate(self.queries):
            rows = await q.all()
            shape = [(r.id, r.ts) for r in rows]
            if shape != self.last[i]:
                self.last[i] = shape
                self.receiver.took(rows)
        self.rerun_ns.append(now_ns() - t)

    async def _run(self) -> None:
        async for _cs in self.stream:
            await self.refresh()

    async def close(self) -> None:
        await self.stream.aclose()
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


async def _big_result(items: Any, n: int, owners: int, commits: int, warmup: int) -> dict[str, Any]:
    """The ``live_big_result`` row (see the module docstring)."""
    query = items.where(Item.id < n)
    rerun: list[int] = []
    for _ in range(5):
        t = now_ns()
        assert len(await query.all()) == n
        rerun.append(now_ns() - t)
    got = asyncio.Event()
    expect: list[Any] = [None, None]  # [id, title] the next diff must carry
    state = {"at": 0, "received": 0, "size": 0}

    def took(diff: Any) -> None:
        t = now_ns()
        state["size"] += len(diff.inserted) - len(diff.removed)
        if len(diff.modified) == 1 and not diff.inserted and not diff.removed:
            obj = diff.modified[0][1]
            if obj.id == expect[0] and obj.title == expect[1]:
                state["at"] = t
                state["received"] += 1
                got.set()

    alone: list[int] = []
    for j in range(warmup + commits):
        k = (j * 7919) % n
        t0 = now_ns()
        await items.put(Item(id=k, owner=k % owners, ts=k, title=f"before {j}"))
        if j >= warmup:
            alone.append(now_ns() - t0)
    sub = query.watch_diff().subscribe(took)
    await asyncio.sleep(0)  # the first diff: the whole result
    lat: list[int] = []
    async with asyncio.timeout(300):
        for j in range(warmup + commits):
            k = (j * 7919) % n
            expect[:] = [k, f"rewrite {j}"]
            got.clear()
            t0 = now_ns()
            await items.put(Item(id=k, owner=k % owners, ts=k, title=f"rewrite {j}"))
            if not got.is_set():
                await got.wait()
            if j >= warmup:
                lat.append(state["at"] - t0)
    sub.dispose()
    return {
        **latency_summary(lat, ""),
        **latency_summary(alone, "put_"),
        "result_rows": state["size"],
        "rerun_ms": median(rerun) / 1e6,
        "commits": len(lat),
        "mismatches": (warmup + commits) - state["received"],
    }


async def _write_round(items: Any, owner: int, first_id: int, n: int) -> tuple[float, float, list[int]]:
    """``n`` puts of new items for ``owner``, yielding every YIELD_EVERY; us per write (wall
    and CPU time of the loop thread), lag."""
    monitor = LagMonitor()
    ticker = asyncio.create_task(monitor.run())
    await asyncio.sleep(0.01)
    t, c = now_ns(), cpu_ns()
    for j in range(n):
        pk = first_id + j
        await items.put(Item(id=pk, owner=owner, ts=pk, title=f"item {pk}"))
        if j % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
    await asyncio.sleep(0)
    elapsed, cpu = now_ns() - t, cpu_ns() - c
    monitor.stop()
    await ticker
    return elapsed / 1e3 / n, cpu / 1e3 / n, monitor.samples


async def run_async(trial: Trial, open_db: Callable[..., Any]) -> dict[str, Any]:
    p = trial.params
    wl = set(trial.workloads)
    out: dict[str, Any] = {}
    db = await open_db(str(trial.fresh_dir("quanta-live")), durability="os", memtable_bytes=BIG_MEMTABLE)
    items = db.collection(Item)
    owners = p["live_owners"]
    await items.put_many([Item(id=i, owner=i % owners, ts=i, title=f"item {i}") for i in range(p["live_items"])])
    next_id = p["live_items"]
    if "live_big_result" in wl:  # first: the result is then exactly the items loaded
        out["live_big_result"] = await _big_result(items, p["live_items"], owners, p["live_big_commits"], WARMUP)
    for q in COUNTS:
        name = f"live_latency_{q}"
        if name in wl:
            receiver = Receiver()
            subs, open_us = await _open_live(items, q, receiver)
            gc.collect()
            res = await _ping_pong(items, receiver, next_id, p["live_commits"], q, WARMUP)
            next_id += WARMUP + p["live_commits"]
            for s in subs:
                s.dispose()
            out[name] = {**res, "live_queries": q, "open_us_per_query": open_us}
    if "live_write_10000" in wl:
        n = p["live_write_ops"]
        none: list[float] = []
        some: list[float] = []
        cpu_none: list[float] = []
        cpu_some: list[float] = []
        lags: list[int] = []
        lags_none: list[int] = []
        for r in range(p["live_write_rounds"]):
            for with_queries in (False, True) if r % 2 == 0 else (True, False):
                subs: list[Any] = []
                if with_queries:
                    subs, _ = await _open_live(items, 10_000, Receiver())
                    gc.collect()
                us, cpu, lag = await _write_round(items, owners - 1, next_id, n)  # no other row writes it
                next_id += n
                (some if with_queries else none).append(us)
                (cpu_some if with_queries else cpu_none).append(cpu)
                if with_queries:
                    lags += lag
                else:
                    lags_none += lag
                for s in subs:
                    s.dispose()
        base, with_q = median(none), median(some)
        cpu_base, cpu_with = median(cpu_none), median(cpu_some)
        out["live_write_10000"] = {
            "us_per_write": with_q,
            "us_per_write_none": base,
            "vs_no_live_queries": with_q / base,
            "cpu_us_per_write": cpu_with,
            "cpu_us_per_write_none": cpu_base,
            "cpu_vs_no_live_queries": cpu_with / cpu_base,
            **lag_summary(lags, "lag_"),
            **lag_summary(lags_none, "lag_none_"),
            "writes_per_round": n,
            "rounds": len(some),
        }
    for q in COUNTS:
        name = f"live_naive_{q}"
        if name in wl:
            receiver = Receiver()
            naive = Naive(db, items, q, receiver)
            await naive.refresh()  # the first results (like the live queries' current value)
            commits = p[f"live_naive_commits_{q}"]
            warmup = min(WARMUP, max(1, commits // 10))
            naive.rerun_ns.clear()
            res = await _ping_pong(items, receiver, next_id, commits, q, warmup)
            next_id += warmup + commits
            await naive.close()
            out[name] = {
                **res,
                "live_queries": q,
                "rerun_ms_per_commit": percentile(naive.rerun_ns, 50) / 1e6,
            }
    await db.close()
    return out


def run(trial: Trial, open_db: Callable[..., Any]) -> dict[str, Any]:
    return asyncio.run(run_async(trial, open_db))
