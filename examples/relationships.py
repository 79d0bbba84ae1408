"""Relationships: links, backlinks, referential integrity, queries through links, cascades.

    python examples/relationships.py

Declares the issue's ``Author``/``Post``/``Tag`` (``Author`` names ``Post`` before it exists:
a forward reference) and a ``Comment`` that cascades with its post but restricts deleting
its author. Then it shows a link to a missing record refused, explicit loading, loading two
levels for a list of posts in one read per level, a query through a link with its two-step
plan, a restricted delete that writes nothing, a cascade through the graph, and a primary
key change that every link follows.

The database lives in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

try:
    import quanta
except ImportError:  # a checkout without `pip install -e .`: use the package next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import quanta

from quanta import PrimaryKey


@quanta.entity(version=1)
class Author:
    id: int = quanta.auto()
    name: Annotated[str, quanta.Length(min=1, max=80)]
    posts: quanta.Backlink[Post] = quanta.backlink("author")  # inverse of Post.author


@quanta.entity(version=1)
class Post:
    id: int = quanta.auto()
    title: str
    author: quanta.Link[Author] = quanta.link(on_delete="cascade")
    tags: quanta.Links[Tag] = quanta.links(on_delete="set_null")  # a deleted tag leaves the list
    comments: quanta.Backlink[Comment] = quanta.backlink("post")


@quanta.entity
class Tag:
    name: Annotated[str, PrimaryKey()]
    posts: quanta.Backlink[Post] = quanta.backlink("tags")


@quanta.entity
class Comment:
    id: int = quanta.auto()
    post: quanta.Link[Post] = quanta.link(on_delete="cascade")
    by: quanta.Link[Author | None] = quanta.link(default=None, on_delete="restrict")
    text: str = ""


async def main_async(path: str) -> None:
    async with quanta.open(path) as db:
        authors, posts = db.collection(Author), db.collection(Post)
        tags, comments = db.collection(Tag), db.collection(Comment)
        ann, bob = Author(name="Ann"), Author(name="Bob")
        await authors.put_many([ann, bob])
        await tags.put_many([Tag(name="db"), Tag(name="python"), Tag(name="async")])
        hello = Post(title="Hello", author=ann, tags=["db", "python"])  # a target or its key
        await posts.put_many([hello, Post(title="Links", author=ann, tags=["db"]), Post(title="Rx", author=bob)])
        await comments.put_many([Comment(post=hello, by=bob, text="nice"), Comment(post=hello, by=ann, text="ty")])

        print("1. linking to a record that does not exist writes nothing:")
        try:
            await posts.put(Post(title="Ghost", author=99))
        except quanta.IntegrityError as exc:
            print(f"   IntegrityError: {exc}")

        print("\n2. loading is explicit and async:")
        post = await posts.get(hello.id)
        assert post is not None
        print(f"   post.author.id = {post.author.id} (the key, no read)")
        author = await post.author.load()
        print(f"   await post.author.load() -> {author.name}; now post.author.name = {post.author.name}")
        print(f"   await ann.posts.all() -> {[p.title for p in await author.posts.all()]}")
        print(f"   await post.tags.load() -> {[t.name for t in await post.tags.load()]}")

        print("\n3. two levels for a list of posts, one read per level:")
        rows = await posts.query().all()
        await posts.load_links(rows, "author", "author.posts", "comments")
        for row in rows:
            siblings = [p.title for p in row.author.posts.loaded or []]
            n = len(row.comments.loaded or [])
            print(f"   {row.title!r} by {row.author.name} (who wrote {siblings}), {n} comments")

        print("\n4. a query through a link runs in two steps; explain() shows both:")
        q = posts.where(Post.author.has(Author.name == "Bob"))
        print(f"   {[p.title for p in await q.all()]}")
        print("   " + q.explain().replace("\n", "\n   "))

        print("\n5. restrict: Ann wrote a comment on her own post and Bob's comment is on it too;")
        print("   deleting Bob is refused (his comment would dangle), and nothing is written:")
        try:
            await authors.delete(bob.id)
        except quanta.IntegrityError as exc:
            print(f"   IntegrityError: {exc}")
        print(f"   still {await posts.count()} posts, {await comments.count()} comments")

        print("\n6. cascade: deleting Ann deletes her posts and their comments, in one commit")
        print("   (her own comment restricts her delete, but it goes with her post: not dangling):")
        await authors.delete(ann.id)
        print(f"   left: {[p.title for p in await posts.query().all()]}, {await comments.count()} comments")

        print("\n7. a key change is followed by every link to it:")
        await authors.rekey(bob.id, 100)
        rx = await posts.where(Post.title == "Rx").first()
        print(f"   Post 'Rx' now links to author {rx.author.id if rx else None}")

        print("\n8. a cascade of 10,000 linked objects:")
        boss = Author(name="Boss")
        await authors.put(boss)
        await posts.put_many([Post(title=f"p{i}", author=boss) for i in range(2_000)])
        many = await posts.where(Post.author == boss).all()
        await comments.put_many([Comment(post=p) for p in many for _ in range(4)])
        t = time.perf_counter()
        await authors.delete(boss.id)
        elapsed = time.perf_counter() - t
        print(f"   1 author, 2,000 posts, 8,000 comments deleted in {elapsed * 1e3:.0f} ms (one batch)")
        print(f"   left: {await posts.count()} posts, {await comments.count()} comments")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main_async(str(Path(tmp) / "db")))


if __name__ == "__main__":
    main()
