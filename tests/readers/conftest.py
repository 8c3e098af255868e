"""For the readers' tests: a stack holding the examples, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, sync_playwright

from tests.conftest import Broker, RunningStack, example_events, make_stack, wait_for

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / ".local" / "node" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("ACCORDWATCH_TEST_ARTIFACTS", ROOT / ".local" / "artifacts"))
README_SCREENSHOTS = ROOT / "docs" / "screenshots"
# Without these Chromium reaches for Google's hosts at start (updates, sync, safe browsing).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--disable-default-apps", "--disable-extensions",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium (installed by `scripts/setup.sh --test`), never a downloaded browser."""
    assert Path(CHROMIUM).exists(), "run scripts/setup.sh --test: it installs Debian's chromium"
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield launched
    finally:
        launched.close()


@dataclass
class Visit:
    """A page and what it did: every request, console errors, uncaught exceptions, bytes received."""

    page: Page
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    responses: list[Any] = field(default_factory=list)

    def goto(self, url: str) -> None:
        """Load a page and wait until the network is idle."""
        self.responses.clear()
        response = self.page.goto(url, wait_until="networkidle")
        assert response is not None, url
        assert response.status == 200, f"{url}: {response.status}"

    def weight(self) -> int:
        """Bytes of every response since the last `goto` (document, style sheet, icon)."""
        return sum(len(r.body()) for r in self.responses if r.status < 300)

    def assert_clean(self) -> None:
        """No console error, no uncaught exception, no request to anything but 127.0.0.1."""
        assert self.console_errors == []
        assert self.page_errors == []
        assert self.requests, "no request was recorded"
        elsewhere = [u for u in self.requests if urlsplit(u).hostname != "127.0.0.1" and not u.startswith("data:")]
        assert elsewhere == []

    def axe(self) -> list[dict[str, Any]]:
        """axe-core's serious and critical violations on the page as it is now."""
        assert AXE.exists(), "run scripts/setup.sh --test: it installs axe-core into .local/node"
        self.page.add_script_tag(content=AXE.read_text())
        result: dict[str, Any] = self.page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
        assert result["testEngine"]["name"] == "axe-core"
        assert result["passes"] is not None
        return [
            {"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")
        ]

    def screenshot(self, name: str, *, readme: bool = False) -> Path:
        """A full-page PNG among the test artifacts (and under docs/ when asked to refresh the README's)."""
        path = ARTIFACTS / "screenshots" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=path, full_page=True)
        if readme and os.environ.get("ACCORDWATCH_UPDATE_SCREENSHOTS") == "1":
            README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            (README_SCREENSHOTS / path.name).write_bytes(path.read_bytes())
        return path


def _visit(browser: Browser, *, viewport: dict[str, int], javascript: bool = True) -> Iterator[Visit]:
    context = browser.new_context(viewport=viewport, java_script_enabled=javascript,  # type: ignore[arg-type]
                                  service_workers="block")
    page = context.new_page()
    visit = Visit(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            visit.console_errors.append(f"{message.text} ({message.location})")

    def on_request(request: Request) -> None:
        visit.requests.append(request.url)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: visit.page_errors.append(str(exc)))
    page.on("request", on_request)
    page.on("response", lambda response: visit.responses.append(response))
    try:
        yield visit
    finally:
        context.close()


@pytest.fixture
def desktop(browser: Browser) -> Iterator[Visit]:
    yield from _visit(browser, viewport=DESKTOP)


@pytest.fixture
def phone(browser: Browser) -> Iterator[Visit]:
    yield from _visit(browser, viewport=PHONE)


@pytest.fixture
def no_script(browser: Browser) -> Iterator[Visit]:
    """A desktop browser with JavaScript switched off."""
    yield from _visit(browser, viewport=DESKTOP, javascript=False)


@pytest.fixture(scope="package")
def examples_stack(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """Every service on a topic of its own, with the examples projected; stopped when this package is done."""
    running = make_stack(kafka, tmp_path_factory.mktemp("examples-stack"),
                         services=("ingest", "projector-worker", "projector-api", "alerts-worker", "alerts-api"))
    try:
        docs = example_events()
        running.post(*docs)
        wait_for(lambda: all(running.query.get(f"/v1/events/{d['id']}").status_code == 200 for d in docs),
                 timeout=240, interval=0.5, what="every example event in the read model")
        yield running
    finally:
        running.close()
