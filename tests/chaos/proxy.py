"""A fault-injecting TCP proxy on loopback, driven by the test that runs it.

:class:`ChaosProxy` listens on 127.0.0.1 (port 0) and forwards every accepted
connection to a target, byte for byte. The test breaks the line on demand:

* ``cut("fin")``: close both sides cleanly (FIN), as a server process that exits;
* ``cut("rst")``: reset both sides (``SO_LINGER`` 0, then close), as a crashed
  host or a NAT that forgot the flow;
* ``cut("blackhole")``: keep both sockets open but drop every byte, both ways,
  like a train in a tunnel. Neither end hears of it: each must notice the
  silence by its own heartbeat and give up. A blackholed link stays silent
  until both ends have closed (or :meth:`ChaosProxy.close`);
* ``pause()`` / ``resume()``: hold bytes back (a stall), then deliver them;
* ``latency``: delay every chunk, in order, by a fixed or random time;
* ``refuse``: reset new connections at once, as a server that is down.

Everything is bounded: at most ``max_held`` bytes wait per direction before the
proxy stops reading from the sender (so TCP pushes back), and at most
``max_links`` connections are served at once. Random choices come from one
seeded :class:`random.Random`, so a run can be replayed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import random
import socket
import struct
from typing import Literal, cast

__all__ = ["ChaosProxy", "CutMode", "Link", "Stats"]

CutMode = Literal["fin", "rst", "blackhole"]

# Items of a pipe's queue: bytes to write; b"" to half-close the destination
# (the sender's FIN); None to close it (the sender's socket closed).
_EOF = b""


@dataclasses.dataclass
class Stats:
    """What the proxy did, for a test to check and print.

    Attributes:
        accepted: Connections accepted from clients.
        connected: Connections that reached the target.
        refused: Connections reset at once (``refuse``, ``max_links``, or the
            target unreachable).
        cuts: Links cut, by mode.
        bytes_up: Bytes forwarded from clients to the target.
        bytes_down: Bytes forwarded from the target to clients.
        dropped: Bytes dropped by blackholes.
    """

    accepted: int = 0
    connected: int = 0
    refused: int = 0
    cuts: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"fin": 0, "rst": 0, "blackhole": 0}
    )
    bytes_up: int = 0
    bytes_down: int = 0
    dropped: int = 0


class _End(asyncio.Protocol):
    """One socket of a link: the client's side, or the target's."""

    def __init__(self, link: Link, name: str) -> None:
        self.link = link
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.out: _Pipe | None = None  # the pipe that carries what this end receives
        self.eof_in = False  # the peer behind this socket sent FIN
        self.eof_out = False  # we sent FIN on this socket
        self.closed = False
        self.reading_paused = False
        self.refused = False  # reset as soon as connected

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's aren't subclasses
        if self.refused:
            self.reset()

    def data_received(self, data: bytes) -> None:
        assert self.out is not None
        self.out.feed(data)

    def eof_received(self) -> bool:
        self.eof_in = True
        if self.link.blackholed:
            return False  # this end gave up: close our socket; the other end hears nothing
        assert self.out is not None
        self.out.feed(_EOF)
        self._close_if_done()
        return True  # stay half-open: the other direction may still carry data

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.link._lost(self, exc)

    # --- driven by the link -----------------------------------------------------------

    def write(self, data: bytes | None) -> None:
        if self.transport is None or self.closed or self.transport.is_closing():
            return
        if data is None:
            self.transport.close()
        elif not data:
            if self.eof_out:
                return
            self.eof_out = True
            self.transport.write_eof()
            self._close_if_done()
        else:
            self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        """Close cleanly: flush what was written, then FIN."""
        if self.transport is not None and not self.closed:
            self.transport.close()

    def reset(self) -> None:
        """Close with an RST: linger 0 makes the kernel drop the socket's buffers."""
        transport = self.transport
        if transport is None or self.closed:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and not transport.is_closing():
            # uvloop's socket stand-in raises ValueError once its fd is gone.
            with contextlib.suppress(OSError, ValueError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    def _close_if_done(self) -> None:
        # FIN went both ways through this socket: nothing more can cross it.
        if self.eof_in and self.eof_out:
            self.close()


class _Pipe:
    """One direction of a link: bytes from ``src`` to ``dst``, in order.

    Bytes go straight through unless the proxy is paused, latency is set, or
    the destination isn't connected yet; then they wait in a queue, each chunk
    with the time it is due. Past ``max_held`` queued bytes, reading from
    ``src`` pauses until the queue drains below half of that.
    """

    def __init__(self, link: Link, src: _End, dst: _End, *, upstream: bool) -> None:
        self.link = link
        self.src = src
        self.dst = dst
        self.upstream = upstream
        self.queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.held = 0
        self.last_due = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def feed(self, data: bytes | None) -> None:
        """Carry ``data`` (``b""``: FIN, ``None``: close) to the destination."""
        link, proxy = self.link, self.link.proxy
        if link.blackholed:
            proxy.stats.dropped += len(data or b"")
            return
        delay = proxy._sample_latency()
        if not self.queue and delay == 0.0 and self._can_deliver():
            self._deliver(data)
            return
        loop = asyncio.get_running_loop()
        due = max(loop.time() + delay, self.last_due)
        self.last_due = due
        self.queue.append((due, data))
        self.held += len(data or b"")
        if self.held > proxy.max_held:
            self.src.pause_reading()
        self.schedule()

    def schedule(self) -> None:
        if self.timer is not None or not self.queue or not self._can_deliver():
            return
        loop = asyncio.get_running_loop()
        self.timer = loop.call_at(self.queue[0][0], self._run)

    def drop(self) -> None:
        """Forget what is queued (the line was cut)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        self.held = 0

    def _can_deliver(self) -> bool:
        return not self.link.proxy.paused and self.dst.transport is not None

    def _run(self) -> None:
        self.timer = None
        now = asyncio.get_running_loop().time()
        while self.queue and self.queue[0][0] <= now and self._can_deliver():
            _, data = self.queue.popleft()
            self.held -= len(data or b"")
            self._deliver(data)
        if self.held <= self.link.proxy.max_held // 2:
            self.src.resume_reading()
        self.schedule()

    def _deliver(self, data: bytes | None) -> None:
        stats = self.link.proxy.stats
        if data is not None:
            if self.upstream:
                stats.bytes_up += len(data)
            else:
                stats.bytes_down += len(data)
        self.dst.write(data)


class Link:
    """One proxied connection: the client's socket and the target's.

    Attributes:
        number: The link's rank among the connections accepted, from 1.
        blackholed: Whether :meth:`ChaosProxy.cut` blackholed it.
    """

    def __init__(self, proxy: ChaosProxy, number: int) -> None:
        self.proxy = proxy
        self.number = number
        self.client = _End(self, "client")
        self.server = _End(self, "server")
        self.up = _Pipe(self, self.client, self.server, upstream=True)
        self.down = _Pipe(self, self.server, self.client, upstream=False)
        self.client.out = self.up
        self.server.out = self.down
        self.blackholed = False
        self.task: asyncio.Task[None] | None = None

    @property
    def is_open(self) -> bool:
        """Whether bytes can still cross: not blackholed, both sockets open."""
        return not self.blackholed and not self.client.closed and not self.server.closed

    def cut(self, mode: CutMode) -> None:
        """Break the line; see :meth:`ChaosProxy.cut`."""
        self.up.drop()
        self.down.drop()
        if mode == "blackhole":
            self.blackholed = True
            # Keep reading, and dropping: the senders' writes succeed as into a tunnel.
            self.client.resume_reading()
            self.server.resume_reading()
        elif mode == "fin":
            self.client.close()
            self.server.close()
        elif mode == "rst":
            self.client.reset()
            self.server.reset()
        else:
            raise ValueError(f"mode must be fin, rst or blackhole, got {mode!r}")
        if self.task is not None and not self.task.done():
            self.task.cancel()  # still dialling the target: give up on it

    def abort(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.up.drop()
        self.down.drop()
        self.client.reset()
        self.server.reset()

    async def dial(self, host: str, port: int) -> None:
        """Connect to the target; reset the client's socket if that fails."""
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: self.server, host, port)
        except OSError:
            self.proxy.stats.refused += 1
            self.client.reset()
            return
        self.proxy._connected(self)
        self.up.schedule()

    def _lost(self, end: _End, exc: Exception | None) -> None:
        other = self.server if end is self.client else self.client
        if end is self.client and self.task is not None and not self.task.done():
            self.task.cancel()
        if self.blackholed:
            pass  # the other end hears nothing: it must find out by itself
        elif exc is not None:
            self.up.drop()
            self.down.drop()
            other.reset()  # pass a reset on as a reset
        else:
            # A clean close: what was queued towards the other end goes first.
            (self.up if end is self.client else self.down).feed(None)
        if self.client.closed and (self.server.closed or self.server.transport is None):
            self.proxy._forget(self)


class ChaosProxy:
    """A TCP proxy on 127.0.0.1 that a test can cut, blackhole, pause and slow down.

    Use as ``async with ChaosProxy(host, port) as proxy:``; clients dial
    ``proxy.port`` (or :meth:`url`).

    Args:
        target_host: Where to forward connections.
        target_port: The target's port.
        seed: Seeds the random source used for latency, and offered to the test
            as :attr:`rng`.
        latency: Delay of every chunk of bytes, in seconds: a number, or a
            ``(low, high)`` range drawn uniformly per chunk (order is kept);
            ``None`` forwards at once.
        max_held: Bytes queued per direction (paused, or delayed) before the
            proxy stops reading from the sender.
        max_links: Connections served at once; more are reset.

    Attributes:
        rng: The seeded random source.
        stats: Counters; see :class:`Stats`.
        refuse: When true, new connections are reset at once.
        paused: Whether :meth:`pause` holds bytes back.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        seed: int = 0,
        latency: float | tuple[float, float] | None = None,
        max_held: int = 1 << 20,
        max_links: int = 1000,
    ) -> None:
        if isinstance(latency, tuple):
            low, high = latency
            if not 0 <= low <= high:
                raise ValueError(
                    f"latency must be a (low, high) range with 0 <= low <= high, got {latency!r}"
                )
        elif latency is not None and latency < 0:
            raise ValueError(f"latency must be >= 0 or None, got {latency!r}")
        if max_held < 1 or max_links < 1:
            raise ValueError("max_held and max_links must be >= 1")
        self.target = (target_host, target_port)
        self.rng = random.Random(seed)
        # Separate, so that the test's draws don't depend on how many chunks flowed.
        self._latency_rng = random.Random(f"{seed}/latency")
        self.latency = latency
        self.max_held = max_held
        self.max_links = max_links
        self.stats = Stats()
        self.refuse = False
        self.paused = False
        self._links: dict[Link, None] = {}
        self._server: asyncio.Server | None = None
        self._waiters: list[tuple[int, asyncio.Future[Link]]] = []
        self._last_link: Link | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> ChaosProxy:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        """Stop listening and reset every link, blackholed ones included."""
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        tasks = [link.task for link in self._links if link.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        # Let connection_lost callbacks run.
        await asyncio.sleep(0)
        for _, waiter in self._waiters:
            waiter.cancel()

    async def __aenter__(self) -> ChaosProxy:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        assert self._server is not None, "the proxy isn't started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, path: str = "/", scheme: str = "ws") -> str:
        """The URI that reaches the target through the proxy."""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    # --- faults -------------------------------------------------------------------------

    @property
    def links(self) -> list[Link]:
        """The links bytes can still cross (not cut, not blackholed)."""
        return [link for link in self._links if link.is_open]

    @property
    def all_links(self) -> list[Link]:
        """Every link not yet fully closed, blackholed ones included."""
        return list(self._links)

    def cut(self, mode: CutMode = "fin") -> int:
        """Break every open link; return how many were cut.

        Args:
            mode: ``"fin"`` closes both sockets cleanly, ``"rst"`` resets both,
                ``"blackhole"`` keeps both open and drops every byte from now on.

        Raises:
            ValueError: ``mode`` is none of those.
        """
        if mode not in ("fin", "rst", "blackhole"):
            raise ValueError(f"mode must be fin, rst or blackhole, got {mode!r}")
        links = self.links
        for link in links:
            link.cut(mode)
        self.stats.cuts[mode] += len(links)
        return len(links)

    def pause(self) -> None:
        """Hold every byte back, on every link, until :meth:`resume`."""
        self.paused = True

    def resume(self) -> None:
        """Deliver what :meth:`pause` held back, in order, and forward again."""
        self.paused = False
        for link in list(self._links):
            link.up.schedule()
            link.down.schedule()

    async def wait_connected(self, count: int) -> Link:
        """Wait until ``count`` links in all reached the target; return the latest one."""
        if self.stats.connected >= count:
            assert self._last_link is not None
            return self._last_link
        waiter: asyncio.Future[Link] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, waiter))
        return await waiter

    # --- private ------------------------------------------------------------------------

    def _accept(self) -> _End:
        self.stats.accepted += 1
        link = Link(self, self.stats.accepted)
        if self.refuse or len(self._links) >= self.max_links:
            self.stats.refused += 1
            link.client.refused = True
            return link.client
        self._links[link] = None
        link.task = asyncio.ensure_future(link.dial(*self.target))
        return link.client

    def _connected(self, link: Link) -> None:
        self.stats.connected += 1
        self._last_link = link
        still = []
        for count, waiter in self._waiters:
            if waiter.done():
                continue
            if self.stats.connected >= count:
                waiter.set_result(link)
            else:
                still.append((count, waiter))
        self._waiters = still

    def _forget(self, link: Link) -> None:
        self._links.pop(link, None)

    def _sample_latency(self) -> float:
        latency = self.latency
        if latency is None:
            return 0.0
        if isinstance(latency, tuple):
            return self._latency_rng.uniform(*latency)
        return float(latency)
