"""Entity classes shared by tests of several layers (the query executor tests and the
live-query oracle run the same queries over them)."""

from __future__ import annotations

from typing import Annotated

import quanta
from quanta import Index, PrimaryKey, Unique


@quanta.entity(indexes=[Index("city", "age")])
class Person:
    """Every kind of index, a non-indexed float and optional fields (one indexed, one unique)."""

    id: Annotated[int, PrimaryKey()]
    email: Annotated[str, Unique()]
    name: Annotated[str, Index()]
    city: str
    age: int
    tags: Annotated[list[str], Index(multi=True)] = quanta.field(default_factory=list)
    score: float = 0.0  # not indexed
    level: Annotated[int | None, Index()] = None  # optional, indexed (None has entries)
    nick: Annotated[str | None, Unique()] = None  # optional, unique (None has no entry)
