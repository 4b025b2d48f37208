"""Small ASGI applications the uvicorn tests serve, written against the bare ASGI spec."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def echo(scope: Message, receive: Receive, send: Send) -> None:
    """Accept, then echo every message until the client disconnects."""
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


class Recorder:
    """An app whose behaviour a test picks per path, recording what it saw."""

    def __init__(self) -> None:
        self.scopes: list[Message] = []
        self.disconnects: list[Message] = []
        self.errors: list[BaseException] = []
        self.done = asyncio.Event()
        self.accepted = asyncio.Event()
        self.started = asyncio.Event()
        self.refused: list[type[BaseException]] = []

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        self.scopes.append(scope)
        self.started.set()
        try:
            await getattr(self, "route_" + scope["path"].rsplit("/", 1)[-1])(scope, receive, send)
        except Exception as exc:
            self.errors.append(exc)
            raise
        finally:
            self.done.set()

    async def _wait_disconnect(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.disconnects.append(message)
                return

    async def route_subprotocol(self, scope: Message, receive: Receive, send: Send) -> None:
        await receive()
        offered = scope["subprotocols"]
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": offered[-1] if offered else None,
                "headers": [(b"x-answer", b"42")],
            }
        )
        await self._wait_disconnect(receive)

    async def route_reject(self, scope: Message, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.close"})

    async def route_deny(self, scope: Message, receive: Receive, send: Send) -> None:
        await receive()
        headers = [(b"content-type", b"application/json"), (b"x-reason", b"token")]
        await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
        body = "websocket.http.response.body"
        await send({"type": body, "body": b'{"error":', "more_body": True})
        await send({"type": body, "body": b'"expired"}'})

    async def route_close(self, scope: Message, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "bye now"})
        await self._wait_disconnect(receive)

    async def route_wait(self, scope: Message, receive: Receive, send: Send) -> None:
        """Accept and wait for the client (or the server) to close."""
        await receive()
        await send({"type": "websocket.accept"})
        self.accepted.set()
        await self._wait_disconnect(receive)

    async def route_raise_before(self, scope: Message, receive: Receive, send: Send) -> None:
        await receive()
        raise ValueError("before accept")

    async def route_raise_after(self, scope: Message, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise ValueError("after accept")

    async def route_return_before(self, scope: Message, receive: Receive, send: Send) -> None:
        await receive()

    async def route_return_after(self, scope: Message, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "last words"})

    async def route_claim(self, scope: Message, receive: Receive, send: Send) -> None:
        """Claim the connection and echo on openline's ServerConnection directly."""
        claim = scope["extensions"]["openline.connection"]["claim"]
        await receive()
        with _raises(RuntimeError, "must follow 'websocket.accept'"):
            claim()
        await send({"type": "websocket.accept", "subprotocol": "chat.v1"})
        ws = claim()
        with _raises(RuntimeError, "already claimed"):
            claim()
        with _raises(RuntimeError, "claimed"):
            await send({"type": "websocket.send", "text": "nope"})
        with _raises(RuntimeError, "claimed"):
            await receive()
        assert ws.subprotocol == "chat.v1"
        assert ws.request is not None and ws.request.path == "/claim?x=1"
        async for message in ws:
            await ws.send(message)
        self.disconnects.append({"code": ws.close_code, "reason": ws.close_reason})

    async def route_misuse(self, scope: Message, receive: Receive, send: Send) -> None:
        """Every misuse of the ASGI messages raises RuntimeError and changes nothing."""
        await receive()
        with _raises(RuntimeError, "Expected ASGI message 'websocket.accept'"):
            await send({"type": "websocket.send", "text": "too early"})
        with _raises(RuntimeError, "was not offered"):
            await send({"type": "websocket.accept", "subprotocol": "unknown"})
        with _raises(RuntimeError, "invalid response header"):
            await send({"type": "websocket.accept", "headers": [(b"x-a", b"1\r\nx-b: 2")]})
        await send({"type": "websocket.accept"})
        with _raises(RuntimeError, "needs 'bytes' or 'text'"):
            await send({"type": "websocket.send"})
        with _raises(RuntimeError, "Expected ASGI message 'websocket.send'"):
            await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "still fine"})
        await send({"type": "websocket.close", "code": 1000})
        with _raises(RuntimeError, "after 'websocket.close'"):
            await send({"type": "websocket.send", "text": "too late"})
        with _raises(RuntimeError, "after 'websocket.close'"):
            await send({"type": "websocket.close"})
        claim = scope["extensions"]["openline.connection"]["claim"]
        with _raises(RuntimeError, "after 'websocket.close'"):
            claim()
        await self._wait_disconnect(receive)

    async def route_deny_misuse(self, scope: Message, receive: Receive, send: Send) -> None:
        await receive()
        with _raises(RuntimeError, "Invalid HTTP status code"):
            await send({"type": "websocket.http.response.start", "status": 99})
        await send({"type": "websocket.http.response.start", "status": 418})
        with _raises(RuntimeError, "after denying the upgrade"):
            await send({"type": "websocket.accept"})
        await send({"type": "websocket.http.response.body", "body": b"short and stout"})
        with _raises(RuntimeError, "the response is complete"):
            await send({"type": "websocket.http.response.body", "body": b"more"})

    async def route_hold(self, scope: Message, receive: Receive, send: Send) -> None:
        """Wait before accepting until the client or the server gives up, then try."""
        await receive()
        self.disconnects.append(await receive())
        try:
            await send({"type": "websocket.accept"})
        except OSError as exc:
            self.refused.append(type(exc))

    async def route_send_after_disconnect(
        self, scope: Message, receive: Receive, send: Send
    ) -> None:
        """Send after the client left: the spec's OSError, which the server swallows."""
        await receive()
        await send({"type": "websocket.accept"})
        await self._wait_disconnect(receive)
        try:
            await send({"type": "websocket.send", "text": "anyone?"})
        except OSError as exc:
            self.refused.append(type(exc))
            raise


class _raises:
    """``pytest.raises`` for code running inside the server's task."""

    def __init__(self, kind: type[Exception], match: str) -> None:
        self.kind = kind
        self.match = match

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        if kind is None:
            raise AssertionError(f"{self.kind.__name__} not raised")
        # Swallow only the expected exception; anything else propagates.
        return issubclass(kind, self.kind) and self.match in str(exc)
