"""Fixtures of the end-to-end tests: a real server, and pages in a real headless Chromium.

Chromium is Debian's (``apt-get install chromium``), driven by Playwright for
Python (``pip install playwright``); Playwright's own browser downloads are
never used. ``OPENLINE_CHROMIUM`` names another executable. Without either, the
tests skip with a reason, which CI (``CI=true``) turns into failures.

Screenshots go to ``tests/e2e/artifacts/`` (ignored by git); a failing test
saves one of each of its pages there too.
"""

from __future__ import annotations

import os
import pathlib
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .server import ServerThread

ARTIFACTS = pathlib.Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _chromium() -> str | None:
    path = os.environ.get("OPENLINE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if os.path.exists(path) else None


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One headless Chromium for these tests.

    Not for the session: Playwright's synchronous API keeps an event loop
    running on this thread while it is started, which the asyncio tests that
    follow could not run beside.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("needs Playwright for Python: pip install playwright")
    executable = _chromium()
    if executable is None:
        pytest.skip("needs Chromium: apt-get install chromium (or set OPENLINE_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def make_server() -> Iterator[Callable[..., ServerThread]]:
    """Start servers with options of ``create_app`` (and ``engine=`` options); stop them after."""
    threads: list[ServerThread] = []

    def make(**options: Any) -> ServerThread:
        thread = ServerThread(**options)
        threads.append(thread)
        thread.start()
        return thread

    yield make
    for thread in threads:
        thread.close()


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    """The app of ``openline serve`` on 127.0.0.1 (a free port), ticking fast."""
    return make_server(ticker_interval=(0.2, 0.4))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


class Pages:
    """Opens pages, each in its own browser context (its own storage: its own user).

    Every page's console errors and uncaught exceptions are collected: a test
    ends with none, or fails.
    """

    def __init__(self, browser: Any, test_name: str) -> None:
        self.browser = browser
        self.test_name = test_name
        self.contexts: list[Any] = []
        self.pages: list[Any] = []
        self.errors: list[str] = []

    def open(
        self,
        url: str,
        *,
        viewport: dict[str, int] = DESKTOP,
        mobile: bool = False,
        init_script: str | None = None,
    ) -> Any:
        """Open ``url`` in a new context; ``init_script`` runs in it before any page script."""
        options: dict[str, Any] = {"viewport": viewport}
        if mobile:
            options.update(device_scale_factor=2, is_mobile=True, has_touch=True)
        context = self.browser.new_context(**options)
        self.contexts.append(context)
        if init_script is not None:
            context.add_init_script(init_script)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("console", self._console)
        self.pages.append(page)
        page.goto(url)
        return page

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def join(self, url: str, name: str, **options: Any) -> Any:
        """Open the demo page and join the chat as ``name`` through the prompt."""
        page = self.open(url, **options)
        page.fill("#name", name)
        page.click("#join-form button")
        page.wait_for_selector("#badge[data-state=live]")
        return page

    def screenshot(self, page: Any, name: str) -> pathlib.Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    def close(self, failed: bool) -> None:
        for index, page in enumerate(self.pages):
            if failed and not page.is_closed():
                self.screenshot(page, f"FAILED-{self.test_name}-{index}")
        for context in self.contexts:
            context.close()


@pytest.fixture
def pages(browser: Any, request: pytest.FixtureRequest) -> Iterator[Pages]:
    opened = Pages(browser, request.node.name)
    yield opened
    call = getattr(request.node, "rep_call", None)
    opened.close(failed=call is not None and call.failed)
    # Network errors while a server is down or the browser offline are the point
    # of some tests; anything else in the console is a bug.
    unexpected = [e for e in opened.errors if "net::ERR_" not in e and "WebSocket" not in e]
    assert not unexpected, f"errors in the browser console: {unexpected}"
