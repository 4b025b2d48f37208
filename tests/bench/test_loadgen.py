"""The load generator's bookkeeping: what it counts, and how it computes the numbers.

Bytes go in through ``buffer_updated`` exactly as the event loop delivers
them, cut at arbitrary places; no sockets are involved.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from openline.bench import loadgen, wire
from openline.bench.scenarios import SCENARIOS, Scenario
from openline.protocol.connection import Connection, Side
from openline.protocol.extensions.deflate import ServerPerMessageDeflateFactory
from openline.protocol.handshake import ServerHandshake
from openline.protocol.http11 import parse_request

SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
FILLER = bytes(24)


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def abort(self) -> None:
        pass


def _generator(scenario: Scenario, **config: Any) -> loadgen.Generator:
    return loadgen.Generator(
        {"scenario": scenario.to_json(), "port": 1, "window": 1.0, "warmup": 0.0, **config}
    )


def _feed(client: loadgen.Client, data: bytes, cuts: list[int]) -> None:
    """Deliver ``data`` in pieces ending at each of ``cuts``, then the rest."""
    start = 0
    for end in [*cuts, len(data)]:
        piece = data[start:end]
        loadgen.BUFFER[: len(piece)] = piece
        client.buffer_updated(len(piece))
        start = end


def _records(gen: loadgen.Generator) -> list[tuple[int, int]]:
    return list(zip(gen.record_first, gen.record_last, strict=True))


def _message(seq: int) -> bytes:
    return wire.server_frame_header(32) + wire.SEQ.pack(seq) + FILLER


async def _subscriber(
    scenario: Scenario, **config: Any
) -> tuple[loadgen.Generator, loadgen.Subscriber, FakeTransport]:
    gen = _generator(scenario, **config)
    gen.header = wire.server_frame_header(scenario.size)
    gen.payload_offset = len(gen.header)
    gen.frame_size = gen.payload_offset + scenario.size
    client = loadgen.Subscriber(gen)
    transport = FakeTransport()
    client.connection_made(transport)  # type: ignore[arg-type]
    return gen, client, transport


async def test_subscriber_counts_consecutive_messages_cut_anywhere() -> None:
    gen, client, transport = await _subscriber(SCENARIOS["fanout-1k"])
    stream = SWITCHING + b"".join(_message(seq) for seq in range(1, 8))
    _feed(
        client, stream, [len(SWITCHING) + 10, len(SWITCHING) + 34 * 3 + 5, len(SWITCHING) + 34 * 5]
    )
    assert not gen.failed.done()
    assert transport.written[0].startswith(b"GET /sub HTTP/1.1\r\n")
    received = [seq for first, last in _records(gen) for seq in range(first, last + 1)]
    assert received == list(range(1, 8))
    assert client.next_seq == 8


async def test_subscriber_answers_a_ping_between_messages() -> None:
    gen, client, transport = await _subscriber(SCENARIOS["fanout-1k"])
    ping = wire.server_frame_header(2, wire.OP_PING) + b"hi"
    _feed(client, SWITCHING + _message(1) + ping + _message(2) + _message(3), [])
    assert not gen.failed.done()
    assert transport.written[-1] == wire.client_frame(b"hi", wire.OP_PONG)
    received = [seq for first, last in _records(gen) for seq in range(first, last + 1)]
    assert received == [1, 2, 3]


async def test_subscriber_records_each_message_after_a_gap() -> None:
    gen, client, _ = await _subscriber(SCENARIOS["fanout-1k"])
    _feed(client, SWITCHING + _message(1) + _message(2), [])
    _feed(client, _message(5) + _message(6), [])
    assert _records(gen) == [(1, 1), (2, 2), (5, 5), (6, 6)]
    assert gen.irregular == 1


async def test_subscriber_fails_the_run_on_a_close_frame() -> None:
    gen, client, _ = await _subscriber(SCENARIOS["fanout-1k"])
    close = wire.server_frame_header(2, wire.OP_CLOSE) + b"\x03\xe8"
    _feed(client, SWITCHING + close, [])
    with pytest.raises(wire.FrameError, match="close frame"):
        gen.failed.result()


async def test_subscriber_reads_compressed_messages_from_a_real_server_core() -> None:
    scenario = SCENARIOS["fanout-1k+deflate"]
    gen, client, transport = await _subscriber(scenario)
    parsed = parse_request(transport.written[0])
    assert parsed is not None
    handshake = ServerHandshake(extensions=[ServerPerMessageDeflateFactory()])
    result = handshake.process_request(parsed[0])
    assert result.negotiated is not None
    server = Connection(Side.SERVER, extensions=result.negotiated.extensions)
    for seq in range(1, 6):
        server.send_binary(wire.SEQ.pack(seq) + FILLER)
    stream = result.response.serialize() + b"".join(server.data_to_send())
    _feed(client, stream, [len(stream) - 7])
    assert not gen.failed.done()
    received = [seq for first, last in _records(gen) for seq in range(first, last + 1)]
    assert received == [1, 2, 3, 4, 5]


async def test_subscriber_to_the_raw_relay_unmasks_sequence_numbers() -> None:
    gen = _generator(SCENARIOS["fanout-1k"], framing=False)
    gen.header = wire.client_frame(bytes(32))[:2]
    gen.payload_offset = 6
    gen.frame_size = 38
    gen.seq_unmask = int.from_bytes(wire.mask(bytes(8)), "big")
    client = loadgen.Subscriber(gen)
    client.connection_made(FakeTransport())  # type: ignore[arg-type]
    stream = b"".join(wire.client_frame(wire.SEQ.pack(seq) + FILLER) for seq in (1, 2, 3, 9))
    _feed(client, stream, [40])
    received = [seq for first, last in _records(gen) for seq in range(first, last + 1)]
    assert received == [1, 2, 3, 9]


async def _echo(scenario: Scenario) -> tuple[loadgen.Generator, loadgen.Echo, FakeTransport]:
    gen = _generator(scenario)
    loadgen._prepare_echo(gen)
    client = loadgen.Echo(gen)
    transport = FakeTransport()
    client.connection_made(transport)  # type: ignore[arg-type]
    _feed(client, SWITCHING, [])
    client.start(scenario.in_flight)
    return gen, client, transport


async def test_echo_counts_replies_and_sends_one_message_per_reply() -> None:
    scenario = SCENARIOS["echo-32-x16"]
    gen, client, transport = await _echo(scenario)
    reply = wire.server_frame_header(32) + bytes(32)
    _feed(client, reply * 5, [3, 40, 100])
    assert not gen.failed.done()
    assert gen.received == 5
    assert len(gen.latencies) == 5
    sent = b"".join(transport.written[1:])
    assert sent == gen.batches[1] * (16 + 5)


async def test_echo_fails_the_run_on_an_unexpected_frame() -> None:
    gen, client, _ = await _echo(SCENARIOS["echo-32-x16"])
    _feed(client, wire.server_frame_header(2, wire.OP_CLOSE) + b"\x03\xe8" + bytes(30), [])
    with pytest.raises(wire.FrameError, match="expected a reply frame"):
        gen.failed.result()


async def test_echo_fails_the_run_on_more_replies_than_messages() -> None:
    gen, client, _ = await _echo(dataclasses.replace(SCENARIOS["echo-32-x1"]))
    reply = wire.server_frame_header(32) + bytes(32)
    _feed(client, reply * 2, [])
    with pytest.raises(wire.FrameError, match="2 replies to 1 messages"):
        gen.failed.result()


@dataclasses.dataclass
class FakeWindow:
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


async def test_fanout_numbers() -> None:
    scenario = dataclasses.replace(SCENARIOS["fanout-1k"], connections=2)
    gen = _generator(scenario, deadline=0.1)
    # Message 1 goes out before the window [10, 11]; 2 to 4 inside it.
    gen.sent.extend([9.5, 10.2, 10.5, 10.9])
    # Subscriber A gets 2 and 3 promptly and 4 late; B gets 1 to 3 in one read, and never 4.
    for now, first, last in [
        (9.51, 1, 1),
        (10.25, 2, 2),
        (10.55, 3, 3),
        (11.3, 4, 4),
        (10.58, 1, 3),
    ]:
        gen.record_time.append(now)
        gen.record_first.append(first)
        gen.record_last.append(last)
    metrics = loadgen._deliveries(gen, FakeWindow(10.0, 11.0), 2, 4, grace=1.0)  # type: ignore[arg-type]
    # Received during the window: A's 2 and 3, B's 1, 2 and 3.
    assert metrics["deliveries_per_s"] == pytest.approx(5.0)
    # Due: 2 subscribers x messages 2 to 4. On time: A's 2 and 3, B's 3 (80 ms).
    assert metrics["in_time_pct"] == pytest.approx(50.0)
    # Delivered by the end of the grace period: all but B's 4.
    assert metrics["delivered_pct"] == pytest.approx(500 / 6)
    # Latencies received in the window: 50, 50, 80, 380 and 1080 ms.
    assert metrics["p50_ms"] == pytest.approx(80, rel=0.01)
    assert metrics["p99_ms"] == pytest.approx(1080, rel=0.01)
