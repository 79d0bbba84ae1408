"""Entity code that must type-check under ``mypy --strict`` (tests/test_typing.py runs it).

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
