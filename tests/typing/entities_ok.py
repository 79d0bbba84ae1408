"""Entity code that must type-check under ``mypy --strict`` (tests/system/test_typing.py runs it).

``@entity`` carries ``dataclass_transform``: constructors are keyword-only and typed, and a
field read on the class keeps the field's type (at run time it is a query field).
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Annotated, assert_type

from quanta._schema import EntityInfo, Index, PrimaryKey, Unique, entity, entity_info, field


@entity(indexes=[Index("city", "age")])
class User:
    id: Annotated[int, PrimaryKey(auto=True)] = 0
    email: Annotated[str, Unique()]
    name: Annotated[str, Index()]
    city: str
    age: int = 0
    tags: Annotated[list[str], Index(multi=True)] = field(default_factory=list)


@entity
class Event:
    id: Annotated[uuid.UUID, PrimaryKey()]
    at: datetime
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    note: str | None = field(default=None)
    owner: User | None = None


u = User(email="a@x.io", name="Ann", city="Oslo")
u2 = User(id=3, email="b@x.io", name="Bo", city="Rome", age=40, tags=["x"])
assert_type(u.age, int)
assert_type(u.tags, list[str])
assert_type(User.age, int)
assert_type(User.tags, list[str])
adult: bool = User.age >= 18
u.age = 41
u.tags.append("y")

e = Event(id=uuid.uuid4(), at=datetime.now(), owner=u)
assert_type(e.note, str | None)
assert_type(e.owner, User | None)

info: EntityInfo = entity_info(User)
data: bytes = info.encode(u)
same = info.decode(data) == u


def older(user: User, years: int) -> User:
    return dataclasses.replace(user, age=user.age + years)


# Validation: constraints in annotations, validators registered on the class (quanta.validator on
# a @staticmethod for a field, on a method for the whole object; plain functions in validators=).
from quanta import Length, OneOf, Pattern, Range, ValidationError, Violation, validator  # noqa: E402


def ends_after_start(b: Booking) -> None:
    if b.end < b.start:
        raise ValueError("end must not be before start")


def no_spaces(value: str) -> bool:
    return " " not in value


@entity(validators=[ends_after_start, validator("title")(no_spaces)])
class Booking:
    id: Annotated[int, PrimaryKey(auto=True)] = 0
    code: Annotated[str, Pattern(r"[A-Z]{3}"), Length(max=3)]
    title: str = ""
    size: Annotated[str, OneOf("S", "M", "L")] = "M"
    guests: Annotated[int, Range(1, 12)] = 1
    start: Annotated[datetime, Range(min=datetime(2020, 1, 1))] = datetime(2024, 1, 1)
    end: datetime = datetime(2024, 1, 2)
    nick: Annotated[str, Length(max=20)] | None = None

    @validator("code")
    @staticmethod
    def _known_code(value: str) -> bool:
        return value != "XXX"

    @validator()
    def _short_stay(self) -> None:
        if (self.end - self.start).days > 30:
            raise ValueError("at most 30 days")


b = Booking(code="ABC", guests=2)
assert_type(b.guests, int)
assert_type(b.nick, str | None)
b._short_stay()
ok_code: bool = Booking._known_code("ABC")
try:
    entity_info(Booking).check(b)
except ValidationError as exc:
    first: Violation = exc.violations[0]
    field_name: str | None = first.field


# Links: Link[T] (Link[T | None] optional), Links[T], Backlink[T]; a link field accepts the
# target, its primary key or a Link; reading it on an object gives the Link; on the class, a
# query field; awaiting a backlink's all() gives the referrers.
import quanta  # noqa: E402
from quanta import Backlink, Link, Links, backlink, link, links  # noqa: E402


@entity
class Writer:
    id: Annotated[int, PrimaryKey(auto=True)] = 0
    name: str
    articles: Backlink[Article] = backlink("writer")


@entity
class Label:
    id: Annotated[str, PrimaryKey()]


@entity
class Article:
    id: Annotated[int, PrimaryKey(auto=True)] = 0
    title: str
    writer: Link[Writer] = link(on_delete="cascade")
    editor: Link[Writer | None] = link(default=None, on_delete="set_null")
    labels: Links[Label] = links()


ann = Writer(name="Ann")
art = Article(title="Hi", writer=ann)
art2 = Article(title="Yo", writer=1, editor=ann, labels=[Label(id="x"), "y"])
assert_type(art.writer, Link[Writer])
assert_type(art.editor, Link[Writer] | None)
assert_type(art.labels, Links[Label])
assert_type(art2.labels[0], Link[Label])
writer_id = art.writer.id  # the target's fields through the link (Any)
art.writer = ann
art.labels.append(Label(id="z"))
art.labels.append("w")
by_writer = quanta.in_(Article.writer, [art2.writer, 2])
through = Article.writer.has(Writer.name == "Ann")
tagged = quanta.contains(Article.labels, "x")


async def reads(db: quanta.Database) -> None:
    writer: Writer = await art.writer.load()
    assert_type(writer, Writer)
    if art.editor is not None:
        assert_type(await art.editor.load(db), Writer)
    assert_type(await art.labels.load(), list[Label])
    assert_type(await ann.articles.all(), list[Article])
    assert_type(await ann.articles.count(), int)
    assert_type(ann.articles.query(), quanta.Query[Article])
    assert_type(ann.articles.loaded, list[Article] | None)
    articles = db.collection(Article)
    await articles.load_links([art, art2], "writer", "writer.articles", "labels")
    rows = await articles.where(Article.writer == ann).include("writer").all()
    assert_type(rows, list[Article])
    assert_type(await db.collection(Writer).rekey(1, 2), bool)


# Auto keys: `id: int = quanta.auto()` is a default a type checker sees, so constructors may
# leave the key out (and may still set it); `Annotated[int, PrimaryKey(auto=True)] = 0` too.
@quanta.entity
class Note:
    id: int = quanta.auto()
    text: str


@quanta.entity
class Draft:
    id: Annotated[int, PrimaryKey(auto=True)] = quanta.auto()  # the marker is redundant, allowed
    text: str = ""


@quanta.entity
class Maybe:
    id: int | None = quanta.auto()  # None until stored


n1 = Note(text="hi")
n2 = Note(id=7, text="yo")
assert_type(n1.id, int)
assert_type(Note.id, int)
d = Draft()
assert_type(Maybe().id, int | None)
by_id: bool = Note.id > 3


# Options: keywords are typed by quanta.OpenOptions; options= takes an Options; both together.
async def opens(path: str) -> None:
    async with quanta.open(path, durability="os", memtable_bytes=1 << 20, bloom_bits_per_key=8) as db1:
        assert_type(db1, quanta.Database)
    base = quanta.Options(durability="os")
    db2 = await quanta.open(path, options=base, read_only=True)
    assert_type(db2.options, quanta.Options)
    await db2.aclose()
    spelled: quanta.OpenOptions = {"durability": "sync", "block_size": 8192}
    await (await quanta.open(path, **spelled)).close()
