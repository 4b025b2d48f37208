"""The chat example of the README and docs/protocol.md runs as written."""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys
import time

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"
TIMEOUT = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_two_chat_clients_talk_through_the_example_hub() -> None:
    port = _free_port()
    uri = f"ws://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "chat_server.py"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == f"chat hub on {uri} (Ctrl-C stops it)"
        listener = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "chat_client.py"), "grace", uri],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listener.stdin is not None and listener.stdout is not None
        time.sleep(1.0)  # let the listener subscribe
        talker = subprocess.run(
            [sys.executable, str(EXAMPLES / "chat_client.py"), "ada", uri],
            input="hello\nhow are you?\n",
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert talker.returncode == 0, talker.stderr
        lines = [listener.stdout.readline().strip() for _ in range(2)]
        assert lines == ["ada: hello", "ada: how are you?"]
        listener.stdin.close()
        assert listener.wait(TIMEOUT) == 0
        listener.stdout.close()
    finally:
        server.terminate()
        server.wait(TIMEOUT)
        if server.stdout is not None:
            server.stdout.close()
