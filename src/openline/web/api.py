"""The HTTP server API: ``POST /api/<method>`` with a JSON body, on the hub's port.

Every method of the hub's server API (docs/server-api.md) answers at
``/api/<method>``: ``publish``, ``presence``, ``history``, ``channels``,
``disconnect``, ``subscribe`` and ``unsubscribe``. A request carries
``Authorization: apikey <key>`` and a JSON object; the answer is a JSON object:

* **200** with the result;
* **400** ``{"error": ...}`` naming the problem (not JSON, not an object, a
  missing, unknown or invalid field);
* **401** without the right key (compared in constant time);
* **405** for a method other than ``POST``;
* **413** is never sent: a body over the server's limit (1 MiB by default,
  ``MAX_REQUEST_BODY``) is refused by the HTTP parser with 431 before routing;
* **503** with ``Retry-After`` while the engine can't reach its store.

Without a key configured, :class:`~openline.web.app.App` has no
:class:`ServerAPIRoutes` and these paths answer 404.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..exceptions import BackendUnavailable
from ..hub import Hub
from ..hub.backends.base import HistoryResult, PresenceSnapshot
from ..protocol.http11 import Request, Response
from .static import http_response, json_response

__all__ = ["API_PREFIX", "METHODS", "ServerAPIRoutes"]

#: Where the API's methods live: ``/api/<method>``.
API_PREFIX = "/api/"

_Handler = Callable[[Hub, Mapping[str, Any]], Awaitable[dict[str, Any]]]


class BadRequest(ValueError):
    """A request the API refuses with 400; the message names the problem."""


class ServerAPIRoutes:
    """Answers ``POST /api/<method>`` for a hub, for callers that hold ``key``.

    Args:
        hub: The hub whose server API is served.
        key: The API key callers send as ``Authorization: apikey <key>``.

    Raises:
        ValueError: ``key`` is empty or isn't one line of printable ASCII.
    """

    def __init__(self, hub: Hub, key: str) -> None:
        if not key or not key.isascii() or not key.isprintable() or key != key.strip():
            raise ValueError("api key must be non-empty printable ASCII without spaces around it")
        self.hub = hub
        self._expected = b"apikey " + key.encode()

    def handles(self, path: str) -> bool:
        """Tell whether ``path`` is one of the API's methods."""
        return path.startswith(API_PREFIX) and path[len(API_PREFIX) :] in METHODS

    async def respond(self, request: Request, path: str) -> Response:
        """Authorize, parse and run one API call."""
        if request.method != "POST":
            headers = [("Allow", "POST"), ("Content-Type", "application/json")]
            body = b'{"error":"method not allowed: use POST with a JSON body"}'
            return http_response(405, body, headers)
        given = (request.headers.get("Authorization") or "").encode("latin-1")
        if not hmac.compare_digest(given, self._expected):
            return _unauthorized()
        handler = METHODS[path[len(API_PREFIX) :]]
        try:
            arguments = _parse_body(request.body)
            result = await handler(self.hub, arguments)
        except ValueError as exc:  # BadRequest, or the hub refusing an argument
            return json_response(400, {"error": str(exc)})
        except BackendUnavailable:
            response = json_response(503, {"error": "the engine is unavailable: try again later"})
            response.headers["Retry-After"] = "1"
            return response
        return json_response(200, result)


# --- the methods ------------------------------------------------------------------------


async def _publish(hub: Hub, args: Mapping[str, Any]) -> dict[str, Any]:
    _check_fields(args, required=("ch", "data"), optional=("id",))
    ch, msg_id = _text(args, "ch"), args.get("id")
    if msg_id is not None:
        msg_id = _text(args, "id")
    result = await hub.publish(ch, args["data"], id=msg_id)
    return {"epoch": result.epoch, "offset": result.offset, "duplicate": result.duplicate}


async def _presence(hub: Hub, args: Mapping[str, Any]) -> dict[str, Any]:
    _check_fields(args, required=("ch",))
    return _presence_json(await hub.presence(_text(args, "ch")))


async def _history(hub: Hub, args: Mapping[str, Any]) -> dict[str, Any]:
    _check_fields(args, required=("ch",), optional=("since", "epoch", "limit"))
    kwargs: dict[str, Any] = {}
    for name in ("since", "limit"):
        if args.get(name) is not None:
            kwargs[name] = _int(args, name)
    if args.get("epoch") is not None:
        kwargs["epoch"] = _text(args, "epoch")
    return _history_json(await hub.history(_text(args, "ch"), **kwargs))


async def _channels(hub: Hub, args: Mapping[str, Any]) -> dict[str, Any]:
    _check_fields(args)
    return {"channels": await hub.channels()}


async def _disconnect(hub: Hub, args: Mapping[str, Any]) -> dict[str, Any]:
    _check_fields(args, required=("user",), optional=("code", "reason"))
    kwargs: dict[str, Any] = {}
    if args.get("code") is not None:
        kwargs["code"] = _int(args, "code")
    if args.get("reason") is not None:
        reason = args["reason"]
        if not isinstance(reason, str):
            raise BadRequest("reason must be a string")
        kwargs["reason"] = reason
    await hub.disconnect(_text(args, "user"), **kwargs)
    return {}


async def _subscribe(hub: Hub, args: Mapping[str, Any]) -> dict[str, Any]:
    _check_fields(args, required=("user", "ch"))
    await hub.subscribe(_text(args, "user"), _text(args, "ch"))
    return {}


async def _unsubscribe(hub: Hub, args: Mapping[str, Any]) -> dict[str, Any]:
    _check_fields(args, required=("user", "ch"))
    await hub.unsubscribe(_text(args, "user"), _text(args, "ch"))
    return {}


#: The API's methods, by name.
METHODS: dict[str, _Handler] = {
    "publish": _publish,
    "presence": _presence,
    "history": _history,
    "channels": _channels,
    "disconnect": _disconnect,
    "subscribe": _subscribe,
    "unsubscribe": _unsubscribe,
}


# --- private ----------------------------------------------------------------------------


def _unauthorized() -> Response:
    body = b'{"error":"missing or wrong API key: send Authorization: apikey <key>"}'
    headers = [("Content-Type", "application/json"), ("WWW-Authenticate", "apikey")]
    return http_response(401, body, headers)


def _parse_body(body: bytes) -> Mapping[str, Any]:
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("the body isn't JSON") from None
    if not isinstance(value, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(value).__name__}")
    return value


def _check_fields(
    args: Mapping[str, Any], *, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()
) -> None:
    missing = [name for name in required if name not in args]
    if missing:
        raise BadRequest(f"missing field: {', '.join(missing)}")
    unknown = sorted(set(args) - set(required) - set(optional))
    if unknown:
        shown = ", ".join(repr(name)[:40] for name in unknown[:5])
        raise BadRequest(f"unknown field: {shown}")


def _text(args: Mapping[str, Any], name: str) -> str:
    value = args[name]
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


def _int(args: Mapping[str, Any], name: str) -> int:
    value = args[name]
    if type(value) is not int:
        raise BadRequest(f"{name} must be an integer")
    return value


def _presence_json(snapshot: PresenceSnapshot) -> dict[str, Any]:
    users = snapshot.users
    return {
        "count": snapshot.count,
        "users": None
        if users is None
        else [
            {
                "user": user,
                "info": json.loads(entry.info),
                "clients": entry.clients,
                "state": None if entry.state is None else json.loads(entry.state),
            }
            for user, entry in users.items()
        ],
    }


def _history_json(result: HistoryResult) -> dict[str, Any]:
    messages = []
    for message in result.messages:
        item: dict[str, Any] = {"offset": message.offset, "data": json.loads(message.data)}
        meta = message.meta or {}
        for key in ("user", "id"):
            if key in meta:
                item[key] = meta[key]
        messages.append(item)
    return {
        "epoch": result.epoch,
        "offset": result.last_offset,
        "first_offset": result.first_offset,
        "recovered": result.recovered,
        "messages": messages,
    }
