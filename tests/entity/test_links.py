"""Links between entities (quanta/_schema/relations.py, linkvalues.py, quanta/_relations.py,
quanta/_query/links.py): declarations, the values objects hold, referential integrity,
queries by and through links, backlinks and loading several levels.

What is proved here (cascades, rekey and the random-graph model are in test_cascades.py):

* The issue's declarations work verbatim, with forward references (this module uses
  ``from __future__ import annotations``: ``Author`` names ``Post`` before it exists), and
  every bad declaration is a ``SchemaError`` naming the class and the field.
* A link is stored as the target's primary key and **indexed**: the storage image holds,
  for each record, exactly the entries computed here from the key layout (one per Link
  field, one per distinct target of a Links field; a unique one for a one-to-one link).
* Referential integrity: a write that links to a missing record raises ``IntegrityError``
  and writes nothing (image compared), in a batch, in a transaction, for Links elements;
  targets stored in the same batch or earlier in the same transaction count; a concurrent
  delete of a target conflicts.
* Queries by link (``==``, ``!=``, ``in_``, ``contains``, ``is_none``) use the link's index
  and agree with a brute-force filter; ``has(...)`` runs in two steps and ``explain()`` shows
  both; misuse is a ``QueryError`` when the query is built.
* Loading: explicit and async; bound to the database or transaction the object came from;
  ``load_links``/``include`` load several levels with one read per level (counted).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import pickle
from typing import Annotated, Any

import pytest

import quanta
from quanta import (
    Backlink,
    IntegrityError,
    InvalidTypeError,
    Link,
    Links,
    PrimaryKey,
    QueryError,
    SchemaError,
    Unique,
    backlink,
    link,
    links,
)
from quanta._codec import decode_tuple
from quanta._schema import entity_info
from quanta._schema.keyspace import NS, index_key, record_key, unique_key
from quanta._storage.vfs import MemoryFileSystem

# ---------------------------------------------------------------------------------------------
# Entities: the issue's example (Author names Post before Post exists), plus the shapes a
# test needs: a one-to-one link, optional links, str and UUID keys, a self-link.


@quanta.entity(version=1)
class Author:
    id: Annotated[int, PrimaryKey(auto=True)]
    name: Annotated[str, quanta.Length(min=1, max=80)]
    age: Annotated[int, quanta.Range(0, 150)] = 0
    posts: quanta.Backlink[Post] = quanta.backlink("author")
    edited: quanta.Backlink[Post] = quanta.backlink("editor")
    profile: quanta.Backlink[Profile] = quanta.backlink("owner")  # through a one-to-one link


@quanta.entity(version=1)
class Post:
    id: Annotated[int, PrimaryKey(auto=True)]
    title: str
    author: quanta.Link[Author] = quanta.link(on_delete="cascade")
    tags: quanta.Links[Tag] = quanta.links()
    editor: quanta.Link[Author | None] = quanta.link(default=None, on_delete="set_null")


@quanta.entity
class Tag:
    id: Annotated[str, PrimaryKey()]
    posts: Backlink[Post] = backlink("tags")


@quanta.entity
class Profile:
    """One-to-one: a unique link."""

    id: Annotated[int, PrimaryKey(auto=True)]
    owner: Annotated[Link[Author], Unique()] = link(on_delete="cascade")
    bio: str = ""


@quanta.entity
class Person:
    """A self-link (a manager is a Person)."""

    id: Annotated[int, PrimaryKey()]
    name: str = ""
    manager: Link[Person | None] = link(default=None, on_delete="set_null")
    reports: Backlink[Person] = backlink("manager")


@pytest.fixture(params=["memory"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def image(db: quanta.Database) -> dict[bytes, bytes]:
    """Every key of the entity layer but the catalog, with its value."""
    return {k: v async for k, v in db.kv.scan(prefix=NS, include_reserved=True) if k[len(NS) : len(NS) + 1] != b"c"}


def entries_of(obj: Any) -> dict[bytes, Any]:
    """The keys one stored object owns, computed from the key layout (keyspace.py): its
    record (-> the object) and the entries of its link indexes (-> ``(pk,)``)."""
    cls = type(obj)
    name = entity_info(cls).name
    pk = obj.id
    out: dict[bytes, Any] = {record_key(name, pk): obj}
    if cls is Post:
        out[index_key("Post", "author", (obj.author.pk,), pk)] = (pk,)
        out[index_key("Post", "editor", (None if obj.editor is None else obj.editor.pk,), pk)] = (pk,)
        for t in set(obj.tags.pks):
            out[index_key("Post", "tags", (t,), pk)] = (pk,)
    elif cls is Profile:
        out[unique_key("Profile", "owner", (obj.owner.pk,))] = (pk,)
    elif cls is Person:
        out[index_key("Person", "manager", (None if obj.manager is None else obj.manager.pk,), pk)] = (pk,)
    return out


def assert_image(actual: dict[bytes, bytes], objs: list[Any]) -> None:
    expected: dict[bytes, Any] = {}
    for obj in objs:
        expected.update(entries_of(obj))
    missing, extra = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
    assert not missing and not extra, f"missing {missing}, unexpected {extra}"
    for key, want in expected.items():
        if key[len(NS) : len(NS) + 1] == b"r":
            assert entity_info(type(want)).decode(actual[key]) == want, key
        else:
            assert decode_tuple(actual[key]) == want, key


async def blog(db: quanta.Database) -> tuple[list[Author], list[Tag], list[Post]]:
    authors = [Author(name="Ann"), Author(name="Bob"), Author(name="Cy")]
    await db.collection(Author).put_many(authors)
    tags = [Tag(id="db"), Tag(id="py"), Tag(id="rx")]
    await db.collection(Tag).put_many(tags)
    ann, bob, cy = authors
    posts = [
        Post(title="Hi", author=ann, tags=["db", "py"]),
        Post(title="Yo", author=ann, tags=["py"], editor=bob),
        Post(title="Re", author=bob, tags=[tags[2], "db", "db"]),
        Post(title="No tags", author=cy.id),
    ]
    await db.collection(Post).put_many(posts)
    return authors, tags, posts


# =============================================================================== declarations


def test_the_issue_declarations_describe_links_as_plain_data() -> None:
    info = entity_info(Post)
    author, tags, editor = info.field("author"), info.field("tags"), info.field("editor")
    assert (author.link_kind, author.link_target, author.on_delete) == ("one", "Author", "cascade")
    assert (tags.link_kind, tags.link_target, tags.on_delete) == ("many", "Tag", "restrict")
    assert (editor.link_kind, editor.optional, editor.on_delete) == ("one", True, "set_null")
    assert author.key_type is int and tags.element_key_type is str and not author.optional
    assert info.field("title").link_kind is None
    # Every link is indexed: an automatic index named after the field.
    assert [(i.name, i.fields, i.unique, i.multi) for i in info.indexes] == [
        ("author", ("author",), False, False),
        ("tags", ("tags",), False, True),
        ("editor", ("editor",), False, False),
    ]
    assert entity_info(Profile).indexes[0].unique  # Unique() on a Link: one-to-one
    # Backlinks are not stored: not dataclass fields, not in the record.
    assert [f.name for f in entity_info(Author).fields] == ["id", "name", "age"]
    assert "posts" not in {f.name for f in dataclasses.fields(Author)}
    rel = entity_info(Author).relations
    assert {s.where for s in rel.incoming} == {"Post.author", "Post.editor", "Profile.owner"}
    assert [b.name for b in rel.backlinks] == ["posts", "edited", "profile"]


def test_a_link_accepts_the_target_its_key_or_a_link() -> None:
    ann = Author(id=7, name="Ann")
    by_object = Post(title="a", author=ann)
    by_key = Post(title="b", author=7)
    by_link = Post(title="c", author=by_key.author)
    assert by_object.author == by_key.author == by_link.author == 7
    assert by_object.author == ann and by_object.author.target is ann and by_key.author.target is None
    assert hash(by_object.author) == hash(7)
    assert by_object.author.id == by_key.author.id == 7  # the key is known without loading
    assert by_object.author.name == "Ann"  # a held target answers everything
    with pytest.raises(AttributeError, match=r"Post.author: Author.name is not loaded"):
        _ = by_key.author.name
    p = Post(title="d", author=1, tags=[Tag(id="x"), "y"])
    p.tags.append(Tag(id="z"))
    p.tags += ["w"]
    p.tags[0] = "v"
    assert isinstance(p.tags, Links) and all(isinstance(lk, Link) for lk in p.tags)
    assert p.tags.pks == ["v", "y", "z", "w"] and p.tags == ["v", "y", "z", "w"]
    p.author = Author(id=2, name="Bo")
    assert p.author == 2
    with pytest.raises(InvalidTypeError, match=r"Post.author: expected a Author"):
        Post(title="x", author=Tag(id="t"))
    with pytest.raises(InvalidTypeError, match=r"a Link holds one Author"):
        Post(title="x", author=[1, 2])
    with pytest.raises(InvalidTypeError, match=r"a Links field takes a list"):
        Post(title="x", author=1, tags="abc")
    with pytest.raises(TypeError, match="links are made by assigning"):
        Link(1)


def test_links_survive_repr_copy_pickle_replace_and_asdict() -> None:
    p = Post(id=3, title="a", author=Author(id=1, name="Ann"), tags=["x"])
    assert repr(p) == "Post(id=3, title='a', author=Link(Author, 1, loaded), tags=Links(Tag, ['x']), editor=None)"
    for clone in (copy.copy(p), copy.deepcopy(p), pickle.loads(pickle.dumps(p)), dataclasses.replace(p)):
        assert clone == p
        assert clone.author.pk == 1 and clone.tags.pks == ["x"]
    moved = dataclasses.replace(p, tags=[*p.tags, "y"])
    assert moved.tags.pks == ["x", "y"] and p.tags.pks == ["x"]  # the lists are not shared
    assert dataclasses.asdict(p)["tags"] == ["x"]


def test_the_record_stores_the_targets_primary_keys() -> None:
    info = entity_info(Post)
    ann = Author(name="Ann")
    p = Post(id=5, title="t", author=ann, tags=["x", "y"])
    ann.id = 9  # a key assigned after the link was made is the one stored
    data = info.encode(p)
    import msgpack

    assert msgpack.unpackb(data) == [1, 5, "t", 9, ["x", "y"], None]
    back = info.decode(data)
    assert back == p and back.author.pk == 9 and back.author.target is None


def make(annotation: Any, default: Any = dataclasses.MISSING, **extra: Any) -> type:
    """An entity class ``E(id, x)`` whose field ``x`` has ``annotation``."""
    ns: dict[str, Any] = {"__annotations__": {"id": Annotated[int, PrimaryKey()], "x": annotation, **extra}}
    if default is not dataclasses.MISSING:
        ns["x"] = default
    cls: type = quanta.entity(type("E", (), ns))
    return cls


class Plain:
    pass


@pytest.mark.parametrize(
    ("annotation", "default", "message"),
    [
        (Link[Author], link(on_delete="nullify"), r"E.x: on_delete must be 'cascade', 'set_null' or 'restrict'"),
        (Link[Author], link(on_delete="set_null"), r"E.x: on_delete='set_null' needs an optional link"),
        (Link[Author], link(default=None), r"E.x: default=None needs an optional link"),
        (Link[Author | None], link(default=3), r"E.x: the only default a link takes is None"),  # type: ignore[call-overload]
        (Links[Tag] | None, links(), r"E.x: a Links field is never None"),
        (Link[int], link(), r"E.x: Link\[int\] links to int, which is not an entity class"),
        (Link[Plain], link(), r"E.x: Link\[Plain\] links to .*Plain, which is not an entity class"),
        (Link, link(), r"E.x: Link needs a class"),
        (Annotated[Link[Author], quanta.Index()], link(), r"E.x: a link is indexed automatically"),
        (Annotated[Links[Tag], Unique()], links(), r"E.x: a link is indexed automatically"),
        (Annotated[Link[Author], PrimaryKey()], link(), r"E.x: a link cannot be the primary key"),
        (Annotated[Link[Author], quanta.Range(0, 3)], link(), r"E.x: Range\(0, 3\) does not apply to a link"),
        (Link[Author], links(), r"E.x: links\(on_delete='restrict'\) does not declare a Link field"),
        (int, link(), r"E.x: link\(on_delete='restrict'\) declares a link; annotate the field"),
        (Backlink[Post], None, r"E.x: a backlink names the link field it inverts"),
        (Backlink[Post] | None, backlink("author"), r"E.x: a Backlink is never None"),
    ],
)
def test_bad_link_declarations_are_schema_errors_naming_the_class_and_field(
    annotation: Any, default: Any, message: str
) -> None:
    with pytest.raises(SchemaError, match=message):
        make(annotation, default)


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("title", r"E.x = backlink\('title'\): Post.title is not a link"),
        ("nope", r"E.x = backlink\('nope'\): Post has no field 'nope'"),
        ("author", r"E.x = backlink\('author'\): Post.author links to Author, not to E"),
    ],
)
def test_a_backlink_must_name_a_link_to_its_own_class(field: str, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        make(Backlink[Post], backlink(field))


def test_composite_indexes_may_hold_a_link_but_not_a_links_field() -> None:
    @quanta.entity(indexes=[quanta.Index("author", "title"), quanta.Unique("title", "author", name="t_a")])
    class Note:
        id: Annotated[int, PrimaryKey()]
        title: str
        author: Link[Author] = link()

    assert [i.name for i in entity_info(Note).indexes] == ["author", "author_title", "t_a"]
    with pytest.raises(SchemaError, match=r"Note2.tags: a Links field is indexed automatically"):

        @quanta.entity(indexes=[quanta.Index("tags", "title")])
        class Note2:
            id: Annotated[int, PrimaryKey()]
            title: str
            tags: Links[Tag] = links()


# =============================================================================== forward references


def test_forward_references_in_a_function_scope_resolve_at_the_later_declaration() -> None:
    @quanta.entity
    class Shelf:
        id: Annotated[int, PrimaryKey()]
        books: Backlink["Book"] = backlink("shelf")  # noqa: UP037 (a string: Book does not exist yet)
        favourite: Link["Book | None"] = link(default=None)  # noqa: UP037

    assert not entity_info(Shelf).relations.links[0].resolved

    @quanta.entity
    class Book:
        id: Annotated[int, PrimaryKey()]
        shelf: Link[Shelf] = link(on_delete="cascade")

    rel = entity_info(Shelf).relations
    assert rel.links[0].resolved and rel.links[0].target is Book
    assert rel.backlinks[0].link.owner is Book
    fi = entity_info(Shelf).field("favourite")
    assert (fi.link_target, fi.key_type, fi.optional) == ("Book", int, True)
    assert [s.where for s in entity_info(Book).relations.incoming] == [
        "test_forward_references_in_a_function_scope_resolve_at_the_later_declaration.<locals>.Shelf.favourite"
    ]


async def test_an_unresolvable_forward_reference_is_a_schema_error_at_first_use() -> None:
    @quanta.entity
    class Orphan:
        id: Annotated[int, PrimaryKey()]
        parent: Link["Nowhere"] = link()  # type: ignore[name-defined]  # noqa: F821, UP037

    o = Orphan(id=1, parent=2)  # declaring and constructing work
    async with quanta.open("/db", fs=MemoryFileSystem()) as db:
        with pytest.raises(SchemaError, match=r"Orphan.parent: cannot resolve 'Nowhere' in Link\[Nowhere\]"):
            db.collection(Orphan)
    with pytest.raises(SchemaError, match="cannot resolve 'Nowhere'"):
        entity_info(Orphan).check(o)


async def test_a_forward_reference_to_a_class_that_is_no_entity_does_not_resolve() -> None:
    @quanta.entity
    class Holder:
        id: Annotated[int, PrimaryKey()]
        thing: Link["Thing"] = link()  # noqa: UP037

    class Thing:  # declared, but not an entity
        pass

    async with quanta.open("/db", fs=MemoryFileSystem()) as db:
        with pytest.raises(SchemaError, match=r"Holder.thing: cannot resolve 'Thing'.*declare the entity class Thing"):
            db.collection(Holder)
    assert Thing


# =============================================================================== storage and integrity


async def test_links_are_stored_as_keys_and_indexed_exactly(db: quanta.Database) -> None:
    authors, tags, posts = await blog(db)
    profile = Profile(owner=authors[0], bio="hi")
    await db.collection(Profile).put(profile)
    assert_image(await image(db), [*authors, *tags, *posts, profile])
    got = await db.collection(Post).get(posts[2].id)
    assert got is not None and got.tags.pks == ["rx", "db", "db"]  # a list as given; indexed once per target
    # Replacing a record moves its entries.
    got.author = authors[2]
    got.tags = ["py"]
    await db.collection(Post).put(got)
    posts[2] = got
    assert_image(await image(db), [*authors, *tags, *posts, profile])


async def test_a_link_to_a_missing_record_is_an_integrity_error_and_nothing_is_written(db: quanta.Database) -> None:
    await blog(db)
    before = await image(db)
    coll = db.collection(Post)
    with pytest.raises(IntegrityError, match=r"Post 5: author links to Author 99, which does not exist; nothing"):
        await coll.put(Post(title="x", author=99))
    with pytest.raises(IntegrityError, match=r"tags links to Tag 'nope'"):
        await coll.put_many([Post(title="ok", author=1), Post(title="bad", author=1, tags=["db", "nope"])])
    with pytest.raises(IntegrityError, match=r"editor links to Author 42"):
        await coll.put(Post(title="x", author=1, editor=42))
    with pytest.raises(IntegrityError, match=r"has no primary key yet: store it first"):
        await coll.put(Post(title="x", author=Author(name="Unsaved")))
    with pytest.raises(IntegrityError, match=r"Profile 1: owner links to Author 7"):
        await db.collection(Profile).put(Profile(owner=7))
    assert await image(db) == before
    with pytest.raises(InvalidTypeError, match=r"Post.author: expected a Author or its primary key \(int\), got str"):
        await coll.put(Post(title="x", author="1"))
    with pytest.raises(InvalidTypeError, match=r"Post.author: a link to a Author is required, got None"):
        await coll.put(Post(title="x", author=None))  # type: ignore[arg-type]
    assert await image(db) == before


async def test_targets_of_the_same_batch_or_transaction_count(db: quanta.Database) -> None:
    people = db.collection(Person)
    boss = Person(id=1, name="Boss")
    await people.put_many([Person(id=2, manager=boss), boss, Person(id=3, manager=3)])  # order does not matter
    assert (await people.get(2)).manager == 1  # type: ignore[union-attr]
    async with db.transaction() as tx:
        a, b = Author(name="New"), Author(name="Gone")
        await tx.collection(Author).put_many([a, b])
        await tx.collection(Post).put(Post(title="x", author=a))  # the target is a write of this transaction
        await tx.collection(Author).delete(b.id)
        with pytest.raises(IntegrityError, match=r"links to Author 2, which does not exist"):
            await tx.collection(Post).put(Post(title="y", author=b.id))  # deleted by this transaction
        before = dict(tx._writes)
        with pytest.raises(IntegrityError):
            await tx.collection(Post).put_many([Post(title="z", author=a), Post(title="w", author=77)])
        assert tx._writes == before  # nothing of the failed put is buffered: the transaction goes on
    assert await db.collection(Post).count() == 1


async def test_a_concurrent_delete_of_a_target_makes_the_write_conflict(db: quanta.Database) -> None:
    ann = Author(name="Ann")
    await db.collection(Author).put(ann)
    tx = db.transaction()
    await tx.collection(Post).put(Post(title="x", author=ann.id))  # reads Author 1: it exists
    await db.collection(Author).delete(ann.id)  # commits first
    with pytest.raises(quanta.ConflictError):
        await tx.commit()
    assert await db.collection(Post).count() == 0
    # run through the database collection, the retry fails the check instead
    with pytest.raises(IntegrityError):
        await db.collection(Post).put(Post(title="x", author=ann.id))


# =============================================================================== loading


async def test_objects_load_their_links_through_the_database_they_came_from(db: quanta.Database) -> None:
    (ann, bob, _), _, posts = await blog(db)
    coll = db.collection(Post)
    p = await coll.get(posts[1].id)
    assert p is not None and p.author.target is None
    assert await p.author.load() == ann and p.author.target == ann and p.author.name == "Ann"
    assert p.editor is not None and await p.editor.load() == bob
    assert [t.id for t in await p.tags.load()] == ["py"]
    same = p.author.target
    assert await p.author.load() is same  # held: no second read
    assert await p.author.load(refresh=True) == ann
    a = await db.collection(Author).get(ann.id)
    assert a is not None
    assert [x.title for x in await a.posts.all()] == ["Hi", "Yo"]  # primary key order
    assert await a.posts.count() == 2 and a.posts.loaded is not None
    assert [x.title for x in await a.posts.query().where(Post.title == "Yo").all()] == ["Yo"]
    assert [x.title for x in await a.edited.all()] == []
    tag = await db.collection(Tag).get("db")
    assert tag is not None and [x.title for x in await tag.posts.all()] == ["Hi", "Re"]  # once each
    rows = await coll.where(Post.author == ann).all()
    assert await rows[0].author.load() == ann  # query results are bound too
    fresh = Post(title="new", author=ann)
    await coll.put(fresh)
    assert await fresh.author.load() is ann  # held since construction
    assert [x.id for x in await Author(id=ann.id, name="x").posts.all(db)] == [posts[0].id, posts[1].id, fresh.id]


async def test_unbound_links_return_what_they_hold_and_otherwise_ask_for_a_database(db: quanta.Database) -> None:
    await blog(db)
    ann = Author(id=1, name="Ann")
    p = Post(title="x", author=ann, tags=["db"])
    assert await p.author.load() is ann
    q = Post(title="y", author=1)
    with pytest.raises(quanta.InvalidArgumentError, match=r"Post.author: the object is not bound to a database"):
        await q.author.load()
    with pytest.raises(quanta.InvalidArgumentError, match="not bound"):
        await p.tags.load()
    with pytest.raises(quanta.InvalidArgumentError, match="not bound"):
        await ann.posts.all()
    assert (await q.author.load(db)).name == "Ann"
    assert [t.id for t in await p.tags.load(db)] == ["db"]
    gone = Post(title="z", author=99)
    with pytest.raises(IntegrityError, match=r"Post.author: no Author with id=99"):
        await gone.author.load(db)


async def test_objects_read_in_a_transaction_load_through_it(db: quanta.Database) -> None:
    await blog(db)
    async with db.transaction() as tx:
        a = Author(name="Tx")
        await tx.collection(Author).put(a)
        await tx.collection(Post).put(p := Post(title="tx", author=a))
        got = await tx.collection(Post).get(p.id)
        assert got is not None and (await got.author.load()).name == "Tx"  # sees the transaction's writes
        author = await tx.collection(Author).get(a.id)
        assert author is not None and [x.title for x in await author.posts.all()] == ["tx"]
    with pytest.raises(quanta.TransactionClosedError):
        await got.author.load(refresh=True)
    assert (await got.author.load(db, refresh=True)).name == "Tx"


class Reads:
    """Counts a transaction's batched reads (``_get_many``, the entity layer's unchecked
    ``get_many``) and scans while patched in."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from quanta._txn import TransactionKeyValue

        self.get_many = 0
        self.scans = 0
        get_many, scan = TransactionKeyValue._get_many, TransactionKeyValue._scan_chunks

        async def counted_get_many(this: Any, keys: Any) -> Any:
            self.get_many += 1
            return await get_many(this, keys)

        def counted_scan(this: Any, *args: Any) -> Any:
            self.scans += 1
            return scan(this, *args)

        monkeypatch.setattr(TransactionKeyValue, "_get_many", counted_get_many)
        monkeypatch.setattr(TransactionKeyValue, "_scan_chunks", counted_scan)


async def test_load_links_loads_several_levels_with_one_read_per_level(
    db: quanta.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    authors = [Author(name=f"a{i}") for i in range(20)]
    await db.collection(Author).put_many(authors)
    await db.collection(Tag).put_many([Tag(id=f"t{i}") for i in range(5)])
    posts = [Post(title=f"p{i}", author=authors[i % 20], tags=[f"t{i % 5}", f"t{(i + 1) % 5}"]) for i in range(200)]
    await db.collection(Post).put_many(posts)
    async with db.transaction(read_only=True) as tx:
        coll = tx.collection(Post)
        rows = await coll.query().all()
        reads = Reads(monkeypatch)
        await coll.load_links(rows, "author", "author.posts", "tags", "tags.posts")
        # author: one get_many; author.posts: one index query (20 ranges); tags: one get_many;
        # tags.posts: one index query -- however many rows there are
        assert reads.get_many == 4  # one per step
        assert reads.scans == 20 + 5  # one index range per distinct author and per tag
        monkeypatch.undo()
    first = rows[0]
    assert first.author.target is not None and first.author.name == "a0"
    assert rows[20].author.target is first.author.target  # one object per record
    assert [p.title for p in first.author.posts.loaded or []] == [f"p{i}" for i in range(0, 200, 20)]
    assert [t.id for t in first.tags.targets] == ["t0", "t1"]  # type: ignore[union-attr]
    t0 = first.tags[0].target
    assert t0 is not None and len(t0.posts.loaded) == 80  # type: ignore[attr-defined]
    assert await first.author.posts.all() == first.author.posts.loaded  # no read: kept
    with pytest.raises(quanta.InvalidArgumentError, match=r"'author.nope': Author has no link or backlink 'nope'"):
        await db.collection(Post).load_links(rows, "author.nope")


async def test_a_query_can_include_links(db: quanta.Database) -> None:
    (ann, *_), _, _ = await blog(db)
    rows = await db.collection(Post).where(Post.author == ann).include("author.posts", "tags").all()
    assert [r.author.name for r in rows] == ["Ann", "Ann"]
    assert [len(r.author.posts.loaded or []) for r in rows] == [2, 2]
    assert [[t.id for t in r.tags.targets] for r in rows] == [["db", "py"], ["py"]]  # type: ignore[union-attr]
    async for r in db.collection(Post).query().include("editor"):
        assert r.editor is None or r.editor.target is not None
    one = await db.collection(Post).query().include("author").first()
    assert one is not None and one.author.target is not None


async def test_a_one_to_one_backlink_and_the_alternative_optional_spelling(db: quanta.Database) -> None:
    @quanta.entity
    class Badge:
        id: Annotated[int, PrimaryKey()]
        holder: Link[Author] | None = link(default=None, on_delete="set_null")  # = Link[Author | None]

    (ann, bob, _), _, _ = await blog(db)
    await db.collection(Profile).put(Profile(owner=ann, bio="hi"))
    a = await db.collection(Author).get(ann.id)
    assert a is not None and [p.bio for p in await a.profile.all()] == ["hi"]
    assert "unique_get" in a.profile.query().explain()
    rows = await db.collection(Author).query().include("profile").all()
    assert [len(r.profile.loaded or []) for r in rows] == [1, 0, 0]
    badges = db.collection(Badge)
    await badges.put_many([Badge(id=1, holder=bob), Badge(id=2)])
    assert entity_info(Badge).field("holder").optional
    assert [b.id for b in await badges.where(Badge.holder.is_none()).all()] == [2]
    await db.collection(Author).delete(bob.id)
    assert [b.holder for b in await badges.query().all()] == [None, None]


# =============================================================================== queries


async def test_conditions_on_links_use_the_links_index_and_match_a_brute_force_filter(db: quanta.Database) -> None:
    (ann, bob, cy), tags, posts = await blog(db)
    coll = db.collection(Post)

    async def check(cond: Any, index: str, expected: list[Post]) -> None:
        q = coll.where(cond)
        assert f"index:    {index} on" in q.explain()
        assert sorted(p.id for p in await q.all()) == sorted(p.id for p in expected)
        assert await q.count() == len(expected)

    await check(Post.author == ann, "author", [p for p in posts if p.author == ann.id])
    await check(Post.author == ann.id, "author", posts[:2])
    await check(Post.author == posts[2].author, "author", [posts[2]])
    await check(Post.author != ann, "author", posts[2:])
    await check(quanta.in_(Post.author, [bob, cy.id]), "author", posts[2:])
    await check(quanta.contains(Post.tags, "db"), "tags", [posts[0], posts[2]])
    await check(quanta.contains(Post.tags, tags[1]), "tags", posts[:2])
    await check(Post.editor.is_none(), "editor", [posts[0], posts[2], posts[3]])
    await check(Post.editor == bob, "editor", [posts[1]])
    assert await coll.where(quanta.in_(Post.author, [])).all() == []
    # a residual check agrees with the index: the same condition evaluated record by record
    for p in posts:
        assert (Post.author == ann).evaluate(p) == (p.author.pk == ann.id)
        assert quanta.contains(Post.tags, "py").evaluate(p) == ("py" in p.tags.pks)
        assert quanta.in_(Post.author, [bob, cy]).evaluate(p) == (p.author.pk in (bob.id, cy.id))


async def test_has_queries_the_target_first_then_the_links_index(db: quanta.Database) -> None:
    (_, bob, _), _, posts = await blog(db)
    coll = db.collection(Post)
    q = coll.where(Post.author.has(Author.name == "Bob"))
    assert [p.title for p in await q.all()] == ["Re"]
    assert await q.count() == 1
    text = q.explain()
    assert text.splitlines()[0] == "query through links: 2 steps, run in order at one snapshot"
    assert "step 1: the Author records matching Author.name == 'Bob' (their keys)" in text
    assert "plan for Author: full_scan" in text
    assert "step 2: the Post records whose link is one of the keys found" in text
    assert "author == <each key from step 1>" in text and "index:    author on (author)" in text
    assert text.splitlines()[-1].startswith("cost: ")
    many = coll.where(Post.tags.has(Tag.id.startswith("r")))
    assert [p.title for p in await many.all()] == ["Re"]
    assert "tags contains <each key from step 1>" in many.explain()
    nobody = coll.where(Post.author.has(Author.name == "Zed"), Post.title == "Hi")
    assert await nobody.all() == [] and await nobody.count() == 0
    either = coll.where(Post.author.has(Author.name == "Cy") | (Post.title == "Hi"))
    assert sorted(p.title for p in await either.all()) == ["Hi", "No tags"]
    negated = coll.where(~Post.author.has(Author.age > 100))
    assert len(await negated.all()) == 4
    # nested: posts whose author has a profile saying "hi"
    await db.collection(Profile).put(Profile(owner=bob, bio="hi"))
    nested = coll.where(Post.author.has(Author.name.startswith("B"), Author.age == 0))
    assert [p.title for p in await nested.all()] == ["Re"]
    assert await coll.where(Post.editor.has(Author.name == "Bob")).all() == [posts[1]]
    # delete through a link: one step, then the cascade-free delete of the matches
    assert await coll.where(Post.author.has(Author.name == "Cy")).delete() == 1
    assert await coll.count() == 3
    with pytest.raises(QueryError, match="planned when it runs"):
        q.plan()
    with pytest.raises(QueryError, match="cannot be checked on one record"):
        Post.author.has(Author.name == "x").evaluate(posts[0])


def test_misused_link_conditions_are_query_errors_when_built() -> None:
    ann = Author(name="Ann")
    with pytest.raises(QueryError, match=r"a link has no order"):
        _ = Post.author < 3
    with pytest.raises(QueryError, match=r"Post.author is a link: it has no order"):
        quanta.between(Post.author, 1, 3)
    with pytest.raises(QueryError, match=r"Post.author.startswith\(...\): a link has no text"):
        Post.author.startswith("a")
    with pytest.raises(QueryError, match=r"holds several links; use contains"):
        _ = Post.tags == "x"
    with pytest.raises(QueryError, match=r"holds one link"):
        quanta.contains(Post.author, 1)
    with pytest.raises(QueryError, match=r"has no primary key yet"):
        _ = Post.author == ann
    with pytest.raises(QueryError, match=r"links to Author, not to Tag"):
        _ = Post.author == Tag(id="x")
    with pytest.raises(QueryError, match=r"expected a value of type int"):
        _ = Post.author == "1"
    with pytest.raises(QueryError, match=r"a required link, never None"):
        _ = Post.author == None  # noqa: E711
    with pytest.raises(QueryError, match=r"is on Author, not on Tag"):
        Post.author.has(Tag.id == "x")
    with pytest.raises(QueryError, match=r"takes conditions on Author"):
        Post.author.has()
    with pytest.raises(QueryError, match=r"it has no order, so order_by does not apply"):
        quanta.desc(Post.author)


async def test_a_live_query_through_a_link_is_refused_clearly(db: quanta.Database) -> None:
    q = db.collection(Post).where(Post.author.has(Author.name == "Ann"))
    with pytest.raises(QueryError):
        q.watch()


# =============================================================================== found elsewhere
# Live queries over links


async def test_a_live_query_on_a_link_condition_follows_commits(db: quanta.Database) -> None:
    """Ordering and routing by a link use its key; the objects a live query emits are bound
    to the database like a collection's reads, so their links load without a source."""
    (ann, _, _), _, _ = await blog(db)
    feed = db.collection(Post).where(Post.author == ann).live()
    rows = feed.__aiter__()
    try:
        assert [p.title for p in await asyncio.wait_for(anext(rows), 5)] == ["Hi", "Yo"]
        await db.collection(Post).put(Post(title="New", author=ann))
        latest = await asyncio.wait_for(anext(rows), 5)
        assert [p.title for p in latest] == ["Hi", "Yo", "New"]
        assert [(await p.author.load(refresh=True)).id for p in latest] == [ann.id] * 3
    finally:
        await feed.aclose()


def test_a_backlink_to_a_class_of_another_module_resolves_when_that_class_links_back() -> None:
    import sys
    import types

    a = types.ModuleType("links_test_a")
    b = types.ModuleType("links_test_b")
    sys.modules[a.__name__], sys.modules[b.__name__] = a, b
    try:
        exec(  # module a never imports module b (as with an `if TYPE_CHECKING:` import)
            "from __future__ import annotations\n"
            "from typing import Annotated\nimport quanta\n"
            "@quanta.entity\nclass CrossAuthor:\n"
            "    id: Annotated[int, quanta.PrimaryKey()]\n"
            "    posts: quanta.Backlink[CrossPost] = quanta.backlink('author')\n",
            a.__dict__,
        )
        exec(
            "from typing import Annotated\nimport quanta\nfrom links_test_a import CrossAuthor\n"
            "@quanta.entity\nclass CrossPost:\n"
            "    id: Annotated[int, quanta.PrimaryKey()]\n"
            "    author: quanta.Link[CrossAuthor] = quanta.link()\n",
            b.__dict__,
        )
        back = entity_info(a.CrossAuthor).relations.backlinks[0]
        assert back.resolved and back.link.owner is b.CrossPost
    finally:
        del sys.modules[a.__name__], sys.modules[b.__name__]
