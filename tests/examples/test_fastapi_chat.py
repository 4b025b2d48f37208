"""examples/fastapi_chat under real servers, with the Python hub client: log in, chat, restart."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Iterator

import pytest

from .apps import FASTAPI_PASSWORDS, SERVERS, AppProcess, Browser, fastapi_app, login_fastapi
from .scenario import chat_across_a_restart, refused_status


@pytest.fixture(params=list(SERVERS))
def app(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[AppProcess]:
    process = fastapi_app(SERVERS[request.param], tmp_path)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def login(app: AppProcess, user: str) -> str:
    return login_fastapi(app.url, user, FASTAPI_PASSWORDS[user]).cookie_header()


async def test_logged_in_users_chat_across_a_server_restart(app: AppProcess) -> None:
    ada, grace = await asyncio.gather(
        asyncio.to_thread(login, app, "ada"), asyncio.to_thread(login, app, "grace")
    )
    await chat_across_a_restart(app, talker=ada, listener=grace)


async def test_the_hub_refuses_a_handshake_without_a_valid_session(app: AppProcess) -> None:
    assert await refused_status(app, None) == 401
    assert await refused_status(app, "chat_session=forged") == 401


def test_a_wrong_password_is_refused_and_the_chat_page_needs_a_login(app: AppProcess) -> None:
    browser = Browser(app.url)
    status, _, page = browser.post("/login", {"username": "ada", "password": "wrong"})
    assert status == 401
    assert "Wrong name or password" in page
    assert browser.cookie("chat_session") is None
    status, url, _ = browser.get("/chat")
    assert (status, url) == (200, app.url + "/login")


def test_logging_out_ends_the_session(app: AppProcess) -> None:
    browser = login_fastapi(app.url, "ada", FASTAPI_PASSWORDS["ada"])
    status, url, _ = browser.post("/logout", {})
    assert (status, url) == (200, app.url + "/login")
    assert browser.cookie("chat_session") is None
    _, url, _ = browser.get("/chat")
    assert url == app.url + "/login"


def test_the_chat_page_loads_the_packaged_browser_client(app: AppProcess) -> None:
    browser = login_fastapi(app.url, "ada", FASTAPI_PASSWORDS["ada"])
    _, _, page = browser.get("/chat")
    assert '<script type="module" src="/chat.js">' in page
    _, _, script = browser.get("/openline.js")
    source = pathlib.Path(__file__).parent.parent.parent / "src/openline/web/openline.js"
    assert script == source.read_text()
