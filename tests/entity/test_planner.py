"""The query planner: golden ``explain()`` outputs (tests/testdata/planner/*), and the proof
that every plan is right, whichever access path it picks.

The proof needs no storage engine. For a random set of records it builds the key-value image
they would have in storage (records, index entries, unique entries, laid out by
``quanta._schema.keyspace`` with the key codec), runs each plan with the tiny reference
executor below (the contract in ``planner.py``'s docstring, step by step), and compares the
result with a brute-force filter and sort of all the records. The entities are built by hand
(an ``EntityInfo`` and ``Field`` attributes), as the ``@entity`` decorator would build them.
"""

from __future__ import annotations

import bisect
import functools
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from datadriven import run_case_file
from hypothesis import given, settings
from hypothesis import strategies as st

from quanta._codec import decode_tuple, encode_key, encode_tuple, successor
from quanta._query import (
    MAX_RANGES,
    Expr,
    Field,
    Order,
    Plan,
    and_,
    asc,
    between,
    contains,
    desc,
    in_,
    not_,
    or_,
    order_records,
    plan,
)
from quanta._schema.info import EntityInfo, FieldInfo, IndexInfo
from quanta._schema.keyspace import (
    index_key,
    index_prefix,
    record_key,
    record_prefix,
    unique_key,
    unique_prefix,
)
from quanta.errors import QueryError

TESTDATA = Path(__file__).parent.parent / "testdata" / "planner"

# ---------------------------------------------------------------------------------------------
# Two entities, built by hand


class Record:
    """A decoded entity: plain attributes (the class attributes are the query ``Field``s)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


class User(Record):
    pass


class Event(Record):
    pass


def make_entity(
    cls: type,
    fields: list[tuple[str, Any, Any, bool, type | None, type | None]],
    primary_key: str,
    indexes: Iterable[IndexInfo],
) -> EntityInfo:
    infos = tuple(
        FieldInfo(name, ann, base, optional, i, key_type, elem)
        for i, (name, ann, base, optional, key_type, elem) in enumerate(fields)
    )
    info = EntityInfo(cls, cls.__name__, infos, primary_key, False, tuple(indexes))
    cls.__quanta_entity__ = info  # type: ignore[attr-defined]
    for f in infos:
        setattr(cls, f.name, Field(cls, f.name))
    return info


# The User, with an optional unique email and an optional age.
USER = make_entity(
    User,
    [
        ("id", int, int, False, int, None),
        ("email", str | None, str, True, str, None),
        ("name", str, str, False, str, None),
        ("city", str, str, False, str, None),
        ("age", int | None, int, True, int, None),
        ("tags", list[str], list[str], False, None, str),
        ("score", float, float, False, float, None),  # not indexed
    ],
    "id",
    [
        IndexInfo("email", ("email",), unique=True),
        IndexInfo("name", ("name",)),
        IndexInfo("city_age", ("city", "age")),
        IndexInfo("tags", ("tags",), multi=True),
    ],
)

# Keys of other kinds: a str primary key, a composite unique index, floats (-0.0 and 0.0),
# naive and aware datetimes in one field, bools, dates, a multi-entry index over a set.
EVENT = make_entity(
    Event,
    [
        ("key", str, str, False, str, None),
        ("kind", str, str, False, str, None),
        ("seq", int, int, False, int, None),
        ("score", float, float, False, float, None),
        ("at", datetime | None, datetime, True, datetime, None),
        ("flag", bool, bool, False, bool, None),
        ("day", date, date, False, date, None),
        ("labels", set[int], set[int], False, None, int),
        ("note", str | None, str, True, str, None),  # not indexed
    ],
    "key",
    [
        IndexInfo("kind_seq", ("kind", "seq"), unique=True),
        IndexInfo("score", ("score",)),
        IndexInfo("at", ("at",)),
        IndexInfo("flag_day", ("flag", "day")),
        IndexInfo("labels", ("labels",), multi=True),
    ],
)

U: Any = User  # field access on the hand-built classes is dynamic
E: Any = Event

# ---------------------------------------------------------------------------------------------
# Golden explain() outputs

NAMESPACE: dict[str, Any] = {
    "User": User,
    "Event": Event,
    "between": between,
    "in_": in_,
    "contains": contains,
    "desc": desc,
    "asc": asc,
    "and_": and_,
    "or_": or_,
    "not_": not_,
    "date": date,
    "datetime": datetime,
    "timedelta": timedelta,
    "timezone": timezone,
    "UTC": UTC,
    "uuid": uuid,
}
ENTITIES = {"User": USER, "Event": EVENT}


class PlannerScript:
    """Commands: ``entity NAME`` (User by default), ``where EXPR``, ``order_by KEY, ...``,
    ``limit N``, ``offset N``, then ``explain`` (or ``explain keys``, with the storage keys
    in hex) prints the plan and starts the next query afresh."""

    def __init__(self) -> None:
        self.info = USER
        self.reset()

    def reset(self) -> None:
        self.where: Expr | None = None
        self.order_by: tuple[Any, ...] = ()
        self.limit: int | None = None
        self.offset = 0

    def run(self, cmd: str) -> list[str]:
        word, _, rest = cmd.partition(" ")
        if word == "entity":
            self.info = ENTITIES[rest]
        elif word == "where":
            self.where = eval(rest, NAMESPACE)
        elif word == "order_by":
            self.order_by = tuple(eval(f"({rest},)", NAMESPACE))
        elif word == "limit":
            self.limit = int(rest)
        elif word == "offset":
            self.offset = int(rest)
        elif word == "explain":
            p = plan(self.info, self.where, self.order_by, self.limit, self.offset)
            self.reset()
            return p.explain(keys=rest == "keys").split("\n")
        else:
            raise ValueError(f"unknown command {cmd!r}")
        return []


@pytest.mark.parametrize("case", sorted(TESTDATA.glob("*")), ids=lambda p: p.name)
def test_golden(case: Path) -> None:
    run_case_file(case, PlannerScript().run)


def test_golden_cases_exist() -> None:
    assert len(list(TESTDATA.glob("*"))) >= 7


# ---------------------------------------------------------------------------------------------
# The reference executor and the brute force


def storage_image(info: EntityInfo, records: list[Any]) -> dict[bytes, bytes]:
    """What ``records`` look like in storage: the record keys (the value here is just the
    pk), one entry per record in each non-unique index, one per distinct element in a
    multi-entry index, one per record with no None value in a unique index."""
    image: dict[bytes, bytes] = {}
    for r in records:
        pk = getattr(r, info.primary_key)
        image[record_key(info.name, pk)] = encode_tuple((pk,))
        for idx in info.indexes:
            values = [getattr(r, f) for f in idx.fields]
            if idx.multi:
                for element in values[0]:
                    image[index_key(info.name, idx.name, (element,), pk)] = b""
            elif idx.unique:
                if all(v is not None for v in values):
                    key = unique_key(info.name, idx.name, values)
                    assert key not in image, "test data must respect unique indexes"
                    image[key] = encode_tuple((pk,))
            else:
                image[index_key(info.name, idx.name, values, pk)] = b""
    return image


def execute(p: Plan, info: EntityInfo, image: dict[bytes, bytes], by_pk: dict[Any, Any]) -> list[Any]:
    """Run ``p`` over ``image``, following the contract in planner.py literally."""
    keys = sorted(image)
    name = info.name
    gets = p.access in ("pk_get", "unique_get")
    if gets:
        assert len(p.pk_values) == len(p.ranges)
    order = list(range(len(p.ranges)))
    for a, b in zip(p.ranges, p.ranges[1:], strict=False):
        assert b[0] >= a[0] and a[1] is not None and a[1] <= b[0], "ranges must be sorted and disjoint"

    def entries() -> Iterable[tuple[bytes, bytes]]:
        for i in reversed(order) if p.reverse else order:
            start, stop = p.ranges[i]
            if gets:
                assert stop == successor(start)
                if p.access == "pk_get":
                    assert start == record_key(name, p.pk_values[i])
                else:
                    assert p.index is not None
                    assert start == unique_key(name, p.index.name, p.pk_values[i])
                if start in image:
                    yield start, image[start]
                continue
            lo = bisect.bisect_left(keys, start)
            hi = len(keys) if stop is None else bisect.bisect_left(keys, stop)
            chunk = keys[lo:hi]
            for k in reversed(chunk) if p.reverse else chunk:
                yield k, image[k]

    seen: set[Any] = set()
    out: list[Any] = []
    for key, value in entries():
        # Every key reached belongs to the structure the plan names, and yields its pk.
        if p.access in ("pk_get", "pk_range", "full_scan"):
            assert key.startswith(record_prefix(name)[0])
            pk = decode_tuple(key[3:])[1]
        else:
            assert p.index is not None
            if p.index.unique:
                assert key.startswith(unique_prefix(name, p.index.name))
                pk = decode_tuple(value)[0]
            else:
                assert key.startswith(index_prefix(name, p.index.name))
                pk = decode_tuple(key[3:])[-1]
        assert p.entry_pk(key, value) == pk
        if pk in seen:
            assert p.dedupe, f"{pk!r} reached twice by a plan without dedupe"
            continue
        seen.add(pk)
        obj = by_pk[pk]
        if p.residual is not None and not p.residual.evaluate(obj):
            continue
        out.append(obj)
        if p.stop_after is not None and len(out) >= p.stop_after:
            break
    if not p.sorted_by_access:
        out = p.sort(out)
    end = None if p.limit is None else p.offset + p.limit
    return out[p.offset : end]


def brute_sort(records: list[Any], order_by: tuple[Order, ...], pk: str) -> list[Any]:
    """The defined result order, written independently of the planner's helper."""

    def cmp(a: Any, b: Any) -> int:
        for name, descending in [(o.field.name, o.descending) for o in order_by] + [(pk, order_by[-1].descending)]:
            ka, kb = encode_key(getattr(a, name)), encode_key(getattr(b, name))
            if ka != kb:
                return (1 if ka > kb else -1) * (-1 if descending else 1)
        return 0

    return sorted(records, key=functools.cmp_to_key(cmp))


def check_query(
    info: EntityInfo,
    records: list[Any],
    where: Expr | None,
    order_by: tuple[Order, ...],
    limit: int | None,
    offset: int,
    image: dict[bytes, bytes] | None = None,
) -> Plan:
    pk = info.primary_key
    by_pk = {getattr(r, pk): r for r in records}
    p = plan(info, where, order_by, limit, offset)
    got = execute(p, info, storage_image(info, records) if image is None else image, by_pk)
    matching = [r for r in records if where is None or where.evaluate(r)]
    end = None if limit is None else offset + limit
    ids = [getattr(r, pk) for r in got]
    assert len(ids) == len(set(ids))
    if order_by:
        want = [getattr(r, pk) for r in brute_sort(matching, order_by, pk)[offset:end]]
        assert ids == want, p.explain()
    else:  # the order (and so which records a window holds) is the access path's
        assert set(ids) <= {getattr(r, pk) for r in matching}, p.explain()
        assert len(ids) == len(matching[offset:end]), p.explain()
    return p


# ---------------------------------------------------------------------------------------------
# Random records and random queries


def atoms(
    field: Any, values: list[Any], *, optional: bool, text: list[Any] | None
) -> tuple[st.SearchStrategy[Expr], st.SearchStrategy[Expr]]:
    """Every kind of predicate on one scalar field, and the equality-like ones alone (what an
    index prefix uses), with values that often tie with the records' values."""
    vals = st.sampled_from(values)
    eq_vals = st.sampled_from([*values, None]) if optional else vals
    equalities: list[st.SearchStrategy[Expr]] = [
        eq_vals.map(lambda v: field == v),
        st.lists(eq_vals, max_size=3).map(lambda vs: in_(field, vs)),
    ]
    if optional:
        equalities.append(st.just(field.is_none()))
    choices: list[st.SearchStrategy[Expr]] = [
        *equalities,
        eq_vals.map(lambda v: field != v),
        vals.map(lambda v: field < v),
        vals.map(lambda v: field <= v),
        vals.map(lambda v: field > v),
        vals.map(lambda v: field >= v),
        st.tuples(vals, vals).filter(comparable).map(lambda lh: between(field, *lh)),
    ]
    if optional:
        choices.append(st.just(field.is_not_none()))
    if text is not None:
        choices.append(st.sampled_from(text).map(field.startswith))
    return st.one_of(choices), st.one_of(equalities)


def comparable(pair: tuple[Any, Any]) -> bool:
    try:
        pair[0] <= pair[1]  # noqa: B015
    except TypeError:
        return False
    return True


def extend(inner: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.tuples(inner, inner).map(lambda ab: ab[0] & ab[1]),
        st.tuples(inner, inner).map(lambda ab: ab[0] | ab[1]),
        inner.map(lambda a: ~a),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: and_(*xs)),
    )


class QuerySpace:
    """Random queries over one entity: predicates (random trees of &, | and ~, some over a
    single field, and conjunctions shaped like an index: equalities on a prefix of its
    fields, then anything on the next one), orders (random, or an index's fields in order,
    in one direction or mixed) and windows."""

    def __init__(
        self,
        info: EntityInfo,
        scalars: dict[str, tuple[st.SearchStrategy[Expr], st.SearchStrategy[Expr]]],
        elements: dict[str, st.SearchStrategy[Expr]],
    ) -> None:
        self.info = info
        self.cls: Any = info.cls
        self.any = {name: pair[0] for name, pair in scalars.items()}
        self.eq = {name: pair[1] for name, pair in scalars.items()}
        self.one_field = {name: st.recursive(s, extend, max_leaves=4) for name, s in self.any.items()}
        leaves = [*self.any.values(), *elements.values()]
        self.elements = elements
        self.tree = st.recursive(st.one_of(*leaves, *self.one_field.values()), extend, max_leaves=6)
        self.keys: list[tuple[str, ...]] = [(info.primary_key,)]
        self.keys += [idx.fields for idx in info.indexes if not idx.multi]

    def where(self) -> st.SearchStrategy[Expr | None]:
        return st.one_of(st.none(), self.tree, self.index_shaped())

    def index_shaped(self) -> st.SearchStrategy[Expr]:
        @st.composite
        def build(draw: st.DrawFn) -> Expr:
            parts: list[Expr] = []
            if self.elements and draw(st.integers(0, len(self.keys))) == 0:
                field = draw(st.sampled_from(sorted(self.elements)))
                items = draw(st.lists(self.elements[field], min_size=1, max_size=3))
                parts.append(or_(*items) if draw(st.booleans()) else and_(*items))
            else:
                fields = draw(st.sampled_from(self.keys))
                j = draw(st.integers(0, len(fields)))
                parts += [draw(self.eq[f]) for f in fields[:j]]
                if j < len(fields):
                    parts.append(draw(self.one_field[fields[j]]))
            parts += draw(st.lists(self.tree, max_size=1))
            return and_(*parts)

        return build()

    def order_by(self) -> st.SearchStrategy[tuple[Order, ...]]:
        names = sorted({n for fields in self.keys for n in fields} | set(self.any))

        def key(name: str, descending: bool) -> Order:
            field = getattr(self.cls, name)
            return desc(field) if descending else asc(field)

        @st.composite
        def shaped(draw: st.DrawFn) -> tuple[Order, ...]:
            fields = draw(st.sampled_from(self.keys))
            chosen = list(fields[draw(st.integers(0, len(fields) - 1)) :])
            if draw(st.booleans()):
                chosen.append(self.info.primary_key)
            if draw(st.integers(0, 3)) == 0:
                chosen.insert(0, draw(st.sampled_from(names)))
            if draw(st.booleans()):
                return tuple(key(n, draw(st.booleans())) for n in chosen)
            descending = draw(st.booleans())
            return tuple(key(n, descending) for n in chosen)

        free = st.lists(st.tuples(st.sampled_from(names), st.booleans()), max_size=3)
        return st.one_of(free.map(lambda ks: tuple(key(n, d) for n, d in ks)), shaped())


WINDOW = st.tuples(st.none() | st.integers(0, 5), st.integers(0, 3))

# User ----------------------------------------------------------------------------------------

NAMES = ["", "A", "Ab", "Ann", "B", "a\x00", "\x00"]
CITIES = ["Oslo", "Rome", "", "O"]
AGES = [-2, 0, 1, 3, 40, 41]
EMAILS = ["a@x", "b@x", "c@y", "", "a\x00"]
TAGS = ["x", "y", "", "x\x00"]
SCORES = [0.0, -0.0, 1.5, -1.0, float("inf")]
PREFIXES = ["", "A", "a", "O", "\x00", "x", "Ro"]


@st.composite
def users(draw: st.DrawFn) -> list[Any]:
    ids = draw(st.lists(st.integers(0, 15), unique=True, max_size=12))
    emails = draw(st.lists(st.sampled_from(EMAILS), unique=True, max_size=len(ids)))
    out = []
    for i, pk in enumerate(ids):
        out.append(
            User(
                id=pk,
                email=emails[i] if i < len(emails) else None,
                name=draw(st.sampled_from(NAMES)),
                city=draw(st.sampled_from(CITIES)),
                age=draw(st.sampled_from([*AGES, None])),
                tags=draw(st.lists(st.sampled_from(TAGS), max_size=3)),
                score=draw(st.sampled_from(SCORES)),
            )
        )
    return out


USER_SPACE = QuerySpace(
    USER,
    {
        "id": atoms(U.id, [-1, 0, 3, 7, 15, 16], optional=False, text=None),
        "email": atoms(U.email, EMAILS, optional=True, text=PREFIXES),
        "name": atoms(U.name, NAMES, optional=False, text=PREFIXES),
        "city": atoms(U.city, CITIES, optional=False, text=PREFIXES),
        "age": atoms(U.age, AGES, optional=True, text=None),
        "score": atoms(U.score, [*SCORES, 2], optional=False, text=None),
    },
    {"tags": st.sampled_from(TAGS).map(lambda t: contains(U.tags, t))},
)

# Event ---------------------------------------------------------------------------------------

KEYS = ["", "a", "a\x00", "ab", "b", "ba"]
KINDS = ["", "click", "view"]
SEQS = [0, 1, 2]
EVENT_SCORES = [0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), 2.5]
NAIVE = [datetime(2024, 1, 1, 12), datetime(2024, 1, 2)]
AWARE = [
    datetime(2024, 1, 1, 12, tzinfo=UTC),
    datetime(2024, 1, 1, 14, tzinfo=timezone(timedelta(hours=2))),  # the same instant
    datetime(2024, 1, 1, 13, tzinfo=UTC),
]
DAYS = [date(2024, 1, 1), date(2024, 2, 29), date(1, 1, 1)]
LABELS = [0, 1, -5]


@st.composite
def events(draw: st.DrawFn) -> list[Any]:
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=6))
    kind_seq = draw(st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from(SEQS)), unique=True, min_size=len(keys)))
    return [
        Event(
            key=k,
            kind=kind_seq[i][0],
            seq=kind_seq[i][1],
            score=draw(st.sampled_from(EVENT_SCORES)),
            at=draw(st.sampled_from([*NAIVE, *AWARE, None])),
            flag=draw(st.booleans()),
            day=draw(st.sampled_from(DAYS)),
            labels=draw(st.sets(st.sampled_from(LABELS), max_size=2)),
            note=draw(st.sampled_from(["n", "", None])),
        )
        for i, k in enumerate(keys)
    ]


EVENT_SPACE = QuerySpace(
    EVENT,
    {
        "key": atoms(E.key, KEYS, optional=False, text=["", "a", "b", "a\x00"]),
        "kind": atoms(E.kind, KINDS, optional=False, text=["", "c", "v"]),
        "seq": atoms(E.seq, [*SEQS, 3], optional=False, text=None),
        "score": atoms(E.score, EVENT_SCORES, optional=False, text=None),
        "at": atoms(E.at, [*NAIVE, *AWARE], optional=True, text=None),
        "flag": atoms(E.flag, [True, False], optional=False, text=None),
        "day": atoms(E.day, DAYS, optional=False, text=None),
        "note": atoms(E.note, ["n", ""], optional=True, text=["", "n"]),
    },
    {"labels": st.sampled_from(LABELS).map(lambda v: contains(E.labels, v))},
)


Query = tuple[Expr | None, tuple[Order, ...], tuple[int | None, int]]


def queries(space: QuerySpace) -> st.SearchStrategy[list[Query]]:
    """Several queries per record set: records are the slow part to generate."""
    return st.lists(st.tuples(space.where(), space.order_by(), WINDOW), min_size=1, max_size=8)


@settings(max_examples=400)
@given(users(), queries(USER_SPACE))
def test_user_plans_match_brute_force(records: list[Any], qs: list[Query]) -> None:
    for where, order_by, window in qs:
        check_query(USER, records, where, order_by, *window)


@settings(max_examples=300)
@given(events(), queries(EVENT_SPACE))
def test_event_plans_match_brute_force(records: list[Any], qs: list[Query]) -> None:
    for where, order_by, window in qs:
        check_query(EVENT, records, where, order_by, *window)


# Every predicate on every key field, over records holding every value: the random queries
# above explore combinations; this sweep makes sure no single operator, value or edge (None,
# -0.0 and 0.0, naive and aware datetimes, NUL bytes in strings) is left to chance.


def every_atom(field: Any, values: list[Any], *, optional: bool, text: list[Any] | None = None) -> list[Expr]:
    eq_values = [*values, None] if optional else values
    out: list[Expr] = [op for v in eq_values for op in (field == v, field != v)]
    out += [op for v in values for op in (field < v, field <= v, field > v, field >= v)]
    out += [between(field, lo, hi) for lo in values for hi in values if comparable((lo, hi))]
    out += [in_(field, []), in_(field, eq_values[:2]), in_(field, eq_values[-2:]), in_(field, eq_values[::2])]
    if optional:
        out += [field.is_none(), field.is_not_none()]
    out += [field.startswith(p) for p in text or []]
    return out


def fixed_users() -> list[Any]:
    return [
        User(
            id=2 * i,
            email=EMAILS[i] if i < len(EMAILS) else None,
            name=NAMES[i % len(NAMES)],
            city=CITIES[i % len(CITIES)],
            age=[*AGES, None][i % (len(AGES) + 1)],
            tags=[TAGS[i % len(TAGS)], TAGS[(i * 3) % len(TAGS)]][: i % 3],
            score=SCORES[i % len(SCORES)],
        )
        for i in range(16)
    ]


def fixed_events() -> list[Any]:
    keys = [*KEYS, *(f"z{i}" for i in range(10))]
    ats = [*NAIVE, *AWARE, None]
    return [
        Event(
            key=keys[i],
            kind=KINDS[i % len(KINDS)],
            seq=i // len(KINDS),
            score=EVENT_SCORES[i % len(EVENT_SCORES)],
            at=ats[i % len(ats)],
            flag=i % 2 == 0,
            day=DAYS[i % len(DAYS)],
            labels={LABELS[i % 3], LABELS[(i + 1) % 3]} if i % 4 else set(),
            note=["n", "", None][i % 3],
        )
        for i in range(16)
    ]


SWEEPS: list[tuple[str, EntityInfo, Callable[[], list[Any]], Any, list[Expr], list[Expr]]] = [
    ("User.id", USER, fixed_users, U.id, every_atom(U.id, [-1, 0, 4, 7, 30], optional=False), []),
    ("User.email", USER, fixed_users, U.email, every_atom(U.email, EMAILS, optional=True, text=PREFIXES), []),
    ("User.name", USER, fixed_users, U.name, every_atom(U.name, NAMES, optional=False, text=PREFIXES), []),
    ("User.city", USER, fixed_users, U.city, every_atom(U.city, CITIES, optional=False, text=PREFIXES), []),
    (
        "User.age",
        USER,
        fixed_users,
        U.age,
        every_atom(U.age, AGES, optional=True),
        [U.city == "Oslo", in_(U.city, ["Oslo", "", "Rome"])],
    ),
    ("Event.key", EVENT, fixed_events, E.key, every_atom(E.key, KEYS, optional=False, text=["", "a", "a\x00"]), []),
    ("Event.seq", EVENT, fixed_events, E.seq, every_atom(E.seq, [0, 1, 3], optional=False), [E.kind == "view"]),
    ("Event.score", EVENT, fixed_events, E.score, every_atom(E.score, EVENT_SCORES, optional=False), []),
    ("Event.at", EVENT, fixed_events, E.at, every_atom(E.at, [*NAIVE, *AWARE], optional=True), []),
    ("Event.day", EVENT, fixed_events, E.day, every_atom(E.day, DAYS, optional=False), [E.flag == True]),  # noqa: E712
    ("Event.flag", EVENT, fixed_events, E.flag, every_atom(E.flag, [False, True], optional=False), []),
]


@pytest.mark.parametrize(
    ("info", "make", "field", "atoms", "prefixes"), [s[1:] for s in SWEEPS], ids=[s[0] for s in SWEEPS]
)
def test_every_predicate_on_every_key_field(
    info: EntityInfo, make: Callable[[], list[Any]], field: Any, atoms: list[Expr], prefixes: list[Expr]
) -> None:
    records = make()
    image = storage_image(info, records)
    pk = getattr(info.cls, info.primary_key)
    orders = [(), (asc(field),), (desc(field),), (asc(field), desc(pk))]
    for i, atom in enumerate(atoms):
        for where in (atom, ~atom, *(p & atom for p in prefixes), *(~(p & atom) for p in prefixes)):
            for j, order_by in enumerate(orders):
                window = (2, 1) if (i + j) % 3 == 0 else (None, 0)
                check_query(info, records, where, order_by, *window, image=image)


def test_every_element_predicate() -> None:
    for info, records, field, values in [
        (USER, fixed_users(), U.tags, TAGS),
        (EVENT, fixed_events(), E.labels, LABELS),
    ]:
        image = storage_image(info, records)
        for a in values:
            for b in values:
                for where in (contains(field, a) | contains(field, b), contains(field, a) & ~contains(field, b)):
                    check_query(info, records, where, (), None, 0, image=image)


# Fixed records for the deterministic tests below.
FIXED_USERS = [
    User(id=1, email="ann@x", name="Ann", city="Oslo", age=30, tags=["x", "y"], score=1.0),
    User(id=2, email=None, name="Bob", city="Oslo", age=40, tags=["x"], score=0.0),
    User(id=3, email="cy@x", name="Cy", city="Oslo", age=None, tags=[], score=-0.0),
    User(id=4, email="di@x", name="Di", city="Rome", age=40, tags=["y"], score=2.0),
    User(id=5, email="ed@x", name="Ed", city="Oslo", age=41, tags=["x"], score=2.0),
    User(id=6, email="fa@x", name="Al", city="Oslo", age=40, tags=["z", "x"], score=3.0),
]


def pks(p: Plan, records: list[Any] = FIXED_USERS) -> list[Any]:
    by_pk = {r.id: r for r in records}
    return [r.id for r in execute(p, USER, storage_image(USER, records), by_pk)]


def test_range_stop_includes_every_pk_of_the_last_value() -> None:
    # "age <= 40" must reach (Oslo, 40, 2) and (Oslo, 40, 6), whatever their pks, and stop
    # before (Oslo, 41, ...): the stop is prefix_end of the (Oslo, 40) prefix, not a key of 40.
    p = plan(USER, (U.city == "Oslo") & (U.age <= 40) & (U.age > 30))
    assert p.access == "index_range" and p.residual is None
    assert p.ranges[0][1] == index_prefix("User", "city_age", ("Oslo", 41))
    assert pks(p) == [2, 6]
    p = plan(USER, (U.city == "Oslo") & (U.age < 41), [desc(U.age)])
    assert p.sorted_by_access and p.reverse
    assert pks(p) == [6, 2, 1]  # age desc, then id desc; None ages are not < 41


def test_queries_on_fixed_records() -> None:
    cases: list[tuple[Expr | None, tuple[Order, ...], list[int]]] = [
        (U.id == 3, (), [3]),
        (in_(U.id, [5, 1, 9]), (), [1, 5]),
        (in_(U.id, [5, 1, 9]), (desc(U.id),), [5, 1]),
        (U.email == "di@x", (), [4]),
        (U.email == None, (), [2]),  # noqa: E711 (a query, not a comparison)
        (contains(U.tags, "x"), (asc(U.id),), [1, 2, 5, 6]),
        (contains(U.tags, "x") | contains(U.tags, "y"), (asc(U.id),), [1, 2, 4, 5, 6]),
        (in_(U.city, ["Rome", "Oslo"]) & (U.age == 40), (U.name,), [6, 2, 4]),
        (U.name.startswith("A"), (desc(U.name),), [1, 6]),
        (~(U.age >= 40), (asc(U.id),), [1, 3]),
        (U.score == 0.0, (asc(U.id),), [2, 3]),
        (None, (asc(U.age), desc(U.id)), [3, 1, 6, 4, 2, 5]),
    ]
    for where, order_by, want in cases:
        p = plan(USER, where, order_by)
        assert pks(p) == want, p.explain()


def test_order_records_puts_none_first_and_ties_by_pk() -> None:
    got = order_records(FIXED_USERS, (U.age,), "id")
    assert [r.id for r in got] == [3, 1, 2, 4, 6, 5]
    got = order_records(FIXED_USERS, (desc(U.age),), "id")
    assert [r.id for r in got] == [5, 6, 4, 2, 1, 3]
    assert order_records(FIXED_USERS, (), "id") == FIXED_USERS


def test_plan_rejects_foreign_fields_and_bad_windows() -> None:
    with pytest.raises(QueryError, match="query on User cannot use"):
        plan(USER, E.kind == "x")
    with pytest.raises(QueryError, match=r"cannot order by Event\.kind"):
        plan(USER, None, [E.kind])
    with pytest.raises(QueryError, match="cannot be ordered"):
        plan(USER, None, [U.tags])
    with pytest.raises(QueryError, match="limit"):
        plan(USER, None, (), -1)
    with pytest.raises(QueryError, match="offset"):
        plan(USER, None, (), None, -2)
    with pytest.raises(QueryError, match="expected a query expression"):
        plan(USER, True)  # type: ignore[arg-type]


def test_too_many_combinations_fall_back_to_fewer_equalities() -> None:
    cities = [f"c{i}" for i in range(40)]
    ages = list(range(40))
    p = plan(USER, in_(U.city, cities) & in_(U.age, ages))
    assert len(p.ranges) <= MAX_RANGES
    assert p.index is not None and p.index.name == "city_age"
    assert repr(p.residual) == repr(in_(U.age, ages))
    records = [User(id=i, email=None, name="", city=f"c{i % 45}", age=i % 50, tags=[], score=0.0) for i in range(60)]
    check_query(USER, records, in_(U.city, cities) & in_(U.age, ages), (asc(U.id),), None, 0)


def test_plans_are_values() -> None:
    p = plan(USER, (U.city == "Oslo") & (U.age > 3), [U.age], 5, 1)
    assert p == plan(USER, (U.city == "Oslo") & (U.age > 3), [U.age], 5, 1)
    with pytest.raises(AttributeError):
        p.access = "full_scan"  # type: ignore[misc]
    assert p.stop_after == 6
    assert plan(USER, None, [U.score], 5).stop_after is None  # a sort first


def explain_lines(where: Expr | None, order_by: Iterable[Any] = (), **kw: Any) -> Callable[[str], bool]:
    text = plan(USER, where, tuple(order_by), **kw).explain()
    return lambda fragment: fragment in text


def test_explain_names_the_index_and_its_fields() -> None:
    has = explain_lines((U.city == "Oslo") & (U.age >= 30), [desc(U.age)], limit=3)
    assert has("index:    city_age on (city, age)")
    assert has("city == 'Oslo', age >= 30")
    assert has("the access order (reversed), no sort")
    assert has("stop after 3 matches")
