"""``openline serve --workers N``: N hub processes on one port, and their supervisor.

Each worker is ``openline serve`` again, with the same flags, listening on the
same port with ``SO_REUSEPORT``: the kernel spreads new connections over the
workers, which share channels, history and presence through Redis. The
supervisor (the process the operator started):

* checks the flags and that Redis answers, once, so that a mistake prints one
  line rather than one per worker;
* holds the port (bound, never listening, so it gets no connections) so that
  ``--port 0`` means one free port for every worker, and a port in use is
  reported before any worker starts;
* picks the key that signs the demo's tokens once (``--secret``,
  ``$OPENLINE_SECRET``, or a random one) and hands it to every worker in its
  environment, so that a token from one worker is good on all of them;
* prints the URLs once, when every worker listens;
* forwards SIGINT and SIGTERM to the workers, each of which drains
  (``--drain-seconds``), and exits when they have exited;
* reports a worker that dies, and starts it again, unless it died before it
  listened (then a restart would fail the same way).

A worker and its supervisor share a socket pair: the worker writes ``ready``
to it once it listens, and stops when the supervisor's end closes, so that a
supervisor killed with SIGKILL leaves no orphaned workers serving.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import socket
import ssl
import sys
import time
from typing import Any

from .build import (
    engine_name,
    make_app,
    make_engine,
    print_urls,
    secret_from,
    start_engine,
    stop_on_signals,
)
from .options import EXIT_CONNECT_FAILED, EXIT_OK, SECRET_ENV, UsageError

__all__ = ["supervise"]

#: Seconds the workers get to close their connections after SIGTERM and their
#: drain (``--drain-linger`` plus ``--drain-seconds``), before SIGKILL.
SHUTDOWN_GRACE = 15.0
#: Seconds a restarted worker waits when its predecessor lived shorter than this.
RESTART_DELAY = 1.0


async def supervise(args: argparse.Namespace, context: ssl.SSLContext | None) -> int:
    """Run ``args.workers`` workers on one port until a signal, or until they all exit.

    Raises:
        UsageError: A flag is unusable, or the port can't be bound.
    """
    del context  # each worker loads the certificate itself
    engine = make_engine(args)
    make_app(args, engine, ticker=False)  # checks the hub's flags
    try:
        if not await start_engine(engine):
            return EXIT_CONNECT_FAILED
    finally:
        await engine.close()
    sockets = _hold_port(args.host, args.port)
    try:
        port = sockets[0].getsockname()[1]
        command = [sys.executable, "-m", "openline", *args.argv]
        command += ["--workers", "1", "--port", str(port)]
        # Not on the command line, where `ps` would show it to every user.
        env = {**os.environ, SECRET_ENV: secret_from(args) or secrets.token_urlsafe(32)}
        grace = SHUTDOWN_GRACE + args.drain_seconds + args.drain_linger
        workers = [_Worker(index, command, env, grace) for index in range(args.workers)]
        return await _run(workers, args, sockets)
    finally:
        for sock in sockets:
            sock.close()


async def _run(
    workers: list[_Worker], args: argparse.Namespace, sockets: list[socket.socket]
) -> int:
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    stop_on_signals(stop)
    tasks: list[asyncio.Future[list[bool]]] = []
    try:
        tasks.append(asyncio.ensure_future(asyncio.gather(*(w.start() for w in workers))))
        await _first(tasks[-1], stop)
        if stop.done():
            return EXIT_OK
        failed = [w for w, ok in zip(workers, tasks[-1].result(), strict=True) if not ok]
        for worker in failed:
            _say(f"error: worker {worker.index} exited with {worker.status} before listening")
        if failed:
            return EXIT_CONNECT_FAILED
        print_urls(sockets, args.certfile is not None, engine_name(args))
        print(
            f"  workers      {len(workers)} processes on one port (SO_REUSEPORT), "
            f"supervisor pid {os.getpid()}",
            flush=True,
        )
        tasks.append(asyncio.ensure_future(asyncio.gather(*(w.keep() for w in workers))))
        await _first(tasks[-1], stop)
        if stop.done():
            print("shutting down: every worker drains", file=sys.stderr, flush=True)
            return EXIT_OK
        return EXIT_OK if all(tasks[-1].result()) else EXIT_CONNECT_FAILED
    finally:
        # No restart from now on: then stop whatever runs.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(w.terminate() for w in workers))


def _hold_port(host: str | None, port: int) -> list[socket.socket]:
    """Bind (without listening) every address of ``host`` with ``SO_REUSEPORT``.

    Raises:
        UsageError: The platform lacks ``SO_REUSEPORT``, or the port is taken.
    """
    if not hasattr(socket, "SO_REUSEPORT"):
        raise UsageError("--workers needs SO_REUSEPORT, which this platform lacks")
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:  # one free port for every address
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sockets


async def _first(*futures: asyncio.Future[Any]) -> None:
    """Wait until one of ``futures`` is done."""
    await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)


def _say(text: str) -> None:
    print(f"openline serve: {text}", file=sys.stderr, flush=True)


class _Worker:
    """One worker process, started again when it dies."""

    def __init__(
        self, index: int, command: list[str], env: dict[str, str], grace: float = SHUTDOWN_GRACE
    ) -> None:
        self.index = index
        self.grace = grace
        self.command = command
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.line: socket.socket | None = None
        self.started = 0.0

    @property
    def status(self) -> str:
        """How the process ended, in words."""
        code = None if self.process is None else self.process.returncode
        if code is None:
            return "no status"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"signal {signal.Signals(-code).name}"
        return f"status {code}"

    async def start(self) -> bool:
        """Start the process; return whether it listens (``False``: it exited first)."""
        mine, theirs = socket.socketpair()
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.command,
                "--worker-of-supervisor",
                f"{self.index}:{theirs.fileno()}",
                pass_fds=(theirs.fileno(),),
                env=self.env,
            )
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        self.started = time.monotonic()
        mine.setblocking(False)
        self.line = mine
        ready = await asyncio.get_running_loop().sock_recv(mine, 64)
        if not ready.startswith(b"ready"):
            await self.process.wait()
            return False
        return True

    async def keep(self) -> bool:
        """Wait for the process to exit; start it again after a crash.

        Returns ``True`` when it exited with status 0 (someone stopped it on
        purpose), ``False`` when it crashed and couldn't be started again.
        """
        while True:
            assert self.process is not None
            code = await self.process.wait()
            if code == 0:
                return True
            pid = self.process.pid
            _say(f"worker {self.index} (pid {pid}) died with {self.status}; starting it again")
            if time.monotonic() - self.started < RESTART_DELAY:
                await asyncio.sleep(RESTART_DELAY)  # not in a tight loop
            self._close_line()
            if not await self.start():
                _say(f"error: worker {self.index} exited with {self.status} before listening")
                return False
            _say(f"worker {self.index} is back (pid {self.process.pid})")

    async def terminate(self) -> None:
        """Stop the process: SIGTERM (it drains), then SIGKILL after ``grace`` seconds."""
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), self.grace)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        self._close_line()

    def _close_line(self) -> None:
        if self.line is not None:
            self.line.close()
            self.line = None
