"""Cascades (quanta/_entity/_relations.py): what deleting a linked record does, through the whole
graph, as one batch; and the cascade update of a key change (``rekey``).

What is proved here:

* ``on_delete="cascade"`` deletes referrers level by level (chains, trees, cycles: each
  record once), ``"set_null"`` rewrites referrers without the link (a ``Links`` field loses
  the element), ``"restrict"`` raises ``IntegrityError`` and writes nothing (the raw key
  image is compared, also inside a transaction, which goes on) -- unless the restricting
  referrer is deleted by the same cascade. ``delete``, ``delete_many`` and ``Query.delete``
  all apply the rules, as one commit (one ``ChangeSet``).
* ``rekey`` moves a record and repoints every link to it (Link, optional Link, Links, a
  one-to-one link, a self-link), atomically; a taken key is an ``IntegrityError`` with
  nothing written.
* All-or-nothing across crashes: power loss at every file operation of a database running
  cascades and rekeys (crash-simulating file layer, every crash variant) recovers a state
  after a whole number of them, with every acknowledged one.
* A Hypothesis model: random graphs of linked records under random puts, deletes and
  rekeys stay consistent with a brute-force model: no dangling link, every backlink equal
  to the brute-force inverse, the index entries exactly those the records call for.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Annotated, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import quanta
from quanta import Backlink, IntegrityError, Link, Links, PrimaryKey, Unique, backlink, link, links
from quanta._codec import decode_tuple
from quanta._schema import entity_info
from quanta._schema.keyspace import NS, index_key, record_key, unique_key
from quanta._storage.vfs import MemoryFileSystem

# ---------------------------------------------------------------------------------------------
# Entities


@quanta.entity
class Org:
    id: Annotated[int, PrimaryKey()]
    name: str = ""
    teams: Backlink[Team] = backlink("org")


@quanta.entity
class Team:
    id: Annotated[int, PrimaryKey()]
    org: Link[Org] = link(on_delete="cascade")
    members: Backlink[Member] = backlink("team")


@quanta.entity
class Badge:
    id: Annotated[str, PrimaryKey()]


@quanta.entity
class Member:
    id: Annotated[int, PrimaryKey()]
    team: Link[Team] = link(on_delete="cascade")
    mentor: Link[Member | None] = link(default=None, on_delete="set_null")
    badges: Links[Badge] = links(on_delete="set_null")


@quanta.entity
class Award:
    """A restricting link: a badge that was awarded cannot be deleted."""

    id: Annotated[int, PrimaryKey()]
    badge: Link[Badge] = link(on_delete="restrict")
    winner: Link[Member] = link(on_delete="cascade")


@quanta.entity
class Left:
    id: Annotated[int, PrimaryKey()]
    right: Link[Right | None] = link(default=None, on_delete="cascade")


@quanta.entity
class Right:
    id: Annotated[int, PrimaryKey()]
    left: Link[Left | None] = link(default=None, on_delete="cascade")


@quanta.entity
class Card:
    """One-to-one (a unique link) and a restrict on the same target class."""

    id: Annotated[int, PrimaryKey()]
    holder: Annotated[Link[Member], Unique()] = link(on_delete="cascade")


@pytest.fixture(params=["memory"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def image(db: quanta.Database) -> dict[bytes, bytes]:
    return {k: v async for k, v in db.kv.scan(prefix=NS, include_reserved=True) if k[len(NS) : len(NS) + 1] != b"c"}


async def org_graph(db: quanta.Database) -> None:
    """Two orgs; org 1 has teams 10, 11; org 2 team 20; members 100.. with mentors across
    teams, badges; an award for member 101."""
    await db.collection(Org).put_many([Org(id=1), Org(id=2)])
    await db.collection(Team).put_many([Team(id=10, org=1), Team(id=11, org=1), Team(id=20, org=2)])
    await db.collection(Badge).put_many([Badge(id="gold"), Badge(id="blue")])
    await db.collection(Member).put_many(
        [
            Member(id=100, team=10, badges=["gold", "blue"]),
            Member(id=101, team=10, mentor=100, badges=["gold"]),
            Member(id=110, team=11, mentor=101),
            Member(id=200, team=20, mentor=110, badges=["blue", "gold"]),
        ]
    )
    await db.collection(Award).put(Award(id=1, badge="blue", winner=101))


async def ids(db: quanta.Database, cls: type) -> list[Any]:
    return [getattr(o, entity_info(cls).primary_key) for o in await db.collection(cls).query().all()]


# =============================================================================== delete rules


async def test_cascade_deletes_the_graph_below_and_set_null_rewrites_the_rest(db: quanta.Database) -> None:
    await org_graph(db)
    assert await db.collection(Org).delete(1) is True
    assert await ids(db, Org) == [2]
    assert await ids(db, Team) == [20]
    assert await ids(db, Member) == [200]
    assert await ids(db, Award) == []  # its winner went: cascade
    m200 = await db.collection(Member).get(200)
    assert m200 is not None and m200.mentor is None  # mentor 110 went: set_null
    assert m200.badges.pks == ["blue", "gold"]
    # the index entries of everything deleted or rewritten are exact
    expected = {
        record_key("Org", 2),
        record_key("Team", 20),
        index_key("Team", "org", (2,), 20),
        record_key("Badge", "gold"),
        record_key("Badge", "blue"),
        record_key("Member", 200),
        index_key("Member", "team", (20,), 200),
        index_key("Member", "mentor", (None,), 200),
        index_key("Member", "badges", ("blue",), 200),
        index_key("Member", "badges", ("gold",), 200),
    }
    assert set(await image(db)) == expected


async def test_set_null_on_a_links_field_removes_the_element(db: quanta.Database) -> None:
    await org_graph(db)
    await db.collection(Award).delete(1)
    assert await db.collection(Badge).delete("blue") is True
    got = {m.id: m.badges.pks for m in await db.collection(Member).query().all()}
    assert got == {100: ["gold"], 101: ["gold"], 110: [], 200: ["gold"]}
    assert [k for k in await image(db) if b"blue" in k] == []


async def test_restrict_raises_and_writes_nothing(db: quanta.Database) -> None:
    await org_graph(db)
    before = await image(db)
    with pytest.raises(IntegrityError, match=r"cannot delete Badge 'blue': Award 1 links to it through Award.badge"):
        await db.collection(Badge).delete("blue")
    with pytest.raises(IntegrityError, match="on_delete='restrict'"):
        await db.collection(Badge).delete_many(["gold", "blue"])
    with pytest.raises(IntegrityError):
        await db.collection(Badge).query().delete()
    assert await image(db) == before
    async with db.transaction() as tx:
        await tx.collection(Org).put(Org(id=3))
        buffered = dict(tx._writes)
        with pytest.raises(IntegrityError):
            await tx.collection(Badge).delete("blue")
        assert tx._writes == buffered  # the transaction goes on, without a trace of the delete
    assert await ids(db, Org) == [1, 2, 3]


async def test_a_restricting_referrer_deleted_by_the_same_cascade_does_not_block(db: quanta.Database) -> None:
    await org_graph(db)
    # Award 1 restricts badge "blue", but deleting org 1 deletes member 101 and so the award:
    # nothing is left linking to a deleted badge, so nothing blocks.
    await db.collection(Org).delete(1)
    assert await ids(db, Award) == []
    # Deleting the badge and the award's winner together: the award goes (cascade from the
    # member), so the badge may go too.
    await org_graph(db)
    await db.collection(Award).put(Award(id=2, badge="gold", winner=200))
    before = await image(db)
    with pytest.raises(IntegrityError, match=r"Award 2 links to it"):
        await db.collection(Badge).delete("gold")
    assert await image(db) == before

    async def both(tx: quanta.Transaction) -> None:
        await tx.collection(Member).delete(200)  # cascades to award 2
        await tx.collection(Badge).delete("gold")  # no award left links to it

    await db.run_transaction(both)
    assert await ids(db, Award) == [1] and await ids(db, Badge) == ["blue"]


async def test_cycles_are_walked_once(db: quanta.Database) -> None:
    lefts, rights = db.collection(Left), db.collection(Right)
    await lefts.put_many([Left(id=1), Left(id=2)])
    await rights.put_many([Right(id=1, left=1), Right(id=2, left=2)])
    await lefts.put_many([Left(id=1, right=1), Left(id=2, right=2)])  # the cycles close
    assert await lefts.delete(1) is True
    assert await ids(db, Left) == [2] and await ids(db, Right) == [2]
    assert await rights.delete(2) is True
    assert await ids(db, Left) == [] and await ids(db, Right) == []
    assert await image(db) == {}
    # a long self-referencing chain (set_null stops it) and a tree of cascades
    members = db.collection(Member)
    await db.collection(Org).put(Org(id=1))
    await db.collection(Team).put(Team(id=1, org=1))
    await members.put_many([Member(id=i, team=1, mentor=i - 1 if i else None) for i in range(50)])
    await members.put(Member(id=0, team=1, mentor=49))  # a ring of mentors
    assert await members.delete(10) is True
    assert (await members.get(11)).mentor is None  # type: ignore[union-attr]
    assert await members.count() == 49
    assert await db.collection(Org).delete(1) is True  # the whole ring, through the team
    assert await image(db) == {}


async def test_a_deep_chain_of_cascades_and_a_wide_fan_out(db: quanta.Database) -> None:
    await db.collection(Org).put_many([Org(id=i) for i in range(3)])
    await db.collection(Team).put_many([Team(id=i, org=i % 3) for i in range(300)])
    await db.collection(Member).put_many([Member(id=i, team=i % 300, mentor=None) for i in range(3000)])
    await db.collection(Award).put_many([])
    assert await db.collection(Org).delete_many([0, 1]) == 2
    assert await db.collection(Team).count() == 100
    assert await db.collection(Member).count() == 1000
    assert all(m.team.pk % 3 == 2 for m in await db.collection(Member).query().all())


async def test_every_delete_entry_point_cascades_in_one_commit(db: quanta.Database) -> None:
    await org_graph(db)
    async with db.changes() as stream:
        assert await db.collection(Team).where(Team.org == 1).delete() == 2
        changes = await asyncio.wait_for(anext(stream), 10)
        keys = {c.key for c in changes.changes}
        assert record_key("Team", 10) in keys and record_key("Member", 110) in keys and record_key("Award", 1) in keys
        assert record_key("Member", 200) in keys  # rewritten: mentor 110 went
    assert await ids(db, Member) == [200]
    assert await db.collection(Member).delete_many([200, 999]) == 1
    assert await ids(db, Member) == []


async def test_a_one_to_one_link_cascades_and_follows_a_rekey(db: quanta.Database) -> None:
    await org_graph(db)
    cards = db.collection(Card)
    await cards.put(Card(id=1, holder=100))
    with pytest.raises(quanta.UniqueViolationError):
        await cards.put(Card(id=2, holder=100))
    assert await db.collection(Member).rekey(100, 900) is True
    card = await cards.get(1)
    assert card is not None and card.holder == 900
    assert unique_key("Card", "holder", (900,)) in await image(db)
    await db.collection(Member).delete(900)
    assert await cards.count() == 0


async def test_a_referrer_added_during_a_cascade_makes_the_cascade_conflict(db: quanta.Database) -> None:
    await org_graph(db)
    tx = db.transaction()
    await tx.collection(Org).delete(2)  # scanned Team.org's entries for org 2: team 20
    await db.collection(Team).put(Team(id=21, org=2))  # a new referrer commits first
    with pytest.raises(quanta.ConflictError):
        await tx.commit()
    # run through the database collection, the retry sees team 21 and deletes it too
    assert await db.collection(Org).delete(2) is True
    assert await ids(db, Team) == [10, 11]
    # many racing writers: whatever interleaving, no link is left dangling
    await db.collection(Org).put(Org(id=5))
    await db.collection(Team).put(Team(id=50, org=5))

    async def add(i: int) -> None:
        try:
            await db.collection(Member).put(Member(id=5000 + i, team=50))
        except IntegrityError:
            pass

    await asyncio.gather(*(add(i) for i in range(20)), db.collection(Org).delete(5), *(add(i) for i in range(20, 40)))
    teams = set(await ids(db, Team))
    assert all(m.team.pk in teams for m in await db.collection(Member).query().all())


async def test_cancelling_a_cascade_is_all_or_nothing(db: quanta.Database) -> None:
    await db.collection(Org).put(Org(id=1))
    await db.collection(Team).put_many([Team(id=i, org=1) for i in range(50)])
    await db.collection(Member).put_many([Member(id=i, team=i % 50) for i in range(2000)])
    before = await image(db)
    outcomes = set()
    for delay in range(0, 30, 3):
        task = asyncio.create_task(db.collection(Org).delete(1))
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
            outcomes.add("done")
        except asyncio.CancelledError:
            outcomes.add("cancelled")
        now = await image(db)
        if now != before:
            assert await db.collection(Member).count() == 0 and await db.collection(Team).count() == 0
            assert await ids(db, Org) == []
            break
    assert outcomes


async def test_cancelling_a_rekey_is_all_or_nothing(db: quanta.Database) -> None:
    await db.collection(Org).put(Org(id=1))
    await db.collection(Team).put_many([Team(id=i, org=1) for i in range(500)])
    before = await image(db)
    for delay in range(0, 20, 2):
        task = asyncio.create_task(db.collection(Org).rekey(1, 2))
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        if await image(db) != before:  # done: wholly
            assert await ids(db, Org) == [2]
            assert {t.org.pk for t in await db.collection(Team).query().all()} == {2}
            return
    assert await image(db) == before


# =============================================================================== rekey


async def test_rekey_moves_the_record_and_repoints_every_link(db: quanta.Database) -> None:
    await org_graph(db)
    members = db.collection(Member)
    await members.put(Member(id=120, team=11, mentor=120))  # mentors itself
    assert await members.rekey(101, 501) is True
    assert await members.get(101) is None
    moved = await members.get(501)
    assert moved is not None and moved.mentor == 100 and moved.badges.pks == ["gold"]
    assert (await members.get(110)).mentor == 501  # type: ignore[union-attr]
    award = await db.collection(Award).get(1)
    assert award is not None and award.winner == 501
    assert await members.rekey(120, 121) is True
    assert (await members.get(121)).mentor == 121  # type: ignore[union-attr]
    assert await db.collection(Badge).rekey("gold", "GOLD") is True
    assert {m.id: m.badges.pks for m in await members.query().all()} == {
        100: ["GOLD", "blue"],
        110: [],
        121: [],
        200: ["blue", "GOLD"],
        501: ["GOLD"],
    }
    assert await db.collection(Org).rekey(1, 7) is True
    assert {t.id: t.org.pk for t in await db.collection(Team).query().all()} == {10: 7, 11: 7, 20: 2}
    org = await db.collection(Org).get(7)
    assert org is not None and [t.id for t in await org.teams.all()] == [10, 11]
    # the index entries moved with the links
    img = await image(db)
    assert index_key("Member", "mentor", (501,), 110) in img and index_key("Member", "mentor", (101,), 110) not in img
    assert index_key("Team", "org", (7,), 10) in img and record_key("Org", 1) not in img


async def test_rekey_to_a_taken_key_writes_nothing_and_a_missing_record_is_false(db: quanta.Database) -> None:
    await org_graph(db)
    before = await image(db)
    with pytest.raises(IntegrityError, match=r"Member: cannot change the key to 200: another record has it"):
        await db.collection(Member).rekey(100, 200)
    assert await image(db) == before
    assert await db.collection(Member).rekey(999, 998) is False
    assert await db.collection(Member).rekey(100, 100) is True
    with pytest.raises(quanta.InvalidTypeError):
        await db.collection(Member).rekey(100, "x")
    assert await image(db) == before


async def test_rekey_moves_an_auto_counter_past_the_new_key(db: quanta.Database) -> None:
    @quanta.entity
    class Item:
        id: Annotated[int, PrimaryKey(auto=True)]
        name: str = ""

    items = db.collection(Item)
    await items.put_many([Item(), Item()])
    assert await items.rekey(1, 10) is True
    fresh = Item()
    await items.put(fresh)
    assert fresh.id == 11


# =============================================================================== crashes


async def test_power_loss_during_cascades_and_rekeys_recovers_whole_operations() -> None:
    """Record a workload of cascading deletes and rekeys on the crash-simulating file layer,
    freezing the files before every operation; from each frozen image and crash variant,
    reopen and check the entity image equals the image after some prefix of the workload's
    operations, one that includes every acknowledged one (durability="sync")."""
    from helpers_crash import SMALL_OPTIONS, RecordingFS, freeze

    fs = RecordingFS()
    frozen: list[tuple[MemoryFileSystem, int]] = []
    acked = 0
    fs.fail_hook = lambda op: frozen.append((freeze(fs), acked))
    states: list[dict[bytes, bytes]] = []
    db = await quanta.open("/db", fs=fs, **SMALL_OPTIONS)
    await org_graph(db)
    await db.collection(Member).put_many([Member(id=1000 + i, team=10 + (i % 2), mentor=200) for i in range(40)])
    states.append(await image(db))
    start = len(frozen)
    steps: list[Callable[[], Any]] = [
        lambda: db.collection(Member).rekey(200, 201),
        lambda: db.collection(Team).delete(11),
        lambda: db.collection(Award).delete(1),
        lambda: db.collection(Badge).delete("blue"),
        lambda: db.collection(Org).delete(1),
    ]
    for step in steps:
        await step()
        acked += 1
        states.append(await image(db))
    await db.close()
    fs.fail_hook = None
    frozen.append((freeze(fs), acked))
    frozen = frozen[start:]
    variants = [{}, {"garble_tail": True}, {"keep_unsynced_dir_entries": True}]
    checked = 0
    recovered: set[int] = set()
    seen: set[int] = set()
    for point, (img, promised) in enumerate(frozen):
        for vi, kwargs in enumerate(variants):
            crashed = img.crash(**kwargs, rng=random.Random(point * 3 + vi))
            key = hash((tuple(sorted((p, bytes(i.data)) for p, i in crashed.files.items())), promised))
            if key in seen:
                continue
            seen.add(key)
            checked += 1
            db = await asyncio.wait_for(quanta.open("/db", fs=crashed, **SMALL_OPTIONS), 20)
            try:
                now = await image(db)
            finally:
                await db.close()
            matches = [i for i, s in enumerate(states) if s == now]
            assert matches, f"point {point} {kwargs}: a state no prefix of the workload has"
            assert max(matches) >= promised, f"point {point} {kwargs}: acknowledged operations lost"
            recovered.add(max(matches))
    assert checked >= 40 and recovered == set(range(len(states)))  # every operation was crashed into


# =============================================================================== a random model


@quanta.entity
class GNode:
    id: Annotated[int, PrimaryKey()]
    parent: Link[GNode | None] = link(default=None, on_delete="cascade")
    buddy: Link[GNode | None] = link(default=None, on_delete="set_null")
    friends: Links[GNode] = links(on_delete="set_null")
    children: Backlink[GNode] = backlink("parent")
    fans: Backlink[GNode] = backlink("friends")
    items: Backlink[GItem] = backlink("owner")


@quanta.entity
class GItem:
    id: Annotated[str, PrimaryKey()]
    owner: Link[GNode] = link(on_delete="cascade")
    tags: Links[GNode] = links(on_delete="set_null")
    blocker: Link[GNode | None] = link(default=None, on_delete="restrict")


NODE_LINKS = {"parent": ("one", "cascade"), "buddy": ("one", "set_null"), "friends": ("many", "set_null")}
ITEM_LINKS = {"owner": ("one", "cascade"), "tags": ("many", "set_null"), "blocker": ("one", "restrict")}
Model = dict[str, dict[Any, dict[str, Any]]]  # kind -> pk -> field -> value (pks; lists for many)


def model_links(kind: str) -> dict[str, tuple[str, str]]:
    return NODE_LINKS if kind == "node" else ITEM_LINKS


def model_delete(m: Model, kind: str, pks: list[Any]) -> Model | None:
    """The model after deleting ``pks`` of ``kind`` with the rules applied; None if a
    restrict forbids it. A brute-force fixpoint, independent of the collection's walk."""
    doomed = {("node" if kind == "node" else "item", pk) for pk in pks if pk in m[kind]}
    grew = True
    while grew:
        grew = False
        for k in ("node", "item"):
            for pk, rec in m[k].items():
                if (k, pk) in doomed:
                    continue
                for f, (shape, rule) in model_links(k).items():
                    targets = rec[f] if shape == "many" else [rec[f]]
                    if rule == "cascade" and any(("node", t) in doomed for t in targets if t is not None):
                        doomed.add((k, pk))
                        grew = True
                        break
    for k in ("node", "item"):
        for pk, rec in m[k].items():
            if (k, pk) in doomed:
                continue
            for f, (shape, rule) in model_links(k).items():
                targets = rec[f] if shape == "many" else [rec[f]]
                if rule == "restrict" and any(("node", t) in doomed for t in targets if t is not None):
                    return None
    out: Model = {"node": {}, "item": {}}
    for k in ("node", "item"):
        for pk, rec in m[k].items():
            if (k, pk) in doomed:
                continue
            new = dict(rec)
            for f, (shape, rule) in model_links(k).items():
                if rule != "set_null":
                    continue
                if shape == "many":
                    new[f] = [t for t in rec[f] if ("node", t) not in doomed]
                elif rec[f] is not None and ("node", rec[f]) in doomed:
                    new[f] = None
            out[k][pk] = new
    return out


def model_rekey(m: Model, kind: str, old: Any, new: Any) -> Model | bool | None:
    """The model after moving ``old`` to ``new``: False if there is no ``old``, None if
    ``new`` is taken (IntegrityError)."""
    if old not in m[kind]:
        return False
    if old == new:
        return m
    if new in m[kind]:
        return None
    out: Model = {k: {pk: dict(rec) for pk, rec in m[k].items()} for k in m}
    out[kind][new] = out[kind].pop(old)
    if kind == "node":
        for k in ("node", "item"):
            for rec in out[k].values():
                for f, (shape, _) in model_links(k).items():
                    if shape == "many":
                        rec[f] = [new if t == old else t for t in rec[f]]
                    elif rec[f] == old:
                        rec[f] = new
    return out


def expected_image(m: Model) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    for pk, rec in m["node"].items():
        out[record_key("GNode", pk)] = ("node", pk)
        for f in ("parent", "buddy"):
            out[index_key("GNode", f, (rec[f],), pk)] = (pk,)
        for t in set(rec["friends"]):
            out[index_key("GNode", "friends", (t,), pk)] = (pk,)
    for pk, rec in m["item"].items():
        out[record_key("GItem", pk)] = ("item", pk)
        for f in ("owner", "blocker"):
            out[index_key("GItem", f, (rec[f],), pk)] = (pk,)
        for t in set(rec["tags"]):
            out[index_key("GItem", "tags", (t,), pk)] = (pk,)
    return out


NODE_IDS = st.integers(0, 7)
ITEM_IDS = st.sampled_from("abcde")
MAYBE_NODE = st.none() | NODE_IDS
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put_node"), NODE_IDS, MAYBE_NODE, MAYBE_NODE, st.lists(NODE_IDS, max_size=3)),
        st.tuples(st.just("put_item"), ITEM_IDS, NODE_IDS, st.lists(NODE_IDS, max_size=3), MAYBE_NODE),
        st.tuples(st.just("delete_nodes"), st.lists(NODE_IDS, min_size=1, max_size=3)),
        st.tuples(st.just("delete_items"), st.lists(ITEM_IDS, min_size=1, max_size=2)),
        st.tuples(st.just("rekey_node"), NODE_IDS, NODE_IDS),
        st.tuples(st.just("rekey_item"), ITEM_IDS, ITEM_IDS),
    ),
    max_size=25,
)


@st.composite
def graphs(draw: st.DrawFn) -> Model:
    """A random starting graph: up to 8 nodes and 5 items, links anywhere among them (stored
    with one put_many per kind: targets of the same batch count)."""
    n = draw(st.integers(2, 8))
    nodes = list(range(n))
    maybe = st.none() | st.sampled_from(nodes)
    m: Model = {"node": {}, "item": {}}
    for pk in nodes:
        m["node"][pk] = {
            "parent": draw(st.none() | st.sampled_from(nodes[:pk] or [None])),
            "buddy": draw(maybe),
            "friends": draw(st.lists(st.sampled_from(nodes), max_size=3)),
        }
    for pk in draw(st.lists(ITEM_IDS, max_size=5, unique=True)):
        m["item"][pk] = {
            "owner": draw(st.sampled_from(nodes)),
            "tags": draw(st.lists(st.sampled_from(nodes), max_size=3)),
            "blocker": draw(st.none() | st.none() | st.sampled_from(nodes)),
        }
    return m


@settings(max_examples=80)
@given(start=graphs(), ops=OPS, in_tx=st.booleans(), per_key=st.sampled_from([1, 128]))
def test_random_graphs_stay_consistent_under_puts_deletes_and_rekeys(
    start: Model, ops: list[tuple[Any, ...]], in_tx: bool, per_key: int
) -> None:
    """``per_key``: targets per link and level read as one range each; 1 makes every walk
    read grouped covering ranges (``_relations.referrers``)."""
    from quanta._entity import _relations

    async def run() -> None:
        async with quanta.open("/db", fs=MemoryFileSystem()) as db:
            await db.collection(GNode).put_many(GNode(id=pk, **rec) for pk, rec in start["node"].items())
            await db.collection(GItem).put_many(GItem(id=pk, **rec) for pk, rec in start["item"].items())
            m = start
            await check(db, m)
            for op in ops:
                m = await apply(db, m, op, in_tx)
                await check(db, m)

    saved = _relations._PER_KEY
    _relations._PER_KEY = per_key
    try:
        asyncio.run(run())
    finally:
        _relations._PER_KEY = saved


async def apply(db: quanta.Database, m: Model, op: tuple[Any, ...], in_tx: bool) -> Model:
    name = op[0]
    kind = "node" if name.endswith("node") or name.endswith("nodes") else "item"
    cls = GNode if kind == "node" else GItem
    if name == "put_node":
        _, pk, parent, buddy, friends = op
        obj: Any = GNode(id=pk, parent=parent, buddy=buddy, friends=friends)
        rec = {"parent": parent, "buddy": buddy, "friends": friends}
        targets = [t for t in (parent, buddy, *friends) if t is not None and t != pk]
    elif name == "put_item":
        _, pk, owner, tags, blocker = op
        obj = GItem(id=pk, owner=owner, tags=tags, blocker=blocker)
        rec = {"owner": owner, "tags": tags, "blocker": blocker}
        targets = [t for t in (owner, *tags, blocker) if t is not None]
    expected: Model | bool | None
    if name.startswith("put"):
        ok = all(t in m["node"] for t in targets)
        expected = {k: dict(v) for k, v in m.items()} if ok else None
        if ok:
            assert isinstance(expected, dict)
            expected[kind][pk] = rec

        async def call(c: Any) -> Any:
            return await c.put(obj)
    elif name.startswith("delete"):
        expected = model_delete(m, kind, op[1])

        async def call(c: Any) -> Any:
            return await c.delete_many(op[1])
    else:
        expected = model_rekey(m, kind, op[1], op[2])

        async def call(c: Any) -> Any:
            return await c.rekey(op[1], op[2])

    before = await image(db)
    try:
        if in_tx:
            async with db.transaction() as tx:
                await call(tx.collection(cls))
        else:
            await call(db.collection(cls))
    except IntegrityError:
        assert expected is None, f"{op}: IntegrityError, but the model allows it"
        assert await image(db) == before, f"{op}: an IntegrityError wrote something"
        return m
    assert expected is not None, f"{op}: no IntegrityError, but the model forbids it"
    return m if expected is False or expected is True else expected  # type: ignore[return-value]


async def check(db: quanta.Database, m: Model) -> None:
    nodes = {n.id: n for n in await db.collection(GNode).query().all()}
    items = {i.id: i for i in await db.collection(GItem).query().all()}
    assert {
        pk: {"parent": n.parent and n.parent.pk, "buddy": n.buddy and n.buddy.pk, "friends": n.friends.pks}
        for pk, n in nodes.items()
    } == m["node"]
    assert {
        pk: {"owner": i.owner.pk, "tags": i.tags.pks, "blocker": i.blocker and i.blocker.pk} for pk, i in items.items()
    } == m["item"]
    # no dangling link
    for n in nodes.values():
        assert all(
            t in nodes for t in [*n.friends.pks, n.parent and n.parent.pk, n.buddy and n.buddy.pk] if t is not None
        )
    for i in items.values():
        assert all(t in nodes for t in [i.owner.pk, *i.tags.pks, i.blocker and i.blocker.pk] if t is not None)
    # backlinks equal the brute-force inverse
    for pk, n in nodes.items():
        assert [c.id for c in await n.children.all()] == sorted(c for c, r in m["node"].items() if r["parent"] == pk)
        assert [c.id for c in await n.fans.all()] == sorted(c for c, r in m["node"].items() if pk in r["friends"])
        assert [c.id for c in await n.items.all()] == sorted(c for c, r in m["item"].items() if r["owner"] == pk)
    # the index entries are exactly those the records call for
    actual = await image(db)
    want = expected_image(m)
    assert set(actual) == set(want)
    for key, value in want.items():
        if key[len(NS) : len(NS) + 1] != b"r":
            assert decode_tuple(actual[key]) == value
