"""The entity rows' shared model: the users, the queries, and the answers they must give.

Both systems store the same users and run the same queries, built here from the run's dataset
(record ``i`` of ``_harness`` holds a msgpack dict with ``id``, ``email``, ``name``, ``city`` and
``age``): QuantaDB as ``@quanta.entity`` classes (``sys_quanta.py``), sqlite3 as a table
``users (id INTEGER PRIMARY KEY, email, name, city, age)`` whose rows it turns into
:class:`UserRow` dataclass objects (``sys_sqlite3.py``). So every read row returns Python objects
on both sides, and the keys are the dataset's ids (explicit, not auto-assigned).

The data: ids ``0 .. N-1``; 9 cities (~N/9 users each); 90 names (~N/90 each); ages 18 .. 98
(~N/81 each). Indexes (the same on both sides):

- ``entity_bulk``: one secondary index, on ``city``;
- read rows: ``age``, and the composite ``(city, age)``; ``name`` and ``email`` are not indexed
  (the full-scan row filters on ``name``).

Every query result is checked, after its timing, against :class:`Reference` (the answer computed
in plain Python from the same rows): same entities, same field values, and the same order where
the query has an ``order_by``. A wrong answer raises :class:`WrongResult`, which fails the trial
(the repeat is reported as an error, never timed).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

Row = tuple[int, str, str, str, int]
"""One user as plain values, in field order: ``(id, email, name, city, age)``."""

FIELDS = ("id", "email", "name", "city", "age")

RANGE_AGES = 6
"""Range-query width in ages (``between(age, lo, lo + 5)``): ~6N/81 matches, >= 1,000 from N = 14k,
so the ``limit`` always returns 1,000 entities."""
COMPOSITE_MIN_AGES = (88, 96)
"""Composite queries: ``city == c and age >= y`` with ``y`` drawn from this half-open range
(~N/9 * (99 - y)/81 matches: ~1,000 on average at N = 100k)."""


@dataclass
class UserRow:
    """What the sqlite3 anchor builds from each row: a plain (non-slotted) dataclass, like the
    objects a QuantaDB entity class decodes to."""

    id: int
    email: str
    name: str
    city: str
    age: int


class WrongResult(AssertionError):
    """A system answered an entity query wrongly (fails the trial)."""


def user_rows(records: Sequence[tuple[bytes, bytes]]) -> list[Row]:
    """The users of the dataset, in id order (decoded before any timing)."""
    out: list[Row] = []
    for _key, value in records:
        d = msgpack.unpackb(value)
        out.append((d["id"], d["email"], d["name"], d["city"], d["age"]))
    return out


def as_row(obj: Any) -> Row:
    """The field values of a result object (a QuantaDB entity or a :class:`UserRow`)."""
    return (obj.id, obj.email, obj.name, obj.city, obj.age)


@dataclass(frozen=True)
class Queries:
    """The read rows' operations, the same for every system (drawn from ``seed``).

    - ``get_pks``: ``get_ops`` ids drawn uniformly with replacement (``entity_get`` awaits one
      get per id; ``entity_get_many`` asks for all of them in one call);
    - ``ranges``: ``(lo, hi)``: ``age BETWEEN lo AND hi ORDER BY age, id LIMIT range_len``;
    - ``composite``: ``(city, y)``: ``city == city AND age >= y`` (index ``(city, age)``);
    - ``in_sets``: three distinct cities: ``city IN (...)`` (index ``(city, age)``, 3 ranges);
    - ``scan_names``: ``name == x`` (``name`` is not indexed: a full scan with a filter).
    """

    get_pks: list[int]
    range_len: int
    ranges: list[tuple[int, int]]
    composite: list[tuple[str, int]]
    in_sets: list[tuple[str, ...]]
    scan_names: list[str]


def queries(rows: Sequence[Row], params: dict[str, Any], seed: int) -> Queries:
    rng = random.Random(seed + 31)
    n = len(rows)
    cities = sorted({r[3] for r in rows})
    names = sorted({r[2] for r in rows})
    ages = [r[4] for r in rows]
    lo_age, hi_age = min(ages), max(ages)
    return Queries(
        get_pks=[rows[rng.randrange(n)][0] for _ in range(params["get_ops"])],
        range_len=params["entity_range_len"],
        ranges=[
            (lo, lo + RANGE_AGES - 1)
            for lo in (rng.randint(lo_age, hi_age - RANGE_AGES + 1) for _ in range(params["entity_range_queries"]))
        ],
        composite=[
            (rng.choice(cities), rng.randrange(*COMPOSITE_MIN_AGES)) for _ in range(params["entity_composite_queries"])
        ],
        in_sets=[tuple(sorted(rng.sample(cities, 3))) for _ in range(params["entity_in_queries"])],
        scan_names=[rng.choice(names) for _ in range(params["entity_scan_queries"])],
    )


class Reference:
    """The right answers, computed in plain Python from the rows (never timed)."""

    def __init__(self, rows: Sequence[Row]) -> None:
        self.by_id = {r[0]: r for r in rows}
        self.by_age = sorted(rows, key=lambda r: (r[4], r[0]))
        self._age_keys = [r[4] for r in self.by_age]
        self.by_city: dict[str, list[Row]] = {}
        self.by_name: dict[str, list[Row]] = {}
        for r in rows:  # rows are in id order, so each list is too
            self.by_city.setdefault(r[3], []).append(r)
            self.by_name.setdefault(r[2], []).append(r)

    def range(self, lo: int, hi: int, limit: int) -> list[Row]:
        """``lo <= age <= hi``, ordered by (age, id), the first ``limit``."""
        start = bisect.bisect_left(self._age_keys, lo)
        stop = bisect.bisect_right(self._age_keys, hi)
        return self.by_age[start : min(stop, start + limit)]

    def composite(self, city: str, min_age: int) -> list[Row]:
        return [r for r in self.by_city.get(city, ()) if r[4] >= min_age]

    def in_(self, cities: Iterable[str]) -> list[Row]:
        return sorted(r for c in cities for r in self.by_city.get(c, ()))

    def scan(self, name: str) -> list[Row]:
        return list(self.by_name.get(name, ()))


def check(row: str, what: str, got: Sequence[Any], expected: Sequence[Row], *, ordered: bool) -> None:
    """Raise :class:`WrongResult` unless the objects ``got`` hold exactly the ``expected`` rows
    (in that order when ``ordered``; as a set of distinct ids otherwise)."""
    values = [as_row(obj) for obj in got]
    if not ordered:
        values.sort()
        expected = sorted(expected)
    if values != list(expected):
        missing = len(set(expected) - set(values))
        extra = len(set(values) - set(expected))
        raise WrongResult(
            f"{row}: {what}: got {len(values)} entities, expected {len(expected)} "
            f"({missing} missing, {extra} unexpected{', or out of order' if not missing and not extra else ''})"
        )


def check_gets(row: str, got: Sequence[Any], pks: Sequence[int], ref: Reference) -> None:
    """Point reads: one object per asked id, in the asked order, each with the stored values."""
    if len(got) != len(pks):
        raise WrongResult(f"{row}: got {len(got)} results for {len(pks)} ids")
    for obj, pk in zip(got, pks, strict=True):
        if obj is None or as_row(obj) != ref.by_id[pk]:
            raise WrongResult(f"{row}: id {pk}: got {obj!r}, expected {ref.by_id[pk]!r}")


def query_metrics(elapsed_ns: int, cpu_ns: int, queries: int, entities: int) -> dict[str, float]:
    """What both systems report for a query row (per query and per returned entity)."""
    return {
        "ms_per_query": elapsed_ns / 1e6 / queries,
        "cpu_ms_per_query": cpu_ns / 1e6 / queries,
        "us_per_entity": elapsed_ns / 1e3 / entities if entities else float("nan"),
        "rows_per_query": entities / queries,
        "queries": queries,
    }
