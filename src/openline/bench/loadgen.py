"""The load generator: ``python -m openline.bench.loadgen '{json}'``, one scenario, one server.

It must stay cheaper than every server it measures, so it is written against
``asyncio.BufferedProtocol`` with no WebSocket library (see :mod:`.wire`):

* every connection reads into one shared 1 MiB buffer, so reading allocates
  nothing; only the bytes of a frame cut in two by a read are copied;
* echo replies are counted, not parsed: frames of a known size are counted by
  division, and the header at the first frame boundary of each read is checked
  so that any unexpected frame stops the run instead of skewing it;
* fan-out messages carry their sequence number; a read of ``k`` frames looks
  at the last one only and, when the numbers are consecutive, stores one
  ``(time, first, last)`` record; latencies are computed after the window;
* outgoing frames are built and masked once, before the window.

The result is one JSON line on stdout: the scenario's metrics, this process's
CPU use and the server's during the window (so the report can show which side
was the bottleneck), and notes.
"""

from __future__ import annotations

import array
import asyncio
import bisect
import collections
import json
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from .scenarios import Scenario
from .stats import Histogram
from .system import (
    core_times,
    cpu_seconds,
    die_with_parent,
    pin_to_cpu,
    raise_open_files_limit,
    rss_bytes,
)
from .wire import (
    FIN,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    SEQ,
    FrameError,
    HandshakeFailed,
    Inflater,
    Negotiated,
    client_frame,
    compress,
    find_head_end,
    mask,
    parse_upgrade_response,
    scan_frames,
    server_frame_header,
    upgrade_request,
)

__all__ = ["main", "run"]

HOST = "127.0.0.1"
BUFFER = bytearray(1 << 20)
VIEW = memoryview(BUFFER)
#: Connections being opened at once: below the listen backlog of every server (100).
OPEN_CONCURRENCY = 64
T = TypeVar("T")


class Generator:
    """The state of one run, shared by its connections."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.loop = asyncio.get_running_loop()
        self.scenario = Scenario.from_json(config["scenario"])
        self.port: int = config["port"]
        self.server_pid: int | None = config.get("server_pid")
        self.server_cpu: int | None = config.get("server_cpu")
        self.cpu: int | None = config.get("cpu")
        self.framing: bool = config.get("framing", True)
        self.window: float = config["window"]
        self.warmup: float = config["warmup"]
        self.deadline: float = config.get("deadline", 0.1)
        self.setup_timeout: float = config.get("setup_timeout", 60.0)
        self.deflate = self.scenario.deflate
        self.subprotocol: str | None = config.get("subprotocol")
        self.clients: list[Client] = []
        self.failed: asyncio.Future[None] = self.loop.create_future()
        self.stopping = False
        self.notes: list[str] = []
        # Echo: expected reply frames and replies counted so far.
        self.frame_size = 0
        self.header = b""
        self.batches: list[bytes] = []
        self.received = 0
        self.latencies = array.array("d")
        # Fan-out: publish times by sequence number, and delivery records.
        self.sent = array.array("d", [0.0])
        self.record_time = array.array("d")
        self.record_first = array.array("q")
        self.record_last = array.array("q")
        self.payload_offset = 2
        self.seq_unmask = 0
        # Subscriber reads whose messages didn't follow the previous ones.
        self.irregular = 0

    def request(self, path: str) -> bytes | None:
        """The upgrade request for ``path``; ``None`` for the raw server, which has none."""
        if not self.framing:
            return None
        return upgrade_request(
            HOST, self.port, path, deflate=self.deflate, subprotocol=self.subprotocol
        )

    def fail(self, exc: BaseException) -> None:
        """Stop the run with ``exc`` (the first failure wins)."""
        if not self.failed.done():
            self.failed.set_exception(exc)
            self.failed.exception()  # retrieved: no "never retrieved" warning

    async def guard(self, awaitable: Awaitable[T], timeout: float) -> T:
        """Await ``awaitable`` unless a connection fails or ``timeout`` passes first.

        Raises:
            TimeoutError: ``timeout`` passed.
            Exception: What a connection failed with.
        """
        task = asyncio.ensure_future(awaitable)
        failed: asyncio.Future[Any] = self.failed
        done, _ = await asyncio.wait(
            {task, failed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            return task.result()
        task.cancel()
        if failed in done:
            self.failed.result()
        raise TimeoutError(f"no progress within {timeout:.0f} s")

    async def open(
        self, factory: Callable[[], Client], count: int, port: int | None = None
    ) -> list[Client]:
        """Open ``count`` connections to ``port`` (the server's by default), a few at a time.

        Returns:
            The connections, once all are open.
        """
        opened: list[Client] = []
        port = self.port if port is None else port

        async def worker(share: int) -> None:
            for _ in range(share):
                _, client = await self.loop.create_connection(factory, HOST, port)
                self.clients.append(client)
                await client.opened
                opened.append(client)

        workers = min(OPEN_CONCURRENCY, count)
        shares = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
        await self.guard(asyncio.gather(*(worker(share) for share in shares)), self.setup_timeout)
        return opened

    def stop(self) -> None:
        """Drop every connection at once, without closing handshakes."""
        self.stopping = True
        for client in self.clients:
            transport = client.transport
            if transport is not None:
                transport.abort()


class Window:
    """Wall-clock time and CPU use over a measurement window.

    CPU use is measured for both processes and for both CPUs they are pinned
    to: a CPU can be busy with work no process is charged for (softirqs, where
    loopback TCP does much of its work) or with other programs.
    """

    def __init__(self, generator: Generator) -> None:
        self._server_pid = generator.server_pid
        self._cores = {"server_core": generator.server_cpu, "gen_core": generator.cpu}
        self.start = self.end = 0.0
        self._cpu = self._server_cpu = 0.0
        #: CPU seconds (user + sys) the server process used during the window.
        self.server_seconds: float | None = None
        self._core_times: dict[str, tuple[float, float] | None] = {}
        self.usage: dict[str, float] = {}

    def open(self) -> None:
        self._core_times = {
            name: None if cpu is None else core_times(cpu) for name, cpu in self._cores.items()
        }
        self.start = time.perf_counter()
        self._cpu = time.process_time()
        self._server_cpu = self._server_seconds() or 0.0

    def close(self) -> None:
        self.end = time.perf_counter()
        elapsed = self.end - self.start
        usage = {"gen_cpu_pct": 100 * (time.process_time() - self._cpu) / elapsed}
        server = self._server_seconds()
        if server is not None:
            self.server_seconds = server - self._server_cpu
            usage["server_cpu_pct"] = 100 * self.server_seconds / elapsed
        for name, cpu in self._cores.items():
            before = self._core_times.get(name)
            after = None if cpu is None else core_times(cpu)
            if before is not None and after is not None and after[1] > before[1]:
                usage[f"{name}_busy_pct"] = 100 * (after[0] - before[0]) / (after[1] - before[1])
        self.usage = usage

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def _server_seconds(self) -> float | None:
        return None if self._server_pid is None else cpu_seconds(self._server_pid)


# --- connections ------------------------------------------------------------------------


class Client(asyncio.BufferedProtocol):
    """One connection: the opening handshake, then bytes for a subclass."""

    __slots__ = ("gen", "head", "negotiated", "opened", "request", "tail", "transport")

    def __init__(self, gen: Generator, path: str = "/") -> None:
        self.gen = gen
        self.request = gen.request(path)
        self.transport: asyncio.Transport | None = None
        self.head: bytearray | None = bytearray() if self.request is not None else None
        self.opened: asyncio.Future[None] = gen.loop.create_future()
        self.negotiated = Negotiated()
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.request is None:
            self.opened.set_result(None)
        else:
            self.transport.write(self.request)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.gen.stopping:
            return
        error = ConnectionError(f"the server dropped a connection ({exc or 'end of stream'})")
        if not self.opened.done():
            self.opened.set_exception(error)
        self.gen.fail(error)

    def get_buffer(self, sizehint: int) -> memoryview:
        return VIEW

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if self.head is not None:
                self._handshake(nbytes)
            else:
                self.tail = self.consume(VIEW, nbytes) if not self.tail else self._join(nbytes)
        except Exception as exc:
            self.gen.fail(exc)

    def _join(self, nbytes: int) -> bytes:
        data = self.tail + VIEW[:nbytes]
        return self.consume(data, len(data))

    def _handshake(self, nbytes: int) -> None:
        head = self.head
        assert head is not None
        head += VIEW[:nbytes]
        end = find_head_end(head)
        if end < 0:
            return
        self.negotiated = parse_upgrade_response(bytes(head[: end - 4]))
        if self.gen.deflate and not self.negotiated.deflate:
            raise HandshakeFailed("the server did not accept permessage-deflate")
        self.head = None
        self.opened.set_result(None)
        self.opened_hook()
        rest = bytes(head[end:])
        if rest:
            self.tail = self.consume(rest, len(rest))

    def opened_hook(self) -> None:
        """Called once the connection is open."""

    def consume(self, data: bytes | memoryview, end: int) -> bytes:
        """Process ``data[:end]``; return the bytes of an incomplete frame at its end."""
        return self.consume_frames(data, end)

    def consume_frames(self, data: bytes | memoryview, end: int) -> bytes:
        """Find every complete frame, answer pings, hand data messages to :meth:`received`."""
        frames, stop = scan_frames(data, 0, end)
        messages = []
        for first, start, stop_, key in frames:
            opcode = first & 0x0F
            if opcode in (OP_BINARY, OP_TEXT):
                if not first & FIN:
                    raise FrameError("the server fragmented a message")
                messages.append((start, stop_, key, bool(first & RSV1)))
            elif opcode == OP_PING:
                payload = bytes(data[start:stop_])
                assert self.transport is not None
                self.transport.write(client_frame(payload, OP_PONG))
            elif opcode == OP_CLOSE:
                raise FrameError(f"the server sent a close frame: {bytes(data[start:stop_])!r}")
            elif opcode != OP_PONG:
                raise FrameError(f"unexpected frame with opcode {opcode}")
        if messages:
            self.received_messages(data, messages)
        return bytes(data[stop:end]) if stop < end else b""

    def received_messages(
        self, data: bytes | memoryview, messages: list[tuple[int, int, bytes | None, bool]]
    ) -> None:
        """Data messages arrived: ``(start, end, masking key, compressed)`` in ``data``."""


class Echo(Client):
    """Keeps ``in_flight`` messages outstanding; every reply sends the next message."""

    __slots__ = ("pending", "times")

    def __init__(self, gen: Generator) -> None:
        super().__init__(gen)
        self.pending = 0
        self.times: collections.deque[float] = collections.deque()

    def start(self, count: int) -> None:
        now = time.perf_counter()
        self.times.extend([now] * count)
        assert self.transport is not None
        self.transport.write(self.gen.batches[count])

    def consume(self, data: bytes | memoryview, end: int) -> bytes:
        if self.gen.deflate:  # compressed replies vary in size: parse them
            return self.consume_frames(data, end)
        # Replies have a known size: count them.
        gen = self.gen
        size = gen.frame_size
        previous = self.pending
        pending = previous + end
        count = pending // size
        self.pending = pending - count * size
        if count:
            boundary = (size - previous) % size
            header = gen.header
            if boundary + len(header) <= end and data[boundary : boundary + len(header)] != header:
                got = bytes(data[boundary : boundary + 16])
                raise FrameError(f"expected a reply frame starting {header!r}, got {got!r}")
            self.echoed(count)
        return b""

    def received_messages(
        self, data: bytes | memoryview, messages: list[tuple[int, int, bytes | None, bool]]
    ) -> None:
        self.echoed(len(messages))

    def echoed(self, count: int) -> None:
        gen = self.gen
        now = time.perf_counter()
        times = self.times
        popleft, push = times.popleft, times.append
        record = gen.latencies.append
        if count > len(times):
            raise FrameError(f"{count} replies to {len(times)} messages")
        for _ in range(count):
            record(now - popleft())
            push(now)
        gen.received += count
        assert self.transport is not None
        self.transport.write(gen.batches[count])


class Subscriber(Client):
    """Receives fan-out messages and records when each sequence number arrived."""

    __slots__ = ("inflater", "next_seq")

    def __init__(self, gen: Generator) -> None:
        super().__init__(gen, "/sub")
        self.next_seq = 0
        self.inflater: Inflater | None = None

    def opened_hook(self) -> None:
        if self.negotiated.deflate:
            self.inflater = Inflater(takeover=not self.negotiated.server_no_context_takeover)

    def consume(self, data: bytes | memoryview, end: int) -> bytes:
        gen = self.gen
        if gen.deflate:
            return self.consume_frames(data, end)
        size = gen.frame_size
        count = end // size
        last = (count - 1) * size
        header = gen.header
        if data[0:2] != header or (count and data[last : last + 2] != header):
            return self.consume_frames(data, end)  # not all alike: look at each frame
        if not count:
            return bytes(data[:end])
        unmask = gen.seq_unmask
        offset = gen.payload_offset
        seq = SEQ.unpack_from(data, last + offset)[0] ^ unmask
        first = seq - count + 1
        now = time.perf_counter()
        if first == self.next_seq:
            gen.record_time.append(now)
            gen.record_first.append(first)
            gen.record_last.append(seq)
        else:
            gen.irregular += self.next_seq != 0
            for index in range(count):
                number = SEQ.unpack_from(data, index * size + offset)[0] ^ unmask
                self.record(now, number)
        self.next_seq = seq + 1
        rest = end - count * size
        return bytes(data[end - rest : end]) if rest else b""

    def received_messages(
        self, data: bytes | memoryview, messages: list[tuple[int, int, bytes | None, bool]]
    ) -> None:
        now = time.perf_counter()
        count = len(messages)
        inflater = self.inflater
        if inflater is None or not inflater.takeover:
            # Any message can be read on its own: read only the last.
            seq = self._seq(data, messages[-1])
            if seq - count + 1 == self.next_seq:
                gen = self.gen
                gen.record_time.append(now)
                gen.record_first.append(self.next_seq)
                gen.record_last.append(seq)
                self.next_seq = seq + 1
                return
        irregular = False
        for message in messages:
            seq = self._seq(data, message)
            irregular |= self.next_seq not in (0, seq)
            self.record(now, seq)
            self.next_seq = seq + 1
        self.gen.irregular += irregular

    def record(self, now: float, seq: int) -> None:
        gen = self.gen
        gen.record_time.append(now)
        gen.record_first.append(seq)
        gen.record_last.append(seq)

    def _seq(self, data: bytes | memoryview, message: tuple[int, int, bytes | None, bool]) -> int:
        start, end, key, compressed = message
        payload: bytes | memoryview = data[start:end]
        if key is not None:
            payload = mask(bytes(payload), key)
        if compressed:
            if self.inflater is None:
                raise FrameError("a compressed message without permessage-deflate")
            payload = self.inflater.inflate(payload)
        number: int = SEQ.unpack_from(payload, 0)[0]
        return number


class Silent(Client):
    """Opens, then only answers pings: the publisher and idle connections."""

    __slots__ = ()


class Knock(Client):
    """An idle connection to the raw server, open once one byte made the round trip.

    The raw server has no handshake; without waiting for an answer, connecting
    outruns its accept() calls and overflows the listen backlog.
    """

    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(b"\n")  # type: ignore[union-attr]

    def buffer_updated(self, nbytes: int) -> None:
        if not self.opened.done():
            self.opened.set_result(None)


# --- scenarios --------------------------------------------------------------------------


def _payload(size: int, deflate: bool) -> bytes:
    """A message body: JSON-like text when compression is on, so that it compresses."""
    if not deflate:
        return bytes((i * 7 + 13) % 256 for i in range(size))
    text = b'{"channel":"prices","symbol":"ABC","bid":101.25,"ask":101.5,"size":300}\n'
    return (text * (size // len(text) + 1))[:size]


def _prepare_echo(gen: Generator) -> None:
    scenario = gen.scenario
    payload = _payload(scenario.size, gen.deflate)
    compressed = compress(payload) if gen.deflate else payload
    frame = client_frame(compressed, rsv1=gen.deflate)
    gen.batches = [frame * count for count in range(scenario.in_flight + 1)]
    if gen.framing:
        gen.header = server_frame_header(scenario.size)
        gen.frame_size = len(gen.header) + scenario.size
    else:  # the raw server sends our own frames back
        gen.header = frame[:2]
        gen.frame_size = len(frame)


async def run_echo(gen: Generator) -> dict[str, float]:
    """Echo: ``connections`` x ``in_flight`` messages outstanding, for ``window`` seconds."""
    scenario = gen.scenario
    _prepare_echo(gen)
    clients = await gen.open(lambda: Echo(gen), scenario.connections)
    for client in clients:
        assert isinstance(client, Echo)
        client.start(scenario.in_flight)
    await gen.guard(asyncio.sleep(gen.warmup), gen.warmup + 5)
    window = Window(gen)
    window.open()
    received, first_sample = gen.received, len(gen.latencies)
    await gen.guard(asyncio.sleep(gen.window), gen.window + 5)
    window.close()
    count = gen.received - received
    histogram = Histogram()
    histogram.add_many(gen.latencies[first_sample : first_sample + count])
    rate = count / window.seconds
    return {
        "msgs_per_s": rate,
        "mb_per_s": rate * scenario.size / 1e6,
        **_latencies(histogram),
        **_cpu(window, count),
    }


class _Publisher:
    """Publishes numbered messages at a fixed rate on one connection."""

    def __init__(self, gen: Generator, client: Client) -> None:
        self.gen = gen
        self.client = client
        self.next_seq = 1
        self.filler = _payload(gen.scenario.size, gen.deflate)[SEQ.size :]

    def publish(self, count: int) -> None:
        frames = []
        for _ in range(count):
            payload = SEQ.pack(self.next_seq) + self.filler
            if self.gen.deflate:
                frames.append(client_frame(compress(payload), rsv1=True))
            else:
                frames.append(client_frame(payload))
            self.next_seq += 1
        now = time.perf_counter()
        self.gen.sent.extend([now] * count)
        assert self.client.transport is not None
        self.client.transport.write(b"".join(frames))

    async def run(self) -> None:
        """Publish until cancelled; catch up when the loop was late, to keep the rate."""
        rate = self.gen.scenario.rate
        start = time.perf_counter()
        published = 0
        while True:
            due = int((time.perf_counter() - start) * rate) + 1 - published
            if due > 0:
                self.publish(due)
                published += due
            await asyncio.sleep(max(0.0, start + published / rate - time.perf_counter()))


async def run_fanout(gen: Generator) -> dict[str, float]:
    """Fan-out: one publisher at ``rate`` messages/s, ``connections`` subscribers."""
    scenario = gen.scenario
    if gen.framing:
        gen.header = server_frame_header(scenario.size)
        gen.payload_offset = len(gen.header)
    else:  # the raw relay forwards our masked frames as they are
        gen.header = client_frame(b"\0" * scenario.size)[:2]
        gen.payload_offset = 6
        gen.seq_unmask = int.from_bytes(mask(b"\0" * SEQ.size), "big")
    gen.frame_size = gen.payload_offset + scenario.size
    subscribers = await gen.open(lambda: Subscriber(gen), scenario.connections)
    (connection,) = await gen.open(lambda: Silent(gen, "/pub"), 1)
    publisher = _Publisher(gen, connection)
    task = asyncio.ensure_future(publisher.run())
    try:
        await gen.guard(_all_subscribed(subscribers), gen.setup_timeout)
        await gen.guard(asyncio.sleep(gen.warmup), gen.warmup + 5)
        window = Window(gen)
        window.open()
        first_seq = publisher.next_seq
        await gen.guard(asyncio.sleep(gen.window), gen.window + 5)
        window.close()
        last_seq = publisher.next_seq - 1
    finally:
        task.cancel()
    grace = max(gen.deadline, min(1.0, gen.window))
    await gen.guard(asyncio.sleep(grace), grace + 5)
    metrics = _deliveries(gen, window, first_seq, last_seq, grace)
    metrics["published_per_s"] = (last_seq - first_seq + 1) / window.seconds
    if gen.irregular:
        gen.notes.append(
            f"{gen.irregular} subscriber reads had messages out of sequence (lost or reordered)"
        )
    handled = metrics.get("deliveries_per_s", 0.0) * window.seconds
    return {**metrics, **_cpu(window, handled)}


async def _all_subscribed(subscribers: Sequence[Client]) -> None:
    """Wait until every subscriber received a message: the server knows them all."""
    while not all(isinstance(s, Subscriber) and s.next_seq for s in subscribers):
        await asyncio.sleep(0.05)


def _deliveries(
    gen: Generator, window: Window, first_seq: int, last_seq: int, grace: float
) -> dict[str, float]:
    """Throughput and latency of what arrived in the window; punctuality of what was sent in it."""
    records = (gen.record_time, gen.record_first, gen.record_last)
    counted = Tally.count(
        gen.sent,
        records,
        window=(window.start, window.end),
        published=(first_seq, last_seq),
        subscribers=gen.scenario.connections,
        deadline=gen.deadline,
        grace=grace,
    )
    return counted.metrics(window.seconds)


class Tally:
    """What a group of subscribers received, counted from their ``(time, first, last)`` records.

    Attributes:
        in_window: Deliveries received during the window.
        in_time: Deliveries of messages published during the window that
            arrived within the deadline.
        delivered: Deliveries of messages published during the window that
            arrived by the end of the grace period.
        due: Deliveries owed for the messages published during the window:
            subscribers times messages.
        histogram: Latencies of the deliveries received during the window.
    """

    __slots__ = ("delivered", "due", "histogram", "in_time", "in_window")

    def __init__(self) -> None:
        self.in_window = self.in_time = self.delivered = self.due = 0
        self.histogram = Histogram()

    @classmethod
    def count(
        cls,
        sent: Sequence[float],
        records: tuple[Sequence[float], Sequence[int], Sequence[int]],
        *,
        window: tuple[float, float],
        published: tuple[int, int],
        subscribers: int,
        deadline: float,
        grace: float,
    ) -> Tally:
        """Count the deliveries in ``records`` of messages sent at ``sent[seq]``.

        Latency is measured on every delivery received during the window, so
        that it is defined even for a server so far behind that none of the
        window's own messages arrive before the end.

        Args:
            sent: Publish times by sequence number (increasing).
            records: Arrival times, and the first and last sequence number
                that arrived together.
            window: Start and end of the window, in the clock of ``sent``.
            published: First and last sequence number published during the window.
            subscribers: How many subscribers the records are from.
            deadline: Seconds within which a delivery counts as in time.
            grace: Seconds after the window in which deliveries still count as delivered.
        """
        tally = cls()
        start, end = window
        first_seq, last_seq = published
        in_window = in_time = delivered = 0
        histogram = tally.histogram
        for now, first, last in zip(*records, strict=True):
            if start <= now <= end:
                in_window += last - first + 1
                histogram.add_many([now - moment for moment in sent[first : last + 1]])
            low, high = max(first, first_seq), min(last, last_seq)
            if low > high or now > end + grace:
                continue
            delivered += high - low + 1
            # sent[] grows with the sequence number: those sent after now - deadline are on time.
            on_time_from = bisect.bisect_left(sent, now - deadline, low, high + 1)
            in_time += high + 1 - on_time_from
        tally.in_window, tally.in_time, tally.delivered = in_window, in_time, delivered
        tally.due = subscribers * max(0, last_seq - first_seq + 1)
        return tally

    def merge(self, other: Tally) -> None:
        """Add ``other``'s counts to these."""
        self.in_window += other.in_window
        self.in_time += other.in_time
        self.delivered += other.delivered
        self.due += other.due
        self.histogram.merge(other.histogram)

    def metrics(self, seconds: float) -> dict[str, float]:
        """Deliveries per second over a window of ``seconds``, shares of what was due, latencies."""
        due = self.due
        return {
            "deliveries_per_s": self.in_window / seconds,
            "in_time_pct": 100 * self.in_time / due if due else 0.0,
            "delivered_pct": 100 * self.delivered / due if due else 0.0,
            **_latencies(self.histogram),
        }


async def run_idle(gen: Generator) -> dict[str, float]:
    """Idle: open ``connections`` and report the server's RSS growth and handshake rate."""
    scenario = gen.scenario
    pid = gen.server_pid
    idle: type[Client] = Silent if gen.framing else Knock
    # Connections opened first warm up the server's code paths and allocators.
    await gen.open(lambda: idle(gen), max(10, scenario.connections // 100))
    await _quiet(pid)
    before = rss_bytes(pid) if pid else None
    window = Window(gen)
    window.open()
    await gen.open(lambda: idle(gen), scenario.connections)
    window.close()
    await _quiet(pid)
    after = rss_bytes(pid) if pid else None
    metrics = {
        "handshakes_per_s": scenario.connections / window.seconds,
        "connections": float(scenario.connections),
        **_cpu(window),
    }
    if before is not None and after is not None:
        metrics["kb_per_conn"] = (after - before) / scenario.connections / 1024
    return metrics


async def _quiet(pid: int | None, timeout: float = 5.0) -> None:
    """Wait until the server has used no CPU for 0.3 s: it finished what it was doing."""
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    previous = cpu_seconds(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        current = cpu_seconds(pid)
        if current == previous:
            return
        previous = current


def _latencies(histogram: Histogram) -> dict[str, float]:
    p50, p99 = histogram.quantile(0.5), histogram.quantile(0.99)
    if p50 is None or p99 is None:
        return {}
    return {"p50_ms": p50 * 1000, "p99_ms": p99 * 1000}


def _cpu(window: Window, handled: float = 0.0) -> dict[str, float]:
    """The window's CPU use, and the server's CPU per message when it handled any.

    ``handled`` is what the server did in the window: messages echoed, or
    deliveries to subscribers. CPU per message shows what throughput can't: a
    change that lets a server batch more keeps the rate while costing more.
    """
    usage = dict(window.usage)
    if handled > 0 and window.server_seconds is not None:
        usage["server_us_per_msg"] = 1e6 * window.server_seconds / handled
    return usage


_RUNNERS: dict[str, Callable[[Generator], Awaitable[dict[str, float]]]] = {
    "echo": run_echo,
    "fanout": run_fanout,
    "idle": run_idle,
}


async def run(config: dict[str, Any]) -> dict[str, Any]:
    """Run one scenario against one server; return the metrics and notes."""
    gen = Generator(config)
    try:
        metrics = await _RUNNERS[gen.scenario.kind](gen)
    finally:
        gen.stop()
    return {"metrics": metrics, "notes": gen.notes}


def child_main(argv: list[str], run: Callable[[dict[str, Any]], Coroutine[Any, Any, Any]]) -> int:
    """A generator process: run ``run(config)`` on uvloop, print one JSON line, return the status.

    ``argv[0]`` is the JSON config; the process dies with its parent, is pinned
    to ``config["cpu"]`` and may open ``config["open_files"]`` files.
    """
    config = json.loads(argv[0])
    die_with_parent()
    pin_to_cpu(config.get("cpu"))
    raise_open_files_limit(config.get("open_files", 1024))
    import uvloop

    try:
        result = uvloop.run(run(config))
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


def main(argv: list[str]) -> int:
    """The generator process; prints one JSON line and returns the exit status."""
    return child_main(argv, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
