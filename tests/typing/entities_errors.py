"""Entity code that must NOT type-check: each bad line ends with ``# E: <error code>``, and
tests/system/test_typing.py asserts mypy reports exactly those codes on exactly those lines."""

from __future__ import annotations

from typing import Annotated

from quanta._schema import Index, PrimaryKey, entity, field


@entity
class User:
    id: Annotated[int, PrimaryKey(auto=True)] = 0
    email: str
    name: Annotated[str, Index()]
    age: int = 0
    tags: list[str] = field(default_factory=list)


ok = User(email="a@x.io", name="Ann")

User(email=1, name="Ann")  # E: arg-type
User(email="a@x.io", name="Ann", unknown=1)  # E: call-arg
User(email="a@x.io")  # E: call-arg
User(1, "a@x.io", "Ann")  # E: call-arg
User(email="a@x.io", name="Ann", tags=[1, 2])  # E: list-item
too_old = User.age > "x"  # E: operator
nope = User.nickname  # E: attr-defined
ok.age = "old"  # E: assignment
numbers: list[int] = ok.tags  # E: assignment


@entity
class Bad:
    id: Annotated[int, PrimaryKey()]
    n: int = field(default="zero")  # E: assignment


@entity(indexs=[])  # E: call-overload
class Typo:
    id: Annotated[int, PrimaryKey()]


from quanta import Length, validator  # noqa: E402

too_long = Length(max="3")  # E: arg-type
validator(1)  # E: arg-type


@entity(validators=[1])  # E: list-item
class Checked:
    id: Annotated[int, PrimaryKey()]


# Links
from quanta import Backlink, Link, Links, backlink, link, links  # noqa: E402


@entity
class Writer:
    id: Annotated[int, PrimaryKey(auto=True)] = 0
    articles: Backlink[Article] = backlink("writer")


@entity
class Article:
    id: Annotated[int, PrimaryKey(auto=True)] = 0
    writer: Link[Writer] = link(on_delete="cascade")
    editor: Link[Writer | None] = link(default=None)
    labels: Links[Writer] = links()
    bad_rule: Link[Writer] = link(on_delete="nullify")  # E: call-overload


w = Writer()
a = Article(writer=w, bad_rule=w)
Article(bad_rule=w)  # E: call-arg
Article(writer=a, bad_rule=w)  # E: arg-type
Article(writer=None, bad_rule=w)  # E: arg-type
Writer(articles=[])  # E: call-arg
a.labels.append(a)  # E: arg-type
not_a_writer: Article = a.writer.target  # E: assignment
maybe: Link[Writer] = a.editor  # E: assignment


# Keys: only an auto key may be left out of a constructor call, and only when the type checker
# sees its default (= quanta.auto()); Annotated metadata is invisible to it.
from quanta import auto  # noqa: E402


@entity
class Keyed:
    id: Annotated[str, PrimaryKey()]
    text: str = ""


@entity
class Numbered:
    id: int = auto()
    text: str = ""


@entity
class AutoNoDefault:
    id: Annotated[int, PrimaryKey(auto=True)]


@entity
class NotAnInt:
    id: str = auto()  # E: assignment


Keyed()  # E: call-arg
Keyed(text="x")  # E: call-arg
Numbered()
Numbered(id="1")  # E: arg-type
AutoNoDefault()  # E: call-arg


import quanta  # noqa: E402


async def opens(path: str) -> None:
    await quanta.open(path, durabilty="sync")  # E: call-arg
    await quanta.open(path, durability="fast")  # E: arg-type
    await quanta.open(path, memtable_bytes="1MB")  # E: arg-type
    await quanta.open(path, options={"durability": "sync"})  # E: arg-type
    bad: quanta.OpenOptions = {"durabilty": "sync"}  # E: typeddict-unknown-key
    await quanta.open(path, **bad)
