"""The ``openline`` command: ``serve`` and ``connect``.

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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import ssl
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn, TextIO

from . import __version__
from .exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, OpenlineError

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

    serve = commands.add_parser("serve", help="run a WebSocket server")
    serve.add_argument("--echo", action="store_true", help="echo every message back (default)")
    serve.add_argument("--host", default=os.environ.get("OPENLINE_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=_port, default=_port(os.environ.get("OPENLINE_PORT", "8765")))
    serve.add_argument("--certfile", help="PEM certificate chain: serve wss:// (TLS)")
    serve.add_argument("--keyfile", help="PEM private key for --certfile")
    serve.add_argument("--max-size", type=_size, default=2**20, help="largest message (1MiB)")
    serve.add_argument("--max-connections", type=_positive_int, default=None)
    serve.add_argument("--ping-interval", type=_seconds_or_off, default=20.0)
    serve.add_argument("--ping-timeout", type=_seconds_or_off, default=20.0)
    serve.add_argument("--no-compression", action="store_true", help="refuse permessage-deflate")
    serve.add_argument("--origin", action="append", dest="origins", help="allowed Origin (repeat)")
    serve.set_defaults(run=_run_serve)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``openline`` command line and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except UsageError as exc:
        print(f"openline {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _run_loop(coro: Coroutine[Any, Any, int]) -> int:
    """Run ``coro`` on uvloop when it is installed, else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# --- serve ------------------------------------------------------------------------------


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
    return _run_loop(_serve(args, context))


async def _echo(ws: object) -> None:
    async for message in ws:  # type: ignore[attr-defined]
        await ws.send(message)  # type: ignore[attr-defined]


async def _serve(args: argparse.Namespace, context: ssl.SSLContext | None) -> int:
    from . import serve

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
            origins=args.origins,
            max_size=args.max_size,
            max_connections=args.max_connections,
            ping_interval=args.ping_interval,
            ping_timeout=args.ping_timeout,
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
        _status(args, f"openline connect: {exc}")
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
