"""The inspector's routes (quanta/_inspector), in process over httpx's ASGI transport (the
transport Starlette's TestClient is built on, here on the test's own event loop so the
database and the app share it): the token (query then cookie, 403 otherwise), entities,
records with paging and filters, the query box with explain(), engine, bus, schema, the
write route (refused read-only), and the static pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from inspector_models import Person, people

import quanta
from quanta._inspector import build_app, make_token

pytestmark = pytest.mark.timeout(60)


async def _client(db: quanta.Database, token: str, **kw: Any) -> httpx.AsyncClient:
    app = build_app(db, token, **kw)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


@pytest.fixture
async def db(tmp_path: Path) -> Any:
    async with quanta.open(str(tmp_path / "db"), entities=[Person]) as d:
        await d.collection(Person).put_many(people(0, 120))
        yield d


async def test_token_required_then_cookie(db: quanta.Database) -> None:
    token = make_token()
    async with await _client(db, token) as c:
        for path in ("/", "/static/app.js", "/api/entities", "/api/records?entity=Person", "/api/events"):
            assert (await c.get(path)).status_code == 403, path
            assert (await c.get(path, params={"token": "0" * 32})).status_code == 403, path
            assert (await c.get(path, params={"token": token[:-1]})).status_code == 403, path
        r = await c.get("/", params={"token": token})
        assert r.status_code == 200 and "QuantaDB inspector" in r.text
        assert "httponly" in r.headers["set-cookie"].lower()
        # the cookie now carries the token
        assert (await c.get("/api/entities")).status_code == 200
        c.cookies.clear()
        assert (await c.get("/api/entities")).status_code == 403
        c.cookies.set("quanta_inspector_token", "x" * 32)
        assert (await c.get("/api/entities")).status_code == 403


async def test_bad_token_argument_refused(db: quanta.Database) -> None:
    with pytest.raises(quanta.InvalidArgumentError):
        build_app(db, "short")


async def test_entities_records_query(db: quanta.Database) -> None:
    token = make_token()
    async with await _client(db, token) as c:
        c.cookies.set("quanta_inspector_token", token)
        d = (await c.get("/api/entities")).json()
        (person,) = d["entities"]
        assert person["name"] == "Person" and person["count"] == 120 and person["primary_key"] == "id"
        assert [f["name"] for f in person["fields"]] == ["id", "name", "city", "age"]
        assert {i["name"] for i in person["indexes"]} >= {"name", "city_age"}
        assert d["seq"] == db.seq

        page = (await c.get("/api/records", params={"entity": "Person", "offset": 25, "limit": 25})).json()
        assert page["columns"] == ["id", "name", "city", "age"]
        assert [r[0] for r in page["rows"]] == list(range(25, 50))
        f = (await c.get("/api/records", params={"entity": "Person", "where": "city == 'Rome' and age < 25"})).json()
        expected = [p.id for p in people(0, 120) if p.city == "Rome" and p.age < 25]
        assert sorted(r[0] for r in f["rows"]) == expected and expected

        where = "Person.city == 'Oslo' and Person.age >= 70"
        q = (await c.get("/api/query", params={"entity": "Person", "where": where, "order": "-age"})).json()
        assert q["access"] == "index_range" and q["index"] == "city_age"
        assert "city_age" in q["explain"] and q["ms"] >= 0
        ages = [r[3] for r in q["rows"]]
        assert ages == sorted(ages, reverse=True) and ages and all(a >= 70 for a in ages)

        for params in (
            {"entity": "Nope"},
            {"entity": "Person", "where": "__import__('os').system('true')"},
            {"entity": "Person", "where": "nope == 1"},
            {"entity": "Person", "limit": "0"},
            {"entity": "Person", "limit": "many"},
            {"entity": "Person", "order": "nope"},
        ):
            r = await c.get("/api/query", params=params)
            assert r.status_code == 400, params
            assert "Error" in r.json()["error"]


async def test_engine_bus_schema(db: quanta.Database) -> None:
    token = make_token()
    async with await _client(db, token) as c:
        c.cookies.set("quanta_inspector_token", token)
        s = (await c.get("/api/engine")).json()
        assert s["last_seq"] == db.seq and "levels" in s and "block_cache" in s
        async with db.changes():
            b = (await c.get("/api/bus")).json()
            assert b["subscribers"] == 1 and b["taps"][0]["kind"] == "queue" and b["taps"][0]["lag"] == 0
            await db.kv.put(b"k", b"v")
            b = (await c.get("/api/bus")).json()
            assert b["max_lag"] == 1  # one change set waits, unread
        assert (await c.get("/api/bus")).json()["subscribers"] == 0
        sc = (await c.get("/api/schema")).json()
        assert sc["schemas"]["Person"]["version"] == 1 and sc["record_jobs"] == {} and sc["index_jobs"] == {}


async def test_writes_only_when_allowed(db: quanta.Database) -> None:
    token = make_token()
    async with await _client(db, token) as c:
        c.cookies.set("quanta_inspector_token", token)
        r = await c.post("/api/kv", json={"key": "a", "value": "b"})
        assert r.status_code == 403
        assert await db.kv.get(b"a") is None
    async with await _client(db, token, allow_writes=True) as c:
        c.cookies.set("quanta_inspector_token", token)
        assert (await c.post("/api/kv", json={"key": "a"})).status_code == 400
        r = await c.post("/api/kv", json={"key": "a", "value": "b"})
        assert r.status_code == 200 and r.json()["seq"] == db.seq
        assert await db.kv.get(b"a") == b"b"


async def test_static_assets(db: quanta.Database) -> None:
    token = make_token()
    async with await _client(db, token) as c:
        c.cookies.set("quanta_inspector_token", token)
        js = await c.get("/static/app.js")
        assert js.status_code == 200 and "EventSource" in js.text
        assert js.headers["content-type"].startswith("text/javascript")
        css = await c.get("/static/style.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


async def test_serve_inspector_arguments(db: quanta.Database) -> None:
    for bad in (-1, 70000, "80", True):
        with pytest.raises(quanta.InvalidArgumentError):
            await db.serve_inspector(port=bad)  # type: ignore[arg-type]
    with pytest.raises(quanta.InvalidArgumentError):
        await db.serve_inspector(host="")
    server = await db.serve_inspector()
    try:
        assert server.host == "127.0.0.1" and server.port > 0 and server.token in server.url
        async with httpx.AsyncClient(timeout=5) as c:
            assert (await c.get(f"http://127.0.0.1:{server.port}/api/entities")).status_code == 403
            r = await c.get(server.url.replace("/?", "/api/entities?"))
            assert r.status_code == 200 and r.json()["entities"][0]["count"] == 120
    finally:
        await server.close()
