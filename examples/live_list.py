"""A live list: a to-do app's "open tasks, most urgent first" screen that stays current as
other parts of the app write, without ever re-running the query.

    python examples/live_list.py

* the screen holds ``q.live()`` (an async iterator, latest value): it redraws the top 5
  open tasks whenever they change, and only then;
* a reactivex observer of ``q.watch_diff()`` logs what changed (inserted / removed / moved /
  modified, with positions), the way a UI list view animates rows, and replays the diffs to
  prove they rebuild the list;
* ``watch_count()`` keeps the badge ("7 open") current; ``watch_object(pk)`` follows one
  task's detail view; ``watch_lazy()`` counts commits that touched any task;
* a writer adds, completes, reprioritises and renames tasks, some of them in one
  transaction (one redraw), some outside the top 5 (no redraw at all).

The database lives in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

try:
    import quanta
except ImportError:  # a checkout without `pip install -e .`: use the package next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import quanta

from quanta import Index, desc


@quanta.entity(indexes=[Index("done", "priority")])
class Task:
    id: int = quanta.auto()
    title: str
    priority: int = 0  # higher is more urgent
    done: bool = False


def draw(rows: list[Task], frame: int) -> None:
    print(f"  -- screen, frame {frame}: top {len(rows)} open tasks")
    for task in rows:
        print(f"     [{task.priority:>2}] {task.title}")


async def screen(q: quanta.Query[Task], frames: list[list[str]], ready: asyncio.Event) -> None:
    """The UI: redraw whenever the top 5 changes (the first frame is the current list)."""
    async with q.live() as rows_stream:
        async for rows in rows_stream:  # ends when the database closes
            frames.append([t.title for t in rows])
            draw(rows, len(frames))
            ready.set()


async def writer(db: quanta.Database, frames: list[list[str]]) -> None:
    tasks = db.collection(Task)

    async def step(label: str, expect_redraw: bool) -> None:
        before = len(frames)
        for _ in range(5):  # let the screen catch up (it runs on the same loop)
            await asyncio.sleep(0)
        redrawn = len(frames) > before
        print(f"{label}: {'redrawn' if redrawn else 'no redraw'}")
        assert redrawn == expect_redraw, label

    ids = await tasks.put_many(
        [
            Task(title="write the report", priority=5),
            Task(title="book flights", priority=3),
            Task(title="water the plants", priority=1),
        ]
    )
    await step("three tasks added", True)
    urgent = await tasks.put(Task(title="fix the production bug", priority=9))
    await step("an urgent task", True)
    await tasks.put(Task(title="sort old photos", priority=0))
    await tasks.put(Task(title="learn the ukulele", priority=0))
    await step("two low-priority tasks (5th and 6th place: one enters the top 5)", True)
    await tasks.put(Task(title="archive e-mail", priority=-1))
    await step("a task below the top 5", False)
    bug = await tasks.get(urgent)
    assert bug is not None
    bug.done = True
    await tasks.put(bug)
    await step("the bug is fixed (done: leaves the list, the 6th task moves up)", True)

    async def replan(tx: quanta.Transaction) -> None:
        t = tx.collection(Task)
        for pk, priority in zip(ids, (2, 8, 4), strict=True):  # three changes, one commit
            task = await t.get(pk)
            assert task is not None
            task.priority = priority
            await t.put(task)

    await db.run_transaction(replan)
    await step("three priorities changed in one transaction", True)
    plants = await tasks.get(ids[2])
    assert plants is not None
    plants.title = "water the plants (and the cactus)"
    await tasks.put(plants)
    await step("a task renamed", True)
    await tasks.put(plants)
    await step("the same task written again unchanged", False)


async def main_async(path: str) -> None:
    async with quanta.open(path, durability="os") as db:
        tasks = db.collection(Task)
        top5 = tasks.where(Task.done == False).order_by(desc(Task.priority), Task.title).limit(5)  # noqa: E712
        print("plan of the live query:")
        print("  " + top5.explain().replace("\n", "\n  "))

        frames: list[list[str]] = []
        ready = asyncio.Event()
        ui = asyncio.create_task(screen(top5, frames, ready))
        await ready.wait()

        diffs: list[quanta.ResultDiff[Task]] = []

        def log_diff(d: quanta.ResultDiff[Task]) -> None:
            diffs.append(d)
            parts = [f"-{i}:{t.title}" for i, t in d.removed]
            parts += [f"+{i}:{t.title}" for i, t in d.inserted]
            parts += [f"{a}->{b}:{t.title}" for a, b, t in d.moved]
            parts += [f"~{i}:{t.title}" for i, t in d.modified]
            print("  diff:", ", ".join(parts) or "(the list is empty)")

        badge: list[int] = []
        touched: list[None] = []
        top5.watch_diff().subscribe(log_diff)
        tasks.where(Task.done == False).watch_count().subscribe(badge.append)  # noqa: E712
        tasks.watch_lazy().subscribe(touched.append)
        detail: list[Task | None] = []
        detail_sub = tasks.watch_object(3).subscribe(detail.append)  # the plants' detail view

        await writer(db, frames)

        replayed: list[Task] = []
        for d in diffs:
            replayed = d.apply(replayed)
        final = await top5.all()
        assert [t.title for t in replayed] == [t.title for t in final] == frames[-1]
        assert badge[-1] == await tasks.where(Task.done == False).count()  # noqa: E712
        print(f"open-task badge: {badge}")
        print(f"detail view of task 3: {[t.title if t else None for t in detail]}")
        print(f"commits that touched tasks: {len(touched)}; screen frames drawn: {len(frames)}")
        detail_sub.dispose()
    await asyncio.wait_for(ui, 10)  # closing the database ended the screen's `async for`
    print("database closed: the screen's live query completed")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main_async(os.path.join(tmp, "tasks.db")))


if __name__ == "__main__":
    main()
