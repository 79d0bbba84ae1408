"""API conventions that hold across the whole public surface (issue 12, section 1).

One range convention: every public call that takes a key range has ``start`` and ``stop`` as
its first two parameters (positional-or-keyword, default None) and ``prefix`` keyword-only
(default None), with the same meaning everywhere (``start <= key < stop`` and ``prefix``).
The walk covers every class exported from ``quanta`` plus the objects reached through
attributes (``Snapshot().kv``, ``Transaction().kv``), so a new range call is checked as soon
as it is public.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import quanta

RANGE_NAMES = {"start", "stop", "prefix"}


def _public_methods(cls: type) -> Iterator[tuple[str, Callable[..., Any]]]:
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") or not callable(member):
            continue
        # Only what quanta defines: inherited reactivex/list methods (Feed.slice, list.index)
        # take integer positions, not key ranges.
        if not str(getattr(member, "__module__", "") or "").startswith("quanta"):
            continue
        yield f"{cls.__qualname__}.{name}", member


def _surface() -> dict[str, Callable[..., Any]]:
    classes: list[type] = []
    found: dict[str, Callable[..., Any]] = {}
    for name in quanta.__all__:
        obj = getattr(quanta, name)
        if inspect.isclass(obj):
            classes.append(obj)
        elif callable(obj):
            found[name] = obj
    # Reached through attributes rather than exported under their own names.
    from quanta._kv import _Reader

    classes.append(_Reader)  # Snapshot().kv
    for cls in classes:
        found.update(_public_methods(cls))
    return found


def _range_calls() -> dict[str, inspect.Signature]:
    calls: dict[str, inspect.Signature] = {}
    for name, fn in _surface().items():
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
            continue
        if name == "allow_kv":  # a policy rule naming one key prefix (issue 16 fixes the name), not a range call
            continue
        if RANGE_NAMES & set(sig.parameters):
            calls[name] = sig
    return calls


def check_range_signature(sig: inspect.Signature) -> list[str]:
    """What is wrong with ``sig`` under the range convention (empty if nothing)."""
    params = [p for p in sig.parameters.values() if p.name != "self"]
    problems = []
    if [p.name for p in params[:2]] != ["start", "stop"]:
        problems.append(f"first two parameters are {[p.name for p in params[:2]]}, not ['start', 'stop']")
    for p in params[:2]:
        if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD or p.default is not None:
            problems.append(f"{p.name} must be positional-or-keyword with default None")
    prefix = sig.parameters.get("prefix")
    if prefix is None or prefix.kind is not inspect.Parameter.KEYWORD_ONLY or prefix.default is not None:
        problems.append("prefix must be keyword-only with default None")
    return problems


def test_the_walk_finds_every_range_call() -> None:
    calls = _range_calls()
    expected = {
        "Database.changes",
        "Database.observe",
        "KeyValue.scan",
        "KeyValue.watch_range",
        "TransactionKeyValue.scan",
        "_Reader.scan",
    }
    assert expected <= set(calls), sorted(expected - set(calls))


def test_every_range_call_follows_the_convention() -> None:
    bad = {name: problems for name, sig in _range_calls().items() if (problems := check_range_signature(sig))}
    assert not bad, bad


def test_the_check_rejects_the_old_prefix_first_form() -> None:
    def old(self: object, prefix: bytes | None = None, start: bytes | None = None, stop: bytes | None = None) -> None:
        """The pre-1.0 ``changes`` signature."""

    assert check_range_signature(inspect.signature(old))

    def good(
        self: object, start: bytes | None = None, stop: bytes | None = None, *, prefix: bytes | None = None
    ) -> None:
        """The convention."""

    assert not check_range_signature(inspect.signature(good))


async def test_changes_and_scan_read_the_same_arguments_the_same_way(db: quanta.Database) -> None:
    stream = db.changes(b"user:", b"user;")  # positional start/stop, as scan
    await db.kv.put_many([(b"aaa", b"1"), (b"user:1", b"2"), (b"zzz", b"3")])
    async with stream:
        async for changes in stream:
            assert [c.key for c in changes.changes] == [b"user:1"]
            break
    assert [k async for k, _ in db.kv.scan(b"user:", b"user;")] == [b"user:1"]


async def test_snapshot_and_transaction_kv_are_covered(db: quanta.Database) -> None:
    async with db.snapshot() as snap:
        assert not check_range_signature(inspect.signature(snap.kv.scan))
    async with db.transaction() as tx:
        assert not check_range_signature(inspect.signature(tx.kv.scan))
