"""The public surface: everything public is in __all__, and everything in __all__ exists.
(anyio's tests/test_all_attributes.py and httpcore do the same.)"""

from __future__ import annotations

import inspect

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
