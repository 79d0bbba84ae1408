"""Access control: errors raised through a session name no hidden row (docs/access-control.md,
"Errors"), and a policy rule whose ``where`` fails is an InvalidArgumentError at db.session()."""

from __future__ import annotations

from typing import Annotated, Any

import pytest

import quanta
from quanta import Link, PrimaryKey, link


@quanta.entity
class Tag:
    id: Annotated[str, PrimaryKey()]
    owner: str = ""
    slug: Annotated[str, quanta.Unique()] = ""


@quanta.entity
class Pin:
    """A restricting link: a pinned tag cannot be deleted."""

    id: Annotated[str, PrimaryKey()]
    owner: str = ""
    tag: Link[Tag] = link(on_delete="restrict")


def _mine(cls: Any) -> quanta.Policy:
    return quanta.allow(cls, {"read", "write", "delete"}, where=lambda me: cls.owner == me.id)


POLICY = quanta.Policy(_mine(Tag), _mine(Pin))
ALICE = quanta.Principal("alice")


async def _open(tmp_path: Any) -> quanta.Database:
    db = await quanta.open(str(tmp_path / "db"), entities=[Tag, Pin], policy=POLICY)
    await db.collection(Tag).put_many(
        [Tag(id="t-alice", owner="alice", slug="a"), Tag(id="t-bob", owner="bob", slug="b")]
    )
    # bob's hidden pin restricts alice's tag
    await db.collection(Pin).put(Pin(id="secret-pin-of-bob", owner="bob", tag="t-alice"))
    return db


def _chain(exc: BaseException) -> str:
    """The text of ``exc`` and of every exception chained to it."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts.append(f"{seen!r} {seen.args!r}")
        seen = seen.__cause__ or seen.__context__
    return " ".join(parts)


async def test_a_restrict_error_names_no_hidden_referrer(tmp_path: Any) -> None:
    db = await _open(tmp_path)
    try:
        tags = db.session(ALICE).collection(Tag)
        with pytest.raises(quanta.IntegrityError) as info:
            await tags.delete("t-alice")
        assert "secret-pin-of-bob" not in _chain(info.value)
        assert await db.collection(Tag).get("t-alice") is not None
        # the trusted database names it
        with pytest.raises(quanta.IntegrityError, match="secret-pin-of-bob"):
            await db.collection(Tag).delete("t-alice")
    finally:
        await db.aclose()


async def test_a_unique_violation_names_only_the_callers_value(tmp_path: Any) -> None:
    db = await _open(tmp_path)
    try:
        tags = db.session(ALICE).collection(Tag)
        with pytest.raises(quanta.UniqueViolationError) as info:
            await tags.put(Tag(id="t-new", owner="alice", slug="b"))
        assert "t-bob" not in _chain(info.value) and info.value.value == "b"
        assert await db.collection(Tag).get("t-new") is None
    finally:
        await db.aclose()


async def test_a_put_over_a_hidden_row_names_no_hidden_value(tmp_path: Any) -> None:
    db = await _open(tmp_path)
    try:
        tags = db.session(ALICE).collection(Tag)
        with pytest.raises(quanta.PermissionDeniedError) as info:
            await tags.put(Tag(id="t-bob", owner="alice", slug="z"))
        text = _chain(info.value)
        assert "bob" not in text.replace("t-bob", "") and info.value.key is None
        assert (await db.collection(Tag).get("t-bob")) == Tag(id="t-bob", owner="bob", slug="b")
    finally:
        await db.aclose()


async def test_a_where_that_raises_is_an_invalid_argument_at_session(tmp_path: Any) -> None:
    policy = quanta.Policy(quanta.allow(Tag, "read", where=lambda me: Tag.owner == me.attrs["team"]))
    db = await quanta.open(str(tmp_path / "db"), entities=[Tag, Pin], policy=policy)
    try:
        with pytest.raises(quanta.InvalidArgumentError, match="KeyError") as info:
            db.session(ALICE)
        assert isinstance(info.value.__cause__, KeyError)
        db.session(quanta.Principal("carol", attrs={"team": "x"}))  # fine with the attr
    finally:
        await db.aclose()
