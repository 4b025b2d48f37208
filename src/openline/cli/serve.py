"""``openline serve``: the hub with its demo page in one process, or the echo server.

With ``--workers N`` above 1, :func:`.workers.supervise` runs N of these processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import ssl
import sys
from typing import TYPE_CHECKING, Any

from . import data
from .build import (
    engine_name,
    make_app,
    make_engine,
    print_urls,
    start_engine,
    stop_on_signals,
)
from .options import EXIT_CONNECT_FAILED, EXIT_OK, HUB_FLAGS, UsageError, run_loop

if TYPE_CHECKING:
    from ..asyncio.server import Server, ServerConnection
    from ..protocol.http11 import Request, Response

__all__ = ["run"]


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


def run(args: argparse.Namespace) -> int:
    """Run ``openline serve`` with the parsed ``args``; return the exit status.

    Raises:
        UsageError: A flag is unusable (printed as one line, exit status 2).
    """
    context = _server_ssl(args)
    data.check_flags(args)
    if args.workers > 1 and not hasattr(args, "redis"):
        raise UsageError(
            f"--workers {args.workers} needs --redis URL: without a shared engine, "
            "each worker would be a separate hub"
        )
    if not args.echo:
        for name in ("presence_ttl", "redis_timeout"):
            if hasattr(args, name) and not hasattr(args, "redis"):
                raise UsageError(f"{HUB_FLAGS[name]} applies to --redis")
        if args.workers > 1:
            from .workers import supervise

            return run_loop(supervise(args, context))
        return run_loop(_serve_hub(args, context))
    for name, flag in HUB_FLAGS.items():
        if hasattr(args, name):
            raise UsageError(f"{flag} applies to the hub, not to --echo")
    return run_loop(_serve(args, context))


async def _echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def _serve(args: argparse.Namespace, context: ssl.SSLContext | None) -> int:
    from .. import serve
    from ..web.origin import OriginPolicy, forbidden

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


async def _serve_hub(args: argparse.Namespace, context: ssl.SSLContext | None) -> int:
    worker = _worker(args)
    engine = make_engine(args)
    # One ticker per deployment: with --workers, the first worker runs it.
    app = make_app(args, engine, ticker=worker is None or worker[0] == 0)
    serve_options: dict[str, Any] = {"ssl": context, "max_connections": args.max_connections}
    if hasattr(args, "max_size"):
        serve_options["max_size"] = args.max_size
    if worker is not None:
        serve_options["reuse_port"] = True
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[int | None] = loop.create_future()
    stop_on_signals(stop)
    if worker is not None:
        # From the start: a worker whose supervisor died while it started stops too.
        _watch_supervisor(worker[1], stop)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(engine.close)
        if not await start_engine(engine):
            return EXIT_CONNECT_FAILED
        try:
            server = await stack.enter_async_context(app.run(args.host, args.port, **serve_options))
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
            ) from None
        if worker is None:
            print_urls(server.sockets, context is not None, engine_name(args))
        else:
            worker[1].send(b"ready\n")
        if await stop == signal.SIGINT:
            if worker is None:
                print("shutting down: closing every connection with 1001", file=sys.stderr)
        else:
            await _drain(server, args)
    return EXIT_OK


def _worker(args: argparse.Namespace) -> tuple[int, socket.socket] | None:
    """This worker's index and its line to the supervisor, or ``None`` if not a worker."""
    if args.worker is None:
        return None
    index, _, fd = args.worker.partition(":")
    try:
        return int(index), socket.socket(fileno=int(fd))
    except (ValueError, OSError) as exc:  # not from a supervisor
        raise UsageError(f"--worker-of-supervisor is for openline's own use: {exc}") from None


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
