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

from .loadgen import BUFFER, VIEW, Client, Generator, Tally, Window, _Publisher, child_main
from .system import cpu_seconds
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
#: The byte at offset 9 of a hub message, ``{"type":"m``, and of no other reply.
_M = ord("m")
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

    __slots__ = ("firsts", "gaps", "irregular", "lasts", "name", "parsed", "subscribers", "times")

    def __init__(self, name: str, subscribers: int) -> None:
        self.name = name
        self.subscribers = subscribers
        self.times = array.array("d")
        self.firsts = array.array("q")
        self.lasts = array.array("q")
        self.irregular = 0
        self.gaps = 0
        self.parsed = 0

    def record(self, now: float, first: int, last: int) -> None:
        """Messages ``first`` to ``last`` arrived at ``now``."""
        self.times.append(now)
        self.firsts.append(first)
        self.lasts.append(last)


# --- connections ------------------------------------------------------------------------


class HubSubscriber(Client):
    """Subscribes to :data:`CHANNEL` once open; records the sequence numbers that arrive."""

    __slots__ = ("group", "next_seq", "subscribed")

    def __init__(self, gen: Generator, group: Group) -> None:
        super().__init__(gen, "/")
        self.group = group
        self.next_seq = 0
        # The raw relay has no protocol: every connection is a subscriber from the start.
        self.subscribed = not gen.framing

    def opened_hook(self) -> None:
        assert self.transport is not None
        self.transport.write(SUBSCRIBE)

    def consume(self, data: bytes | memoryview, end: int) -> bytes:
        # bytearray and bytes have find(); the shared buffer's memoryview doesn't.
        raw: bytes | bytearray = BUFFER if data is VIEW else bytes(data)
        next_seq = self.next_seq
        # The usual read: exactly one text frame of 126 to 65535 bytes (a hub message).
        if (
            next_seq
            and end > 13
            and raw[0] == _TEXT
            and raw[1] == 126
            and (raw[2] << 8 | raw[3]) + 4 == end
            and raw[13] == _M
        ):
            seq = self._last_seq(raw, 4, end)
            if seq == next_seq:
                group = self.group
                group.times.append(time.perf_counter())
                group.firsts.append(seq)
                group.lasts.append(seq)
                self.next_seq = seq + 1
                return b""
        frames, stop = scan_frames(raw, 0, end)
        if frames:
            now = time.perf_counter()
            _, start, stop_, _ = frames[-1]
            # All messages, or a hole could hide behind another frame (a gap, a reply).
            if next_seq and all(f == _TEXT and raw[s + 9] == _M for f, s, _, _ in frames):
                seq = self._last_seq(raw, start, stop_)
                if seq - len(frames) + 1 == next_seq:
                    group = self.group
                    group.times.append(now)
                    group.firsts.append(next_seq)
                    group.lasts.append(seq)
                    self.next_seq = seq + 1
                    return bytes(raw[stop:end]) if stop < end else b""
            self._parse(raw, frames, now)
        return bytes(raw[stop:end]) if stop < end else b""

    @staticmethod
    def _last_seq(raw: bytes | bytearray, start: int, stop: int) -> int:
        """The ``seq`` of a hub message ending with ``"seq":N}}`` in ``raw[start:stop]``, or -1."""
        colon = raw.rfind(b":", start, stop)
        if colon <= start or raw[colon - 5 : colon] != _SEQ_KEY or raw[stop - 2 : stop] != b"}}":
            return -1
        return int(raw[colon + 1 : stop - 2])

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
                raise FrameError(f"the hub sent a close frame: {bytes(raw[start:stop])!r}")
            if first != _TEXT:
                raise FrameError(f"expected a text frame, got first byte {first:#04x}")
            message = json.loads(bytes(raw[start:stop]))
            kind = message.get("type")
            if kind == "message":
                seq = message["data"]["seq"]
                irregular |= self.next_seq not in (0, seq)
                group.record(now, seq, seq)
                self.next_seq = seq + 1
            elif kind == "subscribed":
                self.subscribed = True
            elif kind == "gap":
                group.gaps += 1
            elif kind == "error":
                raise FrameError(f"the hub refused a request: {message}")
        group.irregular += irregular


class PublisherClient(Client):
    """The publisher's connection: counts ``ack`` replies, fails the run on an ``error``."""

    __slots__ = ("acks",)

    def __init__(self, gen: Generator) -> None:
        super().__init__(gen, "/")
        self.acks = 0

    def received_messages(
        self, data: bytes | memoryview, messages: list[tuple[int, int, bytes | None, bool]]
    ) -> None:
        for start, end, _, _ in messages:
            message = json.loads(bytes(data[start:end]))
            kind = message.get("type")
            if kind == "ack":
                self.acks += 1
            elif kind == "error":
                raise FrameError(f"the hub refused a publish: {message}")


class HubPublisher(_Publisher):
    """Publishes ``{"t": <send time>, "seq": N}`` to :data:`CHANNEL` at the scenario's rate."""

    def publish(self, count: int) -> None:
        now = time.perf_counter()
        stamp = repr(now).encode()
        frames = []
        for _ in range(count):
            seq = self.next_seq
            if self.gen.framing:
                payload = b'{"type":"publish","ch":"%b","data":{"t":%b,"seq":%d}}' % (
                    CHANNEL.encode(),
                    stamp,
                    seq,
                )
                frames.append(client_frame(payload, OP_TEXT))
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


async def run_cluster(gen: Generator, ports: list[int], pids: dict[str, int]) -> dict[str, Any]:
    """Subscribers spread over ``ports``, a publisher on the first; measure one window."""
    scenario = gen.scenario
    groups = [
        Group(f"node{index + 1}", count)
        for index, count in enumerate(shares(scenario.connections, len(ports)))
    ]
    subscribers: list[HubSubscriber] = []
    for group, port in zip(groups, ports, strict=True):

        def factory(group: Group = group) -> Client:
            return HubSubscriber(gen, group)

        opened = await gen.open(factory, group.subscribers, port)
        subscribers += [client for client in opened if isinstance(client, HubSubscriber)]
    await gen.guard(_wait_until(subscribers, "subscribed"), gen.setup_timeout)
    (connection,) = await gen.open(lambda: PublisherClient(gen), 1, ports[0])
    publisher = HubPublisher(gen, connection)
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
    return _result(gen, groups, window, (first_seq, last_seq), grace)


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
        return await run_cluster(gen, config["ports"], config.get("pids", {}))
    finally:
        gen.stop()


def main(argv: list[str]) -> int:
    """The generator process; prints one JSON line and returns the exit status."""
    return child_main(argv, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
