"""``~Post.draft`` on a bool field is ``Post.draft == False`` (the issue's policy example);
it plans and explains as an equality, also inside a session's policy rule."""

from __future__ import annotations

from typing import Annotated, Any

import pytest

import quanta


@quanta.entity
class Note:
    id: Annotated[int, quanta.PrimaryKey()]
    draft: Annotated[bool, quanta.Index()] = False
    title: str = ""
    maybe: bool | None = None


def test_invert_of_a_bool_field_is_an_equality_with_false() -> None:
    assert (~Note.draft) == (Note.draft == False)  # noqa: E712
    assert (~Note.draft).evaluate(Note(id=1, draft=False))
    assert not (~Note.draft).evaluate(Note(id=1, draft=True))
    assert (~~Note.draft).evaluate(Note(id=1, draft=True))


@pytest.mark.parametrize("field", [Note.title, Note.maybe, Note.id])
def test_invert_of_any_other_field_is_a_query_error(field: Any) -> None:
    with pytest.raises(quanta.QueryError, match="bool field"):
        _ = ~field


async def test_invert_plans_as_an_index_equality_and_works_in_a_policy(tmp_path: Any) -> None:
    policy = quanta.Policy(quanta.allow(Note, "read", where=lambda me: ~Note.draft))
    db = await quanta.open(str(tmp_path / "db"), entities=[Note], policy=policy)
    try:
        await db.collection(Note).put_many([Note(id=1), Note(id=2, draft=True), Note(id=3)])
        text = db.collection(Note).where(~Note.draft).explain()
        assert "index" in text and "full_scan" not in text, text
        assert [n.id for n in await db.collection(Note).where(~Note.draft).all()] == [1, 3]
        seen = db.session(quanta.Principal("ann")).collection(Note)
        assert [n.id for n in await seen.query().all()] == [1, 3]
        assert "full_scan" not in seen.query().explain()
    finally:
        await db.aclose()
