"""The hub of the chat, and how it knows Django's users.

A WebSocket handshake to ``/ws`` carries the browser's cookies, Django's
session cookie among them. :func:`authenticate` loads that session the way
Django's ``AuthenticationMiddleware`` would (the session's user id, checked
against the user's session hash, so that logging out or changing the password
ends it) and refuses anyone else with 401. The ORM is synchronous:
``sync_to_async`` runs the lookup in Django's thread, off the event loop.
"""

from __future__ import annotations

import http.cookies
from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

from openline.hub import Credentials, Hub, Identity, SqliteEngine

#: The channel everyone talks in.
ROOM = "room:lobby"


def _session_key(credentials: Credentials) -> str | None:
    cookies = http.cookies.SimpleCookie()
    for header in credentials.request.headers.get_all("Cookie"):
        try:
            cookies.load(header)
        except http.cookies.CookieError:
            return None
    morsel = cookies.get(settings.SESSION_COOKIE_NAME)
    return morsel.value if morsel is not None else None


def _user_of(session_key: str) -> Any:
    """The active user whose session this is, or ``None``; blocking (the ORM)."""
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user_id = session.get(SESSION_KEY)
    if user_id is None or session.get(BACKEND_SESSION_KEY) not in settings.AUTHENTICATION_BACKENDS:
        return None
    model = get_user_model()
    user = model._default_manager.filter(pk=model._meta.pk.to_python(user_id)).first()
    if user is None or not user.is_active:
        return None
    if not constant_time_compare(session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()):
        return None  # logged out elsewhere, or the password changed since
    return user


async def authenticate(credentials: Credentials) -> Identity | None:
    """The hub's handshake hook: Django's logged-in user, or ``None`` (401)."""
    session_key = _session_key(credentials)
    if session_key is None:
        return None
    user = await sync_to_async(_user_of)(session_key)
    if user is None:
        return None
    return Identity(user.get_username(), {"name": user.get_full_name() or user.get_username()})


def authorize(identity: Identity, action: str, ch: str) -> bool:
    """Logged-in users may do anything, in the one room only."""
    return ch == ROOM


hub = Hub(SqliteEngine(str(settings.CHAT_HUB_DATA)), authenticate=authenticate, authorize=authorize)
