"""An ASGI echo application under uvicorn with openline's engine, for Autobahn.

    python tests/autobahn/uvicorn_echo.py PORT

Every message goes through the ASGI messages (``websocket.receive`` and
``websocket.send``), not through the ``openline.connection`` claim: this is the
translation that the conformance run checks. Limits follow the openline server
run: 32 MiB messages, no keepalive pings; permessage-deflate is on (uvicorn's
default), so sections 12-13 (``make autobahn-all``) exercise it.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Message = MutableMapping[str, Any]


async def echo(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def main() -> None:
    uvicorn.run(
        echo,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        ws="openline.uvicorn:WebSocketProtocol",
        ws_max_size=32 * 1024 * 1024,
        ws_ping_interval=None,
        lifespan="off",
        log_level="warning",
    )


if __name__ == "__main__":
    main()
