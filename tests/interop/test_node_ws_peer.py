"""openline against the Node ``ws`` package, as server and as client.

The peers are ``node/ws_server.mjs`` and ``node/ws_client.mjs`` (their headers
describe what they do). The client runs once per test with a JSON script and
reports what it received; the server runs once per configuration for the whole
session and reports each connection's events, tagged with the test's ``id``.

``ws`` sends a fragmented message with ``send(data, {fin: false})``; both scripts
use it, cutting text inside characters, which RFC 6455 allows.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from openline.asyncio import ClientConnection, connect

from .helpers import (
    BIG,
    BINARY_FRAGMENTS,
    CLIENT_SUBPROTOCOLS,
    CLOSE_CODE,
    CLOSE_REASON,
    MAX_SIZE,
    NON_ASCII,
    SERVER_PING,
    SMALL_MESSAGES,
    SPLIT_UTF8_FRAGMENTS,
    SUBPROTOCOL,
    TEXT_FRAGMENTS,
    TIMEOUT,
    Compression,
    EchoServer,
    NodeServer,
    assert_deflate_parameters,
    assert_node_ok,
    deflate_messages,
    deflate_variants,
    node_fragments_step,
    node_message_step,
    run_node_client,
    ws_deflate_options,
)
from .openline_side import OpenClient, OpenlineClientTests, start_echo_server

pytestmark = [pytest.mark.interop, pytest.mark.node, pytest.mark.usefixtures("node")]


# --- openline server, ws client ------------------------------------------------------


@pytest.fixture
def run_peer_client(
    openline_server: EchoServer, conn_id: str, compression: Compression, ca_file: str | None
) -> Any:
    """``await run_peer_client(path, script, **options)`` runs ws_client.mjs on our server."""

    async def run_peer_client(
        path: str, script: list[dict[str, Any]], **options: Any
    ) -> dict[str, Any]:
        return await run_node_client(
            openline_server.url(path, conn_id),
            script,
            deflate=compression is not None,
            ca_file=ca_file,
            **options,
        )

    return run_peer_client


async def test_server_echoes_small_messages(run_peer_client: Any) -> None:
    script = [node_message_step("send", message) for message in SMALL_MESSAGES.values()]
    report = await run_peer_client("/echo", script)
    assert_node_ok(report)


async def test_server_receives_fragmented_messages(run_peer_client: Any) -> None:
    script = [
        node_fragments_step(TEXT_FRAGMENTS),
        node_fragments_step(BINARY_FRAGMENTS),
        # ws sends these pieces as they are: fragments that cut characters in two.
        {**node_fragments_step(SPLIT_UTF8_FRAGMENTS), "type": "text"},
    ]
    report = await run_peer_client("/echo", script)
    assert_node_ok(report)
    assert report["steps"][2]["length"] == len(NON_ASCII.encode())


async def test_server_sends_fragmented_messages(run_peer_client: Any) -> None:
    script = [node_message_step("send", NON_ASCII), node_message_step("send", bytes(range(256)))]
    report = await run_peer_client("/fragments", script)
    assert_node_ok(report)


async def test_server_echoes_large_binary_message(run_peer_client: Any) -> None:
    report = await run_peer_client("/echo", [{"op": "send", "type": "binary", "size": BIG}])
    assert_node_ok(report)
    assert report["steps"][0]["length"] == BIG


async def test_server_echoes_large_text_message(run_peer_client: Any) -> None:
    # Node generates BIG characters of mixed widths: about 22 MiB of UTF-8.
    report = await run_peer_client("/echo", [{"op": "send", "type": "text", "size": BIG}])
    assert_node_ok(report)
    assert report["steps"][0]["length"] > BIG


async def test_server_answers_client_ping(run_peer_client: Any) -> None:
    ping = {"op": "ping", "data": base64.b64encode(b"ws-client").decode()}
    report = await run_peer_client("/echo", [ping])
    assert_node_ok(report)


async def test_server_ping_gets_pong(run_peer_client: Any) -> None:
    answer = json.dumps({"pong": SERVER_PING.decode()})
    report = await run_peer_client("/ping", [node_message_step("receive", answer)])
    assert_node_ok(report)


async def test_client_close_code_and_reason_reach_server(
    run_peer_client: Any, openline_server: EchoServer, conn_id: str
) -> None:
    close = {"op": "close", "code": CLOSE_CODE, "reason": CLOSE_REASON}
    report = await run_peer_client("/echo", [close])
    assert_node_ok(report)
    server_side = await openline_server.wait_closed(conn_id)
    assert (server_side.close_code, server_side.close_reason) == (CLOSE_CODE, CLOSE_REASON)


async def test_server_close_code_and_reason_reach_client(
    run_peer_client: Any, openline_server: EchoServer, conn_id: str
) -> None:
    request = json.dumps({"code": CLOSE_CODE, "reason": CLOSE_REASON})
    script = [node_message_step("send", request, echo=False), {"op": "wait_close"}]
    report = await run_peer_client("/close", script)
    assert_node_ok(report)
    assert report["close"] == {"code": CLOSE_CODE, "reason": CLOSE_REASON}
    await openline_server.wait_closed(conn_id)


async def test_server_negotiates_extension_as_configured(
    run_peer_client: Any, openline_server: EchoServer, conn_id: str, compression: Compression
) -> None:
    report = await run_peer_client("/echo", [])
    assert_node_ok(report)
    server_side = await openline_server.wait_closed(conn_id)
    if compression is None:
        assert report["extensions"] == ""
        assert server_side.extensions is None
    else:
        assert report["extensions"] == "permessage-deflate"
        assert server_side.extensions is not None
        assert server_side.extensions.startswith("permessage-deflate")


async def test_server_negotiates_subprotocol(
    run_peer_client: Any, openline_server: EchoServer, conn_id: str
) -> None:
    report = await run_peer_client("/echo", [], protocols=CLIENT_SUBPROTOCOLS)
    assert_node_ok(report)
    assert report["protocol"] == SUBPROTOCOL
    server_side = await openline_server.wait_closed(conn_id)
    assert server_side.subprotocol == SUBPROTOCOL


async def test_client_close_without_code_ends_server_loop_normally(
    run_peer_client: Any, openline_server: EchoServer, conn_id: str
) -> None:
    # ws.close() without arguments sends a close frame without a status code, as
    # browsers do: RFC 6455, section 7.1.5, reads it as 1005, a normal closure.
    report = await run_peer_client("/echo", [{"op": "close"}])
    assert_node_ok(report)
    server_side = await openline_server.wait_closed(conn_id)
    assert server_side.close_code == 1005
    assert server_side.error is None, "the server's `async for` loop raised"


@pytest.mark.parametrize(
    "params", deflate_variants("server").values(), ids=deflate_variants("server").keys()
)
async def test_server_compresses_with_parameters_the_client_asks_for(
    params: dict[str, Any], conn_id: str
) -> None:
    script = [node_message_step("send", message) for message in deflate_messages()]
    async with start_echo_server(compression="deflate", ssl=None) as server:
        report = await run_node_client(
            server.url("/echo", conn_id),
            script,
            deflate=True,
            deflate_options=ws_deflate_options(params),
        )
        assert_node_ok(report)
        server_side = await server.wait_closed(conn_id)
    assert_deflate_parameters(server_side.extensions, params)


# --- openline client, ws server ------------------------------------------------------


async def _receive_all(ws: ClientConnection) -> list[str | bytes]:
    return [message async for message in ws]


class TestOpenlineClient(OpenlineClientTests):
    @pytest.fixture
    def peer_server(self, node_server: NodeServer) -> NodeServer:
        return node_server

    async def test_server_close_without_code_ends_client_loop_normally(
        self, open_client: OpenClient
    ) -> None:
        async with open_client("/close") as ws:
            await ws.send("{}")  # ws_server.mjs then calls ws.close() without a code
            await asyncio.wait_for(_receive_all(ws), TIMEOUT)
            assert ws.close_code == 1005


@pytest.mark.parametrize(
    "params", deflate_variants("client").values(), ids=deflate_variants("client").keys()
)
async def test_client_compresses_with_parameters_the_server_asks_for(
    node: None, params: dict[str, Any], conn_id: str
) -> None:
    server = NodeServer(deflate=True, deflate_options=ws_deflate_options(params))
    try:
        async with connect(server.url("/echo", conn_id), max_size=MAX_SIZE) as ws:
            assert ws.response is not None
            assert_deflate_parameters(ws.response.headers.get("Sec-WebSocket-Extensions"), params)
            for message in deflate_messages():
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message
    finally:
        server.stop()
