"""A FastAPI chat: users log in with a cookie session and talk through the openline hub.

Run it (from this directory)::

    uvicorn app:app                         # or: hypercorn app:app

and open http://127.0.0.1:8000/. The users and their passwords are in the
README. Settings come from the environment:

``CHAT_SECRET``
    Signs the session cookie. Without it a fixed development secret is used:
    set one in production.
``CHAT_DATA``
    The hub's sqlite file (``chat.db`` here by default): the chat's history
    survives a restart, and the pages resume from it without losing a message.

How the pieces meet: Starlette's ``SessionMiddleware`` keeps the logged-in user
in a signed cookie. It wraps the whole app, the hub's route included, so a
WebSocket handshake to the hub at ``/ws`` carries a decoded ``scope["session"]`` too; the
hub's ``authenticate`` hook reads it from ``credentials.scope`` and turns it
into an :class:`openline.hub.Identity`, or refuses the connection (401).
"""

from __future__ import annotations

import importlib.resources
import os
import pathlib
import urllib.parse

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import WebSocketRoute
from users import USERS, check_password, display_name

from openline.hub import Credentials, Hub, Identity, SqliteEngine

HERE = pathlib.Path(__file__).parent
PAGES = HERE / "pages"
#: The channel everyone talks in.
ROOM = "room:lobby"
#: A development secret; CHAT_SECRET replaces it (the README says to).
DEV_SECRET = "openline-example-not-a-secret"
#: Session cookies live a day.
SESSION_SECONDS = 24 * 3600


async def authenticate(credentials: Credentials) -> Identity | None:
    """Map the session cookie of the handshake to a hub user; ``None`` refuses with 401."""
    scope = credentials.scope
    if scope is None:  # not served through ASGI: no session to read
        return None
    user = scope.get("session", {}).get("user")
    if user not in USERS:  # no login, or a user removed since
        return None
    return Identity(user, {"name": display_name(user)})


def authorize(identity: Identity, action: str, ch: str) -> bool:
    """Logged-in users may do anything, in the one room only."""
    return ch == ROOM


hub = Hub(
    SqliteEngine(os.environ.get("CHAT_DATA", str(HERE / "chat.db"))),
    authenticate=authenticate,
    authorize=authorize,
)
app = FastAPI(lifespan=hub.lifespan, docs_url=None, redoc_url=None, openapi_url=None)
app.add_middleware(
    SessionMiddleware,
    secret_key=os.environ.get("CHAT_SECRET", DEV_SECRET),
    session_cookie="chat_session",
    max_age=SESSION_SECONDS,
    same_site="lax",
)
# A route, not app.mount("/ws", ...): a mount matches "/ws/" and below, but not "/ws" itself.
app.router.routes.append(WebSocketRoute("/ws", hub.asgi()))


def _logged_in(request: Request) -> str | None:
    user = request.session.get("user")
    return user if isinstance(user, str) else None


@app.get("/")
async def index(request: Request) -> RedirectResponse:
    return RedirectResponse("/chat" if _logged_in(request) else "/login", status_code=303)


@app.get("/login")
async def login_form() -> FileResponse:
    return FileResponse(PAGES / "login.html")


@app.post("/login", response_model=None)
async def login(request: Request) -> Response:
    # The form is parsed by hand: FastAPI's Form() needs python-multipart.
    fields = urllib.parse.parse_qs((await request.body()).decode())
    user = fields.get("username", [""])[0].strip().lower()
    password = fields.get("password", [""])[0]
    if not await run_in_threadpool(check_password, user, password):
        page = (PAGES / "login.html").read_text()
        error = '<p id="error" role="alert">Wrong name or password.</p>'
        return HTMLResponse(page.replace("<!-- error -->", error), status_code=401)
    request.session.clear()
    request.session["user"] = user
    return RedirectResponse("/chat", status_code=303)


@app.post("/logout")
async def logout(request: Request) -> RedirectResponse:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@app.get("/chat", response_model=None)
async def chat(request: Request) -> Response:
    if not _logged_in(request):
        return RedirectResponse("/login", status_code=303)
    return FileResponse(PAGES / "chat.html")


@app.get("/chat.js")
async def chat_script() -> FileResponse:
    return FileResponse(PAGES / "chat.js", media_type="text/javascript")


@app.get("/openline.js")
async def openline_js() -> Response:
    """The browser client, served from the installed package: it always matches the hub."""
    source = importlib.resources.files("openline.web").joinpath("openline.js").read_bytes()
    return Response(source, media_type="text/javascript")
