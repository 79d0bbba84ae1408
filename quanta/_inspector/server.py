"""The inspector's Starlette app and its server (see the package docstring)."""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

from ..errors import InvalidArgumentError, QuantaError

__all__ = ["InspectorServer", "build_app", "make_token", "serve"]

COOKIE = "quanta_inspector_token"
MAX_LIMIT = 1000


def _require() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InvalidArgumentError(
            "the inspector needs Starlette and uvicorn: pip install 'quanta-db[inspector]'"
        ) from exc


def make_token() -> str:
    """A fresh random token (32 hex digits of ``secrets``)."""
    return secrets.token_hex(16)


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _int(value: str | None, default: int, lo: int, hi: int, what: str) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise InvalidArgumentError(f"{what} must be an integer, got {value!r}") from None
    if not lo <= n <= hi:
        raise InvalidArgumentError(f"{what} must be between {lo} and {hi}, got {n}")
    return n


def build_app(db: Any, token: str, *, allow_writes: bool = False) -> Any:
    """The Starlette app serving ``db``; every route checks ``token``."""
    _require()
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    from .._cli import class_for, jsonable, parse_expression, parse_order
    from .state import bus_state

    if not isinstance(token, str) or len(token) < 16:
        raise InvalidArgumentError("the inspector's token must be a string of at least 16 characters")

    def authorized(request: Request) -> bool:
        given = request.query_params.get("token") or request.cookies.get(COOKIE) or ""
        return hmac.compare_digest(given.encode(), token.encode())

    Handler = Callable[[Request], Awaitable[Response]]

    def guarded(fn: Handler) -> Handler:
        async def handler(request: Request) -> Response:
            if not authorized(request):
                return PlainTextResponse("403: a valid ?token= is required\n", status_code=403)
            try:
                response = await fn(request)
            except QuantaError as exc:
                response = JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=400)
            if request.query_params.get("token"):
                response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return response

        return handler

    def ok(value: Any) -> Response:
        return JSONResponse(jsonable(value))

    async def index(request: Request) -> Response:
        return Response(_static("index.html"), media_type="text/html; charset=utf-8")

    async def script(request: Request) -> Response:
        return Response(_static("app.js"), media_type="text/javascript; charset=utf-8")

    async def style(request: Request) -> Response:
        return Response(_static("style.css"), media_type="text/css; charset=utf-8")

    async def entities(request: Request) -> Response:
        state = await db.schema_state()
        out = []
        for name, schema in sorted(state.schemas.items()):
            cls, _ = class_for(name, state.schemas, None)
            count = await db.collection(cls).query().count()
            out.append(
                {
                    "name": name,
                    "version": schema.version,
                    "class": schema.cls,
                    "primary_key": schema.primary_key,
                    "count": count,
                    "fields": [
                        {
                            "name": f.name,
                            "type": f.type if isinstance(f.type, str) else repr(f.type),
                            "optional": f.optional,
                        }
                        for f in schema.fields
                    ],
                    "indexes": [
                        {
                            "name": i.name,
                            "fields": list(i.fields),
                            "unique": i.unique,
                            "multi": i.multi,
                            "state": i.state,
                        }
                        for i in schema.indexes
                    ],
                }
            )
        return ok({"entities": out, "seq": db.seq, "allow_writes": allow_writes, "read_only": db.options.read_only})

    async def run_query(request: Request, *, explain: bool) -> Response:
        p = request.query_params
        entity = p.get("entity") or ""
        state = await db.schema_state()
        cls, schema = class_for(entity, state.schemas, None)
        fields = [f.name for f in schema.fields]
        q = db.collection(cls).query()
        where = p.get("where") or ""
        if where.strip():
            q = q.where(parse_expression(where, cls, entity, fields))
        order = [k for k in p.getlist("order") if k.strip()]
        if order:
            q = q.order_by(*(parse_order(k, cls, entity, fields) for k in order))
        offset = _int(p.get("offset"), 0, 0, 1 << 40, "offset")
        limit = _int(p.get("limit"), 50, 1, MAX_LIMIT, "limit")
        q = q.offset(offset).limit(limit)
        start = time.perf_counter()
        rows = await q.all()
        ms = (time.perf_counter() - start) * 1000
        body: dict[str, Any] = {
            "entity": entity,
            "columns": fields,
            "rows": [[getattr(r, f) for f in fields] for r in rows],
            "offset": offset,
            "limit": limit,
            "ms": round(ms, 3),
            "seq": db.seq,
        }
        if explain:
            plan = q.plan()
            body["explain"] = q.explain()
            body["access"] = plan.access
            body["index"] = plan.index.name if plan.index is not None else None
        return ok(body)

    async def records(request: Request) -> Response:
        return await run_query(request, explain=False)

    async def query(request: Request) -> Response:
        return await run_query(request, explain=True)

    async def engine(request: Request) -> Response:
        return ok(await db.stats())

    async def bus(request: Request) -> Response:
        return ok(bus_state(db))

    async def schema(request: Request) -> Response:
        state = await db.schema_state()
        return ok(
            {
                "schemas": {
                    n: {"version": s.version, "class": s.cls, "indexes": [(i.name, i.state) for i in s.indexes]}
                    for n, s in sorted(state.schemas.items())
                },
                "record_jobs": {n: repr(j) for n, j in state.record_jobs.items()},
                "index_jobs": {f"{e}.{i}": repr(j) for (e, i), j in state.index_jobs.items()},
                "untracked": list(state.untracked),
            }
        )

    async def put(request: Request) -> Response:
        if not allow_writes:
            text = "403: this inspector is read-only (start it with --allow-writes)\n"
            return PlainTextResponse(text, status_code=403)
        try:
            body = await request.json()
        except ValueError:
            raise InvalidArgumentError('the body must be JSON: {"key": ..., "value": ...}') from None
        if not isinstance(body, dict) or not isinstance(body.get("key"), str) or not isinstance(body.get("value"), str):
            raise InvalidArgumentError("the body must be a JSON object with string 'key' and 'value'")
        await db.kv.put(body["key"].encode(), body["value"].encode())
        return ok({"seq": db.seq})

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            yield f"event: hello\ndata: {json.dumps({'seq': db.seq})}\n\n"
            async with db.changes() as changes:
                async for cs in changes:
                    if await request.is_disconnected():
                        break
                    yield f"data: {json.dumps({'seq': cs.seq, 'changes': len(cs.changes), 'origin': cs.origin})}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    routes = [
        Route("/", guarded(index)),
        Route("/static/app.js", guarded(script)),
        Route("/static/style.css", guarded(style)),
        Route("/api/entities", guarded(entities)),
        Route("/api/records", guarded(records)),
        Route("/api/query", guarded(query)),
        Route("/api/engine", guarded(engine)),
        Route("/api/bus", guarded(bus)),
        Route("/api/schema", guarded(schema)),
        Route("/api/events", guarded(events)),
        Route("/api/kv", guarded(put), methods=["POST"]),
    ]
    return Starlette(routes=routes)


class InspectorServer:
    """A running inspector: ``url`` (with the token), ``token``, ``port``; ``await close()``."""

    def __init__(self, server: Any, task: asyncio.Task[None], host: str, port: int, token: str) -> None:
        self._server = server
        self._task = task
        self.host = host
        self.port = port
        self.token = token
        self.url = f"http://{host}:{port}/?token={token}"

    async def close(self) -> None:
        """Stop serving (open event streams end) and wait for the server to finish."""
        self._server.should_exit = True
        self._server.force_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 10)
        except TimeoutError:
            self._task.cancel()

    async def wait(self) -> None:
        """Wait until the server stops (Ctrl-C, or :meth:`close` from elsewhere)."""
        await asyncio.shield(self._task)

    async def __aenter__(self) -> InspectorServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve(
    db: Any, *, port: int = 0, host: str = "127.0.0.1", token: str | None = None, allow_writes: bool = False
) -> InspectorServer:
    """Start the inspector for ``db`` on the running loop; returns once it listens
    (``port=0`` picks a free port)."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise InvalidArgumentError(f"port must be an integer 0..65535, got {port!r}")
    if not isinstance(host, str) or not host:
        raise InvalidArgumentError(f"host must be a non-empty string, got {host!r}")
    _require()
    import socket

    import uvicorn

    tok = make_token() if token is None else token
    app = build_app(db, tok, allow_writes=allow_writes)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done():
            task.result()
            raise InvalidArgumentError("the inspector's server stopped while starting")
        if time.monotonic() > deadline:
            raise InvalidArgumentError("the inspector's server did not start within 10 s")
        await asyncio.sleep(0.01)
    return InspectorServer(server, task, host, sock.getsockname()[1], tok)
