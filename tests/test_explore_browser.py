"""The explorer in a real browser: Playwright drives Debian's Chromium (/usr/bin/chromium, never
a downloaded one) headless against the app on loopback. One app and one browser for the module;
each test gets a fresh browser context (its own sessionStorage)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.explore_support import XSS_ID, XSS_NAME, XSS_TEXT, RunningExplorer, running_explorer

CHROMIUM = Path(os.environ.get("AESOP_CHROMIUM", "/usr/bin/chromium"))
playwright_api = pytest.importorskip("playwright.sync_api", reason="the `explorer` extra (playwright) is not installed")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: run scripts/setup.sh --dev"),
]
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, embedder: object) -> Iterator[RunningExplorer]:
    with running_explorer(tmp_path_factory.mktemp("explore-browser"), embedder) as running:  # type: ignore[arg-type]
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


class Watched:
    """A page with every dialog, console message and page error it produced."""

    def __init__(self, page: object) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.console: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))  # type: ignore[attr-defined]
        page.on("pageerror", lambda e: self.errors.append(str(e)))  # type: ignore[attr-defined]

    def quiet(self) -> bool:
        return not self.dialogs and not self.errors and not [c for c in self.console if c.startswith("error")]


@pytest.fixture
def page(browser: object) -> Iterator[Watched]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    context.set_default_timeout(TIMEOUT_MS)
    watched = Watched(context.new_page())
    yield watched
    context.close()


def sign_in(page: Watched, app: RunningExplorer, token: str, route: str = "#/search") -> None:
    p = page.page
    p.goto(app.base + route)  # type: ignore[attr-defined]
    p.fill("#token", token)  # type: ignore[attr-defined]
    p.click("#login-form button[type=submit]")  # type: ignore[attr-defined]
    p.wait_for_selector("#nav:not([hidden])")  # type: ignore[attr-defined]
    # the page's first probe without a token is answered 401 (logged by the browser): start clean
    page.console.clear()


def loaded(page: Watched, what: str) -> None:
    page.page.wait_for_selector(f"body[data-loaded='{what}']")  # type: ignore[attr-defined]


def test_search_shows_scored_hits_with_reasons_and_filters(page: Watched, app: RunningExplorer) -> None:
    sign_in(page, app, app.full_token)
    p = page.page
    p.fill("#q", "who rotated the database password")  # type: ignore[attr-defined]
    p.click("#search-form button[type=submit]")  # type: ignore[attr-defined]
    loaded(page, "search")
    hits = p.locator("#results li.hit")  # type: ignore[attr-defined]
    assert hits.count() >= 3
    first = hits.first
    assert first.locator(".score").first.inner_text().startswith("score ")
    assert first.locator(".reason.channel").count() >= 1
    assert p.locator("#results .reason.link, #results .reason.hop").count() >= 1  # type: ignore[attr-defined]
    # the namespace filter narrows the results to that namespace
    p.select_option("#f-namespace", "agent:ops")  # type: ignore[attr-defined]
    p.click("#search-form button[type=submit]")  # type: ignore[attr-defined]
    p.wait_for_selector("#results[data-params*='namespace=agent']")  # type: ignore[attr-defined]
    assert p.locator("#results li.hit").count() > 0  # type: ignore[attr-defined]
    spaces = p.eval_on_selector_all(  # type: ignore[attr-defined]
        "#results li.hit .hit-head .score:last-child", "els => els.map(e => e.textContent.split(' · ')[0])"
    )
    assert spaces and set(spaces) == {"agent:ops"}
    assert page.quiet(), (page.console, page.errors)


def test_open_an_entity_and_expand_its_graph(page: Watched, app: RunningExplorer) -> None:
    sign_in(page, app, app.full_token, "#/search?type=Person&q=" + quote("Kim Lee"))
    p = page.page
    loaded(page, "search")
    p.locator("#results a.hit-name").filter(has_text=re.compile(r"^Kim Lee$")).first.click()  # type: ignore[attr-defined]
    loaded(page, "graph")
    assert p.inner_text("#entity-name") == "Kim Lee"  # type: ignore[attr-defined]
    assert p.locator("#entity-relations tr").count() > 1  # type: ignore[attr-defined]
    assert p.locator("#entity-mentions tr").count() > 1  # type: ignore[attr-defined]
    canvas = p.locator("#graph")  # type: ignore[attr-defined]
    before = int(canvas.get_attribute("data-nodes"))
    assert before > 2
    # click a neighbour on the canvas itself: it is expanded (its own neighbours are merged in)
    target = p.evaluate(  # type: ignore[attr-defined]
        """() => { const g = window.aesopGraph;
                   const n = [...g.nodes.values()].find(n => n.name.startsWith('people.md'));
                   return {id: n.id, ...g.screenPosition(n.id)}; }"""
    )
    p.wait_for_function("() => document.querySelector('#graph').dataset.settled === 'true'")  # type: ignore[attr-defined]
    target = p.evaluate(  # type: ignore[attr-defined]
        "id => ({id, ...window.aesopGraph.screenPosition(id)})", target["id"]
    )
    box = canvas.bounding_box()
    p.mouse.click(box["x"] + target["x"], box["y"] + target["y"])  # type: ignore[attr-defined]
    p.wait_for_function("() => document.querySelector('#graph').dataset.expanded === '2'")  # type: ignore[attr-defined]
    after = int(canvas.get_attribute("data-nodes"))
    assert after > before
    # hide one relation type: fewer edges are drawn
    edges = int(canvas.get_attribute("data-edges"))
    p.locator("#rel-filters input[data-relation-type='MENTIONS']").uncheck()  # type: ignore[attr-defined]
    assert int(canvas.get_attribute("data-edges")) < edges
    # pin the selected node, export the graph as JSON and PNG
    p.click("#graph-pin")  # type: ignore[attr-defined]
    assert p.inner_text("#graph-pin") == "Unpin"  # type: ignore[attr-defined]
    with p.expect_download() as download:  # type: ignore[attr-defined]
        p.click("#graph-json")  # type: ignore[attr-defined]
    exported = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert any(n["id"] == target["id"] and n["pinned"] for n in exported["nodes"])
    assert all(e["type"] != "MENTIONS" for e in exported["edges"])
    with p.expect_download() as png:  # type: ignore[attr-defined]
        p.click("#graph-png")  # type: ignore[attr-defined]
    assert Path(png.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.quiet(), (page.console, page.errors)


def test_switch_agent_in_the_memory_view(page: Watched, app: RunningExplorer) -> None:
    sign_in(page, app, app.full_token, "#/memory")
    p = page.page
    loaded(page, "memory")
    p.wait_for_selector("#memory-sessions[data-agent='ops']")  # type: ignore[attr-defined]
    assert p.locator(f".episode[data-id='{app.demo.corrected_episode}']").get_attribute("data-status") == "superseded"  # type: ignore[attr-defined]
    assert p.locator(f".episode[data-id='{app.demo.forgotten_episode}']").get_attribute("data-status") == "forgotten"  # type: ignore[attr-defined]
    assert p.locator(".lane").count() == 3  # type: ignore[attr-defined]
    assert p.locator(".episode .mentions a", has_text="Kim Lee").count() >= 1  # type: ignore[attr-defined]
    p.select_option("#agent-select", "support")  # type: ignore[attr-defined]
    p.wait_for_selector("#memory-sessions[data-agent='support']")  # type: ignore[attr-defined]
    texts = p.locator(".episode .content").all_inner_texts()  # type: ignore[attr-defined]
    assert any("audit logs" in t for t in texts) and not any("staging password" in t for t in texts)
    assert page.quiet(), (page.console, page.errors)


def test_a_wrong_token_gets_401_and_a_narrow_one_403(page: Watched, app: RunningExplorer) -> None:
    p = page.page
    p.goto(app.base)  # type: ignore[attr-defined]
    p.fill("#token", "aesop_wrong_token")  # type: ignore[attr-defined]
    with p.expect_response(lambda r: r.url.endswith("/api/me")) as refused:  # type: ignore[attr-defined]
        p.click("#login-form button[type=submit]")  # type: ignore[attr-defined]
    assert refused.value.status == 401
    p.wait_for_function("() => document.querySelector('#login-error').textContent.includes('refused')")  # type: ignore[attr-defined]
    assert p.is_hidden("#nav")  # type: ignore[attr-defined]
    # a token that may read only `partners` and may not recall: the memory view is refused
    sign_in(page, app, app.narrow_token, "#/search")
    with p.expect_response(lambda r: "/api/agents" in r.url) as forbidden:  # type: ignore[attr-defined]
        p.click("nav a[data-view='memory']")  # type: ignore[attr-defined]
    assert forbidden.value.status == 403
    p.wait_for_selector("#banner[data-status='403']")  # type: ignore[attr-defined]
    assert "permission denied" in p.inner_text("#banner")  # type: ignore[attr-defined]
    # and search shows only its namespace
    p.goto(app.base + "#/search?q=Atlas")  # type: ignore[attr-defined]
    loaded(page, "search")
    spaces = p.eval_on_selector_all(  # type: ignore[attr-defined]
        "#results li.hit .hit-head .score:last-child", "els => els.map(e => e.textContent.split(' · ')[0])"
    )
    assert spaces and set(spaces) == {"partners"}


def test_stored_xss_stays_inert(page: Watched, app: RunningExplorer) -> None:
    sign_in(page, app, app.full_token, "#/search?q=" + quote("Mallory billing notes"))
    p = page.page
    loaded(page, "search")
    link = p.locator("#results a.hit-name", has_text="Mallory").first  # type: ignore[attr-defined]
    assert link.inner_text() == XSS_NAME
    link.click()
    # the entity view marks "entity" and then "graph" once its neighbours load; the two can land
    # between two polls, so wait for the last and check that the first came before it
    loaded(page, "graph")
    assert p.evaluate("() => window.aesopTimings.entity <= window.aesopTimings.graph")  # type: ignore[attr-defined]
    assert p.inner_text("#entity-name") == XSS_NAME  # type: ignore[attr-defined]
    assert p.inner_text("#entity-text") == XSS_TEXT  # type: ignore[attr-defined]
    assert p.evaluate("() => window.__xss === undefined")  # type: ignore[attr-defined]
    assert p.locator("#view-entity img, #view-search img, main script").count() == 0  # type: ignore[attr-defined]
    assert p.evaluate(f"() => location.hash.includes({json.dumps(quote(XSS_ID, safe=''))})")  # type: ignore[attr-defined]
    assert page.quiet(), (page.dialogs, page.console, page.errors)
