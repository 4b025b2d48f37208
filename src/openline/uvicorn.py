"""openline as uvicorn's WebSocket engine.

Run any ASGI application's WebSockets on openline's core::

    uvicorn app:app --ws openline.uvicorn:WebSocketProtocol

uvicorn parses the upgrade request with its HTTP protocol, then hands the
transport to :class:`WebSocketProtocol`, which is an
:class:`openline.asyncio.ServerConnection`: the same connection class that
:func:`openline.serve` hands to handlers, with the same handshake checks,
framing, flow control, keepalive and closing handshake. This module only
translates between that connection and the ASGI ``websocket`` messages
(https://asgi.readthedocs.io/en/latest/specs/www.html).

uvicorn's settings apply as with its own engines: ``--ws-max-size``,
``--ws-max-queue``, ``--ws-ping-interval``, ``--ws-ping-timeout``,
``--ws-per-message-deflate``, ``--root-path``, and the ``server`` / ``date`` /
``--header`` response headers.

Every scope carries two extensions: ``websocket.http.response`` (deny the
upgrade with any HTTP response) and ``openline.connection``, whose ``claim()``
hands the open :class:`~openline.asyncio.ServerConnection` to the application
after ``websocket.accept``: from then on the application reads and writes it
directly (encode-once broadcast, slow-consumer accounting) instead of
exchanging ASGI messages. See ``docs/asgi.md``.

This is the only module of openline that imports uvicorn.
"""

from __future__ import annotations

import asyncio
import http
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast
from urllib.parse import unquote

from uvicorn.config import Config
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)
from uvicorn.server import ServerState

from .asyncio.config import DEFAULT_CLOSE_TIMEOUT, DEFAULT_WRITE_LIMIT, Settings
from .asyncio.server import Server, ServerConnection
from .exceptions import ConnectionClosed
from .protocol.connection import Side, State
from .protocol.extensions.deflate import ServerPerMessageDeflateFactory
from .protocol.frames import Close, CloseCode
from .protocol.handshake import Negotiated, ServerHandshake
from .protocol.http11 import Headers, Request, Response

__all__ = ["EXTENSION", "WebSocketProtocol"]

#: The scope extension through which an application claims the connection.
EXTENSION = "openline.connection"

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Message, Receive, Send], Awaitable[object]]

_LOGGER = "uvicorn.error"
_SPEC_VERSION = "2.4"

# One openline Server per uvicorn Config: the settings, the handshake and the
# bookkeeping sets every connection of that uvicorn server shares.
_SERVERS: weakref.WeakKeyDictionary[Config, Server] = weakref.WeakKeyDictionary()


async def _never_called(connection: ServerConnection) -> None:  # pragma: no cover
    raise AssertionError("the ASGI application runs instead of a handler")


def _server_for(config: Config) -> Server:
    """Build, once per uvicorn ``Config``, the openline server its connections share."""
    server = _SERVERS.get(config)
    if server is not None:
        return server
    settings = Settings(
        max_size=config.ws_max_size,
        max_queue=config.ws_max_queue,
        write_limit=DEFAULT_WRITE_LIMIT,
        ping_interval=config.ws_ping_interval or None,
        ping_timeout=config.ws_ping_timeout,
        close_timeout=DEFAULT_CLOSE_TIMEOUT,
        logger=None,
        default_logger=_LOGGER,
    )
    extensions = [ServerPerMessageDeflateFactory()] if config.ws_per_message_deflate else []
    # No Server header from openline: uvicorn's default headers carry its own
    # (--server-header / --no-server-header), as with its other engines.
    handshake = ServerHandshake(extensions=extensions, server_header=None)
    server = Server(
        _never_called,
        settings=settings,
        handshake=handshake,
        process_request=None,
        max_connections=None,
        # uvicorn's HTTP parser already accepted this head with its own limits.
        max_header_line=None,
        max_headers=None,
        # Nor is there a request left to wait for: uvicorn hands the connection
        # over once the head is complete. Accepting is up to the application.
        open_timeout=None,
    )
    _SERVERS[config] = server
    return server


class WebSocketProtocol(ServerConnection):
    """uvicorn's ``--ws`` protocol class, built on openline's :class:`ServerConnection`.

    uvicorn builds one per upgrade request, as
    ``WebSocketProtocol(config=..., server_state=..., app_state=...)``, calls
    :meth:`connection_made` with the transport and feeds it the request.

    Args:
        config: The uvicorn configuration (the application and the ``ws_*`` settings).
        server_state: uvicorn's shared state: this registers in its
            ``connections`` and ``tasks``, and reads its ``default_headers``.
        app_state: The lifespan state, copied into each scope.
        _loop: Unused: the running loop is taken (uvicorn's signature has it).
    """

    __slots__ = (
        "_accepted",
        "_app",
        "_app_close",
        "_app_state",
        "_asgi_version",
        "_claimed",
        "_connect_sent",
        "_denial",
        "_negotiated",
        "_root_path",
        "_server_state",
        "_shutting_down",
        "_upgrade",
        "scope",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        super().__init__(_server_for(config))
        self._app = cast(App, config.loaded_app)
        self._asgi_version = config.asgi_version
        self._root_path = config.root_path
        self._server_state = server_state
        self._app_state = app_state
        self.scope: Message = {}
        self._upgrade: Response | None = None  # the 101, until the application accepts
        self._negotiated: Negotiated | None = None
        self._connect_sent = False
        self._accepted = False
        self._claimed = False
        self._denial: tuple[int, list[tuple[bytes, bytes]], list[bytes]] | None = None
        self._app_close: tuple[int, str] | None = None  # what the application sent
        self._shutting_down = False

    # --- uvicorn's protocol contract ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Take the transport and register with uvicorn's server state."""
        super().connection_made(transport)
        # uvicorn types the set with its own protocol classes; any object with
        # shutdown() belongs there.
        cast("set[object]", self._server_state.connections).add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Wake the application's waiters and unregister from uvicorn's server state."""
        super().connection_lost(exc)
        self._server_state.connections.discard(self)

    def shutdown(self) -> None:
        """uvicorn is stopping: close with 1012, or answer 500 if not accepted yet."""
        self._shutting_down = True
        if self._lost:
            return
        if self._core is None:
            if self._denial is None:
                self._write_response(self._plain(500, "Internal Server Error"))
            self._transport.close()
            return
        self._shutdown(CloseCode.SERVICE_RESTART, "")

    # --- opening handshake: the request arrived ----------------------------------------

    def _start(self, request: Request) -> None:
        """Check the upgrade request, then start the ASGI application on it."""
        result = self._server._handshake.process_request(request)
        if result.negotiated is None:
            self._write_response(result.response)
            self._transport.close()
            return
        self._upgrade = result.response
        self._negotiated = result.negotiated
        self.scope = self._build_scope(request)
        task = self._loop.create_task(self._run_asgi())
        self._task = task
        tasks = self._server_state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _build_scope(self, request: Request) -> Message:
        path, _, query = request.path.partition("?")
        transport = self._transport
        subprotocols = [
            token.strip()
            for value in request.headers.get_all("Sec-WebSocket-Protocol")
            for token in value.split(",")
            if token.strip()
        ]
        root_path = self._root_path
        return {
            "type": "websocket",
            "asgi": {"version": self._asgi_version, "spec_version": _SPEC_VERSION},
            "http_version": "1.1",
            "scheme": "wss" if is_ssl(transport) else "ws",
            "server": get_local_addr(transport),
            "client": get_remote_addr(transport),
            "root_path": root_path,
            "path": root_path + unquote(path),
            "raw_path": root_path.encode("ascii") + path.encode("ascii"),
            "query_string": query.encode("ascii"),
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in request.headers.raw_items()
            ],
            "subprotocols": subprotocols,
            "state": self._app_state.copy(),
            "extensions": {"websocket.http.response": {}, EXTENSION: {"claim": self._claim}},
        }

    # --- the application's task --------------------------------------------------------

    async def _run_asgi(self) -> None:
        logger = self._settings.logger
        try:
            result = await self._app(self.scope, self._receive, self._send)
        except ClientDisconnected:
            failed = False
        except asyncio.CancelledError:
            # uvicorn cancels what outlives its graceful shutdown: drop the connection.
            if not self._lost:
                self._transport.abort()
            raise
        except Exception:
            logger.exception("Exception in ASGI application\n")
            failed = True
        else:
            failed = False
            if result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
            elif not self._accepted and self._denial is None and not self._lost:
                logger.error("ASGI callable returned without completing handshake.")
                failed = True
        self._app_done(failed)

    def _app_done(self, failed: bool) -> None:
        """Finish the connection the application left: 500 or 1011 if it failed, else 1000."""
        if self._lost or self._transport.is_closing():
            return
        if self._core is None:
            if self._denial is None or failed:
                self._write_response(self._plain(500, "Internal Server Error"))
            self._transport.close()
            return
        core = self._core
        if core.close_pending:
            self._release_close()  # answer the peer's close now, not after the grace
        else:
            self._close_nowait(CloseCode.INTERNAL_ERROR if failed else CloseCode.NORMAL_CLOSURE)

    async def _receive(self) -> Message:
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        if self._claimed:
            raise RuntimeError("the connection was claimed: read it with recv(), not receive()")
        if self._core is None:
            # Denied, or the client left before accept: nothing more will come.
            if not self._lost:
                await self.wait_closed()
            return {"type": "websocket.disconnect", "code": CloseCode.ABNORMAL_CLOSURE}
        try:
            data = await self.recv()
        except ConnectionClosed:
            return self._disconnect()
        if isinstance(data, str):
            return {"type": "websocket.receive", "text": data}
        return {"type": "websocket.receive", "bytes": data}

    def _disconnect(self) -> Message:
        if self._shutting_down:
            return {"type": "websocket.disconnect", "code": CloseCode.SERVICE_RESTART, "reason": ""}
        if self._app_close is not None:
            code, reason = self._app_close
        else:
            code, reason = self.close_code or 1005, self.close_reason or ""
        return {"type": "websocket.disconnect", "code": code, "reason": reason}

    async def _send(self, message: Message) -> None:
        if self._claimed:
            raise RuntimeError(
                f"the connection was claimed: cannot send ASGI message {message['type']!r}"
            )
        kind = message["type"]
        if self._denial is not None:
            self._send_denial_body(kind, message)
        elif not self._accepted:
            self._send_opening(kind, message)
        elif kind == "websocket.send":
            await self._send_data(message)
        elif kind == "websocket.close":
            self._send_close(message)
        else:
            raise RuntimeError(
                f"Expected ASGI message 'websocket.send' or 'websocket.close', but got {kind!r}."
            )

    # --- ASGI messages before accept ---------------------------------------------------

    def _send_opening(self, kind: str, message: Message) -> None:
        if self._lost:
            raise ClientDisconnected
        if kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            self._log_access("403")
            self._denial = (403, [], [])
            self._write_response(self._plain(403, ""))
            self._transport.close()
        elif kind == "websocket.http.response.start":
            status = message["status"]
            if not 100 <= status <= 599:
                raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
            self._log_access(str(status))
            self._denial = (status, list(message.get("headers", [])), [])
        else:
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' "
                f"or 'websocket.http.response.start' but got {kind!r}."
            )

    def _accept(self, message: Message) -> None:
        """Send the 101 with the application's subprotocol and headers, and open."""
        upgrade, negotiated = self._upgrade, self._negotiated
        assert upgrade is not None and negotiated is not None  # set by _start
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and subprotocol not in self.scope["subprotocols"]:
            raise RuntimeError(f"subprotocol {subprotocol!r} was not offered by the client")
        headers = upgrade.headers.copy()
        if subprotocol is not None:
            headers["Sec-WebSocket-Protocol"] = subprotocol
        self._add_headers(
            headers, [*self._server_state.default_headers, *message.get("headers", [])]
        )
        head = Response(101, upgrade.reason, headers).serialize()
        self._upgrade = self._negotiated = None
        self._accepted = True
        self._log_access("[accepted]")
        self._response_head = head
        self._transport.write(head)
        server = self._server
        server._protocols.discard(self)
        server.connections.add(self)
        self._transport.resume_reading()  # early data may have paused it
        leftover = bytes(self._buffer or b"")
        self._open(Side.SERVER, Negotiated(subprotocol, negotiated.extensions), leftover)

    def _send_denial_body(self, kind: str, message: Message) -> None:
        denial = self._denial
        assert denial is not None
        status, headers, body = denial
        if kind != "websocket.http.response.body":
            raise RuntimeError(f"Unexpected ASGI message {kind!r} after denying the upgrade.")
        if self._lost:
            raise ClientDisconnected
        if self._transport.is_closing():
            raise RuntimeError(f"Unexpected ASGI message {kind!r}: the response is complete.")
        body.append(bytes(message.get("body", b"")))
        if message.get("more_body", False):
            return
        fields = Headers()
        self._add_headers(fields, [*self._server_state.default_headers, *headers])
        content = b"".join(body)
        if "Content-Type" not in fields:
            fields["Content-Type"] = "text/plain; charset=utf-8"
        if "Content-Length" not in fields:
            fields["Content-Length"] = str(len(content))
        if "Connection" not in fields:
            fields["Connection"] = "close"
        self._write_response(Response(status, _phrase(status), fields, content))
        self._transport.close()

    # --- ASGI messages after accept ----------------------------------------------------

    async def _send_data(self, message: Message) -> None:
        if self._app_close is not None:
            raise RuntimeError("Unexpected ASGI message 'websocket.send' after 'websocket.close'.")
        data = message.get("bytes")
        if data is None:
            data = message.get("text")
            if data is None:
                raise RuntimeError("'websocket.send' needs 'bytes' or 'text'")
        try:
            await self.send(data)
        except ConnectionClosed as exc:
            raise ClientDisconnected from exc

    def _send_close(self, message: Message) -> None:
        if self._app_close is not None:
            raise RuntimeError("Unexpected ASGI message 'websocket.close' after 'websocket.close'.")
        code = message.get("code") or CloseCode.NORMAL_CLOSURE
        reason = message.get("reason") or ""
        Close(code, reason).check()
        self._app_close = (code, reason)
        core = self._core
        if core is None or self._lost:
            return
        if core.state is State.OPEN:
            core.send_close(code, reason)
            self._flush(core)
        elif core.close_pending:
            # The peer closed first and its close awaits our answer, held for the
            # messages before it: the application is done with them.
            self._release_close()

    # --- the openline.connection extension ---------------------------------------------

    def _claim(self) -> ServerConnection:
        """Hand the open connection to the application (see ``docs/asgi.md``)."""
        if not self._accepted:
            raise RuntimeError("claim() must follow 'websocket.accept'")
        if self._claimed:
            raise RuntimeError("the connection was already claimed")
        if self._app_close is not None:
            raise RuntimeError("claim() after 'websocket.close'")
        self._claimed = True
        return self

    # --- helpers -----------------------------------------------------------------------

    def _plain(self, status: int, text: str) -> Response:
        fields = Headers()
        self._add_headers(fields, self._server_state.default_headers)
        return Response.plain(status, text, fields)

    def _write_response(self, response: Response) -> None:
        head = response.serialize()
        self._response_head = head
        self._transport.write(head)

    @staticmethod
    def _add_headers(fields: Headers, headers: list[tuple[bytes, bytes]]) -> None:
        """Add ASGI headers; ``Headers`` refuses control characters (no response splitting)."""
        for name, value in headers:
            try:
                fields.add(bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
            except ValueError as exc:
                raise RuntimeError(f"invalid response header {bytes(name)!r}: {exc}") from None

    def _log_access(self, outcome: str) -> None:
        scope = cast(Any, self.scope)  # uvicorn's TypedDict of the same keys
        self._settings.logger.info(
            '%s - "WebSocket %s" %s',
            get_client_addr(scope),
            get_path_with_query_string(scope),
            outcome,
        )


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
