"""``python -m quanta schema`` and ``python -m quanta migrate --autogenerate``, run as a user
runs them (subprocesses), on real directories.

The contract (quanta/_cli/): exit 0 on success, 1 with a one-line message for a database
that cannot be opened or a module that cannot be imported, 2 on usage errors; never a
traceback. Both commands open the database read-only and change nothing in it. A generated
skeleton is valid Python, and once its TODOs are filled in, opening the database with the
classes runs it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TIMEOUT = 120


def cli(*args: str | Path, cwd: Path, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "quanta", *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd
    )
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def run_python(code: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def fingerprint(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


MODELS_V1 = """
    from typing import Annotated
    import quanta
    from quanta import Index, PrimaryKey, Unique

    @quanta.entity(name="User", indexes=[Index("city", "age")])
    class User:
        id: Annotated[int, PrimaryKey(auto=True)] = 0
        email: Annotated[str, Unique()]
        name: str
        city: str = "Oslo"
        age: int = 0
"""

MODELS_V2 = """
    from typing import Annotated
    import quanta
    from quanta import Index, PrimaryKey, Unique

    @quanta.entity(name="User", indexes=[Index("city", "age")])
    class User:
        id: Annotated[int, PrimaryKey(auto=True)] = 0
        email: Annotated[str, Unique()]
        full_name: str
        city: str = "Oslo"
        age: float = 0.0
        score: int = 0

    @quanta.entity
    class Tag:
        name: Annotated[str, PrimaryKey()]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with ``models.py`` (release 1) and a database ``db`` holding 30 users."""
    (tmp_path / "models.py").write_text(textwrap.dedent(MODELS_V1))
    run_python(
        """
        import asyncio, quanta
        from models import User

        async def main():
            async with quanta.open("db", entities=[User]) as db:
                await db.collection(User).put_many(
                    User(email=f"u{i}@x.io", name=f"N{i}", age=i) for i in range(30)
                )

        asyncio.run(main())
        """,
        tmp_path,
    )
    return tmp_path


def test_help_lists_the_schema_commands(tmp_path: Path) -> None:
    out = cli("--help", cwd=tmp_path).stdout
    assert "schema" in out and "migrate" in out
    assert "--autogenerate" in cli("migrate", "--help", cwd=tmp_path).stdout
    assert "Missing option '--autogenerate'" in cli("migrate", "db", cwd=tmp_path, check=2).stderr


def test_schema_prints_fields_indexes_and_history_and_changes_nothing(project: Path) -> None:
    before = fingerprint(project / "db")
    out = cli("schema", "db", cwd=project).stdout
    assert fingerprint(project / "db") == before
    lines = out.splitlines()
    assert lines[0] == "User  version 1  class models.User"
    assert lines[1] == "  key       id (auto)"
    assert "  fields    id     int  default" in lines
    assert any(line.split() == ["email", "str"] for line in lines)
    assert any(line.split()[:2] == ["indexes", "email"] and line.endswith("ready") for line in lines)
    assert any("city_age" in line and "(city, age)" in line for line in lines)
    assert any("history" in line and "v1" in line and "created" in line for line in lines)
    doc = json.loads(cli("schema", "db", "--json", cwd=project).stdout)
    [user] = doc["entities"]
    assert user["name"] == "User" and user["version"] == 1
    assert [f["name"] for f in user["fields"]] == ["id", "email", "name", "city", "age"]
    assert doc["jobs"] == [] and doc["untracked"] == []


def test_schema_lists_entities_first_used_without_a_declaration(tmp_path: Path) -> None:
    """An entity written without ``entities=`` has its schema recorded by its first write
    (issue 13), so ``schema`` shows it like a declared one."""
    (tmp_path / "models.py").write_text(textwrap.dedent(MODELS_V1))
    run_python(
        """
        import asyncio, quanta
        from models import User

        async def main():
            async with quanta.open("db") as db:  # not declared: the first write records it
                await db.collection(User).put(User(email="a@x.io", name="A"))

        asyncio.run(main())
        """,
        tmp_path,
    )
    out = cli("schema", "db", cwd=tmp_path).stdout
    assert "User  version 1  class models.User" in out and "no schema yet" not in out
    empty = tmp_path / "empty"
    run_python(
        """
        import asyncio, quanta

        async def main():
            async with quanta.open("empty"):
                pass

        asyncio.run(main())
        """,
        tmp_path,
    )
    assert "no entity schemas are stored" in cli("schema", empty, cwd=tmp_path).stdout


def test_schema_of_a_missing_database_exits_1(tmp_path: Path) -> None:
    proc = cli("schema", tmp_path / "nothing", cwd=tmp_path, check=1)
    assert proc.stderr.startswith("quanta schema: DatabaseNotFoundError")


def test_autogenerate_writes_a_skeleton_that_runs_once_filled_in(project: Path) -> None:
    (project / "models.py").write_text(textwrap.dedent(MODELS_V2))
    before = fingerprint(project / "db")
    out = cli("migrate", "db", "--autogenerate", "models", "--output", "mig_v2.py", cwd=project).stdout
    assert fingerprint(project / "db") == before
    assert "Tag: not in the database yet" in out
    assert "User: needs a migration 1 -> 2" in out and "declare @quanta.entity(version=2)" in out
    assert "wrote mig_v2.py" in out
    source = (project / "mig_v2.py").read_text()
    compile(source, "mig_v2.py", "exec")
    assert "@quanta.migration(User, from_version=1, to_version=2)" in source
    assert 'record["full_name"] = record.pop("name")  # renamed? (both str)' in source
    assert 'record["age"] = float(record["age"])  # int to float' in source
    assert "from models import User" in source
    # the user bumps the version, as the skeleton says, and runs it
    models = (
        (project / "models.py")
        .read_text()
        .replace('@quanta.entity(name="User",', '@quanta.entity(name="User", version=2,')
    )
    (project / "models.py").write_text(models)
    out = run_python(
        """
        import asyncio, quanta
        import models, mig_v2

        async def main():
            async with quanta.open("db", entities=[models.User, models.Tag]) as db:
                u = await db.collection(models.User).get(5)
                print(u.full_name, u.age, u.score, db._catalog.schemas["User"].version)

        asyncio.run(main())
        """,
        project,
    )
    assert out.split() == ["N4", "4.0", "0", "2"]
    out = cli("migrate", "db", "--autogenerate", "models", cwd=project).stdout
    assert "User: matches the stored schema (version 2)" in out and "nothing to write" in out
    history = cli("schema", "db", cwd=project).stdout
    assert "migrated" in history and "by mig_v2.user_1_to_2 (1 -> 2)" in history


def test_autogenerate_with_only_automatic_changes_writes_nothing(project: Path) -> None:
    (project / "models.py").write_text(
        textwrap.dedent(MODELS_V1).replace("    age: int = 0", "    age: int = 0\n    n: int = 1")
    )
    out = cli("migrate", "db", "--autogenerate", "models", cwd=project).stdout
    assert "User: applied automatically at open (rewrite): n: new field (int, with a default)" in out
    assert "nothing to write" in out
    assert not list(project.glob("quanta_migration_*.py"))


def test_autogenerate_refuses_bad_modules_and_existing_files(project: Path) -> None:
    proc = cli("migrate", "db", "--autogenerate", "no_such_module", cwd=project, check=1)
    assert "cannot import no_such_module" in proc.stderr
    (project / "empty_mod.py").write_text("x = 1\n")
    proc = cli("migrate", "db", "--autogenerate", "empty_mod", cwd=project, check=1)
    assert "declares no @quanta.entity classes" in proc.stderr
    (project / "models.py").write_text(textwrap.dedent(MODELS_V2))
    (project / "taken.py").write_text("")
    proc = cli("migrate", "db", "--autogenerate", "models.py", "--output", "taken.py", cwd=project, check=1)
    assert "taken.py exists" in proc.stderr
    proc = cli("migrate", project / "missing", "--autogenerate", "models", cwd=project, check=1)
    assert "DatabaseNotFoundError" in proc.stderr


async def test_schema_shows_an_unfinished_index_build(project: Path) -> None:
    import asyncio
    import io
    import os

    import quanta
    from quanta import _cli
    from quanta._catalog import builder

    cwd = os.getcwd()
    os.chdir(project)
    sys.path.insert(0, str(project))
    saved = builder.CHUNK
    builder.CHUNK = 8
    try:
        (project / "models.py").write_text(
            textwrap.dedent(MODELS_V1).replace("    name: str", "    name: Annotated[str, Index()]")
        )
        import importlib

        import models  # type: ignore[import-not-found]

        importlib.reload(models)
        started = asyncio.Event()

        def first(p: quanta.SchemaProgress) -> None:
            if p.task == "build_index" and p.done:
                started.set()

        async with quanta.open("db", entities=[models.User], on_progress=first):
            await started.wait()  # closed mid-build: the job stays, with its cursor
        out = io.StringIO()
        await _cli.schema("db", out=out)
    finally:
        builder.CHUNK = saved
        sys.path.remove(str(project))
        sys.modules.pop("models", None)
        os.chdir(cwd)
    line = next(x for x in out.getvalue().splitlines() if "(name)" in x)
    assert line.split()[:3] == ["name", "(name)", "building"] and line.endswith("/30")
