"""The cluster benchmark's load generator: ``python -m openline.bench.hubload '{json}'``.

It speaks the hub's protocol (``openline.v1``, ``docs/protocol.md``) with the
pieces of the fan-out generator (:mod:`.loadgen`, :mod:`.wire`): subscribers
spread over the nodes' ports each send ``subscribe`` once open, a publisher
on the first node sends ``publish`` at a fixed rate, and every ``data`` is
``{"t": <send time>, "seq": <sequence number>}``. Deliveries are counted per
node, so that subscribers on another node than the publisher's (cross-node,
through Redis) are measured apart from those on the publisher's own.

Staying cheap matters as much as in :mod:`.loadgen`:

* a read of ``k`` frames looks at the last one only: its ``seq`` is read from
  the end of the frame (the hub encodes ``data`` last, and keeps its key order),
  and when the ``k`` messages follow the previous ones, one
  ``(time, first, last)`` record is stored; anything else (the first message,
  a reply, a gap, another layout) is parsed frame by frame with :mod:`json`;
* send times are looked up by sequence number after the window, not parsed.

With ``"mode": "raw"`` the generator drives the raw TCP relay of
:mod:`.servers` instead, the ceiling: no handshake, no ``subscribe``, and the
publisher sends ready-made, unmasked frames shaped like the hub's ``message``
(same size), which the relay copies to every subscriber, so that the
subscribers do exactly the work they do against a hub.

The result is one JSON line on stdout: metrics per node and for all
subscribers, the CPU use of each server process and of this one during the
window, and notes.
"""

from __future__ import annotations

import array
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from .loadgen import (
    BUFFER,
    VIEW,
    Client,
    Generator,
    Tally,
    Window,
    _Publisher,
    _quiet,
    child_main,
)
from .system import cpu_seconds, rss_bytes
from .wire import (
    FIN,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    client_frame,
    scan_frames,
    server_frame_header,
)

__all__ = ["Group", "main", "run"]

#: The channel every subscriber subscribes to.
CHANNEL = "bench"
SUBSCRIBE = client_frame(b'{"type":"subscribe","ch":"%s"}' % CHANNEL.encode(), OP_TEXT)
_TEXT = FIN | OP_TEXT
#: What ends a hub message whose ``data`` ends with ``"seq":N}``.
_SEQ_KEY = b'"seq"'
#: The ceiling's ready-made message: a hub message's fields, with lengths of real ones
#: (a 24-character epoch, a 36-character connection id as the anonymous publisher).
_RAW_MESSAGE = (
    b'{"type":"message","ch":"' + CHANNEL.encode() + b'","epoch":"' + b"e" * 24 + b'",'
    b'"offset":%d,"user":"' + b"u" * 36 + b'","data":{"t":%b,"seq":%d}}'
)


class Group:
    """The subscribers on one node, and what they received.

    Attributes:
        name: ``node1`` (the publisher's node), ``node2``, ...
        subscribers: How many subscribers the group has.
        times, firsts, lasts: One record per read: when it arrived, and the
            first and last sequence number in it.
        irregular: Reads whose messages didn't follow the previous ones.
        gaps: ``gap`` messages received.
        parsed: Reads parsed frame by frame (the slow path).
    """

    __slots__ = (
        "firsts",
        "frame_bytes",
        "gaps",
        "irregular",
        "lasts",
        "name",
        "parsed",
        "subscribers",
        "times",
    )

    def __init__(self, name: str, subscribers: int) -> None:
        self.name = name
        self.subscribers = subscribers
        self.times = array.array("d")
        self.firsts = array.array("q")
        self.lasts = array.array("q")
        self.irregular = 0
        self.gaps = 0
        self.parsed = 0
        #: The size of a delivered message's frame, header included (0: none seen alone).
        self.frame_bytes = 0

    def record(self, now: float, first: int, last: int) -> None:
        """Messages ``first`` to ``last`` arrived at ``now``."""
        self.times.append(now)
        self.firsts.append(first)
        self.lasts.append(last)


# --- connections ------------------------------------------------------------------------


class Dialect:
    """What a subscriber and the publisher say to one kind of server.

    Attributes:
        name: ``openline`` (the hub's ``openline.v1``), ``compact`` (the hub
            with the compact envelope prototype of :mod:`.hubnode`) or
            ``socketio`` (Socket.IO over Engine.IO 4, WebSocket transport).
        path: The request path of the opening handshake.
        prefix: How a message delivered to a subscriber starts.
        suffix: How it ends after the ``seq``'s digits.
    """

    __slots__ = ("name", "path", "prefix", "suffix")

    def __init__(self, name: str, path: str, prefix: bytes, suffix: bytes) -> None:
        self.name = name
        self.path = path
        self.prefix = prefix
        self.suffix = suffix

    def publish(self, stamp: bytes, seq: int) -> bytes:
        """A publish frame carrying ``{"t": stamp, "seq": seq}``."""
        if self.name == "socketio":
            payload = b'42["publish",{"t":%b,"seq":%d}]' % (stamp, seq)
        else:
            payload = b'{"type":"publish","ch":"%b","data":{"t":%b,"seq":%d}}' % (
                CHANNEL.encode(),
                stamp,
                seq,
            )
        return client_frame(payload, OP_TEXT)


#: The dialects by name.
DIALECTS = {
    "openline": Dialect("openline", "/", b'{"type":"message"', b"}}"),
    # The hub mounted at /hub in a FastAPI app (hubnode's ASGI servers).
    "mounted": Dialect("openline", "/hub/", b'{"type":"message"', b"}}"),
    "compact": Dialect("compact", "/", b'["' + CHANNEL.encode() + b'",', b"}]"),
    "socketio": Dialect("socketio", "/socket.io/?EIO=4&transport=websocket", b'42["msg",', b"}]"),
}
#: Engine.IO's ping, and what answers it.
_EIO_PING = b"2"
_EIO_PONG = client_frame(b"3", OP_TEXT)
#: Socket.IO: connect to the main namespace, then join the room.
_SIO_CONNECT = client_frame(b"40", OP_TEXT)
_SIO_JOIN = client_frame(b'42["join"]', OP_TEXT)


def _last_seq(raw: bytes | bytearray, start: int, stop: int, suffix: bytes) -> int:
    """The ``seq`` of a message ending with ``"seq":N<suffix>`` in ``raw[start:stop]``, or -1."""
    colon = raw.rfind(b":", start, stop)
    end = stop - len(suffix)
    if colon <= start or raw[colon - 5 : colon] != _SEQ_KEY or raw[end:stop] != suffix:
        return -1
    return int(raw[colon + 1 : end])


class HubSubscriber(Client):
    """Subscribes to :data:`CHANNEL` once open; records the sequence numbers that arrive."""

    __slots__ = ("dialect", "group", "next_seq", "subscribed")

    def __init__(
        self, gen: Generator, group: Group, dialect: Dialect = DIALECTS["openline"]
    ) -> None:
        super().__init__(gen, dialect.path)
        self.group = group
        self.dialect = dialect
        self.next_seq = 0
        # The raw relay has no protocol: every connection is a subscriber from the start.
        self.subscribed = not gen.framing

    def opened_hook(self) -> None:
        assert self.transport is not None
        if self.dialect.name != "socketio":
            self.transport.write(SUBSCRIBE)
        # Socket.IO: the server speaks first (Engine.IO's open packet).

    def consume(self, data: bytes | memoryview, end: int) -> bytes:
        # bytearray and bytes have find(); the shared buffer's memoryview doesn't.
        raw: bytes | bytearray = BUFFER if data is VIEW else bytes(data)
        next_seq = self.next_seq
        # The usual read: exactly one text frame (a message).
        if next_seq and end > 4 and raw[0] == _TEXT:
            length = raw[1]
            start = 2
            if length == 126:
                length, start = raw[2] << 8 | raw[3], 4
            dialect = self.dialect
            if length + start == end and raw.startswith(dialect.prefix, start):
                seq = _last_seq(raw, start, end, dialect.suffix)
                if seq == next_seq:
                    group = self.group
                    group.times.append(time.perf_counter())
                    group.firsts.append(seq)
                    group.lasts.append(seq)
                    group.frame_bytes = end
                    self.next_seq = seq + 1
                    return b""
        frames, stop = scan_frames(raw, 0, end)
        if frames:
            now = time.perf_counter()
            _, start, stop_, _ = frames[-1]
            prefix = self.dialect.prefix
            # All messages, or a hole could hide behind another frame (a gap, a reply).
            if next_seq and all(f == _TEXT and raw.startswith(prefix, s) for f, s, _, _ in frames):
                seq = _last_seq(raw, start, stop_, self.dialect.suffix)
                if seq - len(frames) + 1 == next_seq:
                    group = self.group
                    group.times.append(now)
                    group.firsts.append(next_seq)
                    group.lasts.append(seq)
                    self.next_seq = seq + 1
                    return bytes(raw[stop:end]) if stop < end else b""
            self._parse(raw, frames, now)
        return bytes(raw[stop:end]) if stop < end else b""

    def _parse(
        self, raw: bytes | bytearray, frames: list[tuple[int, int, int, bytes | None]], now: float
    ) -> None:
        """The slow path: look at every frame."""
        group = self.group
        group.parsed += 1
        irregular = False
        for first, start, stop, _ in frames:
            opcode = first & 0x0F
            if opcode == OP_PING:
                assert self.transport is not None
                self.transport.write(client_frame(bytes(raw[start:stop]), OP_PONG))
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                raise FrameError(f"the server sent a close frame: {bytes(raw[start:stop])!r}")
            if first != _TEXT:
                raise FrameError(f"expected a text frame, got first byte {first:#04x}")
            text = bytes(raw[start:stop])
            kind, seq = self._classify(text)
            if kind == "message":
                irregular |= self.next_seq not in (0, seq)
                group.record(now, seq, seq)
                self.next_seq = seq + 1
            elif kind == "subscribed":
                self.subscribed = True
            elif kind == "gap":
                group.gaps += 1
        group.irregular += irregular

    def _classify(self, text: bytes) -> tuple[str, int]:
        """What a frame is (``message`` with its ``seq``, ``subscribed``, ``gap``, ...)."""
        if self.dialect.name == "socketio":
            return self._socketio(text)
        message = json.loads(text)
        if isinstance(message, list):  # the compact envelope: [ch, offset, (user,) data]
            return "message", message[-1]["seq"]
        kind = message.get("type")
        if kind == "error":
            raise FrameError(f"the hub refused a request: {message}")
        if kind == "message":
            return kind, message["data"]["seq"]
        return kind, 0

    def _socketio(self, text: bytes) -> tuple[str, int]:
        assert self.transport is not None
        if text == _EIO_PING:
            self.transport.write(_EIO_PONG)
            return "ping", 0
        if text.startswith(b"0{"):  # Engine.IO open: connect to the main namespace
            self.transport.write(_SIO_CONNECT)
            return "open", 0
        if text.startswith(b"40"):  # connected: join the room
            self.transport.write(_SIO_JOIN)
            return "connected", 0
        if text.startswith(b"42"):
            event = json.loads(text[2:])
            if event[0] == "joined":
                return "subscribed", 0
            if event[0] == "msg":
                return "message", event[1]["seq"]
        if text.startswith(b"44"):
            raise FrameError(f"the server refused to connect: {text!r}")
        return "other", 0


class PublisherClient(Client):
    """The publisher's connection: counts ``ack`` replies, fails the run on an ``error``.

    For Socket.IO, it first connects to the main namespace (``ready`` once
    done) and answers Engine.IO's pings; Socket.IO publishes get no reply.
    """

    __slots__ = ("acks", "dialect", "ready")

    def __init__(self, gen: Generator, dialect: Dialect = DIALECTS["openline"]) -> None:
        super().__init__(gen, dialect.path)
        self.acks = 0
        self.dialect = dialect
        self.ready: asyncio.Future[None] = gen.loop.create_future()
        if not gen.framing:  # the raw relay: no handshake, nothing to wait for
            self.ready.set_result(None)

    def opened_hook(self) -> None:
        if self.dialect.name != "socketio":
            self.ready.set_result(None)

    def received_messages(
        self, data: bytes | memoryview, messages: list[tuple[int, int, bytes | None, bool]]
    ) -> None:
        for start, end, _, _ in messages:
            text = bytes(data[start:end])
            if self.dialect.name == "socketio":
                self._socketio(text)
                continue
            message = json.loads(text)
            kind = message.get("type")
            if kind == "ack":
                self.acks += 1
            elif kind == "error":
                raise FrameError(f"the hub refused a publish: {message}")

    def _socketio(self, text: bytes) -> None:
        assert self.transport is not None
        if text == _EIO_PING:
            self.transport.write(_EIO_PONG)
        elif text.startswith(b"0{"):
            self.transport.write(_SIO_CONNECT)
        elif text.startswith(b"40") and not self.ready.done():
            self.ready.set_result(None)
        elif text.startswith(b"44"):
            raise FrameError(f"the server refused to connect: {text!r}")


class HubPublisher(_Publisher):
    """Publishes ``{"t": <send time>, "seq": N}`` to :data:`CHANNEL` at the scenario's rate."""

    def __init__(self, gen: Generator, client: Client, dialect: Dialect) -> None:
        super().__init__(gen, client)
        self.dialect = dialect

    def publish(self, count: int) -> None:
        now = time.perf_counter()
        stamp = repr(now).encode()
        frames = []
        for _ in range(count):
            seq = self.next_seq
            if self.gen.framing:
                frames.append(self.dialect.publish(stamp, seq))
            else:  # the relay copies the publisher's bytes: send what a hub would
                payload = _RAW_MESSAGE % (seq, stamp, seq)
                frames.append(server_frame_header(len(payload), OP_TEXT) + payload)
            self.next_seq += 1
        self.gen.sent.extend([now] * count)
        assert self.client.transport is not None
        self.client.transport.write(b"".join(frames))


class ClusterWindow(Window):
    """A :class:`~.loadgen.Window` whose server is several processes: the nodes and Redis.

    ``server_cpu_pct`` is their sum; ``<name>_cpu_pct`` each one's share.
    """

    def __init__(self, generator: Generator, pids: dict[str, int]) -> None:
        super().__init__(generator)
        self._pids = pids
        self._each: dict[str, float | None] = {}

    def open(self) -> None:
        self._each = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        super().open()

    def close(self) -> None:
        super().close()
        for name, pid in self._pids.items():
            before, after = self._each.get(name), cpu_seconds(pid)
            if before is not None and after is not None:
                self.usage[f"{name}_cpu_pct"] = 100 * (after - before) / self.seconds

    def _server_seconds(self) -> float | None:
        total = 0.0
        for pid in self._pids.values():
            seconds = cpu_seconds(pid)
            if seconds is None:
                return None
            total += seconds
        return total


# --- the run ----------------------------------------------------------------------------


async def _wait_until(subscribers: Sequence[HubSubscriber], attribute: str) -> None:
    """Wait until ``attribute`` is true on every subscriber."""
    while not all(getattr(subscriber, attribute) for subscriber in subscribers):
        await asyncio.sleep(0.05)


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` as evenly as possible, the larger shares first."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def _rss(pids: Sequence[int]) -> int | None:
    """The servers' resident memory together, in bytes; ``None`` where unknown."""
    total = 0
    for pid in pids:
        size = rss_bytes(pid)
        if size is None:
            return None
        total += size
    return total


async def _settle(pids: Sequence[int]) -> None:
    for pid in pids:
        await _quiet(pid)


async def run_cluster(
    gen: Generator,
    ports: list[int],
    pids: dict[str, int],
    dialect: Dialect = DIALECTS["openline"],
    memory_pids: Sequence[int] = (),
) -> dict[str, Any]:
    """Subscribers spread over ``ports``, a publisher on the first; measure one window.

    ``memory_pids`` are the server processes whose RSS growth while the
    subscribers connect and subscribe is reported per subscriber.
    """
    scenario = gen.scenario
    groups = [
        Group(f"node{index + 1}", count)
        for index, count in enumerate(shares(scenario.connections, len(ports)))
    ]
    await _settle(memory_pids)
    rss_before = _rss(memory_pids) if memory_pids else None
    subscribers: list[HubSubscriber] = []
    for group, port in zip(groups, ports, strict=True):

        def factory(group: Group = group) -> Client:
            return HubSubscriber(gen, group, dialect)

        opened = await gen.open(factory, group.subscribers, port)
        subscribers += [client for client in opened if isinstance(client, HubSubscriber)]
    await gen.guard(_wait_until(subscribers, "subscribed"), gen.setup_timeout)
    await _settle(memory_pids)
    rss_after = _rss(memory_pids) if memory_pids else None
    (connection,) = await gen.open(lambda: PublisherClient(gen, dialect), 1, ports[0])
    assert isinstance(connection, PublisherClient)
    await gen.guard(connection.ready, gen.setup_timeout)
    publisher = HubPublisher(gen, connection, dialect)
    task = asyncio.ensure_future(publisher.run())
    try:
        await gen.guard(_wait_until(subscribers, "next_seq"), gen.setup_timeout)
        await gen.guard(asyncio.sleep(gen.warmup), gen.warmup + 5)
        window = ClusterWindow(gen, pids)
        window.open()
        first_seq = publisher.next_seq
        await gen.guard(asyncio.sleep(gen.window), gen.window + 5)
        window.close()
        last_seq = publisher.next_seq - 1
    finally:
        task.cancel()
    grace = max(gen.deadline, min(1.0, gen.window))
    await gen.guard(asyncio.sleep(grace), grace + 5)
    result = _result(gen, groups, window, (first_seq, last_seq), grace)
    if rss_before is not None and rss_after is not None:
        result["memory"] = {
            "rss_before": rss_before,
            "rss_after": rss_after,
            "kb_per_subscriber": (rss_after - rss_before) / scenario.connections / 1024,
        }
    sizes = [group.frame_bytes for group in groups if group.frame_bytes]
    if sizes:
        result["bytes_per_delivery"] = max(sizes)
    return result


def _result(
    gen: Generator,
    groups: list[Group],
    window: Window,
    published: tuple[int, int],
    grace: float,
) -> dict[str, Any]:
    total = Tally()
    metrics: dict[str, dict[str, float]] = {}
    for group in groups:
        tally = Tally.count(
            gen.sent,
            (group.times, group.firsts, group.lasts),
            window=(window.start, window.end),
            published=published,
            subscribers=group.subscribers,
            deadline=gen.deadline,
            grace=grace,
        )
        total.merge(tally)
        metrics[group.name] = {**tally.metrics(window.seconds), "subscribers": group.subscribers}
        if group.irregular or group.gaps:
            gen.notes.append(
                f"{group.name}: {group.irregular} reads had messages out of sequence, "
                f"{group.gaps} gap messages"
            )
    metrics["all"] = {
        **total.metrics(window.seconds),
        "subscribers": sum(group.subscribers for group in groups),
    }
    usage = dict(window.usage)
    if total.in_window and "gen_cpu_pct" in usage:
        seconds = usage["gen_cpu_pct"] / 100 * window.seconds
        usage["gen_us_per_delivery"] = 1e6 * seconds / total.in_window
    if total.in_window and window.server_seconds is not None:
        usage["server_us_per_delivery"] = 1e6 * window.server_seconds / total.in_window
    first_seq, last_seq = published
    return {
        "groups": metrics,
        "cpu": usage,
        "published_per_s": (last_seq - first_seq + 1) / window.seconds,
        "window_s": window.seconds,
        "notes": gen.notes,
    }


async def run(config: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration; return the metrics, CPU use and notes."""
    gen = Generator(config)
    try:
        return await run_cluster(
            gen,
            config["ports"],
            config.get("pids", {}),
            DIALECTS[config.get("dialect", "openline")],
            config.get("memory_pids", ()),
        )
    finally:
        gen.stop()


def main(argv: list[str]) -> int:
    """The generator process; prints one JSON line and returns the exit status."""
    return child_main(argv, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
