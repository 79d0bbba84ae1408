"""The entity the inspector tests store (imported by the tests and by the writer subprocess)."""

from __future__ import annotations

from typing import Annotated

import quanta
from quanta import Index, PrimaryKey


@quanta.entity(indexes=[Index("city", "age")])
class Person:
    id: Annotated[int, PrimaryKey()]
    name: Annotated[str, Index()]
    city: str
    age: int = 0


CITIES = ["Oslo", "Rome", "Lima"]


def people(lo: int, hi: int) -> list[Person]:
    return [Person(id=i, name=f"p{i:04d}", city=CITIES[i % 3], age=18 + i % 60) for i in range(lo, hi)]
