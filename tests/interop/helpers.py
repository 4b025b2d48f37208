"""Shared data and peer drivers for the interop tests.

The tests run openline against implementations nobody here wrote: ``websockets``,
``aiohttp`` and the Node ``ws`` package. Every pairing exchanges the same
messages, defined here, so that a difference between peers shows up as one
failing pairing rather than as a difference between tests.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import json
import os
import pathlib
import random
import shutil
import subprocess
import threading
import urllib.parse
from typing import Any, Literal

import pytest

from ..timing import MS as MS  # re-exported: the tests of this package import it from here

#: The values of openline's ``compression`` argument.
Compression = Literal["deflate"] | None

IN_CI = os.environ.get("CI", "").lower() == "true"

#: How long any single step of an interop test may take, including 16 MiB transfers.
TIMEOUT = 20_000 * MS

#: The size of the large messages: 16 MiB.
BIG = 16 * 2**20
#: The message size limit set on both ends, with room for the large text message.
MAX_SIZE = 32 * 2**20

NON_ASCII = "héllo wörld — ✓ 🚀 日本語 Ελληνικά"

#: Small messages every pairing echoes, by test id.
SMALL_MESSAGES: dict[str, str | bytes] = {
    "text": "hello",
    "binary": bytes([0, 1, 2, 127, 128, 254, 255]),
    "empty-text": "",
    "empty-binary": b"",
    "non-ascii": NON_ASCII,
}

#: Pieces of the fragmented messages; the empty piece in the middle is legal too.
TEXT_FRAGMENTS = ["hé", "", "llo wörld ", "🚀 ✓"]
BINARY_FRAGMENTS = [b"\x00\x01\x02", b"", bytes(range(256)) * 4]


def _cut_inside_characters(text: str) -> list[bytes]:
    raw = text.encode()
    rocket = raw.index("🚀".encode())
    # Cut the two-byte "é" after its first byte and the four-byte rocket after two.
    return [raw[:2], raw[2 : rocket + 2], raw[rocket + 2 :]]


#: The UTF-8 of :data:`NON_ASCII` in text fragments that split characters, as
#: RFC 6455 (section 5.6) allows: only the whole message must be valid UTF-8.
SPLIT_UTF8_FRAGMENTS = _cut_inside_characters(NON_ASCII)

#: Close code and reason sent by whichever side starts the closing handshake.
CLOSE_CODE = 4000
CLOSE_REASON = "bye ✓"

#: Payload of the ping that servers under test send on the /ping path.
SERVER_PING = b"openline-ping"

#: Subprotocols every server under test supports, and what clients offer:
#: each side must settle on the one they share.
SERVER_SUBPROTOCOLS = ["openline.test", "chat"]
CLIENT_SUBPROTOCOLS = ["unknown", "chat"]
SUBPROTOCOL = "chat"


def deflate_variants(openline_side: str) -> dict[str, dict[str, Any]]:
    """permessage-deflate parameters a peer imposes, in RFC 7692 names, by test id.

    Args:
        openline_side: ``"server"`` or ``"client"``: which end openline is. The
            last variant limits openline's own window to 8 bits, which zlib cannot
            compress with (see ``protocol/extensions/deflate.py``).
    """
    return {
        "no-context-takeover": {
            "server_no_context_takeover": True,
            "client_no_context_takeover": True,
        },
        "window-bits-9": {"server_max_window_bits": 9, "client_max_window_bits": 9},
        "openline-window-bits-8": {f"{openline_side}_max_window_bits": 8},
    }


def ws_deflate_options(params: dict[str, Any]) -> dict[str, Any]:
    """RFC 7692 parameter names as the ``perMessageDeflate`` options of Node ``ws``."""
    return {
        "".join(word.title() if i else word for i, word in enumerate(name.split("_"))): value
        for name, value in params.items()
    }


def assert_deflate_parameters(extensions: str | None, params: dict[str, Any]) -> None:
    """Check that the ``Sec-WebSocket-Extensions`` response agreed to ``params``."""
    assert extensions is not None
    assert extensions.startswith("permessage-deflate"), extensions
    for name, value in params.items():
        assert (name if value is True else f"{name}={value}") in extensions, extensions


def deflate_messages() -> list[str | bytes]:
    """Messages that exercise the compression context: repeats, large, empty."""
    repeated = NON_ASCII * 100
    return [repeated, repeated, "", b"", big_text()[: 2**20], big_binary()[: 2**20], repeated]


NODE_DIR = pathlib.Path(__file__).parent / "node"


@functools.cache
def big_binary() -> bytes:
    """16 MiB holding every byte value: a random 4 KiB block, repeated.

    Repetition keeps deflate fast on both ends (it finds long matches) while the
    block itself is incompressible noise.
    """
    return random.Random(6455).randbytes(4096) * (BIG // 4096)


@functools.cache
def big_text() -> str:
    """About 16 MiB of UTF-8 text mixing one-, two- and three-byte characters."""
    pattern = "openline ✓ héllo wörld — ünïcödé ∑ 日本語 "
    return pattern * (BIG // len(pattern.encode()))


def skip_or_fail(reason: str) -> None:
    """Skip the test with ``reason`` on a developer's machine; fail it in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true, so this is a failure rather than a skip)")
    pytest.skip(reason)


def split_in_three(data: str | bytes) -> list[Any]:
    """Cut a message into three pieces of about the same size, some maybe empty."""
    third = -(-len(data) // 3)
    return [data[:third], data[third : 2 * third], data[2 * third :]]


def connection_id(path: str) -> str:
    """The ``id`` query parameter of a request path, or the empty string."""
    query = urllib.parse.urlsplit(path).query
    return urllib.parse.parse_qs(query).get("id", [""])[0]


def with_id(url: str, conn_id: str) -> str:
    """``url`` with an ``id`` query parameter naming the test's connection."""
    return f"{url}?id={urllib.parse.quote(conn_id)}"


@dataclasses.dataclass
class ServerSide:
    """What a server under test saw on one connection, once it ended."""

    path: str
    #: The ``Sec-WebSocket-Extensions`` response header (Node ``ws``: extension names).
    extensions: str | None
    subprotocol: str | None
    close_code: int | None
    close_reason: str | None
    #: The name of the "connection closed" exception the handler caught, if any:
    #: ``None`` means the handler's ``async for`` loop ended normally.
    error: str | None = None


class ServerLog:
    """Collects :class:`ServerSide` records by connection id, for tests to await."""

    def __init__(self) -> None:
        self._records: dict[str, asyncio.Future[ServerSide]] = {}

    def _future(self, conn_id: str) -> asyncio.Future[ServerSide]:
        if conn_id not in self._records:
            self._records[conn_id] = asyncio.get_running_loop().create_future()
        return self._records[conn_id]

    def record(self, conn_id: str, side: ServerSide) -> None:
        future = self._future(conn_id)
        if not future.done():
            future.set_result(side)

    async def wait(self, conn_id: str) -> ServerSide:
        """Wait until the server has finished with connection ``conn_id``."""
        return await asyncio.wait_for(asyncio.shield(self._future(conn_id)), TIMEOUT)


# --- echo servers ----------------------------------------------------------------------
#
# Every server under test, ours and the peers', behaves the same way, chosen by path:
#
#   /echo       echoes every message (so does any unknown path);
#   /fragments  echoes every message as three fragments;
#   /close      closes with the {"code", "reason"} of the first (JSON text) message;
#   /ping       pings the client with SERVER_PING, answers the pong with the text
#               {"pong": "openline-ping"}, then echoes.
#
# A connection is tagged by an ``id`` query parameter, so that a test can look up what
# the server saw on it (a ServerSide). openline's server and the websockets server share
# the code below: their connections offer the same methods (recv, send of a message or
# of an iterable, ping returning a pong waiter, close, close_code, close_reason,
# subprotocol, request.path and response.headers).


async def _echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def _echo_fragmented(ws: Any) -> None:
    async for message in ws:
        await ws.send(split_in_three(message))


async def _close_on_request(ws: Any) -> None:
    request = json.loads(await ws.recv())
    await ws.close(request["code"], request["reason"])


async def _ping_then_echo(ws: Any) -> None:
    pong = await ws.ping(SERVER_PING)
    await asyncio.wait_for(pong, TIMEOUT)
    await ws.send(json.dumps({"pong": SERVER_PING.decode()}))
    await _echo(ws)


_BEHAVIOURS = {
    "/echo": _echo,
    "/fragments": _echo_fragmented,
    "/close": _close_on_request,
    "/ping": _ping_then_echo,
}


async def handle_echo_connection(
    ws: Any, log: ServerLog, *, closed_errors: tuple[type[BaseException], ...]
) -> None:
    """Serve one connection as described above and record what it saw.

    Args:
        closed_errors: What the server's ``recv()`` raises once the connection is closed.
    """
    request_path = ws.request.path
    path = urllib.parse.urlsplit(request_path).path
    error = None
    try:
        await _BEHAVIOURS.get(path, _echo)(ws)
    except closed_errors as exc:
        error = type(exc).__name__
    finally:
        # Closing (a no-op once closed) completes the closing handshake, so the
        # close frame received is known when it is recorded.
        await ws.close()
        log.record(
            connection_id(request_path),
            ServerSide(
                path=path,
                extensions=ws.response.headers.get("Sec-WebSocket-Extensions"),
                subprotocol=ws.subprotocol,
                close_code=ws.close_code,
                close_reason=ws.close_reason,
                error=error,
            ),
        )


class EchoServer:
    """The shared echo handler with its log, for servers with a websockets-like API.

    Args:
        scheme: ``"ws"`` or ``"wss"``.
        closed_errors: What the server's ``recv()`` raises once the connection is closed.
    """

    def __init__(self, *, scheme: str, closed_errors: tuple[type[BaseException], ...]) -> None:
        self.scheme = scheme
        self.closed_errors = closed_errors
        self.port = 0
        self.log = ServerLog()

    def url(self, path: str, conn_id: str) -> str:
        return with_id(f"{self.scheme}://127.0.0.1:{self.port}{path}", conn_id)

    async def handler(self, ws: Any) -> None:
        await handle_echo_connection(ws, self.log, closed_errors=self.closed_errors)

    async def wait_closed(self, conn_id: str) -> ServerSide:
        """What the server saw on connection ``conn_id``, once it has ended."""
        return await self.log.wait(conn_id)


# --- Node ws ----------------------------------------------------------------------------


def node_missing() -> str | None:
    """Why the Node peers cannot run here, or ``None`` if they can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        return f"the ws package is not installed: run `npm ci` in {NODE_DIR}"
    return None


class NodeServer:
    """``ws_server.mjs`` in a subprocess, with the events it reports.

    The server writes one JSON line per event; a thread reads them so that tests
    can wait for the events of their own connection (matched by ``id``).
    """

    def __init__(
        self,
        *,
        deflate: bool,
        deflate_options: dict[str, Any] | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
    ) -> None:
        args = ["node", str(NODE_DIR / "ws_server.mjs"), "--exit-on-stdin-close"]
        args += ["--protocols", ",".join(SERVER_SUBPROTOCOLS)]
        if deflate:
            args.append("--deflate")
        if deflate_options is not None:
            args += ["--deflate-options", json.dumps(deflate_options)]
        if cert_file is not None and key_file is not None:
            args += ["--cert", cert_file, "--key", key_file]
        self.scheme = "ws" if cert_file is None else "wss"
        self._events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=NODE_DIR
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"ws_server.mjs exited with {self._process.wait()}")
        self.port = json.loads(line)["port"]
        self._reader = threading.Thread(target=self._read_events, daemon=True)
        self._reader.start()

    def _read_events(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            with self._changed:
                self._events.append(json.loads(line))
                self._changed.notify_all()

    def url(self, path: str, conn_id: str) -> str:
        return with_id(f"{self.scheme}://127.0.0.1:{self.port}{path}", conn_id)

    async def wait_event(self, conn_id: str, event: str) -> dict[str, Any]:
        """Wait for the first ``event`` reported for connection ``conn_id``."""

        def matches() -> dict[str, Any] | None:
            for record in self._events:
                if record.get("id") == conn_id and record["event"] == event:
                    return record
            return None

        def wait() -> dict[str, Any] | None:
            with self._changed:
                return self._changed.wait_for(matches, TIMEOUT)

        record = await asyncio.to_thread(wait)
        assert record is not None, f"ws_server.mjs reported no {event} for {conn_id}"
        return record

    async def wait_closed(self, conn_id: str) -> ServerSide:
        """What the server saw on connection ``conn_id``, once it has ended."""
        opened = await self.wait_event(conn_id, "open")
        closed = await self.wait_event(conn_id, "close")
        return ServerSide(
            path=opened["path"],
            extensions=opened["extensions"],
            subprotocol=opened["protocol"] or None,
            close_code=closed["code"],
            close_reason=closed["reason"],
        )

    def stop(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(5000 * MS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join()
        assert self._process.stdout is not None
        self._process.stdout.close()


def node_text_step(op: str, data: str, **extra: Any) -> dict[str, Any]:
    return {"op": op, "type": "text", "data": data, **extra}


def node_binary_step(op: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"op": op, "type": "binary", "data": base64.b64encode(data).decode(), **extra}


def node_message_step(op: str, message: str | bytes, **extra: Any) -> dict[str, Any]:
    """A ``send`` or ``receive`` step of ``ws_client.mjs`` for one message."""
    if isinstance(message, str):
        return node_text_step(op, message, **extra)
    return node_binary_step(op, message, **extra)


def node_fragments_step(pieces: list[str] | list[bytes]) -> dict[str, Any]:
    """A ``send`` step that ``ws_client.mjs`` sends as one fragmented message."""
    is_text = isinstance(pieces[0], str)
    raw = [piece.encode() if isinstance(piece, str) else piece for piece in pieces]
    return {
        "op": "send",
        "type": "text" if is_text else "binary",
        "fragments": [base64.b64encode(piece).decode() for piece in raw],
    }


async def run_node_client(
    url: str,
    script: list[dict[str, Any]],
    *,
    deflate: bool,
    deflate_options: dict[str, Any] | None = None,
    ca_file: str | None = None,
    protocols: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run ``ws_client.mjs`` against ``url`` and return its report (see the script)."""
    args = [str(NODE_DIR / "ws_client.mjs"), url, "--timeout", str(int(TIMEOUT * 1000))]
    args += ["--max-payload", str(MAX_SIZE)]
    if deflate:
        args.append("--deflate")
    if deflate_options is not None:
        args += ["--deflate-options", json.dumps(deflate_options)]
    if ca_file is not None:
        args += ["--ca", ca_file]
    for protocol in protocols:
        args += ["--protocol", protocol]
    process = await asyncio.create_subprocess_exec(
        "node",
        *args,
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(
        process.communicate(json.dumps(script).encode()), TIMEOUT + 5000 * MS
    )
    assert stdout, f"ws_client.mjs printed nothing; stderr:\n{stderr.decode()}"
    report: dict[str, Any] = json.loads(stdout)
    report["returncode"] = process.returncode
    return report


def assert_node_ok(report: dict[str, Any]) -> None:
    """Fail with the whole report unless every step of ``ws_client.mjs`` succeeded."""
    summary = json.dumps(report, indent=1)
    assert report["ok"], f"ws_client.mjs reported a failure:\n{summary}"
    assert report["returncode"] == 0, summary
