"""The shape of a live query's result diffs, :class:`quanta.ResultDiff`, and its definition
(``apply``). Computing diffs is the live-query layer's (``quanta/_live/diff.py``, whose
docstring describes each field); the type lives here, below the entity layer, whose
``Query.watch_diff()`` names it.

Pure: plain values in, plain values out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["ResultDiff"]

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class ResultDiff(Generic[E]):
    """How one result of a live query became the next (see the module docstring).

    The first diff a subscription receives starts from the empty result: everything is in
    ``inserted``. ``bool(diff)`` is False only for a diff that changes nothing (never
    emitted, except as that first diff of an empty result).
    """

    removed: tuple[tuple[int, E], ...] = ()
    inserted: tuple[tuple[int, E], ...] = ()
    moved: tuple[tuple[int, int, E], ...] = ()
    modified: tuple[tuple[int, E], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.removed or self.inserted or self.moved or self.modified)

    def apply(self, previous: Sequence[E]) -> list[E]:
        """The new result, given the ``previous`` one this diff was computed from."""
        drop = {i for i, _ in self.removed}
        drop.update(i for i, _, _ in self.moved)
        out = [obj for i, obj in enumerate(previous) if i not in drop] if drop else list(previous)
        arrivals = sorted([*self.inserted, *((to, obj) for _, to, obj in self.moved)], key=_first)
        for index, obj in arrivals:
            out.insert(index, obj)
        for index, obj in self.modified:
            out[index] = obj
        return out


def _first(pair: tuple[int, Any]) -> int:
    return pair[0]
