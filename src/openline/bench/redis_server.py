"""A real ``redis-server`` on a free loopback port: started, stopped, killed, frozen.

The cluster benchmark (:mod:`.cluster`) starts its own Redis with
:class:`RedisServer`, and so does every test that needs one (the
``redis_server`` fixtures in ``tests/conftest.py``, through
``tests/redis_server.py``), never the machine's service on 6379: each run is
isolated and works on any machine that has the binary.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .system import pin_to_cpu

__all__ = ["RedisServer", "free_port", "redis_server_binary"]

#: How long a server may take to answer PING after it started.
START_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1


def redis_server_binary() -> str | None:
    """The path of ``redis-server``, or ``None`` when it isn't installed."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


def free_port() -> int:
    """A TCP port nobody listens on at the moment, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1.

    Args:
        persist: Keep data across :meth:`stop` / :meth:`start` (an append-only
            file fsynced on every write); without it a restart loses everything,
            as a cache-only Redis does.
        cpu: Pin the server to this CPU; ``None`` leaves it unpinned.
        orphan: Whether the server may outlive this process. With ``False``,
            Linux kills it when the thread that started it exits (the benchmark
            starts it from its main thread, so: when the benchmark dies).

    Raises:
        FileNotFoundError: ``redis-server`` is not installed.
    """

    def __init__(
        self, *, persist: bool = False, cpu: int | None = None, orphan: bool = True
    ) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.persist = persist
        self.cpu = cpu
        self.orphan = orphan
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="openline-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's ``redis://`` URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (again) on its port and wait until it answers.

        Raises:
            RuntimeError: It exited at once, or didn't answer within 10 s.
        """
        if self.process is not None and self.process.poll() is None:
            return
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        # Only when asked: a preexec_fn makes subprocess fork instead of spawning.
        prepare = None if self.cpu is None and self.orphan else self._prepare
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=prepare
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"redis-server exited at once: {err or self.log()}")
            if self.ping():
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT} s: {self.log()}")

    def _prepare(self) -> None:
        """In the child, before ``exec``: pinning and death with the parent, as asked."""
        pin_to_cpu(self.cpu)
        if not self.orphan and sys.platform.startswith("linux"):
            # PR_SET_PDEATHSIG: SIGKILL when the parent dies. ctypes.CDLL(None) is
            # the libc already loaded: no library lookup between fork and exec.
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    def ping(self) -> bool:
        """Tell whether the server answers PING (a raw socket: no client library needed)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server as an operator would (SIGTERM); with ``persist`` it keeps its data."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL): whatever wasn't persisted is lost."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def freeze(self) -> None:
        """Stop the process without closing its sockets (SIGSTOP): a hung Redis."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Undo :meth:`freeze`."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def log(self) -> str:
        """The end of the server's log file."""
        with contextlib.suppress(OSError):
            return (self.dir / "redis.log").read_text()[-2000:]
        return ""

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
