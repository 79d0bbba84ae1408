"""Every ```python block of README.md and docs/*.md is complete Python that passes ``mypy --strict``
against the real ``quanta`` API, and the ones that are whole programs run.

The pages are found by glob, so a new page is covered without touching this file. Each block
becomes one module in a temporary directory, padded with blank lines so that a line of the
module is the same line of its page; one mypy process checks them all (one run, seconds), and
each error is reported as ``page.md:line``. A block that calls ``asyncio.run(...)`` is a
program: it runs in an empty directory, as a reader would run it, and must exit 0 with nothing
on stderr. The other blocks (declarations, coroutines that take a ``db``) are imported, all in
one process. A block whose first line is ``# name.py`` is written as ``name.py``, so the page's
later blocks can ``from name import ...`` it (docs/validation.md's ``blog``).

A block that is not Python to check (output, a shell session, a signature) takes another fence
language: ```text, ```console, ```pycon. There is no skip marker.

The examples/ programs go through the same mypy run (test_examples.py runs them).

A canary module with a known misuse of the API goes through the same mypy run, so this test
fails if mypy stops seeing quanta's types (everything ``Any`` would pass every block).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))  # run by test_examples.py; type-checked here too

_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)(?:\s.*)?$")  # ```python title="x" too
_PYTHON = {"python", "py", "python3"}
_NAMED = re.compile(r"#\s*([A-Za-z_]\w*)\.py\s*\n")
_ERROR_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<severity>error|note): (?P<message>.*)$")

# The canary: a put with a str key must be an error (the key is ``bytes``).
CANARY = """\
import quanta


async def main() -> None:
    async with quanta.open("data/app") as db:
        await db.kv.put("user:1", b"Ann")  # the canary: str where bytes is required
"""
CANARY_LINE = 6


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # the page's line of the block's first code line (1-based)
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def module(self) -> str:
        """``doc_<page>_<line>``, or the name a first line ``# name.py`` gives the block (so that
        the page's later blocks can import it)."""
        named = _NAMED.match(self.code)
        if named:
            return named[1]
        stem = re.sub(r"\W", "_", self.page.stem.lower())
        return f"doc_{stem}_{self.line}"

    def __repr__(self) -> str:
        return f"<block {self.where}>"

    def padded(self) -> str:
        """The code with blank lines before it, so module line N is page line N."""
        return "\n" * (self.line - 1) + self.code

    @property
    def is_program(self) -> bool:
        """It calls ``asyncio.run`` when it runs (not only inside a function it defines)."""
        todo: list[ast.AST] = [ast.parse(self.code)]
        while todo:
            node = todo.pop()
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "asyncio.run":
                return True
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                todo.extend(ast.iter_child_nodes(node))
        return False


def python_blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not re.match(rf"^{re.escape(m['indent'])}```\s*$", lines[end]):
            end += 1
        assert end < len(lines), f"{page.relative_to(ROOT)}:{i + 1}: a code fence is never closed"
        if m["lang"].lower() in _PYTHON:
            code = textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n"
            blocks.append(Block(page, i + 2, code))
        i = end + 1
    return blocks


BLOCKS = [block for page in PAGES for block in python_blocks(page)]


def _compiles(block: Block) -> bool:
    try:
        ast.parse(block.code)
    except SyntaxError:
        return False
    return True


PROGRAMS = [block for block in BLOCKS if _compiles(block) and block.is_program]
MODULES = [block for block in BLOCKS if _compiles(block) and not block.is_program]


def test_the_pages_have_python_blocks() -> None:
    assert len([b for b in BLOCKS if b.page.name == "README.md"]) >= 2
    assert len(BLOCKS) >= 40
    assert len({b.module for b in BLOCKS}) == len(BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.where)
def test_block_compiles(block: Block) -> None:
    try:
        compile(block.padded(), block.where, "exec")
    except SyntaxError as e:
        pytest.fail(f"{block.page.relative_to(ROOT)}:{e.lineno}: {e.msg}")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """``{module name: ["page.md:line: message", ...]}`` from one ``mypy --strict`` run over
    every block that compiles, and the canary."""
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e .[test])")
    folder = tmp_path_factory.mktemp("doc-blocks")
    cache = tmp_path_factory.mktemp("mypy-cache")
    where: dict[str, Block] = {}
    for block in BLOCKS:
        if _compiles(block):  # test_block_compiles reports the others
            (folder / f"{block.module}.py").write_text(block.padded(), encoding="utf-8")
            where[block.module] = block
    (folder / "doc_canary.py").write_text(CANARY, encoding="utf-8")
    files = [*sorted(str(p) for p in folder.glob("*.py")), *(str(p) for p in EXAMPLES)]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",  # quanta's own errors are the typecheck session's job
            "--show-error-codes",
            "--hide-error-context",
            "--no-pretty",
            "--no-error-summary",
            "--no-color-output",
            f"--cache-dir={cache}",
            *files,
        ],
        cwd=ROOT,  # the quanta of this checkout, whatever else is installed
        env={**os.environ, "MYPYPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 2: mypy itself failed
    found: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        m = _ERROR_LINE.match(line)
        assert m is not None, f"unexpected mypy output: {line}"
        path = Path(m["file"])
        module = path.stem if path.parent.name != "examples" else f"examples/{path.name}"
        block = where.get(module)
        place = f"{block.page.relative_to(ROOT)}:{m['line']}" if block else f"{path.name}:{m['line']}"
        found.setdefault(module, []).append(f"{place}: {m['severity']}: {m['message']}")
    return found


def test_mypy_sees_the_quanta_api(mypy_errors: dict[str, list[str]]) -> None:
    """The canary's misuse is reported: the blocks are checked against real types, not Any."""
    canary = mypy_errors.get("doc_canary", [])
    assert any(f"doc_canary.py:{CANARY_LINE}: error:" in e and "[arg-type]" in e for e in canary), canary
    assert set(mypy_errors) <= {b.module for b in BLOCKS} | {f"examples/{p.name}" for p in EXAMPLES} | {"doc_canary"}


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.where)
def test_block_passes_mypy_strict(block: Block, mypy_errors: dict[str, list[str]]) -> None:
    messages = mypy_errors.get(block.module, [])
    if any(": error: " in m for m in messages):
        pytest.fail("mypy --strict:\n" + "\n".join(messages), pytrace=False)


def test_the_programs_include_the_readme() -> None:
    assert len([b for b in PROGRAMS if b.page.name == "README.md"]) >= 2


@pytest.mark.parametrize("block", PROGRAMS, ids=lambda b: b.where)
def test_program_runs(block: Block, tmp_path: Path) -> None:
    """A block that is a whole program runs as printed, in an empty directory, as a new user would."""
    script = tmp_path / f"{block.module}.py"
    script.write_text(block.padded(), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 or done.stderr:  # stderr: e.g. an unclosed database's ResourceWarning
        pytest.fail(f"{block.where}: exit {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-3000:]}", pytrace=False)


_IMPORT_ALL = """\
import contextlib, importlib, io, sys, traceback
failed = 0
for name in sys.argv[1:]:
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # what a block prints is not the report
            importlib.import_module(name)
    except BaseException:
        failed += 1
        print(f"--- {name}\\n{traceback.format_exc()}")
sys.exit(1 if failed else 0)
"""


def test_modules_import(tmp_path: Path) -> None:
    """The blocks that are not programs (declarations, coroutines that take a database) import
    cleanly, all in one process: entity declarations, validators and migrations are checked
    when their module runs."""
    for block in MODULES:
        (tmp_path / f"{block.module}.py").write_text(block.padded(), encoding="utf-8")
    (tmp_path / "import_all.py").write_text(_IMPORT_ALL, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-W", "error", "import_all.py", *(b.module for b in MODULES)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    where = {b.module: b.where for b in MODULES}
    report = re.sub(r"^--- (\w+)$", lambda m: f"--- {where.get(m[1], m[1])}", done.stdout, flags=re.M)
    if done.returncode != 0:
        pytest.fail(
            f"a block fails when imported (exit {done.returncode}):\n{report[-4000:]}{done.stderr[-2000:]}",
            pytrace=False,
        )


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_mypy_strict(example: Path, mypy_errors: dict[str, list[str]]) -> None:
    messages = mypy_errors.get(f"examples/{example.name}", [])
    if any(": error: " in m for m in messages):
        pytest.fail("mypy --strict:\n" + "\n".join(f"examples/{m}" for m in messages), pytrace=False)
