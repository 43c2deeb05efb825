"""Screenshots of the explorer for the README: ingest the demo corpus into a temporary data dir,
serve the explorer on loopback, drive Debian's Chromium with Playwright and save one PNG per
view under docs/.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python scripts/screenshots.py [--out docs] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import Page, sync_playwright
from tqdm import tqdm

from aesoperator import ContextEngine
from aesoperator.config import Settings
from aesoperator.explore import standalone_app
from aesoperator.explore.demo import load_demo
from aesoperator.explore.server import build_explorer
from aesoperator.security.guard import CallGuard
from aesoperator.security.http.listener import HTTPServerThread, bind_socket, resource_url_for
from aesoperator.security.tokens import StaticTokenVerifier, TokenStore

VIEWS = [
    ("explorer-login.png", "", "login"),
    ("explorer-search.png", "#/search?q=" + quote("who rotated the database password"), "search"),
    ("explorer-entity.png", "#/entity?id=" + quote("Kim Lee"), "graph"),
    ("explorer-memory.png", "#/memory?agent=ops", "memory"),
    ("explorer-sources.png", "#/sources", "sources"),
]


def _shoot(page: Page, base: str, token: str, out: Path) -> list[Path]:
    saved: list[Path] = []
    page.goto(base)
    page.wait_for_selector("#view-login:not([hidden])")
    for name, route, loaded in tqdm(VIEWS, desc="screenshots", unit="view"):
        if loaded == "login":
            page.screenshot(path=str(out / name))
            page.fill("#token", token)
            page.click("#login-form button[type=submit]")
            page.wait_for_selector("#nav:not([hidden])")
            saved.append(out / name)
            continue
        page.goto(base + route)
        page.wait_for_selector(f"body[data-loaded='{loaded}']")
        if loaded == "graph":
            page.wait_for_function("() => document.querySelector('#graph').dataset.settled === 'true'")
        time.sleep(0.2)
        page.screenshot(path=str(out / name), full_page=loaded != "graph")
        saved.append(out / name)
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aesop-shots-") as tmp:
        data_dir = Path(tmp) / "data"
        engine = ContextEngine.open(settings=Settings(data_dir=data_dir))
        guard = CallGuard.for_data_dir(data_dir)
        try:
            load_demo(engine, Path(tmp) / "notes")
            token = TokenStore.in_data_dir(data_dir).add("analyst", ["read:*", "source:*", "write:default"]).token
            sock = bind_socket("127.0.0.1", 0)
            explorer = build_explorer(
                engine, sock, guard=guard, verifier=StaticTokenVerifier.in_data_dir(data_dir), host="127.0.0.1"
            )
            base = resource_url_for(sock, "/explore/")
            with HTTPServerThread(standalone_app(explorer), sock), sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, headless=True)
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                for path in _shoot(page, base, token, args.out):
                    print(path)
                browser.close()
        finally:
            guard.close()
            engine.close()


if __name__ == "__main__":
    main()
