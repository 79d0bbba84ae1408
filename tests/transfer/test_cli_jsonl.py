"""``quanta export`` and ``quanta import`` (quanta/_cli/transfer.py), run in-process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from quanta._cli import main

MODELS = """
from typing import Annotated
import quanta

@quanta.entity(name="CliPerson")
class Person:
    id: int = quanta.auto()
    name: Annotated[str, quanta.Unique()] = ""

async def fill(path: str) -> None:
    async with quanta.open(path, entities=[Person]) as db:
        await db.collection(Person).put_many([Person(name=f"p{i}") for i in range(5)])
        await db.kv.put(b"k", b"v")
"""


def test_export_and_import_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    import importlib.util

    models = tmp_path / "cli_models.py"
    models.write_text(MODELS)
    spec = importlib.util.spec_from_file_location("cli_models", models)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cli_models"] = module
    spec.loader.exec_module(module)
    src, dst, out = str(tmp_path / "src"), str(tmp_path / "dst"), tmp_path / "out.jsonl"
    asyncio.run(module.fill(src))

    assert main(["export", src, "-o", str(out), "--kv"]) == 0
    report = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert report["records"] == {"CliPerson": 5} and report["kv"] == 1
    lines = out.read_text().splitlines()
    end = json.loads(lines[-1])["end"]
    assert len(lines) == 8 and end["records"] == 5 and end["kv"] == 1 and len(end["sha256"]) == 64

    assert main(["export", src, "--entity", "Nope", "-o", str(tmp_path / "x.jsonl")]) == 1
    assert "no entity 'Nope'" in capsys.readouterr().err

    assert main(["import", dst, str(out), "--module", str(models)]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == {"CliPerson": 5}
    assert main(["import", dst, str(out), "--module", str(models)]) == 1
    err = capsys.readouterr().err
    assert "ImportValidationError" in err and "line 2:" in err
    assert main(["import", dst, str(out), "--on-conflict", "replace", "--module", str(models)]) == 0
    assert json.loads(capsys.readouterr().out)["replaced"] == 6  # 5 records and the kv pair
    assert main(["import", dst, str(out), "--on-conflict", "merge"]) == 2  # a usage error
    assert "'merge' is not one of 'error', 'replace', 'skip'" in capsys.readouterr().err
