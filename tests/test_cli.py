"""The ``openline`` command line, run as a real process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

import pytest

import openline
from openline.protocol.http11 import Response

CLI = [sys.executable, "-m", "openline"]
TIMEOUT = 30


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, text=True, timeout=TIMEOUT
    )


async def run_cli_async(*args: str, stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--port", "abc"], "port must be a number, got 'abc'"),
        (["serve", "--port", "70000"], "port must be between 0 and 65535, got 70000"),
        (["serve", "--max-size", "lots"], "expected a size like 1048576, 64KiB, 16MiB or 'off'"),
        (["serve", "--ping-interval", "-1"], "expected a positive number of seconds, got -1"),
        (["serve", "--keyfile", "k.pem"], "--keyfile needs --certfile"),
        (["serve", "--certfile", "/nonexistent.pem"], "cannot load certificate '/nonexistent.pem'"),
        (["connect"], "the following arguments are required: uri"),
        (["connect", "http://example.com/"], "URI must start with ws:// or wss://"),
        (
            ["connect", "ws://127.0.0.1/", "--header", "novalue"],
            "header must look like 'Name: value'",
        ),
        (["connect", "ws://127.0.0.1/", "--cafile", "ca.pem"], "only apply to wss:// URIs"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_print_one_line(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"openline {openline.__version__}"


async def _echo(ws: openline.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def _uri(server: openline.Server) -> str:
    port = server.sockets[0].getsockname()[1]
    return f"ws://127.0.0.1:{port}/"


async def test_connect_in_a_pipe_sends_lines_and_prints_messages() -> None:
    async with openline.serve(_echo, "127.0.0.1", 0) as server:
        code, out, err = await run_cli_async("connect", _uri(server), stdin="hello\nwörld\n")
    assert code == 0, err
    assert out == "hello\nwörld\n"
    assert "connected to" in err and "connection closed: 1000" in err


async def test_connect_quiet_prints_no_status() -> None:
    async with openline.serve(_echo, "127.0.0.1", 0) as server:
        code, out, err = await run_cli_async("connect", "-q", _uri(server), stdin="x\n")
    assert (code, out, err) == (0, "x\n", "")


async def test_connect_prints_binary_as_hex() -> None:
    async def binary(ws: openline.ServerConnection) -> None:
        await ws.send(b"\x00\xff")
        await ws.recv()

    async with openline.serve(binary, "127.0.0.1", 0) as server:
        code, out, _ = await run_cli_async("connect", "-q", _uri(server), stdin="bye\n")
    assert code == 0
    assert out == "[binary, 2 bytes] 00ff\n"


async def test_connect_sends_headers_and_subprotocols() -> None:
    seen: dict[str, str | None] = {}

    async def handler(ws: openline.ServerConnection) -> None:
        seen["token"] = ws.request.headers.get("X-Token")
        seen["subprotocol"] = ws.subprotocol
        await ws.close()

    async with openline.serve(handler, "127.0.0.1", 0, subprotocols=["chat"]) as server:
        code, _, err = await run_cli_async(
            "connect", _uri(server), "-H", "X-Token: s3cret", "-s", "chat", stdin=""
        )
    assert code == 0, err
    assert seen == {"token": "s3cret", "subprotocol": "chat"}
    assert "subprotocol chat" in err


async def test_connect_exit_status_3_when_closed_with_an_error_code() -> None:
    async def closer(ws: openline.ServerConnection) -> None:
        await ws.close(4000, "go away")

    async with openline.serve(closer, "127.0.0.1", 0) as server:
        code, _, err = await run_cli_async("connect", _uri(server), stdin="")
    assert code == 3
    assert "connection closed: 4000 go away" in err


async def test_connect_exit_status_1_when_refused_by_the_server() -> None:
    def forbid(connection: object, request: object) -> Response:
        return Response.plain(403, "no")

    async with openline.serve(_echo, "127.0.0.1", 0, process_request=forbid) as server:
        code, out, err = await run_cli_async("connect", _uri(server), stdin="")
    assert code == 1
    assert out == ""
    assert err.strip() == "openline connect: server rejected the websocket connection: HTTP 403"


def test_connect_exit_status_1_when_nothing_listens() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_cli("connect", f"ws://127.0.0.1:{port}/")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot connect to" in result.stderr


async def test_serve_echoes_and_shuts_down_gracefully_on_sigint() -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        "0",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        async with openline.connect(match.group(0)) as ws:
            await ws.send("ping?")
            assert await ws.recv() == "ping?"
            proc.send_signal(signal.SIGINT)
            with pytest.raises(openline.exceptions.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert ws.close_code == 1001
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "shutting down" in (await proc.stderr.read()).decode()


def test_python_dash_m_runs_the_cli() -> None:
    env = {**os.environ}
    result = subprocess.run(
        [sys.executable, "-m", "openline", "--help"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )
    assert result.returncode == 0
    assert "serve" in result.stdout and "connect" in result.stdout
