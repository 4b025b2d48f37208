"""Slow consumers (1013, publishing never waits) and the encode-once broadcast."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from openline.exceptions import ConnectionClosed
from openline.hub import Hub
from openline.hub.backends.base import Engine
from openline.protocol.connection import Connection as Core
from openline.protocol.connection import Side
from openline.protocol.events import TextMessage
from openline.protocol.extensions.deflate import ClientPerMessageDeflateFactory, PerMessageDeflate
from openline.protocol.handshake import ClientHandshake
from openline.protocol.http11 import parse_response

from .helpers import MS, TIMEOUT, HubClient, RunningHub, run_hub

#: A small kernel send queue, so that a stalled reader fills it quickly.
SMALL_SEND_BUFFER = 16384


async def stalled_client(running: RunningHub) -> HubClient:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    port = running.server.sockets[0].getsockname()[1]
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await running.client(sock=sock)


async def test_a_slow_consumer_is_reset_and_nobody_else_waits(engine: Engine) -> None:
    async with run_hub(engine, max_buffer=65536, send_buffer=SMALL_SEND_BUFFER) as running:
        slow = await stalled_client(running)
        await slow.subscribe("firehose")
        fast = await running.client()
        await fast.subscribe("firehose")
        publisher = await running.client()
        slow.go_silent()  # stops reading: its buffer on the server grows

        received: list[dict[str, Any]] = []

        async def read_fast() -> None:
            while True:
                received.append(await fast.expect("message"))

        reader = asyncio.create_task(read_fast())
        payload = "x" * 4000
        published = 0
        while running.hub.metrics()["slow_consumers"] == 0:
            ack = await asyncio.wait_for(publisher.publish("firehose", payload), TIMEOUT)
            published += 1
            assert ack["offset"] == published
            assert published < 5000, "the slow consumer was never cut off"
        # Publishing goes on, unaffected.
        for _ in range(20):
            await publisher.publish("firehose", payload)
            published += 1
        while len(received) < published:
            await asyncio.sleep(0.001)
        reader.cancel()
        assert [m["offset"] for m in received] == list(range(1, published + 1))

        # Its kernel queue was full: no close frame could get through, so the
        # server reset the connection. What reached the client is in order.
        slow.ws._transport.resume_reading()
        offsets = []
        with pytest.raises(ConnectionClosed) as caught:
            while True:
                offsets.append((await slow.expect("message"))["offset"])
        assert caught.value.code == 1006
        assert offsets == list(range(1, len(offsets) + 1))
        assert len(offsets) < published
        metrics = running.hub.metrics()
        assert metrics["slow_consumers"] == 1
        assert metrics["slow_consumer_resets"] == 1
        # Only the fast subscriber is left in the channel.
        (left,) = running.hub._channels["firehose"].live
        assert left.client == fast.welcome["client"]


async def test_a_stalled_subscriber_is_evicted_after_the_timeout(engine: Engine) -> None:
    # max_buffer is out of reach: only the time criterion can evict it.
    hub_kwargs: dict[str, Any] = {
        "max_buffer": 2**30,
        "slow_consumer_timeout": 200 * MS,
        "send_buffer": SMALL_SEND_BUFFER,
    }
    async with run_hub(engine, **hub_kwargs) as running:
        slow = await stalled_client(running)
        await slow.subscribe("firehose")
        slow.go_silent()
        loop = asyncio.get_running_loop()
        start = loop.time()
        published = 0
        while running.hub.metrics()["slow_consumers"] == 0:
            await running.hub.publish("firehose", "z" * 4000)
            published += 1
            await asyncio.sleep(MS)
            assert loop.time() - start < TIMEOUT, "the stalled subscriber was never evicted"
        elapsed = loop.time() - start
        print(f"stalled subscriber evicted after {elapsed:.3f} s and {published} messages")
        assert running.hub.metrics()["slow_consumer_resets"] == 1


async def test_an_evicted_subscriber_gets_the_close_code_when_it_can(engine: Engine) -> None:
    async with run_hub(engine, slow_consumer_code=1008) as running:
        client = await running.client()
        await client.subscribe("firehose")
        (session,) = running.hub._channels["firehose"].live
        # Nothing is buffered for it: the close frame can reach it.
        running.hub.fanout.evict(session)
        with pytest.raises(ConnectionClosed) as caught:
            while True:
                await client.recv()
        assert caught.value.code == 1008
        assert caught.value.reason == "slow consumer"
        metrics = running.hub.metrics()
        assert (metrics["slow_consumers"], metrics["slow_consumer_resets"]) == (1, 0)
        assert "firehose" not in running.hub._channels


# --- compression and the shared frame ---------------------------------------------------


class DeflateClient:
    """A raw client that negotiates permessage-deflate with server_no_context_takeover.

    ``openline.connect`` doesn't expose the deflate parameters, so this one
    builds the handshake with the core and reads frames with it.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, core: Core):
        self.reader = reader
        self.writer = writer
        self.core = core
        self.pending: list[str] = []

    @classmethod
    async def connect(cls, running: RunningHub) -> DeflateClient:
        port = running.server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        factory = ClientPerMessageDeflateFactory(server_no_context_takeover=True)
        handshake = ClientHandshake(
            "127.0.0.1", port, "/", secure=False, subprotocols=["openline.v1"], extensions=[factory]
        )
        writer.write(handshake.build_request().serialize())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        parsed = parse_response(head)
        assert parsed is not None
        negotiated = handshake.process_response(parsed[0])
        assert negotiated.extensions, "deflate wasn't negotiated"
        extension = negotiated.extensions[0]
        assert isinstance(extension, PerMessageDeflate)
        assert extension.remote_no_context_takeover
        return cls(reader, writer, Core(Side.CLIENT, extensions=negotiated.extensions))

    async def recv(self) -> dict[str, Any]:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            assert data, "connection closed"
            self.core.receive_data(data)
            for event in self.core.events_received():
                if isinstance(event, TextMessage):
                    self.pending.append(event.data)
        message: dict[str, Any] = json.loads(self.pending.pop(0))
        return message

    async def send(self, **fields: Any) -> None:
        self.core.send_text(json.dumps(fields))
        for chunk in self.core.data_to_send():
            self.writer.write(chunk)

    async def close(self) -> None:
        self.writer.close()


async def test_broadcast_reaches_plain_and_compressed_clients_alike(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with run_hub(engine, serve={"compression": "deflate"}) as running:
        plain = await running.client(compression=None)
        takeover = await running.client(compression="deflate")  # context takeover: per connection
        shared = [await DeflateClient.connect(running) for _ in range(3)]
        assert plain.ws._core is not None and not plain.ws._core.extensions
        for client in (plain, takeover):
            await client.subscribe("room")
        for raw in shared:
            assert (await raw.recv())["type"] == "welcome"
            await raw.send(type="subscribe", ch="room")
            assert (await raw.recv())["type"] == "subscribed"

        calls = 0
        encode = PerMessageDeflate.encode

        def counting(self: PerMessageDeflate, frame: Any) -> Any:
            nonlocal calls
            calls += 1
            return encode(self, frame)

        monkeypatch.setattr(PerMessageDeflate, "encode", counting)
        data = {"text": "hello " * 50}
        for _ in range(3):
            await running.hub.publish("room", data)
        for client in (plain, takeover):
            assert [m["data"] for m in await client.messages(3)] == [data] * 3
        for raw in shared:
            for offset in (1, 2, 3):
                message = await raw.recv()
                assert (message["offset"], message["data"]) == (offset, data)
            await raw.close()
        # Per publish: once for the three no-context-takeover clients, once for the other.
        assert calls == 3 * 2


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("slow_consumer_timeout", 0),
        ("slow_consumer_timeout", -1.0),
        ("send_buffer", 1024),
        ("max_buffer", 0),
    ],
)
def test_slow_consumer_limits_are_checked(argument: str, value: float) -> None:
    with pytest.raises(ValueError, match=argument):
        Hub(**{argument: value})
