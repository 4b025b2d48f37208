"""``openline connect``: an interactive client; stdin lines are sent, messages printed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys
import threading
from typing import TYPE_CHECKING, TextIO

from ..exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    OpenlineError,
)
from .options import EXIT_CLOSED_WITH_ERROR, EXIT_CONNECT_FAILED, EXIT_OK, UsageError, run_loop

if TYPE_CHECKING:
    from ..asyncio.client import ClientConnection

__all__ = ["run"]


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


def run(args: argparse.Namespace) -> int:
    """Run ``openline connect`` with the parsed ``args``; return the exit status.

    Raises:
        UsageError: A flag is unusable (printed as one line, exit status 2).
    """
    if not args.uri.startswith(("ws://", "wss://")):
        raise UsageError(f"URI must start with ws:// or wss://, got {args.uri!r}")
    context = _client_ssl(args)
    interactive = sys.stdin.isatty()
    return run_loop(_connect(args, context, interactive))


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
    from .. import connect

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


async def _print_incoming(ws: ClientConnection, interactive: bool) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            _print_message(message, sys.stdout, interactive)


async def _send_lines(
    ws: ClientConnection,
    lines: asyncio.Queue[str | None],
    interactive: bool,
    args: argparse.Namespace,
) -> None:
    while (line := await lines.get()) is not None:
        if interactive and line.startswith("/"):
            if not await _command(ws, line, args):
                return
            continue
        await ws.send(line)
    await ws.close(1000)


async def _command(ws: ClientConnection, line: str, args: argparse.Namespace) -> bool:
    """Run one interactive command; return ``False`` once the connection is closing."""
    name, _, rest = line[1:].partition(" ")
    if name == "ping":
        waiter = await ws.ping(rest.encode())
        latency = await waiter
        _status(args, f"pong in {latency * 1000:.1f} ms")
        return True
    if name in ("close", "quit"):
        code_text, _, reason = rest.partition(" ")
        try:
            code = int(code_text) if code_text else 1000
            await ws.close(code, reason)
        except (ValueError, OpenlineError) as exc:
            _status(args, f"cannot close: {exc}")
            return True
        return False
    _status(args, f"unknown command /{name}: try /ping, /close [code [reason]], /quit")
    return True
