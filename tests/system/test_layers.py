"""The declared layering of ``quanta/`` (docs/architecture.md, "Layers"), enforced.

Every import in the package is read from the source (an AST walk: module-level imports, lazy
imports inside functions and imports under ``TYPE_CHECKING`` alike) and checked against three
rules:

1. **Downward only.** Each module belongs to one layer (a package such as ``quanta._txn``, a
   module such as ``quanta._kv``, or, where a package's pieces sit at different heights, one
   of its modules such as ``quanta._storage.vfs``). A module may import from its own layer and
   from lower layers, never from a higher one.
2. **No private names across layers.** ``from .._collection import _entries`` is refused: what
   a layer offers to others has a public name (the leading underscore of the private module
   names themselves, ``quanta._kv``, is the package's convention and does not count).
3. **Through the facade.** A layer that is a package is imported through its ``__init__``
   (``from .._schema import EntityInfo``), not through one of its internal modules
   (``from .._schema.keyspace import ...``), so a package can rearrange its insides freely.

``ALLOWED`` lists the known exceptions, each with why it is still there; an entry that is no
longer needed fails the test too, so the list only shrinks.
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path

import quanta

ROOT = Path(quanta.__file__).parent

# Lowest first. A module belongs to the most specific entry naming it or a package above it.
LAYERS: list[str] = [
    "quanta.errors",  # the error hierarchy: imports nothing of quanta
    "quanta._storage.vfs",  # the file-system seam, below the options that name a FileSystem
    "quanta._options",  # Options and the size limits
    "quanta._storage",  # the engine: WAL, memtable, tables, compaction, recovery
    "quanta._codec",  # the order-preserving key encoding (pure)
    "quanta._reactive",  # the change bus and its faces
    "quanta._kv",  # KeyValue, Batch, Snapshot: validated key-value API
    "quanta._txn",  # transactions
    "quanta._schema",  # entity declarations, record codecs, key space layout
    "quanta._audit",  # the audit log: Merkle tree, signed heads, the commit hook
    "quanta._query",  # query expressions and the planner (pure)
    # The entity layer, bottom up: a write flows from a collection or query down to writes,
    # relations, the executor and the index entries, never back up.
    "quanta._entity.entries",  # index entries of records (pure)
    "quanta._entity.records",  # undecodable and oversized records, the persisted auto-key counter
    "quanta._entity.executor",  # runs the planner's plans over a reader
    "quanta._entity._relations",  # link checks, cascades, link loading
    "quanta._entity.writes",  # a batch of records with their index entries
    "quanta._entity",  # collections, queries and the EntityContext (they name each other)
    "quanta._live",  # live queries
    "quanta._catalog",  # stored schemas, index builds, migrations
    "quanta._transfer",  # JSON Lines export and import
    "quanta._access",  # principals, policies and sessions (checked collections, queries, kv)
    "quanta._db",  # Database and open: ties the layers together
    "quanta._cli",  # the command line (the demo, schema tools)
    "quanta._inspector",  # the inspector web UI (reuses the CLI's expression language)
    "quanta.__main__",
    "quanta",  # the public facade (quanta/__init__.py)
]
RANK = {name: i for i, name in enumerate(LAYERS)}

# (importing module, imported module) pairs allowed to break a rule, each with its reason.
ALLOWED: dict[tuple[str, str], str] = {
    # The schema layer hands out query objects: a declared field is a query Field
    # (``User.age >= 30``) and a link value answers ``.query()`` with a Query. Declarations
    # would have to create them through a hook the query layer installs (quanta/_schema is
    # owned by the schema work; left for it).
    ("quanta._schema.entity", "quanta._query.expr"): "User.age is a query Field",
    ("quanta._schema.linkvalues", "quanta._query.links"): "link fields for queries through links",
    ("quanta._schema.linkvalues", "quanta._query.expr"): "Links.contains builds a query condition",
    ("quanta._schema.linkvalues", "quanta._entity"): "typing only: a backlink's query() is a Query",
    # ``tx.collection(User)`` is typed ``Collection[User]``: a type-only reference to the layer
    # above (the collection itself is made by the Database's EntityContext, reached through
    # the typed ``EntityLayer`` hook of quanta/_txn). Removing it means a Transaction subclass
    # in the entity layer (quanta/_txn is owned by the public-surface work).
    ("quanta._txn.transaction", "quanta._entity"): "typing only: tx.collection() returns a Collection",
    # ``await db.serve_inspector()`` is a lazy import inside the method: the inspector sits
    # above the CLI (it reuses the CLI's query expression language), and Database only
    # delegates to it.
    ("quanta._db", "quanta._inspector"): "db.serve_inspector() delegates to the inspector (lazy import)",
}

# Layers whose internal modules others still import directly (rule 3 not yet enforced).
FACADE_PENDING: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    importer: str  # module doing the import
    target: str  # module imported (or imported from)
    name: str | None  # the name imported from target, None for a module itself
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _exports(package: str) -> set[str]:
    """The names a package's facade exports (its ``__all__``)."""
    return set(getattr(importlib.import_module(package), "__all__", ())) if package in MODULES else set()


def _imports(modules: dict[str, Path]) -> list[Import]:
    out: list[Import] = []
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out += [Import(module, a.name, None, node.lineno) for a in node.names if a.name.startswith("quanta")]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    if node.level > 1:
                        base = base[: -(node.level - 1)]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                if target != "quanta" and not target.startswith("quanta."):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in MODULES and alias.name not in _exports(target):
                        out.append(Import(module, sub, None, node.lineno))  # ``from . import _relations``
                    else:  # a name, or a module a package's facade exports (``_storage.filenames``)
                        out.append(Import(module, target, alias.name, node.lineno))
    return out


def layer_of(module: str) -> str:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in RANK:
            return name
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def violations(modules: dict[str, Path] = MODULES) -> dict[tuple[str, str], list[str]]:
    """Every broken rule, grouped by (importing module, imported module)."""
    found: dict[tuple[str, str], list[str]] = {}
    for imp in _imports(modules):
        src, dst = layer_of(imp.importer), layer_of(imp.target)
        if src == dst:
            continue
        what = f"{imp.target}{'' if imp.name is None else ':' + imp.name}"
        where = f"{imp.importer} line {imp.line}: {what}"
        problems: list[str] = []
        if RANK[src] < RANK[dst]:
            problems.append(f"{where} imports upwards ({src} is below {dst})")
        if imp.name is not None and imp.name.startswith("_"):
            problems.append(f"{where} imports a private name across layers")
        if imp.target != dst and dst not in FACADE_PENDING:
            problems.append(f"{where} bypasses the facade {dst}")
        if problems:
            found.setdefault((imp.importer, imp.target), []).extend(problems)
    return found


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_imports_follow_the_layers() -> None:
    found = violations()
    broken = [p for pair, problems in found.items() if pair not in ALLOWED for p in problems]
    assert not broken, "layering broken (docs/architecture.md, Layers):\n" + "\n".join(broken)


def test_allow_list_has_no_stale_entries() -> None:
    found = violations()
    stale = [f"{a} -> {b}" for a, b in ALLOWED if (a, b) not in found]
    assert not stale, "allow-list entries no longer needed (remove them):\n" + "\n".join(stale)


def test_the_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The walk sees lazy and TYPE_CHECKING imports, and each rule can fail."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from .._db import Database\n"  # upwards
        "if TYPE_CHECKING:\n"
        "    from .._catalog.format import StoredSchema\n"  # upwards, and past the facade
        "def f():\n"
        "    from .._kv import _Reader\n"  # private
    )
    tree = ast.parse(source)
    kinds = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
    assert len(kinds) == 3  # ast.walk reaches the nested ones
    path = tmp_path / "probe.py"
    path.write_text(source)
    found = violations({"quanta._txn.probe": path})  # as if it were quanta/_txn/probe.py
    problems = [p for ps in found.values() for p in ps]
    assert len(problems) == 4
    assert any("imports upwards" in p and "quanta._db" in p for p in problems)
    assert any("bypasses the facade quanta._catalog" in p for p in problems)
    assert any("private name" in p and "_Reader" in p for p in problems)
