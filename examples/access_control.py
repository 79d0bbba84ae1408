"""Access control in one page: a multi-tenant policy, a session per principal, masks, denied
writes and a live query that shows only what the session may see (docs/access-control.md).

Run it from a checkout:

    python examples/access_control.py

It works in a temporary directory that is removed at the end (pass a directory as the first
argument to keep the database).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

try:
    import quanta
except ImportError:  # a checkout without `pip install -e .`: use the package next door
    _root = str(Path(__file__).resolve().parent.parent)
    sys.path.insert(0, _root)
    import quanta


@quanta.entity
class User:
    id: Annotated[str, quanta.PrimaryKey()]
    email: str = ""


@quanta.entity
class Post:
    id: int = quanta.auto()
    tenant: Annotated[str, quanta.Index()] = ""
    author: str = ""
    title: str = ""
    draft: bool = False


# Deny by default: a session sees and changes only what a rule allows.
POLICY = quanta.Policy(
    # published posts of one's own tenant (an indexed rule: queries stay index scans)
    quanta.allow(Post, "read", where=lambda me: (Post.tenant == me.attrs["tenant"]) & (Post.draft == False)),  # noqa: E712
    quanta.allow(Post, "read", where=lambda me: Post.author == me.id),  # and one's own drafts
    quanta.allow(Post, "write", where=lambda me: Post.author == me.id),
    quanta.allow(Post, "delete", roles={"moderator"}),
    quanta.allow(User, "read"),
    quanta.mask(User.email, unless=lambda me: "admin" in me.roles),
    quanta.allow_kv(prefix=b"cache:", actions={"read", "write"}),
)


async def tour(path: str) -> None:
    async with quanta.open(path, entities=[User, Post], policy=POLICY) as db:
        # `db` itself is trusted and unrestricted: load some data through it.
        await db.collection(User).put_many([User(id="alice", email="a@x.org"), User(id="bob", email="b@x.org")])
        await db.collection(Post).put_many(
            [
                Post(tenant="acme", author="bob", title="Acme news"),
                Post(tenant="acme", author="bob", title="Bob's draft", draft=True),
                Post(tenant="globex", author="carol", title="Globex secret"),
            ]
        )

        alice = db.session(quanta.Principal("alice", roles={"member"}, attrs={"tenant": "acme"}))
        posts = alice.collection(Post)
        print("alice sees:", [p.title for p in await posts.query().all()])
        print("get(3), a post of another tenant:", await posts.get(3))
        print("users, emails masked:", [(u.id, u.email) for u in await alice.collection(User).query().all()])

        mine = await posts.put(Post(tenant="acme", author="alice", title="Alice's post"))
        print("alice wrote post", mine)
        try:
            await posts.put(Post(id=1, tenant="acme", author="alice", title="taken over"))
        except quanta.PermissionDeniedError as exc:
            print("denied:", exc)
        try:
            await posts.delete(mine)  # deleting needs the moderator role
        except quanta.PermissionDeniedError as exc:
            print("denied:", exc)

        await alice.kv.put(b"cache:front", b"...")
        try:
            await alice.kv.get(b"secrets:k")
        except quanta.PermissionDeniedError as exc:
            print("denied:", exc)

        # A live query through the session emits only rows the session may read.
        stream = posts.query().watch_diff()
        async with stream:
            changes = aiter(stream)
            first = await anext(changes)
            print("live, first:", sorted(p.title for _, p in first.inserted))
            await db.collection(Post).put(Post(tenant="globex", author="x", title="hidden"))
            await db.collection(Post).put(Post(tenant="acme", author="x", title="seen"))
            nxt = await anext(changes)
            print("live, next:", [p.title for _, p in nxt.inserted])
            assert [p.title for _, p in nxt.inserted] == ["seen"]


def main() -> None:
    if len(sys.argv) > 1:
        asyncio.run(tour(sys.argv[1]))
        return
    with tempfile.TemporaryDirectory(prefix="quanta-example-") as tmp:
        asyncio.run(tour(os.path.join(tmp, "db")))


if __name__ == "__main__":
    main()
