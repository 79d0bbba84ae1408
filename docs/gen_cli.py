"""Regenerate the command output shown in docs/cli.md by running the commands.

``python docs/gen_cli.py`` builds the example databases in /tmp/quanta-docs (the demo's, and
copies of it, one damaged), then, for every ``<!-- cli: COMMAND ;; COMMAND -->`` marker
in docs/cli.md, runs the commands (a shell, ``quanta`` standing for ``python -m quanta``, in
/tmp/quanta-docs) and replaces the fenced block after the marker with ``$ COMMAND`` lines and
what they printed (stdout and stderr; a non-zero exit status is shown as ``$ echo $?``).
So the page's output cannot drift from the program: re-run this after changing a command.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).with_name("cli.md")
WORK = Path("/tmp/quanta-docs")
MARKER = re.compile(r"<!-- cli: (.*?) -->\n```\n.*?```\n", re.S)


def _sh(command: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "COLUMNS": "100"}
    shell = command.replace("quanta ", f"{sys.executable} -m quanta ")
    proc = subprocess.run(shell, shell=True, cwd=WORK, env=env, capture_output=True, text=True, timeout=300)
    text = f"$ {command}\n{proc.stdout}{proc.stderr}"
    if proc.returncode:
        text += f"$ echo $?\n{proc.returncode}\n"
    return text


def _setup() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    _sh("quanta demo base.db --records 2000 > /dev/null")  # the page's own demo run makes demo.db
    for name in ("damaged.db", "copy.db"):
        shutil.copytree(WORK / "base.db", WORK / name, ignore=shutil.ignore_patterns("LOCK"))
    (WORK / "notes").mkdir()
    (WORK / "notes" / "todo.txt").write_text("buy milk\n")
    table = sorted((WORK / "damaged.db").glob("*.sst"))[0]
    data = bytearray(table.read_bytes())
    data[100] ^= 0x10  # one flipped bit inside the first data block
    table.write_bytes(bytes(data))


def main() -> None:
    _setup()
    doc = DOC.read_text()

    def fill(m: re.Match[str]) -> str:
        output = "".join(_sh(c.strip()) for c in m.group(1).split(";;"))
        return f"<!-- cli: {m.group(1)} -->\n```\n{output}```\n"

    DOC.write_text(MARKER.sub(fill, doc))


if __name__ == "__main__":
    main()
