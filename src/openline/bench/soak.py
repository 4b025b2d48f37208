"""``openline bench --soak``: idle hub subscribers held for minutes, keepalive on.

What an idle hub costs over time. A hub server (this module run as
``python -m openline.bench.soak '{json}'``: :class:`openline.hub.Hub` with its
defaults, keepalive included: a ping every 10 s, 10 s to answer) runs in its
own process; this process is the load generator: it opens ``connections``
WebSocket connections, each subscribing to one of ``channels`` channels, and
holds them for ``minutes``. Every ``sample_interval`` seconds it reads the
server's resident memory and CPU time from ``/proc``.

The report gives the RSS slope (KB per minute, least squares over the samples
after the warm-up: a leak shows as a steady climb), the server's idle CPU (% of
one core, and microseconds per connection per second), and the keepalive
check: every connection still open at the end, and the pings each received.
The hub closes a connection whose pong is 10 s late, so a hold of a minute or
more with no connection lost shows that every ping was answered.

Each client drives the sans-I/O core itself (:class:`~.protocol.Connection`
behind an :class:`asyncio.Protocol`), which answers pings and lets the client
count them. Results go to ``soak.json`` and ``soak.md`` in ``output``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import pathlib
import signal
import statistics
import sys
import time
from typing import Any, TextIO, cast

from ..exceptions import InvalidHandshake
from ..protocol.connection import Connection, Side
from ..protocol.events import Ping, TextMessage
from ..protocol.frames import Close
from ..protocol.handshake import ClientHandshake
from ..protocol.http11 import parse_response
from .system import (
    available_cpus,
    cpu_seconds,
    die_with_parent,
    machine_info,
    pin_to_cpu,
    raise_open_files_limit,
    rss_bytes,
)

__all__ = ["Options", "least_squares_slope", "run", "summarize"]

HOST = "127.0.0.1"
#: File descriptors a process needs beyond its connections.
_SPARE_FILES = 256
#: Upgrade requests in flight at once while connecting.
_CONCURRENT_OPENS = 200
#: Seconds one connection may take to open and subscribe.
_OPEN_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class Options:
    """What ``openline bench --soak`` was asked to do.

    Attributes:
        connections: Subscribers to hold open.
        channels: Channels they are spread over, round robin.
        minutes: How long to hold them, after they are all subscribed.
        sample_interval: Seconds between two samples of the server's RSS and CPU.
        warmup: Seconds of samples left out of the slope and the CPU figures;
            ``None`` means a fifth of the hold, at most 60 s.
        ping_interval: The hub's keepalive period, in seconds (its default, 10).
        output: Where ``soak.json`` and ``soak.md`` go.
        server_cpu: The CPU the server is pinned to; ``None`` leaves it free.
        client_cpu: The CPU this process is pinned to; ``None`` leaves it free.
    """

    connections: int = 10_000
    channels: int = 100
    minutes: float = 10.0
    sample_interval: float = 5.0
    warmup: float | None = None
    ping_interval: float = 10.0
    output: str = "bench/results/soak"
    server_cpu: int | None = 0
    client_cpu: int | None = 1

    def check(self) -> None:
        """Raise ``ValueError`` naming the first argument out of range."""
        for name in ("connections", "channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("minutes", "sample_interval", "ping_interval"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.warmup is not None and not 0 <= self.warmup < self.minutes * 60:
            raise ValueError(f"warmup must be in [0, minutes * 60), got {self.warmup}")

    @property
    def hold_seconds(self) -> float:
        """How long the connections are held."""
        return self.minutes * 60

    @property
    def warmup_seconds(self) -> float:
        """Seconds of samples left out of the slope and the CPU figures."""
        if self.warmup is not None:
            return self.warmup
        return min(60.0, self.hold_seconds / 5)


# --- the load generator's clients ---------------------------------------------------------


@dataclasses.dataclass
class Tally:
    """What every client of this process saw, together."""

    subscribed: int = 0
    lost: int = 0
    pings: int = 0
    closes: dict[int, int] = dataclasses.field(default_factory=dict)


class Subscriber(asyncio.Protocol):
    """One idle hub subscriber: handshake, one ``subscribe``, then pongs only."""

    def __init__(self, tally: Tally, channel: str, port: int) -> None:
        self.tally = tally
        self.channel = channel
        self.pings = 0
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.stopping = False
        self._handshake: ClientHandshake | None = ClientHandshake(
            HOST, port, "/ws", secure=False, subprotocols=["openline.v1"]
        )
        self._head = b""
        self._core: Connection | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the upgrade request."""
        assert self._handshake is not None
        # uvloop's transports don't subclass asyncio.Transport: cast, don't check.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._handshake.build_request().serialize())

    def data_received(self, data: bytes) -> None:
        """Finish the handshake, then feed the core and count its pings."""
        core = self._core
        if core is None:
            self._receive_handshake(data)
            return
        core.receive_data(data)
        for event in core.events_received():
            if type(event) is Ping:
                self.pings += 1
                self.tally.pings += 1
            elif type(event) is TextMessage and not self.subscribed.done():
                if json.loads(event.data).get("type") == "subscribed":
                    self.tally.subscribed += 1
                    self.subscribed.set_result(None)
            elif type(event) is Close:
                self.tally.closes[event.code] = self.tally.closes.get(event.code, 0) + 1
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        """Count a connection that ended before the soak did."""
        if not self.stopping:
            self.tally.lost += 1
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(f"lost while subscribing: {exc}"))

    def abort(self) -> None:
        """Drop the connection at the end of the soak."""
        self.stopping = True
        if self._transport is not None:
            self._transport.abort()

    def _receive_handshake(self, data: bytes) -> None:
        self._head += data
        parsed = parse_response(self._head)
        if parsed is None:
            return
        response, used = parsed
        assert self._handshake is not None
        try:
            self._handshake.process_response(response)
        except InvalidHandshake as exc:
            self.subscribed.set_exception(ConnectionError(f"handshake refused: {exc}"))
            self.abort()
            return
        self._handshake = None
        rest, self._head = self._head[used:], b""
        self._core = core = Connection(Side.CLIENT)
        core.send_text(json.dumps({"type": "subscribe", "ch": self.channel}))
        if rest:
            self.data_received(rest)
        else:
            self._flush()

    def _flush(self) -> None:
        assert self._core is not None and self._transport is not None
        for chunk in self._core.data_to_send():
            if chunk:
                self._transport.write(chunk)


async def open_subscribers(options: Options, port: int, tally: Tally) -> list[Subscriber]:
    """Open every connection and wait until each is subscribed.

    Raises:
        ConnectionError: A connection failed or timed out.
    """
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(_CONCURRENT_OPENS)
    clients: list[Subscriber] = []

    async def open_one(index: int) -> None:
        async with gate:
            client = Subscriber(tally, f"soak-{index % options.channels}", port)
            clients.append(client)
            await loop.create_connection(lambda: client, HOST, port)
            try:
                await asyncio.wait_for(client.subscribed, _OPEN_TIMEOUT)
            except asyncio.TimeoutError:
                raise ConnectionError(
                    f"connection {index} wasn't subscribed within {_OPEN_TIMEOUT} s"
                ) from None

    await asyncio.gather(*(open_one(i) for i in range(options.connections)))
    return clients


# --- the server process -------------------------------------------------------------------


async def _serve(config: dict[str, Any]) -> None:
    from ..hub import Hub

    interval = config["ping_interval"]
    hub = Hub(ping_interval=interval, ping_timeout=interval)
    loop = asyncio.get_running_loop()
    stopping: asyncio.Future[None] = loop.create_future()

    def stop_soon() -> None:
        if not stopping.done():
            stopping.set_result(None)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_soon)
    async with hub.serve(HOST, 0) as server:
        print("READY " + json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
        await stopping
        server.close(timeout=1)
    await hub.close()


def serve_main(argv: list[str]) -> None:
    """The server process: ``python -m openline.bench.soak '{json}'``."""
    config = json.loads(argv[0])
    die_with_parent()
    pin_to_cpu(config["cpu"])
    raise_open_files_limit(config["open_files"])
    import uvloop

    uvloop.run(_serve(config))


# --- measuring ----------------------------------------------------------------------------


def least_squares_slope(points: list[tuple[float, float]]) -> float:
    """Return the slope of the least-squares line through ``(x, y)`` points.

    Raises:
        ValueError: Fewer than two distinct ``x``.
    """
    n = len(points)
    mean_x = sum(x for x, _ in points) / n if n else 0.0
    mean_y = sum(y for _, y in points) / n if n else 0.0
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if n < 2 or spread == 0:
        raise ValueError("a slope needs at least two samples at different times")
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def summarize(
    options: Options, samples: list[dict[str, float]], clients: list[Subscriber], tally: Tally
) -> dict[str, Any]:
    """Turn the samples and the clients' counts into the result's figures.

    Args:
        options: What was run.
        samples: ``{"t", "rss", "cpu"}`` per sample, ``t`` in seconds since
            every connection was subscribed; the first sample is at 0.
        clients: The subscribers, for their ping counts.
        tally: What they saw together.
    """
    warmup = options.warmup_seconds
    steady = [s for s in samples if s["t"] >= warmup]
    first, last = steady[0], steady[-1]
    seconds = last["t"] - first["t"]
    cpu = last["cpu"] - first["cpu"]
    slope = least_squares_slope([(s["t"] / 60, s["rss"] / 1024) for s in steady])
    pings = sorted(client.pings for client in clients)
    return {
        "rss_slope_kb_per_min": round(slope, 1),
        "rss_start_mb": round(samples[0]["rss"] / 2**20, 1),
        "rss_end_mb": round(samples[-1]["rss"] / 2**20, 1),
        "steady_seconds": round(seconds, 1),
        "idle_cpu_percent": round(100 * cpu / seconds, 2),
        "cpu_us_per_connection_second": round(1e6 * cpu / seconds / options.connections, 2),
        "connections_subscribed": tally.subscribed,
        "connections_lost": tally.lost,
        "close_codes": {str(code): count for code, count in sorted(tally.closes.items())},
        "pings_per_connection": {
            "min": pings[0],
            "median": statistics.median(pings),
            "max": pings[-1],
            "expected": round(samples[-1]["t"] / options.ping_interval, 1),
        },
        "keepalive_ok": tally.lost == 0 and pings[0] >= 1,
    }


async def sample_for(
    pid: int, seconds: float, interval: float, tally: Tally, stream: TextIO
) -> list[dict[str, float]]:
    """Sample the server's RSS and CPU time every ``interval`` for ``seconds``.

    Raises:
        RuntimeError: The server process went away.
    """
    samples: list[dict[str, float]] = []
    start = time.monotonic()
    next_report = 60.0
    while True:
        now = time.monotonic() - start
        rss, cpu = rss_bytes(pid), cpu_seconds(pid)
        if rss is None or cpu is None:
            raise RuntimeError("the soak server went away")
        samples.append({"t": round(now, 2), "rss": rss, "cpu": cpu})
        if now >= next_report:
            next_report += 60
            print(
                f"  {now / 60:4.1f} min: server RSS {rss / 2**20:.1f} MB, CPU {cpu:.1f} s, "
                f"{tally.pings} pings, {tally.lost} lost",
                file=stream,
            )
        if now >= seconds:
            return samples
        await asyncio.sleep(min(interval, seconds - now))


async def _start_server(options: Options) -> tuple[asyncio.subprocess.Process, int]:
    config = {
        "cpu": options.server_cpu,
        "open_files": options.connections + _SPARE_FILES,
        "ping_interval": options.ping_interval,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "openline.bench.soak",
        json.dumps(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    if not line.startswith(b"READY "):
        process.kill()
        await process.wait()
        raise RuntimeError(f"the soak server didn't start: {line!r}")
    return process, json.loads(line[6:])["port"]


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()


async def soak(options: Options, stream: TextIO) -> dict[str, Any]:
    """Run the soak; return the result document (without writing it)."""
    process, port = await _start_server(options)
    clients: list[Subscriber] = []
    try:
        idle_rss = rss_bytes(process.pid) or 0
        tally = Tally()
        opened = time.monotonic()
        print(f"opening {options.connections} connections to port {port}", file=stream)
        clients = await open_subscribers(options, port, tally)
        open_seconds = time.monotonic() - opened
        print(f"all subscribed in {open_seconds:.1f} s; holding {options.minutes} min", file=stream)
        samples = await sample_for(
            process.pid, options.hold_seconds, options.sample_interval, tally, stream
        )
        result = summarize(options, samples, clients, tally)
    finally:
        for client in clients:
            client.abort()
        await _stop(process)
    result["open_seconds"] = round(open_seconds, 1)
    result["rss_idle_server_mb"] = round(idle_rss / 2**20, 1)
    result["rss_per_connection_kb"] = round(
        (samples[0]["rss"] - idle_rss) / 1024 / options.connections, 2
    )
    return {
        "kind": "soak",
        "options": dataclasses.asdict(options),
        "machine": machine_info(),
        "result": result,
        "samples": samples,
    }


# --- the report ---------------------------------------------------------------------------


def markdown(document: dict[str, Any]) -> str:
    """Render a result document as the Markdown report."""
    options, machine, result = document["options"], document["machine"], document["result"]
    pings = result["pings_per_connection"]
    libraries = ", ".join(f"{k} {v}" for k, v in machine["libraries"].items() if v)
    rows = [
        ("server RSS slope after warm-up", f"{result['rss_slope_kb_per_min']} KB/min"),
        (
            "server RSS: idle, subscribed, end",
            (
                f"{result['rss_idle_server_mb']} MB, {result['rss_start_mb']} MB, "
                f"{result['rss_end_mb']} MB"
            ),
        ),
        ("RSS per connection", f"{result['rss_per_connection_kb']} KB"),
        ("server idle CPU", f"{result['idle_cpu_percent']} % of a core"),
        ("CPU per connection", f"{result['cpu_us_per_connection_second']} µs per second"),
        ("connections lost", str(result["connections_lost"])),
        (
            "pings per connection (min / median / max; expected)",
            (f"{pings['min']} / {pings['median']} / {pings['max']}; {pings['expected']}"),
        ),
        ("keepalive answered, nothing lost", "yes" if result["keepalive_ok"] else "**no**"),
        ("time to open and subscribe all", f"{result['open_seconds']} s"),
    ]
    lines = [
        "# openline bench --soak",
        "",
        f"{options['connections']} idle hub subscribers over {options['channels']} channels, "
        f"held {options['minutes']} min with keepalive every {options['ping_interval']} s; "
        f"figures after a {result['steady_seconds']:.0f} s steady window "
        f"(warm-up excluded), sampled every {options['sample_interval']} s.",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
        "",
        f"- date: {machine['date']}; load average at the end: {machine['load_average']}",
        f"- {machine['system']}, {machine['cpu']} ({machine['cpus']} CPUs), {machine['python']}",
        f"- {libraries}; speedups: {machine['openline_speedups']}; "
        f"commit {machine['openline_commit']}",
        f"- server pinned to CPU {options['server_cpu']}, load generator to CPU "
        f"{options['client_cpu']}",
        "",
    ]
    return "\n".join(lines)


def write(document: dict[str, Any], output: pathlib.Path) -> list[pathlib.Path]:
    """Write ``soak.json`` and ``soak.md`` into ``output``; return their paths."""
    output.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output / "soak.json", output / "soak.md"
    json_path.write_text(json.dumps(document, indent=1) + "\n")
    md_path.write_text(markdown(document))
    return [json_path, md_path]


def run(options: Options, stream: TextIO = sys.stderr) -> dict[str, Any]:
    """Run the soak benchmark and write its report.

    Raises:
        ValueError: An option is out of range, or the open-file limit can't be
            raised far enough for ``connections``.
    """
    options.check()
    needed = options.connections + _SPARE_FILES
    limit = raise_open_files_limit(needed)
    if limit < needed:
        raise ValueError(
            f"{options.connections} connections need {needed} open files; the limit is {limit} "
            "(raise the hard limit: ulimit -Hn)"
        )
    if len(available_cpus()) < 2:
        options = dataclasses.replace(options, server_cpu=None, client_cpu=None)
    pin_to_cpu(options.client_cpu)
    import uvloop

    document = uvloop.run(soak(options, stream))
    for path in write(document, pathlib.Path(options.output)):
        print(f"wrote {path}", file=stream)
    print(markdown(document), file=stream)
    return document


if __name__ == "__main__":
    serve_main(sys.argv[1:])
