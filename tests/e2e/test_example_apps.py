"""The FastAPI and Django examples in Chromium: log in, chat, survive a server restart.

Each example runs as a real server process (uvicorn; the FastAPI one under
hypercorn too) on a free loopback port, with its sqlite files in the test's
directory; the pages are its own, with the packaged ``openline.js``.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.examples.apps import (
    DJANGO_SERVERS,
    FASTAPI_PASSWORDS,
    SERVERS,
    AppProcess,
    ServerCommand,
    django_app,
    fastapi_app,
)

from .conftest import Pages

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips every test, with the reason (failing in CI)
    expect = None  # type: ignore[assignment]

DJANGO_PASSWORDS = {"ada": "a password of ada's", "grace": "a password of grace's"}
#: Milliseconds to wait for a page state (generous: the machine may be busy).
WAIT = 15_000
#: Page-state waits that span a server restart (the client's redial backoff is at most 3 s).
RESTART_TIMEOUT = 30_000


@dataclasses.dataclass(frozen=True)
class Site:
    """Where an example keeps its pages, and how to start it."""

    name: str
    login: str
    chat: str
    passwords: dict[str, str]
    make: Callable[[ServerCommand, pathlib.Path], AppProcess]


SITES = {
    "fastapi": Site("fastapi", "/login", "/chat", FASTAPI_PASSWORDS, fastapi_app),
    "django": Site(
        "django",
        "/login/",
        "/",
        DJANGO_PASSWORDS,
        lambda server, tmp_path: django_app(server, tmp_path, DJANGO_PASSWORDS),
    ),
}


@pytest.fixture(
    params=[
        *(("fastapi", server) for server in SERVERS),
        *(("django", server) for server in DJANGO_SERVERS),
    ],
    ids=lambda param: "-".join(param),
)
def example(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path
) -> Iterator[tuple[Site, AppProcess]]:
    site_name, server_name = request.param
    site = SITES[site_name]
    process = site.make(SERVERS[server_name], tmp_path)
    process.start()
    try:
        yield site, process
    finally:
        process.stop()


def log_in(pages: Pages, site: Site, app: AppProcess, user: str) -> Any:
    """Open the login page, log in as ``user``, and wait until the chat is live."""
    page = pages.open(app.url + site.login)
    page.fill("#username", user)
    page.fill("#password", site.passwords[user])
    page.click("#login button")
    page.wait_for_url(app.url + site.chat)
    expect(page.locator("body")).to_have_attribute("data-state", "open", timeout=WAIT)
    expect(page.locator("#me")).to_have_text(f"as {user}", timeout=WAIT)
    return page


def say(page: Any, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def shown(page: Any) -> list[tuple[int, str, str]]:
    """The messages on the page: ``(offset, user, text)``."""
    result: list[tuple[int, str, str]] = page.eval_on_selector_all(
        "#messages .msg",
        "items => items.map(i => [Number(i.dataset.offset),"
        " i.querySelector('.user').textContent, i.querySelector('.text').textContent])",
    )
    return [tuple(item) for item in result]  # type: ignore[misc]


def test_two_users_chat_and_resume_after_a_server_restart(
    pages: Pages, example: tuple[Site, AppProcess]
) -> None:
    site, app = example
    ada = log_in(pages, site, app, "ada")
    grace = log_in(pages, site, app, "grace")
    for n in range(3):
        say(ada, f"before {n}")
    for page in (ada, grace):
        expect(page.locator("#messages .msg .text")).to_have_text(
            [f"before {n}" for n in range(3)], timeout=WAIT
        )
    say(grace, "hi ada")
    expect(ada.locator("#messages .msg")).to_have_count(4, timeout=WAIT)

    app.kill()  # no close frames: what a crash does
    for page in (ada, grace):
        expect(page.locator("body")).not_to_have_attribute("data-state", "open", timeout=WAIT)
    for n in range(2):
        say(ada, f"offline {n}")  # queued in Ada's page until the server is back
    ada.wait_for_function("() => window.chat.pending === 2", timeout=WAIT)

    app.start()  # the same port, the same data files
    expected = [
        *((n + 1, "ada", f"before {n}") for n in range(3)),
        (4, "grace", "hi ada"),
        *((n + 5, "ada", f"offline {n}") for n in range(2)),
    ]
    for page in (ada, grace):
        expect(page.locator("body")).to_have_attribute(
            "data-state", "open", timeout=RESTART_TIMEOUT
        )
        expect(page.locator("#messages .msg")).to_have_count(6, timeout=RESTART_TIMEOUT)
        assert shown(page) == expected
        expect(page.locator("#messages .notice")).to_have_count(0, timeout=WAIT)
    ada.wait_for_function("() => window.chat.pending === 0", timeout=WAIT)

    # A fresh page load reads the history: every message once, in order.
    grace.reload()
    expect(grace.locator("body")).to_have_attribute("data-state", "open", timeout=WAIT)
    expect(grace.locator("#messages .msg")).to_have_count(6, timeout=WAIT)
    assert shown(grace) == expected


def test_a_page_without_a_login_gets_neither_the_chat_nor_the_hub(
    pages: Pages, example: tuple[Site, AppProcess]
) -> None:
    site, app = example
    page = pages.open(app.url + site.chat)
    assert re.match(re.escape(app.url + site.login), page.url), page.url
    # The page can still try the hub itself: the handshake fails (a 401, which
    # a browser reports as a failed connection, 1006, without the status).
    outcome = page.evaluate(
        """url => new Promise((resolve) => {
            const ws = new WebSocket(url, "openline.v1");
            ws.onopen = () => resolve("open");
            ws.onclose = (event) => resolve(event.code);
        })""",
        app.ws_url,
    )
    assert outcome == 1006
