"""The examples that docs/tutorial/ and docs/howto/ include from examples/ run as written."""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"
TIMEOUT = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_echo_client_gets_its_messages_back_from_the_echo_server() -> None:
    port = _free_port()
    uri = f"ws://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "echo_server.py"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        # The server prints this line once it listens: no sleep needed before dialling.
        assert server.stdout.readline().strip() == f"echo server on {uri} (Ctrl-C stops it)"
        client = subprocess.run(
            [sys.executable, str(EXAMPLES / "echo_client.py"), uri],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert client.returncode == 0, client.stderr
        text, binary, ping = client.stdout.splitlines()
        assert text == "hello"
        assert binary == repr(b"\x00\x01")
        assert ping.startswith("ping answered in ") and ping.endswith(" ms")
    finally:
        server.terminate()
        server.wait(TIMEOUT)
        if server.stdout is not None:
            server.stdout.close()


def test_sans_io_example_prints_the_whole_exchange() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "sans_io.py")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "server got 'hello'",
        "client got [TextMessage(data='HELLO')]",
        "server saw [Close(code=1000, reason='done')]",
        "client: CLOSED, server: CLOSED",
    ]
