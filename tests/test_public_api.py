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

    text = (Path(__file__).parent.parent / "docs" / "errors.md").read_text()
    for name in quanta.errors.__all__:
        assert f"`{name}`" in text, name
