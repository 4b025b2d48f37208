"""The example apps of ``examples/`` as real server processes, and logging in to them over HTTP.

:data:`SERVERS` holds the command of each ASGI server the examples run under.
A test takes the server as a parameter, so another server (or another engine
of the same server) is one more entry there.
"""

from __future__ import annotations

import dataclasses
import http.cookiejar
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence

from tests.scale.nodes import die_with_parent

EXAMPLES = pathlib.Path(__file__).parent.parent.parent / "examples"
FASTAPI_DIR = EXAMPLES / "fastapi_chat"
DJANGO_DIR = EXAMPLES / "django_chat"
#: Seconds a server gets to start or stop, and an HTTP request to complete.
TIMEOUT = 30.0
#: The channel both examples chat in.
ROOM = "room:lobby"
#: The FastAPI example's fixed users (examples/fastapi_chat/README.md).
FASTAPI_PASSWORDS = {"ada": "analytical-engine", "grace": "cobol-1959"}


@dataclasses.dataclass(frozen=True)
class ServerCommand:
    """How to run an ASGI app under one server.

    Attributes:
        name: The server's name, for test ids.
        argv: ``(app, port) -> arguments`` after ``python -m``.
        ready: The line the server logs once the app's lifespan has started
            and the port is listening.
    """

    name: str
    argv: Callable[[str, int], list[str]]
    ready: re.Pattern[str]


def _uvicorn(*extra: str) -> Callable[[str, int], list[str]]:
    def argv(app: str, port: int) -> list[str]:
        return ["uvicorn", app, "--host", "127.0.0.1", "--port", str(port), *extra]

    return argv


def _hypercorn(app: str, port: int) -> list[str]:
    # --workers 0 serves in this process, as uvicorn does, rather than in a child.
    return [
        "hypercorn",
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "0",
        "--error-logfile",
        "-",
    ]


#: Every server the FastAPI example runs under; the Django one runs under the uvicorns.
SERVERS = {
    "uvicorn": ServerCommand("uvicorn", _uvicorn(), re.compile(r"Uvicorn running on")),
    "hypercorn": ServerCommand("hypercorn", _hypercorn, re.compile(r"Running on http://")),
    # openline as uvicorn's WebSocket engine: the hub takes its fast path (a claimed connection).
    "uvicorn-openline": ServerCommand(
        "uvicorn-openline",
        _uvicorn("--ws", "openline.uvicorn:WebSocketProtocol"),
        re.compile(r"Uvicorn running on"),
    ),
}


#: The servers the Django example runs under.
DJANGO_SERVERS = [name for name in SERVERS if name.startswith("uvicorn")]


def _own_group() -> None:
    """In the server process: lead a process group (killed as one), die with the tests."""
    os.setpgrp()
    die_with_parent()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AppProcess:
    """An example app under a real server process, on one port across restarts.

    Args:
        server: The server to run it under.
        app: The ASGI app, as the server's command line names it.
        cwd: The example's directory (the servers import the app from there).
        env: Environment variables on top of this process's.
        log: Where the server's output goes, across restarts (read it when a
            test fails).
    """

    def __init__(
        self,
        server: ServerCommand,
        app: str,
        *,
        cwd: pathlib.Path,
        env: dict[str, str],
        log: pathlib.Path,
    ) -> None:
        self.server = server
        self.app = app
        self.cwd = cwd
        self.env = {**os.environ, **env}
        # The tree under test first: the servers import openline from there.
        src = str(pathlib.Path(__file__).parent.parent.parent / "src")
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (src, self.env.get("PYTHONPATH", "")) if p
        )
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> None:
        """Start the server and wait until it says it is ready (or fail with its log)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *self.server.argv(self.app, self.port)],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_own_group,
        )
        ready = threading.Event()
        outcome: list[bool] = []
        self._reader = threading.Thread(target=self._read, args=(self.proc, ready, outcome))
        self._reader.start()
        if not ready.wait(TIMEOUT) or not outcome[0]:
            self.stop()
            raise AssertionError(f"{self.server.name} didn't start:\n{self.log.read_text()}")

    def _read(
        self, proc: subprocess.Popen[str], ready: threading.Event, outcome: list[bool]
    ) -> None:
        """Copy the server's output to the log; ``ready`` is set at the ready line or the end."""
        assert proc.stdout is not None
        with self.log.open("a") as log:
            log.write(f"--- {self.server.name} starts\n")
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if not ready.is_set() and self.server.ready.search(line):
                    outcome.append(True)
                    ready.set()
            if not ready.is_set():
                outcome.append(False)
                ready.set()
        proc.stdout.close()

    def kill(self) -> None:
        """SIGKILL: no close frames, no shutdown; what a crash does."""
        assert self.proc is not None
        # The whole group: a server's worker processes would keep the port.
        os.killpg(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(TIMEOUT) == -signal.SIGKILL
        self._join()

    def stop(self) -> None:
        """Stop the server politely, or kill it when it doesn't stop in time."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(TIMEOUT)
        self._join()

    def _join(self) -> None:
        if self._reader is not None:
            self._reader.join(TIMEOUT)
            self._reader = None


def fastapi_app(server: ServerCommand, tmp_path: pathlib.Path) -> AppProcess:
    """The FastAPI example with its history in ``tmp_path``."""
    env = {"CHAT_DATA": str(tmp_path / "chat.db"), "CHAT_SECRET": "a secret of the tests"}
    return AppProcess(server, "app:app", cwd=FASTAPI_DIR, env=env, log=tmp_path / "server.log")


def django_app(server: ServerCommand, tmp_path: pathlib.Path, users: dict[str, str]) -> AppProcess:
    """The Django example with its databases in ``tmp_path``, migrated, with these users."""
    env = {
        "CHAT_DATA_DIR": str(tmp_path),
        "DJANGO_SECRET_KEY": "a secret of the tests",
    }
    process = AppProcess(
        server, "chatsite.asgi:application", cwd=DJANGO_DIR, env=env, log=tmp_path / "server.log"
    )
    # What the README says to run (migrate, then chatuser per user), in one process.
    commands = [("migrate", "--noinput", "-v", "0")]
    commands += [("chatuser", name, password) for name, password in users.items()]
    script = "from django.core.management import call_command\n" + "".join(
        f"call_command(*{command!r})\n" for command in commands
    )
    manage(process, ["shell", "-c", script])
    return process


def manage(process: AppProcess, args: Sequence[str]) -> None:
    """Run ``manage.py`` of the Django example with the app's environment."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=process.cwd,
        env=process.env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr


class Browser:
    """An HTTP client with a cookie jar: what a browser does to log in, without a browser."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> tuple[int, str, str]:
        """``GET path``, following redirects: ``(status, final URL, body)``."""
        with self.opener.open(self.base + path, timeout=TIMEOUT) as response:
            return response.status, response.url, response.read().decode()

    def post(self, path: str, fields: dict[str, str]) -> tuple[int, str, str]:
        """``POST`` a form, following redirects; an HTTP error status is returned too."""
        body = urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(self.base + path, data=body, method="POST")
        request.add_header("Referer", self.base + path)
        try:
            with self.opener.open(request, timeout=TIMEOUT) as response:
                return response.status, response.url, response.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.url, exc.read().decode()

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def cookie_header(self) -> str:
        """The ``Cookie`` header a browser would send with the WebSocket handshake."""
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


def login_fastapi(base: str, user: str, password: str) -> Browser:
    """Log in to the FastAPI example; the session cookie is in the returned jar."""
    browser = Browser(base)
    status, url, _ = browser.post("/login", {"username": user, "password": password})
    assert (status, url) == (200, base + "/chat"), (status, url)
    assert browser.cookie("chat_session") is not None
    return browser


def login_django(base: str, user: str, password: str) -> Browser:
    """Log in to the Django example through its form, CSRF token included."""
    browser = Browser(base)
    status, _, page = browser.get("/login/")
    assert status == 200
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, page
    fields = {"csrfmiddlewaretoken": match.group(1), "username": user, "password": password}
    status, url, _ = browser.post("/login/", fields)
    assert (status, url) == (200, base + "/"), (status, url)
    assert browser.cookie("sessionid") is not None
    return browser
