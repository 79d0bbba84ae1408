"""``python -m quanta`` / ``quanta``: the command line, on typer and rich.

```
app.py        the typer application: options, error handling, exit status, main()
output.py     rich tables on a terminal, plain text when piped, --json; progress bars
demo.py       the guided tour (quanta demo)
inspect.py    stats, verify, repair, schema, migrate
files.py      dump (WAL, SSTable, MANIFEST)       keys.py   readable entity keys
transfer.py   backup, compact, export, import
data.py       get, scan, count, put, delete, query
expr.py       the query expression language, parsed with ast (no eval)
entities.py   entity classes from --module or rebuilt from the stored schema
web.py        inspect (the inspector web UI, quanta/_inspector)
```
Exit status: 0 on success, 1 when a database is damaged, missing or cannot be opened (or a
check found problems), 2 on usage errors. docs/cli.md shows every command.
"""

from .app import app, main
from .entities import class_for
from .expr import parse_expression, parse_order
from .files import dump
from .inspect import schema
from .output import jsonable

__all__ = ["app", "class_for", "dump", "jsonable", "main", "parse_expression", "parse_order", "schema"]
