"""The inspector: a small live web UI over one open database (``quanta inspect PATH``,
``await db.serve_inspector()``).

Starlette + uvicorn (the optional extra ``quanta-db[inspector]``); plain HTML/JS/CSS shipped
in ``static/``. Every request needs the random token: ``?token=...`` once (it is then kept in
a cookie, as Jupyter does); a missing or wrong token is answered 403. Bound to 127.0.0.1
unless told otherwise; read-only unless ``allow_writes``.
"""

from __future__ import annotations

from .server import InspectorServer, build_app, make_token, serve

__all__ = ["InspectorServer", "build_app", "make_token", "serve"]
