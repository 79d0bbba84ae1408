"""``id: int = quanta.auto()``: the auto-assigned primary key that type checkers see as a
default (tests/typing/ checks the static side; this file the run-time side)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import pytest

import quanta
from quanta import PrimaryKey, SchemaError
from quanta._schema import entity_info
from quanta._storage.vfs import MemoryFileSystem


@quanta.entity
class Note:
    id: int = quanta.auto()
    text: str = ""


@quanta.entity
class Maybe:
    id: int | None = quanta.auto()
    text: str = ""


@quanta.entity
class Both:
    id: Annotated[int, PrimaryKey(auto=True)] = quanta.auto()


def test_auto_declares_the_auto_primary_key_with_the_not_assigned_default() -> None:
    for cls, default in ((Note, 0), (Maybe, None), (Both, 0)):
        info = entity_info(cls)
        assert (info.primary_key, info.auto) == ("id", True)
        assert cls().id == default  # type: ignore[attr-defined]
        assert dataclasses.fields(cls)[0].default == default
    assert Note(id=7, text="x").id == 7
    assert repr(Note(text="x")) == "Note(id=0, text='x')"


async def test_the_collection_assigns_auto_keys() -> None:
    async with quanta.open("/db", fs=MemoryFileSystem()) as db:
        notes = db.collection(Note)
        maybes = db.collection(Maybe)
        assert await notes.put(Note(text="a")) == 1
        assert await notes.put_many([Note(text="b"), Note(text="c")]) == [2, 3]
        assert await maybes.put(Maybe(text="m")) == 1
        assert await notes.put(Note(id=10, text="explicit")) == 10
        got = await notes.get(2)
        assert got == Note(id=2, text="b")


def test_auto_on_a_base_class_is_refused() -> None:
    class Base:  # a plain base: its annotations are no dataclass fields of the entity
        id: int = quanta.auto()

    with pytest.raises(SchemaError, match=r"Child\.id: declare the quanta\.auto\(\) key on the entity class itself"):

        @quanta.entity
        class Child(Base):
            name: str = ""


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("id: str = quanta.auto()", ["Bad.id", "auto key", "needs an int key"]),
        ("id: float | None = quanta.auto()", ["Bad.id", "needs an int key"]),
        ("id: Annotated[int, PrimaryKey()] = quanta.auto()", ["Bad.id", "PrimaryKey()", "quanta.auto()"]),
        ("id: int = quanta.auto()\n    other: int = quanta.auto()", ["more than one primary key"]),
        ("id: Annotated[str, PrimaryKey()]\n    n: int = quanta.auto()", ["more than one primary key"]),
        ("id: int = quanta.auto()\n    to: quanta.Link[Note] = quanta.auto()", ["Bad.to", "a link cannot be"]),
    ],
)
def test_bad_auto_declarations_raise_schema_error(body: str, words: list[str]) -> None:
    source = f"@quanta.entity\nclass Bad:\n    {body}\n"
    namespace = {"quanta": quanta, "Annotated": Annotated, "PrimaryKey": PrimaryKey, "Note": Note}
    with pytest.raises(SchemaError) as caught:
        exec(compile(source, "<bad>", "exec", dont_inherit=True), namespace)  # annotations evaluated now
    for word in words:
        assert word in str(caught.value), (word, str(caught.value))


def test_the_marker_never_reaches_an_instance() -> None:
    assert repr(quanta.auto()) == "quanta.auto()"
    assert not isinstance(Note().id, type(quanta.auto()))
