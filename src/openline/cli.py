"""The ``openline`` command: ``serve``, ``connect`` and ``bench``.

This is the only module that reads flags and environment variables; it maps
them to keyword arguments of the library. Bad arguments print one line and
exit with status 2, never a traceback.

Exit statuses of ``openline connect``:

=====  ==============================================================
0      the connection closed normally (1000, 1001, or no code)
1      the connection could not be opened (network, TLS, handshake)
2      bad arguments
3      the connection closed with an error code, or abnormally
130    interrupted (Ctrl-C)
=====  ==============================================================

Exit statuses of ``openline serve``: 0 after SIGINT or SIGTERM (once the hub
has drained: ``--drain-seconds``), 1 when
``--redis`` can't be reached at start (the node refuses to start rather than
serve a hub that fails every request) or a ``--workers`` worker failed before
listening, 2 for bad arguments (a port in use too). The module
``openline._supervisor`` runs ``--workers``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import pathlib
import signal
import socket
import ssl
import sys
import threading
import urllib.parse
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from . import __version__, _data
from .exceptions import (
    BackendUnavailable,
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    OpenlineError,
)

if TYPE_CHECKING:
    from .asyncio.server import Server, ServerConnection
    from .bench.runner import Options as BenchOptions
    from .hub.backends.base import Engine
    from .hub.jwt_auth import JwtAuth
    from .protocol.http11 import Request, Response
    from .web import App

__all__ = ["main"]

EXIT_OK = 0
EXIT_CONNECT_FAILED = 1
EXIT_USAGE = 2
EXIT_CLOSED_WITH_ERROR = 3
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A flag's value is unusable; printed as one line."""


class _Parser(argparse.ArgumentParser):
    """An argument parser that reports errors on one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


# --- argument types ---------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, got {value}")
    return value


def _seconds_or_off(text: str) -> float | None:
    if text.lower() in ("0", "off", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'off', got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def _size(text: str) -> int | None:
    """Parse ``1048576``, ``64KiB``, ``16MiB`` or ``off``."""
    if text.lower() in ("off", "none"):
        return None
    units = {"kib": 1024, "kb": 1000, "mib": 1024**2, "mb": 1000**2, "gib": 1024**3, "b": 1}
    lowered = text.lower().strip()
    for suffix, factor in units.items():
        if lowered.endswith(suffix) and lowered[: -len(suffix)].strip().isdigit():
            return int(lowered[: -len(suffix)]) * factor
    if lowered.isdigit():
        return int(lowered)
    raise argparse.ArgumentTypeError(
        f"expected a size like 1048576, 64KiB, 16MiB or 'off', got {text!r}"
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    if text.strip() in ("0", "0.0"):
        return 0.0
    return _positive_float(text)


def _drain_seconds(text: str) -> float:
    """Seconds of a drain phase: a finite number from 0 to 3600."""
    value = _non_negative_float(text)
    if not value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 3600, got {text}")
    return value


def _cpu(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a CPU number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a CPU number, got {value}")
    return value


def _origin(text: str) -> str:
    """Check an ``--origin`` value: ``scheme://host[:port]`` (one final ``/`` allowed) or ``*``."""
    from .web.origin import ANY_ORIGIN, parse_origin

    if text == ANY_ORIGIN:
        return text
    # A URL copied from the address bar ends with "/"; an Origin header never does.
    value = text[:-1] if text.endswith("/") and text.count("/") == 3 else text
    try:
        parse_origin(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or '*' for any origin)") from None
    return value


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"header must look like 'Name: value', got {text!r}")
    return name.strip(), value.strip()


# --- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """Build the ``openline`` argument parser."""
    parser = _Parser(prog="openline", description="A fast, strictly correct WebSocket stack.")
    parser.add_argument("--version", action="version", version=f"openline {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    _add_serve(commands)

    connect = commands.add_parser(
        "connect",
        help="an interactive client: stdin lines are sent, messages printed",
        description=(
            "Connect to URI. Each line read from stdin is sent as a text message; each message "
            "received is printed on stdout. At the end of stdin the connection closes with 1000. "
            "On a terminal, '/ping [data]', '/close [code [reason]]' and '/quit' are commands."
        ),
    )
    connect.add_argument("uri", help="ws:// or wss:// URI")
    connect.add_argument(
        "-H", "--header", action="append", type=_header, default=[], help="'Name: value'"
    )
    connect.add_argument("-s", "--subprotocol", action="append", default=[], dest="subprotocols")
    connect.add_argument("--origin")
    connect.add_argument("--ping-interval", type=_seconds_or_off, default=20.0)
    connect.add_argument("--ping-timeout", type=_seconds_or_off, default=20.0)
    connect.add_argument("--max-size", type=_size, default=2**20)
    connect.add_argument("--no-compression", action="store_true")
    connect.add_argument("--cafile", help="trust this CA bundle for wss://")
    connect.add_argument("--insecure", action="store_true", help="skip TLS certificate checks")
    connect.add_argument("--open-timeout", type=_seconds_or_off, default=10.0)
    connect.add_argument("-q", "--quiet", action="store_true", help="no status lines on stderr")
    connect.set_defaults(run=_run_connect)
    _add_bench(commands)
    return parser


def _add_bench(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="benchmark openline against other WebSocket servers",
        description=(
            "Run every scenario against openline, websockets, aiohttp, picows and a raw TCP "
            "ceiling, each server pinned to one CPU and the load generator to another, and write "
            "results.json, results.md and results.png. Needs the bench extra: "
            "pip install 'openline[bench]'."
        ),
    )
    bench.add_argument("--quick", action="store_true", help="a smoke run: 0.5 s windows, few conns")
    bench.add_argument("-r", "--repetitions", type=_positive_int, help="runs of each (3; quick: 1)")
    bench.add_argument("--window", type=_positive_float, help="seconds measured per run (10)")
    bench.add_argument("--warmup", type=_non_negative_float, help="seconds before each window (1)")
    bench.add_argument(
        "-s", "--scenario", action="append", dest="scenarios", help="run only this one (repeat)"
    )
    bench.add_argument("--server", action="append", dest="servers", help="only this one (repeat)")
    bench.add_argument("--deadline", type=_positive_float, default=100.0, help="fan-out, ms (100)")
    bench.add_argument("--idle-connections", type=_positive_int, help="idle scenarios (10000)")
    bench.add_argument("--server-cpu", type=_cpu, default=0, help="CPU for the servers (0)")
    bench.add_argument("--client-cpu", type=_cpu, default=1, help="CPU for the generator (1)")
    bench.add_argument("-o", "--output", help="results directory (bench/results)")
    bench.add_argument("--no-chart", action="store_true", help="skip results.png")
    bench.add_argument(
        "--profile", action="store_true", help="cProfile openline's servers into OUTPUT/profiles"
    )
    bench.add_argument(
        "--breakdown",
        action="store_true",
        help="instead: openline's Python memory per idle connection, by file and line",
    )
    bench.add_argument("--deflate", action="store_true", help="with --breakdown: compression on")
    bench.add_argument(
        "--cluster",
        action="store_true",
        help="instead: fan-out over 2 hub nodes and Redis vs 1 node in memory (cluster.json/.md)",
    )
    bench.add_argument(
        "--hub",
        action="store_true",
        help="instead: one room, the hub against python-socketio and Socket.IO on Node, one "
        "node and two + Redis, at 1,000 x 100/s and 5,000 x 50/s (hub.json/.md in OUTPUT, "
        "bench/results/hub)",
    )
    bench.add_argument(
        "--config",
        action="append",
        dest="hub_configurations",
        help="with --hub: only this configuration (repeat)",
    )
    bench.add_argument(
        "--subscribers",
        type=_positive_int,
        help="with --cluster (2000; quick: 100) or --hub (one load instead of both)",
    )
    bench.add_argument("--rate", type=_positive_float, help="with --cluster (100) or --hub, msg/s")
    bench.add_argument(
        "--soak",
        action="store_true",
        help="instead: idle hub subscribers (--idle-connections) held with keepalive on; "
        "server RSS slope and idle CPU into OUTPUT (bench/results/soak)",
    )
    bench.add_argument("--minutes", type=_positive_float, default=10.0, help="with --soak (10)")
    bench.add_argument(
        "--engines",
        type=_positive_int,
        nargs="?",
        const=5000,
        metavar="N",
        help="instead: N publishes (5000) through each engine's publish() and through a hub "
        "connection, memory vs sqlite vs Redis; µs per publish and publishes/s",
    )
    bench.add_argument(
        "--check",
        nargs="?",
        const="bench/results/results.json",
        metavar="JSON",
        help="instead: a short run (echo-32-x16, fanout-1k; 3 x 2 s) into bench/results/check, "
        "then which of openline's ratios moved since JSON (bench/results/results.json) by more "
        "than the repetitions' spread",
    )
    bench.add_argument(
        "--fail-on-change",
        action="store_true",
        help="with --check: exit with 1 when a ratio moved by more than its noise",
    )
    bench.add_argument("--list", action="store_true", help="list scenarios and servers, then exit")
    bench.add_argument("--report", metavar="JSON", help="redraw the report from a results.json")
    bench.set_defaults(run=_run_bench)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``openline`` command line and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # The supervisor of --workers starts each worker with the same arguments.
    args.argv = list(sys.argv[1:] if argv is None else argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except UsageError as exc:
        print(f"openline {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`openline bench --list | head`): stop quietly,
        # and keep Python from complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0


def _run_loop(coro: Coroutine[Any, Any, int]) -> int:
    """Run ``coro`` on uvloop when it is installed, else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# --- serve ------------------------------------------------------------------------------

# Flags of the hub only; they stay unset unless given, so that --echo can refuse them.
_HUB_FLAGS = {
    "history_size": "--history-size",
    "history_ttl": "--history-ttl",
    "max_message": "--max-message",
    "max_subscriptions": "--max-subscriptions",
    "rate_limit": "--rate-limit",
    "max_buffer": "--max-buffer",
    "no_ticker": "--no-ticker",
    "ticker_interval": "--ticker-interval",
    "redis": "--redis",
    "data": "--data",
    "presence_ttl": "--presence-ttl",
    "redis_timeout": "--redis-timeout",
    "secret": "--secret",
    "jwt_secret": "--jwt-secret",
    "jwt_public_key": "--jwt-public-key",
    "api_key": "--api-key",
}

#: The environment variable that ``--secret`` overrides.
SECRET_ENV = "OPENLINE_SECRET"
#: The environment variable that ``--metrics-key`` overrides.
METRICS_KEY_ENV = "OPENLINE_METRICS_KEY"
#: The environment variable that ``--api-key`` overrides.
API_KEY_ENV = "OPENLINE_API_KEY"
#: Shortest ``--secret``, in bytes (UTF-8).
MIN_SECRET = 16


def _count_or_off(text: str) -> int | None:
    if text.lower() in ("off", "none"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number or 'off', got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'off', got {value}")
    return value


def _rate(text: str) -> tuple[int, float] | None:
    """Parse ``100/1`` (messages per seconds) or ``off``."""
    if text.lower() in ("off", "none"):
        return None
    count, sep, seconds = text.partition("/")
    try:
        value = (int(count), float(seconds) if sep else 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected MESSAGES/SECONDS like 100/1, or 'off', got {text!r}"
        ) from None
    if value[0] < 1 or not value[1] > 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers like 100/1, got {text!r}")
    return value


def _interval_range(text: str) -> tuple[float, float]:
    """Parse ``0.5`` (regular) or ``0.25-1`` (random within the range), in seconds."""
    low_text, sep, high_text = text.partition("-")
    try:
        low = float(low_text)
        high = float(high_text) if sep else low
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected SECONDS or MIN-MAX like 0.25-1, got {text!r}"
        ) from None
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX seconds, got {text!r}")
    return low, high


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the hub with its demo page (or, with --echo, an echo server)",
        description=(
            "Run the openline hub (subprotocol openline.v1; in-memory engine, an sqlite file "
            "with --data that keeps history across restarts, or Redis with "
            "--redis for several processes or machines) and, on the same "
            "port, the demo page at /, the browser client at /openline.js, /healthz and "
            "/api/ticker. WebSocket clients connect to /ws. Ctrl-C closes every connection "
            "with 1001 and exits; SIGTERM drains: it stops accepting, closes the connections "
            "with 1012 and a retry hint spread over --drain-seconds, and exits 0 (/readyz "
            "answers 503 meanwhile). Browsers may connect from this server's own origin only (add "
            "others with --origin); clients that send no Origin header are allowed unless "
            "--origin-required. The demo's tokens come from /api/session, signed with --secret "
            f"(or ${SECRET_ENV}; a random key by default, so they end with the process)."
        ),
    )
    unset = argparse.SUPPRESS
    serve.add_argument("--echo", action="store_true", help="run a plain echo server instead")
    serve.add_argument("--host", default=os.environ.get("OPENLINE_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=_port, default=_port(os.environ.get("OPENLINE_PORT", "8765")))
    serve.add_argument("--certfile", help="PEM certificate chain: serve https:// and wss:// (TLS)")
    serve.add_argument("--keyfile", help="PEM private key for --certfile")
    serve.add_argument(
        "--max-size",
        type=_size,
        default=unset,
        help="largest WebSocket message (echo: 1MiB; hub: 4 x --max-message)",
    )
    serve.add_argument("--max-connections", type=_positive_int, default=None)
    serve.add_argument(
        "--ping-interval", type=_seconds_or_off, default=unset, help="seconds (echo: 20; hub: 10)"
    )
    serve.add_argument(
        "--ping-timeout", type=_seconds_or_off, default=unset, help="seconds (echo: 20; hub: 10)"
    )
    serve.add_argument(
        "--no-compression",
        action="store_true",
        help="echo: refuse permessage-deflate (the hub never compresses)",
    )
    serve.add_argument(
        "--origin",
        action="append",
        dest="origins",
        type=_origin,
        default=[],
        metavar="URL",
        help="allow pages of this origin too, e.g. https://example.com (repeat); '*' allows "
        "any origin (development only). Other origins get 403",
    )
    serve.add_argument(
        "--origin-required",
        action="store_true",
        help="refuse clients that send no Origin header (every client that isn't a browser page)",
    )
    hub = serve.add_argument_group("hub (not with --echo)")
    hub.add_argument("--history-size", type=_count_or_off, default=unset, help="messages (1000)")
    hub.add_argument("--history-ttl", type=_seconds_or_off, default=unset, help="seconds (300)")
    hub.add_argument("--max-message", type=_size, default=unset, help="client message (64KiB)")
    hub.add_argument(
        "--max-subscriptions", type=_count_or_off, default=unset, help="per client (100)"
    )
    hub.add_argument("--rate-limit", type=_rate, default=unset, help="MESSAGES/SECONDS (100/1)")
    hub.add_argument("--max-buffer", type=_size, default=unset, help="per client (1MiB)")
    hub.add_argument("--no-ticker", action="store_true", default=unset, help="no demo ticker")
    hub.add_argument(
        "--ticker-interval", type=_interval_range, default=unset, help="SECONDS or MIN-MAX (0.25-1)"
    )
    hub.add_argument(
        "--secret",
        default=unset,
        help=f"key that signs the demo's tokens, {MIN_SECRET}+ bytes (default: ${SECRET_ENV}, "
        "else random per process); every node behind one address needs the same",
    )
    _add_jwt_flags(hub, unset)
    hub.add_argument(
        "--metrics-key",
        default=os.environ.get(METRICS_KEY_ENV) or None,
        help=f"/metrics asks for 'Authorization: Bearer KEY' (default: ${METRICS_KEY_ENV}, "
        "else /metrics is open like /healthz)",
    )
    hub.add_argument(
        "--api-key",
        default=unset,
        help=f"turn on the server API, POST /api/<method> (docs/server-api.md), for callers "
        f"sending 'Authorization: apikey KEY' (default: ${API_KEY_ENV}, else off)",
    )
    hub.add_argument(
        "--data",
        metavar="PATH",
        default=unset,
        help="keep history, offsets and message ids in this sqlite file (a directory or a path "
        "ending in / gets openline.db), so that they survive restarts; one process per file",
    )
    scale = serve.add_argument_group("scaling out (docs/scaling.md)")
    scale.add_argument(
        "--redis",
        metavar="URL",
        default=unset,
        help="keep channels in Redis (redis://host:6379/0), shared by every node using it",
    )
    scale.add_argument(
        "--presence-ttl",
        type=_positive_float,
        default=unset,
        help="with --redis: seconds before a dead node's users leave presence (15)",
    )
    scale.add_argument(
        "--redis-timeout",
        type=_positive_float,
        default=unset,
        help="with --redis: seconds before a Redis that doesn't answer counts as down (5)",
    )
    scale.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="processes sharing the port (SO_REUSEPORT); more than 1 needs --redis",
    )
    scale.add_argument(
        "--drain-seconds",
        type=_drain_seconds,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM: stop accepting, then close connections with 1012 and a retry hint, "
        "spread over this many seconds (10; 0: all at once), then exit 0",
    )
    scale.add_argument(
        "--drain-linger",
        type=_drain_seconds,
        default=0.0,
        metavar="SECONDS",
        help="on SIGTERM: first keep listening this long, /readyz and upgrades answering 503 (0)",
    )
    # Set by the supervisor for its workers: "INDEX:FD", FD being the worker's end of a
    # socket pair to the supervisor (readiness out, the supervisor's death in).
    scale.add_argument("--worker-of-supervisor", dest="worker", help=argparse.SUPPRESS)
    serve.set_defaults(run=_run_serve)


def _server_ssl(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.certfile is None:
        if args.keyfile is not None:
            raise UsageError("--keyfile needs --certfile")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(args.certfile, args.keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load certificate {args.certfile!r}: {exc}") from None
    return context


def _run_serve(args: argparse.Namespace) -> int:
    context = _server_ssl(args)
    _data.check_flags(args)
    if args.workers > 1 and not hasattr(args, "redis"):
        raise UsageError(
            f"--workers {args.workers} needs --redis URL: without a shared engine, "
            "each worker would be a separate hub"
        )
    if not args.echo:
        for name in ("presence_ttl", "redis_timeout"):
            if hasattr(args, name) and not hasattr(args, "redis"):
                raise UsageError(f"{_HUB_FLAGS[name]} applies to --redis")
        if args.workers > 1:
            from ._supervisor import supervise

            return _run_loop(supervise(args, context))
        return _run_loop(_serve_hub(args, context))
    for name, flag in _HUB_FLAGS.items():
        if hasattr(args, name):
            raise UsageError(f"{flag} applies to the hub, not to --echo")
    return _run_loop(_serve(args, context))


async def _echo(ws: object) -> None:
    async for message in ws:  # type: ignore[attr-defined]
        await ws.send(message)  # type: ignore[attr-defined]


async def _serve(args: argparse.Namespace, context: ssl.SSLContext | None) -> int:
    from . import serve
    from .web.origin import OriginPolicy, forbidden

    policy = OriginPolicy.from_strings(args.origins, required=args.origin_required)
    secure = context is not None

    def check_origin(connection: ServerConnection, request: Request) -> Response | None:
        refusal = policy.refusal(request, secure=secure)
        return None if refusal is None else forbidden(refusal)

    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)
    try:
        server = await serve(
            _echo,
            args.host,
            args.port,
            ssl=context,
            compression=None if args.no_compression else "deflate",
            process_request=check_origin,
            max_size=getattr(args, "max_size", 2**20),
            max_connections=args.max_connections,
            ping_interval=getattr(args, "ping_interval", 20.0),
            ping_timeout=getattr(args, "ping_timeout", 20.0),
        )
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        ) from None
    scheme = "wss" if context else "ws"
    for sock in server.sockets:
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(
            f"openline echo server listening on {scheme}://{shown}:{port}/ (Ctrl-C to stop)",
            flush=True,
        )
    await stop
    print("shutting down: closing every connection with 1001", file=sys.stderr, flush=True)
    server.close()
    await server.wait_closed()
    return EXIT_OK


def _hub_options(args: argparse.Namespace) -> dict[str, Any]:
    """Map the hub's flags to ``Hub`` arguments; flags not given keep the defaults."""
    names = {
        "max_message": "max_message_size",
        "max_subscriptions": "max_subscriptions",
        "rate_limit": "rate_limit",
        "max_buffer": "max_buffer",
        "ping_interval": "ping_interval",
        "ping_timeout": "ping_timeout",
    }
    return {option: getattr(args, flag) for flag, option in names.items() if hasattr(args, flag)}


def _listening_urls(sockets: Sequence[socket.socket], secure: bool) -> list[tuple[str, str]]:
    """The ``(http, ws)`` base URLs of each listening socket."""
    urls = []
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        urls.append(
            (
                f"{'https' if secure else 'http'}://{shown}:{port}",
                f"{'wss' if secure else 'ws'}://{shown}:{port}",
            )
        )
    return urls


def _print_urls(sockets: Sequence[socket.socket], secure: bool, engine: str) -> None:
    from .web import WS_PATH

    for http_url, ws_url in _listening_urls(sockets, secure):
        print(f"openline hub: open {http_url}/ in a browser (Ctrl-C to stop)", flush=True)
        print(f"  hub endpoint {ws_url}{WS_PATH} (subprotocol openline.v1)", flush=True)
        print(f"  health       {http_url}/healthz", flush=True)
        print(f"  metrics      {http_url}/metrics", flush=True)
        print(f"  ready        {http_url}/readyz", flush=True)
    print(f"  engine       {engine}", flush=True)


def _redacted(url: str) -> str:
    """``url`` without its password, fit to print."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))


def _make_engine(args: argparse.Namespace) -> Engine:
    """Build the engine the flags ask for: Redis with ``--redis``, else memory.

    Raises:
        UsageError: The ``redis`` package is missing, or a value is out of range.
    """
    from .hub import MemoryEngine

    options: dict[str, Any] = {
        name: getattr(args, name) for name in ("history_size", "history_ttl") if hasattr(args, name)
    }
    if hasattr(args, "redis") and importlib.util.find_spec("redis") is None:
        raise UsageError("--redis needs the redis package: pip install 'openline[redis]'")
    if hasattr(args, "data"):
        return _data.sqlite_engine(args.data, options)
    try:
        if not hasattr(args, "redis"):
            return MemoryEngine(**options)
        from .hub.backends.redis import RedisEngine

        if hasattr(args, "presence_ttl"):
            options["presence_ttl"] = args.presence_ttl
        if hasattr(args, "redis_timeout"):
            options["timeout"] = args.redis_timeout
        engine: Engine = RedisEngine(args.redis, **options)
    except ValueError as exc:  # a bad URL too
        raise UsageError(str(exc)) from None
    return engine


def _engine_name(args: argparse.Namespace) -> str:
    if hasattr(args, "data"):
        return f"sqlite {args.data} (history survives restarts)"
    return f"redis {_redacted(args.redis)}" if hasattr(args, "redis") else "memory (this process)"


async def _start_engine(engine: Engine) -> bool:
    """Connect the engine, if it has to; print one line and return ``False`` if it can't."""
    start = getattr(engine, "start", None)
    if start is None:
        return True
    try:
        await start()
    except BackendUnavailable as exc:
        # Refuse to start rather than serve a hub that fails every request: a typo in
        # the URL shows at once, and a supervisor (systemd, Kubernetes) retries.
        print(f"openline serve: error: {exc}", file=sys.stderr, flush=True)
        return False
    return True


def _worker(args: argparse.Namespace) -> tuple[int, socket.socket] | None:
    """This worker's index and its line to the supervisor, or ``None`` if not a worker."""
    if args.worker is None:
        return None
    index, _, fd = args.worker.partition(":")
    try:
        return int(index), socket.socket(fileno=int(fd))
    except (ValueError, OSError) as exc:  # not from a supervisor
        raise UsageError(f"--worker-of-supervisor is for openline's own use: {exc}") from None


def _stop_on_signals(stop: asyncio.Future[Any]) -> None:
    """Set ``stop``'s result to the number of the first SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()

    def set_stop(signum: int) -> None:
        # Ctrl-C reaches the supervisor's workers twice: from the terminal and forwarded.
        if not stop.done():
            stop.set_result(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, set_stop, signum)


def _make_app(args: argparse.Namespace, engine: Engine, *, ticker: bool) -> App:
    """Build the app the flags ask for.

    Raises:
        UsageError: A value is out of range.
    """
    from .web import create_app

    try:
        return create_app(
            engine=engine,
            ticker=ticker and not getattr(args, "no_ticker", False),
            origins=args.origins,
            origin_required=args.origin_required,
            secret=secret_from(args) or _data.signing_key(args),
            jwt=jwt_from(args),
            metrics_key=getattr(args, "metrics_key", None),
            api_key=getattr(args, "api_key", None) or os.environ.get(API_KEY_ENV) or None,
            **(
                {"ticker_interval": args.ticker_interval}
                if hasattr(args, "ticker_interval")
                else {}
            ),
            **_hub_options(args),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _add_jwt_flags(group: Any, unset: Any) -> None:
    jwt = group.add_mutually_exclusive_group()
    jwt.add_argument(
        "--jwt-secret",
        metavar="SECRET",
        default=unset,
        help="accept only JWTs signed with this HS256 key, 32+ bytes (docs/protocol.md, Tokens)",
    )
    jwt.add_argument(
        "--jwt-public-key",
        metavar="FILE",
        default=unset,
        help="accept only JWTs signed for this PEM public key (RSA: RS256, EC P-256: ES256)",
    )


def jwt_from(args: argparse.Namespace) -> JwtAuth | None:
    """The JWT verifier of ``--jwt-secret`` or ``--jwt-public-key``, or ``None``.

    Raises:
        UsageError: The key is too short, unreadable, not a public key, or PyJWT is missing.
    """
    from .hub.jwt_auth import JwtAuth

    try:
        if hasattr(args, "jwt_secret"):
            return JwtAuth(secret=args.jwt_secret)
        if not hasattr(args, "jwt_public_key"):
            return None
        path = args.jwt_public_key
        try:
            with open(path, "rb") as file:
                pem = file.read(1 << 20)
        except OSError as exc:
            raise UsageError(f"--jwt-public-key: cannot read {path!r}: {exc.strerror}") from None
        return JwtAuth(public_key=pem)
    except ValueError as exc:
        flag = "--jwt-secret" if hasattr(args, "jwt_secret") else "--jwt-public-key"
        raise UsageError(f"{flag}: {exc}") from None
    except ImportError as exc:
        raise UsageError(str(exc)) from None


def secret_from(args: argparse.Namespace) -> str | None:
    """The key for the demo's tokens: ``--secret``, else ``$OPENLINE_SECRET``, else ``None``.

    Raises:
        UsageError: The key is shorter than :data:`MIN_SECRET` bytes.
    """
    value: str | None
    if hasattr(args, "secret"):
        value, source = args.secret, "--secret"
    else:
        value, source = os.environ.get(SECRET_ENV) or None, SECRET_ENV
    if value is not None and len(value.encode()) < MIN_SECRET:
        raise UsageError(f"{source} must be at least {MIN_SECRET} bytes, got {len(value.encode())}")
    return value


async def _serve_hub(args: argparse.Namespace, context: ssl.SSLContext | None) -> int:
    worker = _worker(args)
    engine = _make_engine(args)
    # One ticker per deployment: with --workers, the first worker runs it.
    app = _make_app(args, engine, ticker=worker is None or worker[0] == 0)
    serve_options: dict[str, Any] = {"ssl": context, "max_connections": args.max_connections}
    if hasattr(args, "max_size"):
        serve_options["max_size"] = args.max_size
    if worker is not None:
        serve_options["reuse_port"] = True
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[int | None] = loop.create_future()
    _stop_on_signals(stop)
    if worker is not None:
        # From the start: a worker whose supervisor died while it started stops too.
        _watch_supervisor(worker[1], stop)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(engine.close)
        if not await _start_engine(engine):
            return EXIT_CONNECT_FAILED
        try:
            server = await stack.enter_async_context(app.run(args.host, args.port, **serve_options))
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
            ) from None
        if worker is None:
            _print_urls(server.sockets, context is not None, _engine_name(args))
        else:
            worker[1].send(b"ready\n")
        if await stop == signal.SIGINT:
            if worker is None:
                print("shutting down: closing every connection with 1001", file=sys.stderr)
        else:
            await _drain(server, args)
    return EXIT_OK


async def _drain(server: Server, args: argparse.Namespace) -> None:
    """SIGTERM: drain (docs/scaling.md, "Rolling restarts") and report how it went."""
    print(
        f"draining: closing {len(server.connections)} connections with 1012 "
        f"over {args.drain_seconds:g} s",
        file=sys.stderr,
        flush=True,
    )
    report = await server.drain(args.drain_seconds, linger=args.drain_linger)
    print(
        f"drained {report.connections} connections in {report.seconds:.2f} s",
        file=sys.stderr,
        flush=True,
    )


#: Seconds a worker whose supervisor died may take to close before it exits anyway.
_ORPHAN_GRACE = 15.0


def _watch_supervisor(line: socket.socket, stop: asyncio.Future[Any]) -> None:
    """Stop when the supervisor dies: its end of ``line`` closes."""
    line.setblocking(False)
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            if line.recv(64):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        loop.remove_reader(line.fileno())
        print("openline serve: the supervisor is gone; stopping", file=sys.stderr, flush=True)
        if not stop.done():
            stop.set_result(None)
        # Nobody would stop an orphan that hangs while closing: exit regardless.
        loop.call_later(_ORPHAN_GRACE, os._exit, EXIT_CONNECT_FAILED)

    loop.add_reader(line.fileno(), readable)


# --- connect ----------------------------------------------------------------------------


def _client_ssl(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.uri.startswith("wss://"):
        if args.cafile or args.insecure:
            raise UsageError("--cafile and --insecure only apply to wss:// URIs")
        return None
    try:
        context = ssl.create_default_context(cafile=args.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load CA file {args.cafile!r}: {exc}") from None
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _refusal_reason(exc: InvalidStatus) -> str:
    """The server's own words for a refused handshake: its body's first line, escaped."""
    body = getattr(exc.response, "body", b"")
    if not isinstance(body, bytes) or not body.strip():
        return ""
    line = body.decode("utf-8", "replace").strip().splitlines()[0]
    line = "".join(char if char.isprintable() else "?" for char in line)[:200]
    return f": {line}"


def _run_connect(args: argparse.Namespace) -> int:
    if not args.uri.startswith(("ws://", "wss://")):
        raise UsageError(f"URI must start with ws:// or wss://, got {args.uri!r}")
    context = _client_ssl(args)
    interactive = sys.stdin.isatty()
    return _run_loop(_connect(args, context, interactive))


def _status(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


def _print_message(message: str | bytes, out: TextIO, interactive: bool) -> None:
    prefix = "< " if interactive else ""
    if isinstance(message, bytes):
        out.write(f"{prefix}[binary, {len(message)} bytes] {message.hex()}\n")
    else:
        out.write(f"{prefix}{message}\n")
    out.flush()


def _read_stdin(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Read stdin lines in a thread: works for terminals, pipes and regular files alike."""
    try:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
    except (OSError, ValueError):  # stdin closed under us
        pass
    with contextlib.suppress(RuntimeError):  # the loop already stopped
        loop.call_soon_threadsafe(queue.put_nowait, None)


async def _connect(
    args: argparse.Namespace, context: ssl.SSLContext | None, interactive: bool
) -> int:
    from . import connect

    try:
        ws = await connect(
            args.uri,
            ssl=context,
            additional_headers=args.header,
            subprotocols=args.subprotocols or None,
            origin=args.origin,
            compression=None if args.no_compression else "deflate",
            max_size=args.max_size,
            ping_interval=args.ping_interval,
            ping_timeout=args.ping_timeout,
            open_timeout=args.open_timeout,
        )
    except InvalidStatus as exc:
        _status(args, f"openline connect: {exc}{_refusal_reason(exc)}")
        return EXIT_CONNECT_FAILED
    except (OSError, asyncio.TimeoutError, InvalidHandshake, ssl.SSLError) as exc:
        _status(args, f"openline connect: cannot connect to {args.uri}: {exc}")
        return EXIT_CONNECT_FAILED
    extra = f", subprotocol {ws.subprotocol}" if ws.subprotocol else ""
    _status(args, f"connected to {args.uri}{extra}")

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(target=_read_stdin, args=(loop, lines), daemon=True).start()
    printer = asyncio.create_task(_print_incoming(ws, interactive))
    sender = asyncio.create_task(_send_lines(ws, lines, interactive, args))
    await asyncio.wait({printer, sender}, return_when=asyncio.FIRST_COMPLETED)
    if not sender.done():
        sender.cancel()
    with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
        await sender
    await ws.wait_closed()
    with contextlib.suppress(ConnectionClosed):
        await printer
    code = ws.close_code
    reason = f" {ws.close_reason}" if ws.close_reason else ""
    _status(args, f"connection closed: {code}{reason}")
    return EXIT_OK if code in (1000, 1001, 1005) else EXIT_CLOSED_WITH_ERROR


async def _print_incoming(ws: object, interactive: bool) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:  # type: ignore[attr-defined]
            _print_message(message, sys.stdout, interactive)


async def _send_lines(
    ws: object, lines: asyncio.Queue[str | None], interactive: bool, args: argparse.Namespace
) -> None:
    while (line := await lines.get()) is not None:
        if interactive and line.startswith("/"):
            if not await _command(ws, line, args):
                return
            continue
        await ws.send(line)  # type: ignore[attr-defined]
    await ws.close(1000)  # type: ignore[attr-defined]


async def _command(ws: object, line: str, args: argparse.Namespace) -> bool:
    """Run one interactive command; return ``False`` once the connection is closing."""
    name, _, rest = line[1:].partition(" ")
    if name == "ping":
        waiter = await ws.ping(rest.encode())  # type: ignore[attr-defined]
        latency = await waiter
        _status(args, f"pong in {latency * 1000:.1f} ms")
        return True
    if name in ("close", "quit"):
        code_text, _, reason = rest.partition(" ")
        try:
            code = int(code_text) if code_text else 1000
            await ws.close(code, reason)  # type: ignore[attr-defined]
        except (ValueError, OpenlineError) as exc:
            _status(args, f"cannot close: {exc}")
            return True
        return False
    _status(args, f"unknown command /{name}: try /ping, /close [code [reason]], /quit")
    return True


# --- bench ------------------------------------------------------------------------------


def _run_bench(args: argparse.Namespace) -> int:
    if args.list:
        return _list_bench()
    if args.report:
        return _redraw_bench(args)
    if args.engines is not None:
        from .bench.engines import run as engines

        engines(args.engines)
        return EXIT_OK
    try:
        import uvloop  # noqa: F401
    except ImportError:
        raise UsageError("openline bench needs uvloop: pip install 'openline[bench]'") from None
    if args.breakdown:
        from .bench.breakdown import run as breakdown

        breakdown(args.idle_connections or 1000, compression="deflate" if args.deflate else None)
        return EXIT_OK
    if args.cluster:
        return _run_cluster_bench(args)
    if args.hub:
        return _run_hub_bench(args)
    if args.soak:
        return _run_soak_bench(args)
    from .bench.runner import Options, run

    options = Options(
        scenarios=args.scenarios,
        servers=args.servers,
        repetitions=args.repetitions,
        window=args.window,
        warmup=args.warmup,
        deadline=args.deadline / 1000,
        quick=args.quick,
        output=args.output,
        server_cpu=args.server_cpu,
        client_cpu=args.client_cpu,
        idle_connections=args.idle_connections,
        chart=not args.no_chart,
        profile=args.profile,
    )
    try:
        if args.check is not None:
            return _check_bench(options, pathlib.Path(args.check), args.fail_on_change)
        run(options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def _check_bench(options: BenchOptions, against: pathlib.Path, fail_on_change: bool) -> int:
    from .bench.check import check

    if not against.is_file():
        raise UsageError(f"--check: no results at {against}")
    return check(options, against, fail_on_change=fail_on_change)


def _run_cluster_bench(args: argparse.Namespace) -> int:
    from .bench.cluster import Options, run

    options = Options(
        subscribers=args.subscribers,
        rate=args.rate or 100.0,
        repetitions=args.repetitions,
        window=args.window,
        warmup=args.warmup,
        deadline=args.deadline / 1000,
        quick=args.quick,
        output=args.output,
        server_cpu=args.server_cpu,
        client_cpu=args.client_cpu,
    )
    try:
        run(options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def _run_hub_bench(args: argparse.Namespace) -> int:
    from .bench.hubpeers import Options, run

    options = Options(
        subscribers=args.subscribers,
        rate=args.rate,
        repetitions=args.repetitions,
        window=args.window,
        warmup=args.warmup,
        deadline=args.deadline / 1000,
        quick=args.quick,
        output=args.output,
        server_cpu=args.server_cpu,
        client_cpu=args.client_cpu,
        configurations=args.hub_configurations,
    )
    try:
        run(options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def _run_soak_bench(args: argparse.Namespace) -> int:
    from .bench.soak import Options, run

    options = Options(
        connections=args.idle_connections or 10_000,
        minutes=args.minutes,
        output=args.output or "bench/results/soak",
        server_cpu=args.server_cpu,
        client_cpu=args.client_cpu,
    )
    try:
        run(options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def _list_bench() -> int:
    from .bench.scenarios import SCENARIOS
    from .bench.servers import SERVERS, unavailable

    print("scenarios:")
    for name, scenario in SCENARIOS.items():
        print(f"  {name:22} {scenario.title}")
    print("servers:")
    for name, spec in SERVERS.items():
        reason = unavailable(name)
        print(f"  {name:22} {spec.label}" + (f"  (unavailable: {reason})" if reason else ""))
    return EXIT_OK


def _redraw_bench(args: argparse.Namespace) -> int:
    import json

    from .bench import report

    source = pathlib.Path(args.report)
    try:
        document = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {args.report!r}: {exc}") from None
    output = pathlib.Path(args.output) if args.output else source.parent
    if isinstance(document, dict) and document.get("kind") == "cluster":
        from .bench import cluster_report

        for path in cluster_report.write(document, output):
            print(f"wrote {path}", file=sys.stderr)
        return EXIT_OK
    if isinstance(document, dict) and document.get("kind") == "hub":
        from .bench import hub_report

        for path in hub_report.write(document, output):
            print(f"wrote {path}", file=sys.stderr)
        return EXIT_OK
    for path in report.write(document, output, chart=not args.no_chart):
        print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
