"""examples/django_chat under uvicorn, with the Python hub client: Django's users on the hub."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Iterator

import pytest

from .apps import (
    DJANGO_DIR,
    DJANGO_SERVERS,
    FASTAPI_DIR,
    SERVERS,
    AppProcess,
    Browser,
    django_app,
    login_django,
)
from .scenario import chat_across_a_restart, refused_status

USERS = {"ada": "a password of ada's", "grace": "a password of grace's"}


@pytest.fixture(params=DJANGO_SERVERS)
def app(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[AppProcess]:
    process = django_app(SERVERS[request.param], tmp_path, USERS)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def login(app: AppProcess, user: str) -> str:
    return login_django(app.url, user, USERS[user]).cookie_header()


async def test_django_users_chat_across_a_server_restart(app: AppProcess) -> None:
    ada, grace = await asyncio.gather(
        asyncio.to_thread(login, app, "ada"), asyncio.to_thread(login, app, "grace")
    )
    await chat_across_a_restart(app, talker=ada, listener=grace)


async def test_anonymous_and_logged_out_users_are_refused_with_401(app: AppProcess) -> None:
    assert await refused_status(app, None) == 401
    assert await refused_status(app, "sessionid=forged") == 401
    browser = await asyncio.to_thread(login_django, app.url, "ada", USERS["ada"])
    cookie = browser.cookie_header()
    csrf = browser.cookie("csrftoken")
    assert csrf is not None
    status, url, _ = await asyncio.to_thread(
        browser.post, "/logout/", {"csrfmiddlewaretoken": csrf}
    )
    assert (status, url) == (200, app.url + "/login/")
    # The cookie the browser had is worth nothing once the session is gone.
    assert await refused_status(app, cookie) == 401


def test_the_chat_page_needs_a_login(app: AppProcess) -> None:
    status, url, _ = Browser(app.url).get("/")
    assert (status, url) == (200, app.url + "/login/?next=/")


def test_the_chat_script_is_the_same_in_both_examples() -> None:
    # Each example is complete on its own, so each has its copy: they must not drift apart.
    fastapi = FASTAPI_DIR / "pages" / "chat.js"
    django = DJANGO_DIR / "chat" / "static" / "chat.js"
    assert django.read_text() == fastapi.read_text()
