"""Access control (docs/access-control.md): sessions see and change only what the policy
allows; the denial matrix; a brute-force oracle; live queries leak nothing hidden."""

from __future__ import annotations

import inspect
import random
from typing import Annotated, Any

import pytest

import quanta


@quanta.entity
class Member:
    id: Annotated[str, quanta.PrimaryKey()]
    email: str = ""


@quanta.entity
class Doc:
    id: Annotated[int, quanta.PrimaryKey()]
    tenant: Annotated[str, quanta.Index()] = ""
    author: str = ""
    title: str = ""
    draft: bool = False


TENANT = quanta.allow(Doc, "read", where=lambda me: Doc.tenant == me.attrs["tenant"])
POLICY = quanta.Policy(
    TENANT,
    quanta.allow(Doc, "read", where=lambda me: Doc.author == me.id),
    quanta.allow(Doc, "write", where=lambda me: Doc.author == me.id),
    quanta.allow(Doc, "delete", roles={"moderator"}),
    quanta.allow(Member, "read"),
    quanta.mask(Member.email, unless=lambda me: "admin" in me.roles),
    quanta.allow_kv(prefix=b"cache:", actions={"read", "write"}),
)
ALICE = quanta.Principal("alice", roles={"member"}, attrs={"tenant": "acme"})


async def _open(tmp_path: Any, policy: quanta.Policy = POLICY) -> quanta.Database:
    db = await quanta.open(str(tmp_path / "db"), entities=[Member, Doc], policy=policy)
    await db.collection(Member).put_many([Member(id="alice", email="a@x"), Member(id="bob", email="b@x")])
    await db.collection(Doc).put_many(
        [
            Doc(id=1, tenant="acme", author="bob", title="A1"),
            Doc(id=2, tenant="other", author="bob", title="A2"),
            Doc(id=3, tenant="other", author="alice", title="A3"),
        ]
    )
    return db


async def _contents(db: quanta.Database) -> list[tuple[bytes, bytes]]:
    return [kv async for kv in db.kv.scan(include_reserved=True)]


async def test_reads_see_only_allowed_rows(tmp_path: Any) -> None:
    db = await _open(tmp_path)
    try:
        docs = db.session(ALICE).collection(Doc)
        assert sorted(d.id for d in await docs.query().all()) == [1, 3]
        assert await docs.count() == 2
        assert await docs.get(2) is None and (await docs.get(1)) is not None
        assert [d is None for d in await docs.get_many([1, 2, 3])] == [False, True, False]
        assert await docs.where(Doc.title == "A2").first() is None
        assert await docs.query().sum(Doc.id) == 4
    finally:
        await db.aclose()


async def test_an_indexed_tenant_rule_stays_an_index_query(tmp_path: Any) -> None:
    db = await _open(tmp_path, quanta.Policy(TENANT))
    try:
        text = db.session(ALICE).collection(Doc).where(Doc.title.startswith("A")).explain()
        assert "index_range" in text and "tenant" in text and "full_scan" not in text
        assert [d.id for d in await db.session(ALICE).collection(Doc).query().all()] == [1]
    finally:
        await db.aclose()


async def test_masked_fields(tmp_path: Any) -> None:
    db = await _open(tmp_path)
    try:
        members = db.session(ALICE).collection(Member)
        assert all(m.email is quanta.MASKED for m in await members.query().all())
        with pytest.raises(quanta.PermissionDeniedError):
            members.where(Member.email == "a@x")
        with pytest.raises(quanta.PermissionDeniedError):
            members.order_by(Member.email)
        admin = db.session(quanta.Principal("root", roles={"admin"}, attrs={"tenant": "acme"}))
        assert (await admin.collection(Member).get("alice")).email == "a@x"  # type: ignore[union-attr]
        assert (await db.collection(Member).get("alice")).email == "a@x"  # type: ignore[union-attr]
    finally:
        await db.aclose()


async def test_denied_writes_change_nothing(tmp_path: Any) -> None:
    db = await _open(tmp_path)
    try:
        docs = db.session(ALICE).collection(Doc)
        before = await _contents(db)
        with pytest.raises(quanta.PermissionDeniedError) as info:
            await docs.put_many([Doc(id=9, author="alice"), Doc(id=1, author="alice", title="steal")])
        assert info.value.entity == "Doc" and info.value.key == 1 and info.value.action == "write"
        with pytest.raises(quanta.PermissionDeniedError):
            await docs.put(Doc(id=10, author="bob"))  # the new row fails the rule
        with pytest.raises(quanta.PermissionDeniedError):
            await docs.delete(3)  # no delete rule for alice
        with pytest.raises(quanta.PermissionDeniedError) as hidden:
            await docs.put(Doc(id=2, author="alice"))  # over a row alice cannot see
        assert hidden.value.key is None and "2" not in str(hidden.value)
        assert await _contents(db) == before
        assert await docs.put(Doc(id=11, author="alice", tenant="acme")) == 11
        moderator = db.session(quanta.Principal("m", roles={"moderator"}, attrs={"tenant": "acme"}))
        assert await moderator.collection(Doc).delete(2) is False  # hidden: absent
        assert await moderator.collection(Doc).delete(1) is True
    finally:
        await db.aclose()


async def test_kv_prefixes(tmp_path: Any) -> None:
    db = await _open(tmp_path)
    try:
        kv = db.session(ALICE).kv
        await kv.put(b"cache:a", b"1")
        assert await kv.get(b"cache:a") == b"1"
        assert [k async for k, _ in kv.scan(prefix=b"cache:")] == [b"cache:a"]
        for call in (lambda: kv.get(b"x"), lambda: kv.put(b"x", b"1"), lambda: kv.get(b"\x00Qr")):
            with pytest.raises(quanta.PermissionDeniedError):
                await call()
        with pytest.raises(quanta.PermissionDeniedError):
            kv.scan()
    finally:
        await db.aclose()


async def test_open_refuses_a_rule_on_an_undeclared_entity(tmp_path: Any) -> None:
    with pytest.raises(quanta.InvalidArgumentError):
        quanta.open(str(tmp_path / "x"), entities=[Member], policy=quanta.Policy(quanta.allow(Doc, "read")))
    with pytest.raises(quanta.InvalidArgumentError):
        quanta.allow(Doc, "fly")


# ------------------------------------------------------------------------------ denial matrix

BUILDERS = {"where", "order_by", "limit", "offset", "query"}
METADATA = {"info", "entity", "transaction"}  # declarations only, no data


def _args(name: str) -> tuple[Any, ...]:
    return {
        "get": (1,),
        "get_many": ([1],),
        "put": (Doc(id=1),),
        "put_many": ([Doc(id=1)],),
        "delete": (1,),
        "delete_many": ([1],),
        "rekey": (1, 2),
        "load_links": ([], "x"),
        "watch_object": (1,),
        "min": (Doc.id,),
        "max": (Doc.id,),
        "sum": (Doc.id,),
        "avg": (Doc.id,),
        "distinct": (Doc.id,),
        "watch_min": (Doc.id,),
        "watch_max": (Doc.id,),
        "watch_sum": (Doc.id,),
        "watch_avg": (Doc.id,),
        "include": ("x",),
        "where": (Doc.id == 1,),
        "order_by": (Doc.id,),
        "limit": (1,),
        "offset": (1,),
    }.get(name, ())


async def _denied(target: Any, name: str, args: tuple[Any, ...]) -> None:
    attr = getattr(type(target), name, None)
    assert attr is not None, f"{type(target).__name__} has no {name}: every public method needs a checked form"
    with pytest.raises(quanta.PermissionDeniedError):
        result = getattr(target, name)(*args)
        if inspect.isawaitable(result):
            await result
        elif hasattr(result, "__anext__"):
            await result.__anext__()
        else:
            raise AssertionError(f"{name} returned {result!r} without a check")


async def test_every_public_method_is_denied_by_an_empty_policy(tmp_path: Any) -> None:
    db = await _open(tmp_path, quanta.Policy())
    try:
        s = db.session(ALICE)
        coll = s.collection(Doc)
        public = [n for n in dir(quanta.Collection) if not n.startswith("_") or n == "__aiter__"]
        for name in public:
            if name in METADATA:
                assert getattr(type(coll), name, None) is not None
            elif name in BUILDERS:
                assert isinstance(getattr(coll, name)(*_args(name)), quanta.SessionQuery)
            else:
                await _denied(coll, name, _args(name))
        q = coll.query()
        for name in [n for n in dir(quanta.Query) if not n.startswith("_") or n == "__aiter__"]:
            if name in BUILDERS:
                assert isinstance(getattr(q, name)(*_args(name)), quanta.SessionQuery)
            else:
                await _denied(q, name, () if name == "delete" else _args(name))
        kv_args = {"get": (b"a",), "get_many": ([b"a"],), "put": (b"a", b"1"), "delete": (b"a",)}
        kv_args |= {"put_many": ([(b"a", b"1")],), "watch": (b"a",)}
        for name in [n for n in dir(quanta.KeyValue) if not n.startswith("_")]:
            await _denied(s.kv, name, kv_args.get(name, ()))
    finally:
        await db.aclose()


# ------------------------------------------------------------------------------ oracle


def _random_policy(rng: random.Random) -> tuple[quanta.Policy, list[tuple[str, Any, frozenset[str] | None]]]:
    """Rules from a small grammar, and the same rules as plain predicates for the reference."""
    rules: list[Any] = []
    ref: list[tuple[str, Any, frozenset[str] | None]] = []
    for _ in range(rng.randint(0, 4)):
        action = rng.choice(["read", "write", "delete"])
        roles = rng.choice([None, frozenset({"mod"})])
        kind = rng.choice(["all", "tenant", "author", "title"])
        where: Any
        pred: Any
        if kind == "all":
            where, pred = None, lambda me, d: True
        elif kind == "tenant":
            where, pred = (lambda me: Doc.tenant == me.attrs["tenant"]), (lambda me, d: d.tenant == me.attrs["tenant"])
        elif kind == "author":
            where, pred = (lambda me: Doc.author == me.id), (lambda me, d: d.author == me.id)
        else:
            t = rng.choice("ab")
            where, pred = (lambda me, t=t: Doc.title == t), (lambda me, d, t=t: d.title == t)
        rules.append(quanta.allow(Doc, action, where=where, roles=roles))
        ref.append((action, pred, roles))
    return quanta.Policy(*rules), ref


def _allowed(ref: list[Any], me: quanta.Principal, action: str, d: Doc) -> bool:
    return any(a == action and (r is None or r & me.roles) and p(me, d) for a, p, r in ref)


def _granted(ref: list[Any], me: quanta.Principal, action: str) -> bool:
    return any(a == action and (r is None or r & me.roles) for a, _, r in ref)


async def test_oracle(tmp_path: Any) -> None:
    rng = random.Random(16)
    cases = 0
    for round_ in range(40):
        policy, ref = _random_policy(rng)
        db = await quanta.open(str(tmp_path / f"o{round_}"), entities=[Doc], policy=policy)
        try:
            rows = {
                i: Doc(id=i, tenant=rng.choice("xy"), author=rng.choice(["u", "v"]), title=rng.choice("ab"))
                for i in range(8)
            }
            await db.collection(Doc).put_many(rows.values())
            for _ in range(25):
                me = quanta.Principal(rng.choice(["u", "v"]), roles=rng.choice([(), ("mod",)]), attrs={"tenant": "x"})
                docs = db.session(me).collection(Doc)
                op = rng.choice(["read", "get", "put", "delete"])
                cases += 1
                if op in ("read", "get"):
                    if not _granted(ref, me, "read"):
                        with pytest.raises(quanta.PermissionDeniedError):
                            await docs.query().all()
                        continue
                    want = sorted(i for i, d in rows.items() if _allowed(ref, me, "read", d))
                    if op == "read":
                        assert sorted(d.id for d in await docs.query().all()) == want
                    else:
                        pk = rng.randrange(10)
                        assert ((await docs.get(pk)) is not None) == (pk in want)
                elif op == "put":
                    new = Doc(id=rng.randrange(10), tenant=rng.choice("xy"), author=rng.choice(["u", "v"]))
                    old = rows.get(new.id)
                    ok = _allowed(ref, me, "write", new) and (old is None or _allowed(ref, me, "write", old))
                    before = await _contents(db)
                    if ok:
                        await docs.put(new)
                        rows[new.id] = new
                    else:
                        with pytest.raises(quanta.PermissionDeniedError):
                            await docs.put(new)
                        assert await _contents(db) == before
                else:
                    pk = rng.randrange(10)
                    old = rows.get(pk)
                    before = await _contents(db)
                    if not (_granted(ref, me, "delete") and _granted(ref, me, "read")):
                        with pytest.raises(quanta.PermissionDeniedError):
                            await docs.delete(pk)
                        continue
                    visible = old is not None and _allowed(ref, me, "read", old)
                    if not visible:
                        assert await docs.delete(pk) is False
                        assert await _contents(db) == before
                    elif _allowed(ref, me, "delete", old):
                        assert await docs.delete(pk) is True
                        del rows[pk]
                    else:
                        with pytest.raises(quanta.PermissionDeniedError):
                            await docs.delete(pk)
                        assert await _contents(db) == before
        finally:
            await db.aclose()
    assert cases == 1000


# ------------------------------------------------------------------------------ live leak


def _graph(obj: Any) -> str:
    return repr(obj)


async def test_live_queries_emit_no_hidden_row_or_masked_value(tmp_path: Any) -> None:
    db = await _open(tmp_path)
    try:
        s = db.session(ALICE)
        diffs = s.collection(Doc).query().watch_diff().__aiter__()
        members = s.collection(Member).query().watch().__aiter__()
        first = await diffs.__anext__()
        assert sorted(o.id for _, o in first.inserted) == [1, 3]
        assert "b@x" not in _graph(await members.__anext__())
        await db.collection(Doc).put(Doc(id=50, tenant="other", author="bob", title="secret"))  # hidden
        await db.collection(Member).put(Member(id="alice", email="new@x"))  # a masked value only
        await db.collection(Doc).put(Doc(id=51, tenant="acme", author="bob", title="seen"))
        nxt = await diffs.__anext__()
        assert [o.id for _, o in nxt.inserted] == [51] and "secret" not in _graph(nxt)
        await db.collection(Member).put(Member(id="carol", email="c@x"))
        rows = await members.__anext__()
        assert [m.id for m in rows] == ["alice", "bob", "carol"]
        assert "@x" not in _graph(rows)
    finally:
        await db.aclose()
