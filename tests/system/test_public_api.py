"""The public surface: everything public is in __all__, and everything in __all__ exists.
(anyio's tests/test_all_attributes.py and httpcore do the same.)"""

from __future__ import annotations

import inspect
from typing import Annotated

import quanta
import quanta.errors


def test_all_names_exist() -> None:
    for name in quanta.__all__:
        assert hasattr(quanta, name), name


def test_every_public_attribute_is_in_all() -> None:
    public = {name for name in vars(quanta) if not name.startswith("_") and not inspect.ismodule(getattr(quanta, name))}
    public.discard("annotations")
    assert public <= set(quanta.__all__), sorted(public - set(quanta.__all__))


def test_errors_reexported_and_rooted() -> None:
    for name in quanta.errors.__all__:
        cls = getattr(quanta.errors, name)
        assert getattr(quanta, name) is cls
        assert issubclass(cls, quanta.QuantaError)


def test_error_subclassing_for_stdlib_catchers() -> None:
    assert issubclass(quanta.InvalidArgumentError, ValueError)
    assert issubclass(quanta.InvalidTypeError, TypeError)
    assert issubclass(quanta.BackgroundError, quanta.DatabaseFailedError)
    err = quanta.CorruptionError("bad block", path="/x/000001.sst", offset=4096)
    assert "000001.sst" in str(err) and "4096" in str(err)


CALLER_BUGS = {
    "InvalidArgumentError",
    "InvalidTypeError",
    "LimitExceededError",
    "ValidationError",
    "SchemaError",
    "QueryError",
    "ReservedKeyError",
    "ImportValidationError",
}


def test_the_documented_caller_bug_split() -> None:
    """docs/errors.md: the InvalidArgumentError family is every caller bug (bad types, bad
    queries, bad declarations); everything else is a runtime condition."""
    for name in quanta.errors.__all__:
        cls = getattr(quanta.errors, name)
        assert issubclass(cls, quanta.InvalidArgumentError) == (name in CALLER_BUGS), name
    assert issubclass(quanta.SchemaError, TypeError) and issubclass(quanta.QueryError, ValueError)
    for runtime in (quanta.ConflictError, quanta.CorruptionError, quanta.DatabaseLockedError, quanta.StorageIOError):
        assert not issubclass(runtime, quanta.InvalidArgumentError)


def test_a_bad_query_and_a_bad_declaration_are_caught_as_caller_bugs() -> None:
    try:

        @quanta.entity
        class NoKey:  # no primary key: a bad declaration
            name: str

    except quanta.InvalidArgumentError as exc:
        assert isinstance(exc, quanta.SchemaError)
    else:  # pragma: no cover - the declaration must be refused
        raise AssertionError("a class without a primary key was accepted")

    @quanta.entity
    class Item:
        id: Annotated[int, quanta.PrimaryKey()]
        price: int = 0

    try:
        Item.price == "x"  # type: ignore[comparison-overlap]  # noqa: B015 - built, not run
    except quanta.InvalidArgumentError as exc:
        assert isinstance(exc, quanta.QueryError)
    else:  # pragma: no cover
        raise AssertionError("an ill-typed comparison was accepted")


def test_every_error_is_documented() -> None:
    from pathlib import Path

    text = (Path(__file__).parent.parent.parent / "docs" / "errors.md").read_text()
    for name in quanta.errors.__all__:
        assert f"`{name}`" in text, name


def _public_classes_and_functions() -> list[tuple[str, object]]:
    return [
        (name, obj)
        for name in quanta.__all__
        if (obj := getattr(quanta, name)) is not None and (inspect.isclass(obj) or inspect.isfunction(obj))
    ]


def test_everything_public_lives_in_quanta_and_has_a_docstring() -> None:
    names = dict(_public_classes_and_functions())
    assert {"Database", "Plan", "Transaction", "open", "ConflictError"} <= set(names)
    wrong = {name: obj.__module__ for name, obj in names.items() if obj.__module__ != "quanta"}
    assert not wrong, wrong
    undocumented = [name for name, obj in names.items() if not (obj.__doc__ or "").strip()]
    assert not undocumented, undocumented


def test_public_names_still_pickle_and_resolve_their_annotations() -> None:
    import pickle
    import typing

    err = pickle.loads(pickle.dumps(quanta.CorruptionError("bad", path="/x", offset=4)))
    assert type(err) is quanta.CorruptionError and err.path == "/x"
    assert pickle.loads(pickle.dumps(quanta.Options(durability="os"))) == quanta.Options(durability="os")
    assert pickle.loads(pickle.dumps(quanta.Change(b"k", "put", b"v"))) == quanta.Change(b"k", "put", b"v")
    for cls in (quanta.Options, quanta.Change, quanta.ChangeSet, quanta.SystemEvent, quanta.Plan):
        assert typing.get_type_hints(cls), cls


async def test_useful_reprs(db: quanta.Database) -> None:
    assert repr(db).startswith("<quanta.Database ")
    assert "latest" in repr(db.kv) and "KeyValue" in repr(db.kv)
    batch = db.kv.batch().put(b"a", b"1")
    assert repr(batch) == "<quanta.Batch open ops=1 bytes=2>"
    await batch.commit()
    assert "committed" in repr(batch)
    snap = db.snapshot()
    assert repr(snap) == f"<quanta.Snapshot seq={snap.seq} open>"
    assert f"seq={snap.seq}" in repr(snap.kv)
    await snap.aclose()
    assert repr(snap) == f"<quanta.Snapshot seq={snap.seq} released>" and snap.released
    tx = db.transaction()
    await tx.kv.put(b"b", b"2")
    assert repr(tx) == f"<quanta.Transaction seq={tx.seq} active writes=1>"
    assert repr(tx.kv) == f"<quanta.TransactionKeyValue of {tx!r}>"
    seq = await tx.commit()
    assert repr(tx) == f"<quanta.Transaction seq={tx.seq} committed at {seq} writes=1>"
