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
listening, 2 for bad arguments (a port in use too).

The package: this module holds the parser and :func:`main`; each command runs
in its own module (:mod:`.serve`, :mod:`.connect`, :mod:`.bench`), with
:mod:`.workers` for ``serve --workers``, :mod:`.build` for the engine and app
that the flags describe, :mod:`.data` for ``--data``, and :mod:`.options` for
what they all share (argument types, exit statuses, :class:`UsageError`), below
them so that nothing imports this module back.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .. import __version__
from . import options
from .bench import run as run_bench
from .connect import run as run_connect
from .options import (
    API_KEY_ENV,
    EXIT_CLOSED_WITH_ERROR,
    EXIT_CONNECT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    METRICS_KEY_ENV,
    MIN_SECRET,
    SECRET_ENV,
    UsageError,
)
from .serve import run as run_serve

__all__ = [
    "EXIT_CLOSED_WITH_ERROR",
    "EXIT_CONNECT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "main",
]


class _Parser(argparse.ArgumentParser):
    """An argument parser that reports errors on one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


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
        "-H", "--header", action="append", type=options.header, default=[], help="'Name: value'"
    )
    connect.add_argument("-s", "--subprotocol", action="append", default=[], dest="subprotocols")
    connect.add_argument("--origin")
    connect.add_argument("--ping-interval", type=options.seconds_or_off, default=20.0)
    connect.add_argument("--ping-timeout", type=options.seconds_or_off, default=20.0)
    connect.add_argument("--max-size", type=options.size, default=2**20)
    connect.add_argument("--no-compression", action="store_true")
    connect.add_argument("--cafile", help="trust this CA bundle for wss://")
    connect.add_argument("--insecure", action="store_true", help="skip TLS certificate checks")
    connect.add_argument("--open-timeout", type=options.seconds_or_off, default=10.0)
    connect.add_argument("-q", "--quiet", action="store_true", help="no status lines on stderr")
    connect.set_defaults(run=run_connect)
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
    bench.add_argument(
        "-r", "--repetitions", type=options.positive_int, help="runs of each (3; quick: 1)"
    )
    bench.add_argument(
        "--window", type=options.positive_float, help="seconds measured per run (10)"
    )
    bench.add_argument(
        "--warmup", type=options.non_negative_float, help="seconds before each window (1)"
    )
    bench.add_argument(
        "-s", "--scenario", action="append", dest="scenarios", help="run only this one (repeat)"
    )
    bench.add_argument("--server", action="append", dest="servers", help="only this one (repeat)")
    bench.add_argument(
        "--deadline", type=options.positive_float, default=100.0, help="fan-out, ms (100)"
    )
    bench.add_argument(
        "--idle-connections", type=options.positive_int, help="idle scenarios (10000)"
    )
    bench.add_argument("--server-cpu", type=options.cpu, default=0, help="CPU for the servers (0)")
    bench.add_argument(
        "--client-cpu", type=options.cpu, default=1, help="CPU for the generator (1)"
    )
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
        type=options.positive_int,
        help="with --cluster (2000; quick: 100) or --hub (one load instead of both)",
    )
    bench.add_argument(
        "--rate", type=options.positive_float, help="with --cluster (100) or --hub, msg/s"
    )
    bench.add_argument(
        "--soak",
        action="store_true",
        help="instead: idle hub subscribers (--idle-connections) held with keepalive on; "
        "server RSS slope and idle CPU into OUTPUT (bench/results/soak)",
    )
    bench.add_argument(
        "--minutes", type=options.positive_float, default=10.0, help="with --soak (10)"
    )
    bench.add_argument(
        "--engines",
        type=options.positive_int,
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
    bench.set_defaults(run=run_bench)


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
    serve.add_argument(
        "--port", type=options.port, default=options.port(os.environ.get("OPENLINE_PORT", "8765"))
    )
    serve.add_argument("--certfile", help="PEM certificate chain: serve https:// and wss:// (TLS)")
    serve.add_argument("--keyfile", help="PEM private key for --certfile")
    serve.add_argument(
        "--max-size",
        type=options.size,
        default=unset,
        help="largest WebSocket message (echo: 1MiB; hub: 4 x --max-message)",
    )
    serve.add_argument("--max-connections", type=options.positive_int, default=None)
    serve.add_argument(
        "--ping-interval",
        type=options.seconds_or_off,
        default=unset,
        help="seconds (echo: 20; hub: 10)",
    )
    serve.add_argument(
        "--ping-timeout",
        type=options.seconds_or_off,
        default=unset,
        help="seconds (echo: 20; hub: 10)",
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
        type=options.origin,
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
    hub.add_argument(
        "--history-size", type=options.count_or_off, default=unset, help="messages (1000)"
    )
    hub.add_argument(
        "--history-ttl", type=options.seconds_or_off, default=unset, help="seconds (300)"
    )
    hub.add_argument(
        "--max-message", type=options.size, default=unset, help="client message (64KiB)"
    )
    hub.add_argument(
        "--max-subscriptions", type=options.count_or_off, default=unset, help="per client (100)"
    )
    hub.add_argument(
        "--rate-limit", type=options.rate, default=unset, help="MESSAGES/SECONDS (100/1)"
    )
    hub.add_argument("--max-buffer", type=options.size, default=unset, help="per client (1MiB)")
    hub.add_argument("--no-ticker", action="store_true", default=unset, help="no demo ticker")
    hub.add_argument(
        "--ticker-interval",
        type=options.interval_range,
        default=unset,
        help="SECONDS or MIN-MAX (0.25-1)",
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
        type=options.positive_float,
        default=unset,
        help="with --redis: seconds before a dead node's users leave presence (15)",
    )
    scale.add_argument(
        "--redis-timeout",
        type=options.positive_float,
        default=unset,
        help="with --redis: seconds before a Redis that doesn't answer counts as down (5)",
    )
    scale.add_argument(
        "--workers",
        type=options.positive_int,
        default=1,
        help="processes sharing the port (SO_REUSEPORT); more than 1 needs --redis",
    )
    scale.add_argument(
        "--drain-seconds",
        type=options.drain_seconds,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM: stop accepting, then close connections with 1012 and a retry hint, "
        "spread over this many seconds (10; 0: all at once), then exit 0",
    )
    scale.add_argument(
        "--drain-linger",
        type=options.drain_seconds,
        default=0.0,
        metavar="SECONDS",
        help="on SIGTERM: first keep listening this long, /readyz and upgrades answering 503 (0)",
    )
    # Set by the supervisor for its workers: "INDEX:FD", FD being the worker's end of a
    # socket pair to the supervisor (readiness out, the supervisor's death in).
    scale.add_argument("--worker-of-supervisor", dest="worker", help=argparse.SUPPRESS)
    serve.set_defaults(run=run_serve)


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
