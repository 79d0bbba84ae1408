r"""The record codec ("type adapter"): entity objects to msgpack bytes and back.

``@quanta.entity`` calls :func:`build_codec` once per class. It writes Python source for
three functions specialised to the class's fields (``encode``, ``decode``, ``check``) and
compiles them with ``exec``, as attrs and cattrs do: the hot path is one C ``msgpack`` call
plus straight-line attribute loads and stores, with no per-field dispatch, no
``dataclasses.asdict`` and no ``__init__`` call on decode. The generated source is registered
with ``linecache``, so tracebacks show it (file name ``<quanta codec User>``).

Record layout (one msgpack array)::

    [version, value_0, value_1, ..., value_n-1]

``version`` is the entity's declared ``version`` (``@entity(version=2)``); ``value_i`` is
field ``i`` in declaration order (``FieldInfo.position == i``, so it sits at array index
``i + 1``). Values are msgpack-native where msgpack has the type (None, bool, int within 64
bits, float as binary64, str as UTF-8 with lone surrogates passed through, bytes as ``bin``,
list, tuple as an array, dict as a map) and extension types otherwise (``msgpack_ext.py``). Enum
members are stored by value and decoded into the declared Enum class; dataclasses and
embedded entities are stored inline as arrays of their fields (no version of their own) and
decoded into the declared class; tuples are decoded as tuples where a tuple is declared.
Where the type is ``Any`` only values that read back exactly are accepted (``typenode.ANY_TYPES``
and lists, tuples, dicts, sets, frozensets of them; ``check`` refuses the rest): tuples there are
stored as extension type 12, so they come back as tuples (also as dict keys and set elements).
A link field (``quanta.Link[T]``) is stored as the target's primary key, as
that key's type is stored (None for an empty optional link), and a ``quanta.Links[T]`` field
as an array of them; decode makes ``Link`` objects of them (``relations.py``).

Worked example: the issue's ``User`` (``id``, ``email``, ``name``, ``city``, ``age``,
``tags``), version 1, ``User(id=7, email="a@x.io", name="A", city="Oslo", age=30,
tags=["x"])``, is 21 bytes::

    97                      array of 7
    01                      version 1
    07                      id 7
    a6 61 40 78 2e 69 6f    email "a@x.io"
    a1 41                   name "A"
    a4 4f 73 6c 6f          city "Oslo"
    1e                      age 30
    91 a1 78                tags ["x"]

Values of types msgpack does not have (datetimes, Decimal, UUID, sets, big ints, ...) are
extension types, specified in ``msgpack_ext.py``. **The record layout above and the
extension table there are part of the on-disk format.** Every stored record is written with
them; a change needs a new :class:`RecordFormat` and a migration that rewrites the records.

Where the parts live: ``typenode.py`` parses declared types into :class:`TypeNode` trees and
holds the slow path of the type check (``coerce``); ``msgpack_ext.py`` the extension types and
the per-thread packers; this module generates and compiles the per-class functions. The
generated ``check`` tests types (the fast path calls ``coerce`` only for a suspect value) and
then, for a class that declares constraints or validators, runs the lines ``validation.py``
generates; for a class without them it is exactly the type check.

Concurrency: everything is pure; the generated functions share no mutable state except one
msgpack ``Packer`` per thread (see ``msgpack_ext.py``).
"""

from __future__ import annotations

import linecache
from collections.abc import Callable
from enum import Enum, IntEnum
from typing import Any, NamedTuple, NoReturn

import msgpack

from ..errors import CorruptionError, InvalidTypeError, QuantaError, SchemaError
from .msgpack_ext import (
    _RECORD,
    ExtCode,
    _ext_hook,
    _object_new,
    _object_setattr,
    _packers,
    _set_ext,
    decode_value,
    encode_value,
    exact_any,
)
from .typenode import (
    _NONE,
    ANY_TYPES,
    TypeNode,
    UnsupportedType,
    any_problem,
    coerce,
    parse_type,
    type_label,
)

__all__ = [
    "Codec",
    "ExtCode",
    "RecordFormat",
    "TypeNode",
    "UnsupportedType",
    "build_codec",
    "coerce",
    "decode_value",
    "encode_value",
    "parse_type",
    "type_label",
]


class RecordFormat(IntEnum):
    """Versions of the record encoding (the layout above and the extension table in
    ``msgpack_ext.py``)."""

    V1 = 1  # first release: [version, *fields], extension codes 1..11


# ---------------------------------------------------------------------------------------------
# Code generation


class Codec(NamedTuple):
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    check: Callable[[Any], None]
    source: str


def _needs_enc(node: TypeNode) -> bool:
    """Does a value of this type need converting before msgpack sees it? Dataclasses do
    (to arrays), and plain Enum members (to their values: ``_default`` would do it too, but a
    call from msgpack back into Python costs more than ``.value``); containers holding them.
    msgpack and ``_default`` handle every other type."""
    if node.kind in ("dataclass", "any"):
        return True  # (an Any position: tuples and what holds them need extension types)
    if node.kind == "enum":
        return not issubclass(node.py, _NATIVE)
    return any(_needs_enc(a) for a in node.args)


_NATIVE = (int, str, float, bytes)  # enums mixing these in are packed by msgpack as they are


def _needs_dec(node: TypeNode, frozen: bool) -> bool:
    """Does the msgpack-decoded value need converting into the declared type? ``frozen``:
    the value sits inside a set, where arrays were decoded as tuples."""
    k = node.kind
    if k in ("enum", "dataclass"):
        return True
    if k == "list":
        return frozen or _needs_dec(node.args[0], frozen)
    if k in ("vtuple", "tuple"):
        return not frozen or any(_needs_dec(a, frozen) for a in node.args)
    if k in ("set", "frozenset"):
        return _needs_dec(node.args[0], True)
    return any(_needs_dec(a, frozen) for a in node.args)  # optional, dict; scalar/any: False


def _fast_types(node: TypeNode) -> frozenset[type] | None:
    """The classes that need no slow-path look for a value of this type (None: always walk)."""
    if node.kind == "scalar":
        return frozenset({node.py})
    if node.kind == "enum":
        return frozenset({node.py})
    if node.kind == "optional":
        inner = _fast_types(node.args[0])
        return None if inner is None else inner | {_NONE}
    return None


class _Gen:
    """Accumulates the namespace and helper functions of one class's generated codec."""

    def __init__(self) -> None:
        self.ns: dict[str, Any] = {
            "_new": _object_new,
            "_osa": _object_setattr,
            "_type": type,
            "_set_ext": _set_ext,
            "_coerce": coerce,
            "_any": exact_any,
            "_any_problem": any_problem,
            "_ANY_TYPES": ANY_TYPES,
        }
        self.defs: list[str] = []
        self.n = 0
        self.enc_fns: dict[type, str] = {}
        self.dec_fns: dict[tuple[type, bool], str] = {}

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"_{prefix}{self.n}"

    def const(self, value: Any, prefix: str = "c") -> str:
        name = self.name(prefix)
        self.ns[name] = value
        return name

    # -- encode

    def enc(self, node: TypeNode, x: str) -> str:
        if not _needs_enc(node):
            return x
        k = node.kind
        if k == "any":
            return f"_any({x})"
        if k == "dataclass":
            return f"{self.enc_dataclass(node)}({x})"
        if k == "enum":
            return f"{x}.value"
        if k == "optional":
            t = self.name("t")
            return f"(None if ({t} := {x}) is None else {self.enc(node.args[0], t)})"
        if k in ("list", "vtuple", "set", "frozenset"):
            t = self.name("t")
            items = f"[{self.enc(node.args[0], t)} for {t} in {x}]"
            if k in ("set", "frozenset"):
                return f"_set_ext({items}, {10 if k == 'set' else 11})"
            return items
        if k == "tuple":
            fn = self.name("et")
            body = ", ".join(self.enc(a, f"v[{i}]") for i, a in enumerate(node.args))
            self.defs.append(f"def {fn}(v):\n    return [{body}]\n")
            return f"{fn}({x})"
        if k == "dict":
            tk, tv = self.name("t"), self.name("t")
            key = self.enc(node.args[0], tk) if node.args[0].kind == "any" else tk
            return f"{{{key}: {self.enc(node.args[1], tv)} for {tk}, {tv} in {x}.items()}}"
        raise AssertionError(k)  # pragma: no cover

    def enc_dataclass(self, node: TypeNode) -> str:
        cls = node.py
        fn = self.enc_fns.get(cls)
        if fn is None:
            fn = self.enc_fns[cls] = self.name("e")
            items = ", ".join(self.enc(f, f"o.{name}") for name, f in node.fields)
            self.defs.append(f"def {fn}(o):  # {cls.__qualname__}\n    return [{items}]\n")
        return fn

    # -- decode

    def dec(self, node: TypeNode, x: str, frozen: bool = False) -> str:
        if not _needs_dec(node, frozen):
            return x
        k = node.kind
        if k == "enum":
            return f"{self.const(_EnumMap(node.py), 'm')}[{x}]"
        if k == "dataclass":
            return f"{self.dec_dataclass(node, frozen)}({x})"
        if k == "optional":
            t = self.name("t")
            return f"(None if ({t} := {x}) is None else {self.dec(node.args[0], t, frozen)})"
        if k == "list":
            elem = node.args[0]
            if not _needs_dec(elem, frozen):
                return f"list({x})"
            t = self.name("t")
            return f"[{self.dec(elem, t, frozen)} for {t} in {x}]"
        if k == "vtuple":
            elem = node.args[0]
            if not _needs_dec(elem, frozen):
                return f"tuple({x})"
            t = self.name("t")
            return f"tuple([{self.dec(elem, t, frozen)} for {t} in {x}])"
        if k == "tuple":
            if not any(_needs_dec(a, frozen) for a in node.args):
                return f"tuple({x})"
            fn = self.name("dt")
            names = [f"a{i}" for i in range(len(node.args))]
            body = "".join(f"{self.dec(a, n, frozen)}, " for a, n in zip(node.args, names, strict=True))
            self.defs.append(f"def {fn}(v):\n    {', '.join(names)}, = v\n    return ({body})\n")
            return f"{fn}({x})"
        if k in ("set", "frozenset"):
            t = self.name("t")
            items = f"[{self.dec(node.args[0], t, True)} for {t} in {x}]"
            return f"{k}({items})"
        if k == "dict":
            kn, vn = node.args
            tk, tv = self.name("t"), self.name("t")
            return f"{{{self.dec(kn, tk, frozen)}: {self.dec(vn, tv, frozen)} for {tk}, {tv} in {x}.items()}}"
        raise AssertionError(k)  # pragma: no cover

    def dec_dataclass(self, node: TypeNode, frozen: bool) -> str:
        cls = node.py
        fn = self.dec_fns.get((cls, frozen))
        if fn is None:
            fn = self.dec_fns[cls, frozen] = self.name("d")
            c = self.const(cls, "C")
            lines = [f"def {fn}(a):  # {cls.__qualname__}"]
            names = [f"_x{i}" for i in range(len(node.fields))]
            lines.append(f"    {''.join(n + ', ' for n in names)}= a" if names else "    () = a")
            lines.append(f"    o = _new({c})")
            direct = _plain_setattr(cls)
            for (name, f), var in zip(node.fields, names, strict=True):
                value = self.dec(f, var, frozen)
                lines.append(f"    o.{name} = {value}" if direct else f"    _osa(o, {name!r}, {value})")
            lines.append("    return o\n")
            self.defs.append("\n".join(lines))
        return fn

    # -- check

    def check_lines(self, node: TypeNode, attr: str, path: str, direct: bool) -> list[str]:
        """Statements checking ``o.<attr>`` (bound to ``v``): a cheap test of the value's class
        (and of its elements' classes, in one C pass), and the slow walk (``coerce``) only when
        the test fails; a converted value (int -> float) is stored back."""
        if node.kind == "any":  # only the classes the record stores exactly (typenode.ANY_TYPES)
            return [f"v = o.{attr}", "if v.__class__ not in _ANY_TYPES:", f"    _any_problem(v, {path!r})"]
        value = f"_coerce({self.const(node, 'n')}, v, {path!r})"
        fix = f"o.{attr} = {value}" if direct else f"_osa(o, {attr!r}, {value})"
        optional = node.kind == "optional"
        cond = self.suspect(node.args[0] if optional else node)
        if cond is None:  # no cheap test: always walk (fixed tuples, dataclasses, nested containers)
            test = "v is not None" if optional else None
        else:
            test = f"v is not None and ({cond})" if optional else cond
        if test is None:
            return [f"v = o.{attr}", fix]
        return [f"v = o.{attr}", f"if {test}:", f"    {fix}"]

    def suspect(self, node: TypeNode) -> str | None:
        """An expression over ``v``, false when ``v`` surely has type ``node``; None if there is
        no cheap one."""
        if node.kind in ("scalar", "enum"):
            return f"v.__class__ is not {self.const(node.py, 'T')}"
        ctype = _CONTAINER_CLASSES.get(node.kind)
        if ctype is None:
            return None
        conds = [f"v.__class__ is not {self.const(ctype, 'T')}"]
        for i, arg in enumerate(node.args):
            fast = ANY_TYPES if arg.kind == "any" else _fast_types(arg)
            if fast is None:
                return None
            src = "v.values()" if node.kind == "dict" and i == 1 else "v"  # (a dict iterates its keys)
            conds.append(f"not {self.const(fast, 'S')}.issuperset(map(_type, {src}))")
        return " or ".join(conds)


_CONTAINER_CLASSES: dict[str, type] = {"list": list, "vtuple": tuple, "set": set, "frozenset": frozenset, "dict": dict}


def _plain_setattr(cls: type) -> bool:
    """Can the generated code assign ``o.name = value`` (no ``__setattr__`` override, as in a
    frozen dataclass)? Else it calls ``object.__setattr__``."""
    setattr_: Any = cls.__setattr__
    return setattr_ is _object_setattr


class _EnumMap(dict[Any, Any]):
    """value -> member; a miss (a Flag combination, an enum with ``_missing_``) asks the
    class, which raises ValueError for a value that is no member."""

    __slots__ = ("enum",)

    def __init__(self, enum_cls: type[Enum]) -> None:
        super().__init__({m.value: m for m in enum_cls.__members__.values()})
        self.enum = enum_cls

    def __missing__(self, value: Any) -> Any:
        return self.enum(value)


def _link_of(node: TypeNode) -> tuple[Any, bool] | None:
    """``(LinkSpec, optional)`` for the node of a link field, else None."""
    optional = node.kind == "optional"
    if optional:
        node = node.args[0]
    if node.kind in ("link", "links"):
        return node.py, optional
    return None


def _enc_link(name: str, spec: Any, optional: bool) -> str:
    """The stored form of a link field: the target's primary key (read from the target
    object when the link holds one, so that a key assigned later is the one stored)."""
    t = f"_t_{name}"
    if spec.many:
        return f"[{t}._pk if {t}._obj is None else {t}.pk for {t} in _d[{name!r}]]"
    pk = f"{t}._pk if {t}._obj is None else {t}.pk"
    if optional:
        return f"(None if ({t} := _d[{name!r}]) is None else {pk})"
    return f"({t}._pk if ({t} := _d[{name!r}])._obj is None else {t}.pk)"


def _check_link(name: str, spec: Any, optional: bool) -> list[str]:
    """``check`` of a link field: an inline test of the common case (a Link of this field,
    not holding an object, whose key has the target's key type; ``_key_type`` is None until
    the target resolves, which fails the test), else the spec's full check."""
    s = f"_spec_{name}"
    if spec.many:
        test = (
            f"v.__class__ is not _Links or v._spec is not {s} or "
            f"not all([_l._obj is None and _l._pk.__class__ is {s}._key_type for _l in v])"
        )
    else:
        test = (
            f"v.__class__ is not _Link or v._spec is not {s} or v._obj is not None "
            f"or v._pk.__class__ is not {s}._key_type"
        )
        if optional:
            test = f"v is not None and ({test})"
    return [f"v = o.__dict__.get({name!r})", f"if {test}:", f"    _chk_{name}(o)"]


def build_codec(
    cls: type,
    entity_name: str,
    version: int,
    fields: list[tuple[str, TypeNode]],
    rules: tuple[list[str], dict[str, Any]] | None = None,
) -> Codec:
    """Generate, compile and return the codec of entity class ``cls``.

    Requires: ``fields`` are the class's dataclass fields in declaration order, each with its
    parsed type. ``entity_name`` prefixes check messages (``User.age: expected int, got str``).
    ``rules``: statements over ``o`` that ``check`` runs after the type checks, and the names
    they use (``validation.build_rules``); None for a class without constraints or validators.
    """
    gen = _Gen()
    ns = gen.ns
    ns.update(
        _cls=cls,
        _pk=_packers,
        _unpackb=msgpack.unpackb,
        _ext_hook=_ext_hook,
        _QuantaError=QuantaError,
        _VERSION=version,
    )
    n = len(fields)
    qual = cls.__qualname__
    direct = _plain_setattr(cls)

    # Link fields (quanta/_schema/relations.py) live in the instance dict behind a data
    # descriptor: the generated code reads and writes ``o.__dict__`` directly.
    links = {name: found for name, node in fields if (found := _link_of(node)) is not None}
    for name, (spec, _) in links.items():
        ns[f"_mk_{name}"] = spec.make_many if spec.many else spec.make
        ns[f"_chk_{name}"] = spec.check
        ns[f"_spec_{name}"] = spec
    if links:
        from .linkvalues import Link, Links

        ns.update(_Link=Link, _Links=Links)

    # encode
    values = ", ".join(
        _enc_link(name, *links[name]) if name in links else gen.enc(node, f"o.{name}") for name, node in fields
    )
    items = f"[_VERSION, {values}]" if fields else "[_VERSION]"
    head = "        _d = o.__dict__\n" if links else ""
    encode_src = (
        f"def encode(o):\n"
        f"    try:\n"
        f"{head}"
        f"        return _pk.pack({items})\n"
        f"    except UnicodeEncodeError:\n"
        f"        return _pk.pack_sp({items})\n"
        f"    except Exception as exc:\n"
        f"        _encode_failed(o, exc)\n"
    )

    # decode
    names = [f"_x{i}" for i in range(n)]
    lines = [
        "def decode(data):",
        "    try:",
        '        r = _unpackb(data, ext_hook=_ext_hook, strict_map_key=False, unicode_errors="surrogatepass")',
        f"        _v, {''.join(v + ', ' for v in names)}= r",
        "        if _v != _VERSION:",
        "            raise ValueError",
        "        o = _new(_cls)",
    ]
    if links:
        lines.append("        _d = o.__dict__")
    for (name, node), var in zip(fields, names, strict=True):
        if name in links:
            none = f"None if {var} is None else " if links[name][1] else ""  # an optional link
            lines.append(f"        _d[{name!r}] = {none}_mk_{name}({var})")
            continue
        value = gen.dec(node, var)
        lines.append(f"        o.{name} = {value}" if direct else f"        _osa(o, {name!r}, {value})")
    lines += [
        "        return o",
        "    except _QuantaError:",
        "        raise",
        "    except Exception as exc:",
        "        _decode_failed(data, exc)\n",
    ]
    decode_src = "\n".join(lines)

    # check
    lines = [
        "def check(o):",
        "    if o.__class__ is not _cls and not isinstance(o, _cls):",
        "        _not_instance(o)",
    ]
    for name, node in fields:
        if name in links:
            lines += ["    " + line for line in _check_link(name, *links[name])]
            continue
        lines += ["    " + s for s in gen.check_lines(node, name, f"{entity_name}.{name}", direct)]
    if rules is not None:
        rule_lines, rule_ns = rules
        lines += ["    " + s for s in rule_lines]
        ns.update(rule_ns)
    lines.append("    return None\n")
    check_src = "\n".join(lines)

    source = "\n".join([*gen.defs, encode_src, decode_src, check_src])
    filename = f"<quanta codec {qual} at {id(cls):#x}>"
    exec(compile(source, filename, "exec"), ns)  # the generated source is shown below it
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)

    check: Callable[[Any], None] = ns["check"]

    def _not_instance(o: Any) -> NoReturn:
        raise InvalidTypeError(f"{entity_name}: expected a {qual} instance, got {type(o).__qualname__}")

    def _encode_failed(o: Any, exc: Exception) -> NoReturn:
        try:
            check(o)  # names the field at fault, if it is a type error
        except AttributeError as missing:
            raise InvalidTypeError(f"{entity_name}: {missing}") from exc
        if isinstance(exc, QuantaError):
            raise exc
        raise InvalidTypeError(f"{entity_name}: the record cannot be encoded: {exc}") from exc

    def _decode_failed(data: Any, exc: Exception) -> NoReturn:
        try:
            stored = msgpack.unpackb(data, ext_hook=lambda code, d: None, strict_map_key=False)[0]
        except Exception:
            stored = None
        if type(stored) is int and stored != version:
            raise SchemaError(
                f"{entity_name}: a stored record has version {stored} but the class declares version {version}"
            ) from exc
        raise CorruptionError(f"malformed {entity_name} record: {type(exc).__name__}: {exc}", path=_RECORD) from exc

    ns.update(_not_instance=_not_instance, _encode_failed=_encode_failed, _decode_failed=_decode_failed)
    return Codec(ns["encode"], ns["decode"], check, source)
