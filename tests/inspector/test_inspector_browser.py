"""The inspector in a real browser (Debian's chromium driven by Playwright): a writer process
holds the database and commits; ``quanta inspect`` runs in another process attached
read-only; the browser loads every page, runs a query, watches the live view update after a
commit of the writer, and is refused with a wrong token.

Without chromium or playwright the test skips, except when ``CI`` is set (to anything but
``""``/``0``): CI installs both (.ci/run, noxfile.py), so there a missing browser fails.

Screenshots of every page go to ``$QUANTA_INSPECTOR_SHOTS`` when set (``python
docs/gen_inspector_screenshots.py`` sets it to docs/img), else to the test's tmp_path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
CHROMIUM = os.environ.get("QUANTA_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGES = ["entities", "records", "query", "live", "engine", "bus", "schema"]

pytestmark = pytest.mark.timeout(120)


def _in_ci() -> bool:
    return os.environ.get("CI", "") not in ("", "0", "false")


def _need_browser() -> Any:
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "playwright is not installed (pip install playwright)"
    if problem is None and not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        problem = f"no chromium at {CHROMIUM} (apt-get install -y chromium)"
    if problem is not None:
        if _in_ci():
            pytest.fail(f"CI must run the browser tests: {problem}")
        pytest.skip(problem)
    return sync_playwright


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), env.get("PYTHONPATH", "")])
    return env


def _readline(stream: IO[str], pattern: str, proc: subprocess.Popen[str], timeout: float = 30) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            if proc.poll() is not None:
                raise AssertionError(f"process ended ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.05)
            continue
        m = re.search(pattern, line)
        if m:
            return m
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    path = str(tmp_path / "db")
    writer = subprocess.Popen(
        [sys.executable, str(HERE / "inspector_writer.py"), path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    inspector: subprocess.Popen[str] | None = None
    try:
        assert writer.stdout is not None
        _readline(writer.stdout, r"^ready \d+", writer)
        inspector = subprocess.Popen(
            [sys.executable, "-m", "quanta", "inspect", path, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        assert inspector.stdout is not None
        url = _readline(inspector.stdout, r"(http://127\.0\.0\.1:\d+/\?token=[0-9a-f]{32})", inspector).group(1)
        yield writer, url
    finally:
        if writer.stdin is not None and writer.poll() is None:
            writer.stdin.write("quit\n")
            writer.stdin.flush()
            try:
                writer.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if inspector is not None:
            _stop(inspector)
        _stop(writer)


def test_inspector_in_chromium(processes: tuple[subprocess.Popen[str], str], tmp_path: Path) -> None:
    sync_playwright = _need_browser()
    writer, url = processes
    shots = Path(os.environ.get("QUANTA_INSPECTOR_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    base = url.split("/?")[0]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True, timeout=30_000)
        try:
            # a wrong or missing token is refused
            stranger = browser.new_context()
            bad = stranger.new_page()
            r = bad.goto(base + "/?token=" + "0" * 32)
            assert r is not None and r.status == 403
            r = bad.goto(base + "/api/entities")
            assert r is not None and r.status == 403
            stranger.close()

            context = browser.new_context(viewport={"width": 1100, "height": 700})
            page = context.new_page()
            page.set_default_timeout(15_000)
            r = page.goto(url)
            assert r is not None and r.status == 200
            page.wait_for_selector('body[data-loaded="entities"]')
            text = page.inner_text("#entities")
            assert "Person" in text and "60 records" in text and "city_age" in text
            # the cookie now holds the token: the bare address works in this context
            assert page.request.get(base + "/api/entities").status == 200

            for name in PAGES:
                page.goto(f"{url}#{name}")
                page.evaluate(f"show('{name}')")
                page.wait_for_selector(f'body[data-loaded="{name}"]')
                assert page.is_visible(f"#page-{name}")
                if name == "records":
                    page.fill("#records-where", "city == 'Rome'")
                    page.click("#records-form button[type=submit]")
                    page.wait_for_function("document.querySelectorAll('#records tbody tr').length === 20")
                    assert set(page.locator("#records tbody tr td:nth-child(3)").all_inner_texts()) == {"Rome"}
                if name == "query":
                    page.fill("#query-where", "Person.city == 'Oslo' and Person.age >= 30")
                    page.fill("#query-order", "-age")
                    page.click("#query-form button[type=submit]")
                    page.wait_for_selector("#query-rows table")
                    assert "city_age" in page.inner_text("#query-explain")
                    assert re.search(
                        r"\d+ rows in [\d.]+ ms \(access index_range, index city_age\)",
                        page.inner_text("#query-timing"),
                    )
                if name == "live":
                    page.wait_for_selector('body[data-live="on"]')
                    before = int(page.inner_text("#live-seq"))
                    assert writer.stdin is not None and writer.stdout is not None
                    for _ in range(3):
                        writer.stdin.write("put\n")
                        writer.stdin.flush()
                        seq = int(_readline(writer.stdout, r"^seq (\d+)", writer).group(1))
                    page.wait_for_function(f"Number(document.getElementById('live-seq').textContent) >= {seq}")
                    assert seq > before
                    assert int(page.inner_text("#live-count")) >= 3
                    assert page.locator("#live-chart svg rect").count() >= 3
                if name == "engine":
                    assert page.locator("#engine svg").count() == 3
                    assert "write_amplification" in page.inner_text("#engine")
                if name == "bus":
                    # the live page's event stream is one subscriber of the inspector's bus
                    assert "subscribers" in page.inner_text("#bus")
                if name == "schema":
                    assert "Person" in page.inner_text("#schema")
                page.screenshot(path=str(shots / f"inspector-{name}.png"), full_page=False)
            # the entities page shows the writer's new records after a reload
            page.goto(f"{url}#entities")
            page.wait_for_selector('body[data-loaded="entities"]')
            assert "63 records" in page.inner_text("#entities")
            context.close()
        finally:
            browser.close()
    for name in PAGES:
        assert (shots / f"inspector-{name}.png").stat().st_size > 5000


def test_cli_inspect_beside_a_writer(processes: tuple[subprocess.Popen[str], str]) -> None:
    """Without a browser: ``quanta inspect`` attached read-only answers with the token only,
    and follows the writer's commits."""
    import httpx

    writer, url = processes
    base = url.split("/?")[0]
    with httpx.Client(timeout=10) as c:
        assert c.get(base + "/api/entities").status_code == 403
        assert c.get(base + "/api/entities", params={"token": "f" * 32}).status_code == 403
        r = c.get(url.replace("/?", "/api/entities?"))
        assert r.status_code == 200 and r.json()["read_only"] is True
        assert r.json()["entities"][0]["count"] == 60
        assert c.post(base + "/api/kv", json={"key": "a", "value": "b"}).status_code == 403  # cookie kept
        assert writer.stdin is not None and writer.stdout is not None
        writer.stdin.write("put\n")
        writer.stdin.flush()
        seq = int(_readline(writer.stdout, r"^seq (\d+)", writer).group(1))
        deadline = time.monotonic() + 10
        while c.get(base + "/api/entities").json()["seq"] < seq:
            assert time.monotonic() < deadline, "the inspector did not follow the writer"
            time.sleep(0.05)
        assert c.get(base + "/api/entities").json()["entities"][0]["count"] == 61


def test_cli_inspect_refusals(tmp_path: Path) -> None:
    from quanta._cli import main

    assert main(["inspect", str(tmp_path / "missing"), "--port", "0"]) == 1
    assert main(["inspect", str(tmp_path), "--port", "70000"]) == 2
