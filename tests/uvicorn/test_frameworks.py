"""Real applications on the engine: a FastAPI websocket route, and the ``uvicorn`` command."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from openline.asyncio import connect
from openline.exceptions import ConnectionClosed, InvalidStatus

from .conftest import TIMEOUT, run_uvicorn

pytestmark = pytest.mark.interop


def build_fastapi_app(disconnects: list[int]) -> FastAPI:
    app = FastAPI()

    @app.websocket("/rooms/{room}")
    async def room(websocket: WebSocket, room: str) -> None:
        if websocket.query_params.get("token") != "good":
            await websocket.close(code=1008)
            return
        await websocket.accept(subprotocol="chat")
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_json({"room": room, "text": text})
        except WebSocketDisconnect as exc:
            disconnects.append(exc.code)

    return app


async def test_fastapi_websocket_route_runs_on_the_engine() -> None:
    disconnects: list[int] = []
    app = build_fastapi_app(disconnects)
    async with run_uvicorn(app) as running:
        url = running.url + "/rooms/lobby?token=good"
        async with connect(url, subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            await ws.send("hi")
            assert await ws.recv() == '{"room":"lobby","text":"hi"}'
        with pytest.raises(InvalidStatus) as info:
            await connect(running.url + "/rooms/lobby?token=bad")
        assert info.value.status == 403
    assert disconnects == [1000]


APP = textwrap.dedent(
    """
    async def app(scope, receive, send):
        assert scope["type"] == "websocket"
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "ready"})
        message = await receive()
        await send({"type": "websocket.send", "text": "app saw %d" % message["code"]})
    """
)


async def test_uvicorn_command_closes_with_1012_on_ctrl_c(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    # A listening socket handed over with --fd: no free-port race, and a client may
    # connect at once (the kernel queues it until uvicorn accepts).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "app:app",
        "--ws",
        "openline.uvicorn:WebSocketProtocol",
        "--fd",
        str(listener.fileno()),
        "--lifespan",
        "off",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        pass_fds=[listener.fileno()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    listener.close()
    try:
        async with connect(f"ws://127.0.0.1:{port}/", open_timeout=3 * TIMEOUT) as ws:
            # "ready" comes from the app: uvicorn serves, and its signal handlers are set.
            assert await ws.recv() == "ready"
            process.send_signal(signal.SIGINT)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1012
        assert await asyncio.wait_for(asyncio.to_thread(process.wait), TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
