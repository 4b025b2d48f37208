"""The ``openline`` command line, run as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import trustme

import openline
import openline.cli
from openline.hub import Hub
from openline.protocol.http11 import Response

CLI = [sys.executable, "-m", "openline"]
TIMEOUT = 30


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, text=True, timeout=TIMEOUT
    )


async def run_cli_async(*args: str, stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--port", "abc"], "port must be a number, got 'abc'"),
        (["serve", "--port", "70000"], "port must be between 0 and 65535, got 70000"),
        (["serve", "--max-size", "lots"], "expected a size like 1048576, 64KiB, 16MiB or 'off'"),
        (["serve", "--ping-interval", "-1"], "expected a positive number of seconds, got -1"),
        (["serve", "--keyfile", "k.pem"], "--keyfile needs --certfile"),
        (["serve", "--certfile", "/nonexistent.pem"], "cannot load certificate '/nonexistent.pem'"),
        (["serve", "--history-size", "-1"], "expected a number >= 0 or 'off', got -1"),
        (["serve", "--history-ttl", "soon"], "expected seconds or 'off', got 'soon'"),
        (["serve", "--rate-limit", "many"], "expected MESSAGES/SECONDS like 100/1"),
        (["serve", "--rate-limit", "0/1"], "expected positive numbers like 100/1"),
        (["serve", "--jwt-secret", "short"], "--jwt-secret: secret must be at least 32 bytes"),
        (["serve", "--jwt-public-key", "/nonexistent.pem"], "--jwt-public-key: cannot read"),
        (["serve", "--jwt-public-key", "/etc/hostname"], "isn't a PEM public key"),
        (["serve", "--jwt-secret", "s" * 32, "--jwt-public-key", "k"], "not allowed with"),
        (["serve", "--echo", "--jwt-secret", "s" * 32], "applies to the hub, not to --echo"),
        (["serve", "--ticker-interval", "2-1"], "expected 0 < MIN <= MAX seconds, got '2-1'"),
        (["serve", "--ticker-interval", "x"], "expected SECONDS or MIN-MAX like 0.25-1"),
        (["serve", "--max-message", "big"], "expected a size like 1048576"),
        (["serve", "--echo", "--history-size", "5"], "--history-size applies to the hub, not"),
        (["serve", "--echo", "--no-ticker"], "--no-ticker applies to the hub, not to --echo"),
        (
            ["serve", "--history-size", "off", "--history-ttl", "off"],
            "history_size and history_ttl can't both be None",
        ),
        (["serve", "--workers", "2"], "--workers 2 needs --redis URL"),
        (["serve", "--workers", "0"], "expected a positive number, got 0"),
        (["serve", "--echo", "--workers", "2"], "--workers 2 needs --redis URL"),
        (["serve", "--echo", "--redis", "redis://localhost"], "--redis applies to the hub, not"),
        (["serve", "--presence-ttl", "1"], "--presence-ttl applies to --redis"),
        (
            ["serve", "--origin", "example.com"],
            "expected an origin like https://example.com[:port]",
        ),
        (["serve", "--origin", "ftp://example.com"], "an origin's scheme must be http or https"),
        (["serve", "--origin", "https://example.com/app"], "expected an origin like"),
        (["serve", "--origin", "http://example.com:99999"], "port must be between 1 and 65535"),
        (["serve", "--origin", "**"], "(or '*' for any origin)"),
        (["serve", "--echo", "--origin", "nope"], "expected an origin like"),
        (["serve", "--secret", "short"], "--secret must be at least 16 bytes, got 5"),
        (["serve", "--echo", "--secret", "x" * 16], "--secret applies to the hub, not to --echo"),
        (["serve", "--redis-timeout", "1"], "--redis-timeout applies to --redis"),
        (["serve", "--redis", "redis://x", "--presence-ttl", "0"], "expected a positive number"),
        (["serve", "--data", "x.db", "--redis", "redis://x"], "--data and --redis are two engines"),
        (["serve", "--data", "x.db", "--workers", "2"], "--workers 2 can't share --data"),
        (["serve", "--echo", "--data", "x.db"], "--data applies to the hub, not to --echo"),
        (["connect"], "the following arguments are required: uri"),
        (["connect", "http://example.com/"], "URI must start with ws:// or wss://"),
        (
            ["connect", "ws://127.0.0.1/", "--header", "novalue"],
            "header must look like 'Name: value'",
        ),
        (["connect", "ws://127.0.0.1/", "--cafile", "ca.pem"], "only apply to wss:// URIs"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_print_one_line(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_a_short_secret_in_the_environment_prints_one_line() -> None:
    result = subprocess.run(
        [*CLI, "serve", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "OPENLINE_SECRET": "tiny"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "openline serve: error: OPENLINE_SECRET must be at least 16 bytes, got 4"
    ]


def test_serve_help_explains_origins_and_secrets() -> None:
    text = " ".join(run_cli("serve", "--help").stdout.split())
    for words in ("--origin URL", "--origin-required", "--secret SECRET", "OPENLINE_SECRET"):
        assert words in text


def test_serve_with_redis_but_without_the_redis_package_says_what_to_install() -> None:
    # As if the redis package were missing: a None in sys.modules makes its import fail.
    code = (
        "import sys; sys.modules['redis'] = None; from openline.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "serve", "--redis", "redis://127.0.0.1:6379/0"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'openline[redis]'" in lines[0]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@db:6379/0", "redis://:***@db:6379/0"),
        ("rediss://app:s3cret@db:6380/1", "rediss://app:***@db:6380/1"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_redis_urls_are_printed_without_their_password(url: str, shown: str) -> None:
    assert openline.cli.options.redacted(url) == shown


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"openline {openline.__version__}"


async def _echo(ws: openline.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def _uri(server: openline.Server) -> str:
    port = server.sockets[0].getsockname()[1]
    return f"ws://127.0.0.1:{port}/"


async def test_connect_in_a_pipe_sends_lines_and_prints_messages() -> None:
    async with openline.serve(_echo, "127.0.0.1", 0) as server:
        code, out, err = await run_cli_async("connect", _uri(server), stdin="hello\nwörld\n")
    assert code == 0, err
    assert out == "hello\nwörld\n"
    assert "connected to" in err and "connection closed: 1000" in err


async def test_connect_quiet_prints_no_status() -> None:
    async with openline.serve(_echo, "127.0.0.1", 0) as server:
        code, out, err = await run_cli_async("connect", "-q", _uri(server), stdin="x\n")
    assert (code, out, err) == (0, "x\n", "")


async def test_connect_prints_binary_as_hex() -> None:
    async def binary(ws: openline.ServerConnection) -> None:
        await ws.send(b"\x00\xff")
        await ws.recv()

    async with openline.serve(binary, "127.0.0.1", 0) as server:
        code, out, _ = await run_cli_async("connect", "-q", _uri(server), stdin="bye\n")
    assert code == 0
    assert out == "[binary, 2 bytes] 00ff\n"


async def test_connect_sends_headers_and_subprotocols() -> None:
    seen: dict[str, str | None] = {}

    async def handler(ws: openline.ServerConnection) -> None:
        seen["token"] = ws.request.headers.get("X-Token")
        seen["subprotocol"] = ws.subprotocol
        await ws.close()

    async with openline.serve(handler, "127.0.0.1", 0, subprotocols=["chat"]) as server:
        code, _, err = await run_cli_async(
            "connect", _uri(server), "-H", "X-Token: s3cret", "-s", "chat", stdin=""
        )
    assert code == 0, err
    assert seen == {"token": "s3cret", "subprotocol": "chat"}
    assert "subprotocol chat" in err


async def test_connect_exit_status_3_when_closed_with_an_error_code() -> None:
    async def closer(ws: openline.ServerConnection) -> None:
        await ws.close(4000, "go away")

    async with openline.serve(closer, "127.0.0.1", 0) as server:
        code, _, err = await run_cli_async("connect", _uri(server), stdin="")
    assert code == 3
    assert "connection closed: 4000 go away" in err


async def test_connect_exit_status_1_when_refused_by_the_server() -> None:
    def forbid(connection: object, request: object) -> Response:
        return Response.plain(403, "no")

    async with openline.serve(_echo, "127.0.0.1", 0, process_request=forbid) as server:
        code, out, err = await run_cli_async("connect", _uri(server), stdin="")
    assert code == 1
    assert out == ""
    assert err.strip() == "openline connect: server rejected the websocket connection: HTTP 403: no"


async def test_connect_to_the_hub_without_its_subprotocol_shows_the_hubs_explanation() -> None:
    async with Hub().serve("127.0.0.1", 0) as server:
        code, _, err = await run_cli_async("connect", _uri(server), stdin="")
    assert code == 1
    assert err.strip() == (
        "openline connect: server rejected the websocket connection: HTTP 400: "
        "this is an openline hub: offer the openline.v1 subprotocol"
    )


def test_connect_exit_status_1_when_nothing_listens() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_cli("connect", f"ws://127.0.0.1:{port}/")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot connect to" in result.stderr


async def test_serve_echo_echoes_and_shuts_down_gracefully_on_sigint() -> None:
    # The flags the Autobahn driver uses.
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--echo",
        "--port",
        "0",
        "--max-size",
        "32MiB",
        "--ping-interval",
        "off",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        async with openline.connect(match.group(0)) as ws:
            await ws.send("ping?")
            assert await ws.recv() == "ping?"
            proc.send_signal(signal.SIGINT)
            with pytest.raises(openline.exceptions.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert ws.close_code == 1001
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "shutting down" in (await proc.stderr.read()).decode()


async def _read_json(url: str) -> Any:
    """GET a URL with the standard library, in a thread."""

    def fetch() -> Any:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read())

    return await asyncio.to_thread(fetch)


async def test_serve_runs_the_hub_with_its_page_and_shuts_down_with_1001() -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        "0",
        "--ticker-interval",
        "0.05",
        "--history-size",
        "10",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
        match = re.search(r"open (http://127\.0\.0\.1:(\d+)/) in a browser", line)
        assert match, line
        base, port = match.group(1), match.group(2)
        endpoint = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
        assert f"ws://127.0.0.1:{port}/ws" in endpoint and "openline.v1" in endpoint
        status, health = await _read_json(base + "healthz")
        assert status == 200 and health["status"] == "ok"
        status, tick = await _read_json(base + "api/ticker")
        assert status == 200 and tick["seq"] >= 1
        uri = f"ws://127.0.0.1:{port}/ws"
        async with openline.connect(uri, subprotocols=["openline.v1"]) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
            await ws.send(json.dumps({"type": "subscribe", "ch": "ticker"}))
            seen = {json.loads(await ws.recv())["type"] for _ in range(3)}
            assert seen == {"subscribed", "message"}
            proc.send_signal(signal.SIGINT)
            with pytest.raises(openline.exceptions.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert ws.close_code == 1001
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "shutting down" in (await proc.stderr.read()).decode()


async def test_serve_without_ticker_has_no_ticker() -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--port", "0", "--no-ticker", stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, line
        with pytest.raises(urllib.error.HTTPError) as caught:
            await _read_json(match.group(0) + "api/ticker")
        assert caught.value.code == 404
        caught.value.close()
        _, health = await _read_json(match.group(0) + "healthz")
        assert health["ticker"] is None
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0


async def test_serve_with_a_certificate_serves_https_and_wss(tmp_path: pathlib.Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        "0",
        "--no-ticker",
        "--certfile",
        str(certfile),
        "--keyfile",
        str(keyfile),
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
        match = re.search(r"https://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        endpoint = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
        assert f"wss://127.0.0.1:{match.group(1)}/ws" in endpoint
        context = ssl.create_default_context()
        ca.configure_trust(context)
        uri = f"wss://127.0.0.1:{match.group(1)}/ws"
        async with openline.connect(uri, ssl=context, subprotocols=["openline.v1"]) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0


def test_serve_refuses_a_port_in_use_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], result.stderr


def test_python_dash_m_runs_the_cli() -> None:
    env = {**os.environ}
    result = subprocess.run(
        [sys.executable, "-m", "openline", "--help"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )
    assert result.returncode == 0
    assert "serve" in result.stdout and "connect" in result.stdout


# --- origin checks and signed tokens, through real processes ----------------------------


class Serving:
    """``openline serve`` in a process, stopped with SIGINT at the end of the block."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = env
        self.port = 0

    async def __aenter__(self) -> Serving:
        self.proc = await asyncio.create_subprocess_exec(
            *CLI, "serve", "--port", "0", *self.args, stdout=subprocess.PIPE, env=self.env
        )
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), TIMEOUT)).decode()
        match = re.search(r"(?:http|ws)://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        self.port = int(match.group(1))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            assert await asyncio.wait_for(self.proc.wait(), TIMEOUT) == 0
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()

    async def status(self, origin: str | None, path: str = "/ws", **kwargs: Any) -> int:
        """Dial with ``Origin: origin`` (or none); 101 or the refusal's status."""
        kwargs.setdefault("subprotocols", ["openline.v1"])
        try:
            ws = await openline.connect(
                f"ws://127.0.0.1:{self.port}{path}", origin=origin, **kwargs
            )
        except openline.exceptions.InvalidStatus as exc:
            body = getattr(exc.response, "body", b"").decode().strip()
            print(f"Origin {origin}: HTTP {exc.status} {body}")
            return exc.status
        await ws.close()
        return 101

    async def session(self, name: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/api/session?name={name}"
        status, value = await _read_json(url)
        assert status == 200
        result: dict[str, Any] = value
        return result


async def test_serve_checks_origins_by_default_and_takes_more_with_origin() -> None:
    async with Serving("--no-ticker", "--origin", "http://localhost:3000/") as hub:
        own = f"http://127.0.0.1:{hub.port}"
        assert await hub.status("http://evil.example") == 403
        assert await hub.status(f"http://localhost:{hub.port}") == 403
        assert await hub.status(own) == 101
        assert await hub.status(None) == 101
        assert await hub.status("http://localhost:3000") == 101
    async with Serving("--no-ticker", "--origin-required", "--origin", "*") as hub:
        assert await hub.status(None) == 403
        assert await hub.status("http://evil.example") == 101
    async with Serving("--echo") as echo:
        assert await echo.status("http://evil.example", subprotocols=None) == 403
        assert await echo.status(f"http://127.0.0.1:{echo.port}", subprotocols=None) == 101


async def test_two_serve_processes_with_one_secret_accept_each_others_tokens() -> None:
    secret = "a secret shared by both nodes"
    env = {**os.environ, "OPENLINE_SECRET": secret}
    async with (
        Serving("--no-ticker", "--secret", secret) as first,
        Serving("--no-ticker", env=env) as second,
        Serving("--no-ticker") as other,
    ):
        given = await first.session("Ada")
        offers = ["openline.v1", f"openline.token.{given['token']}"]
        uri = f"ws://127.0.0.1:{second.port}/ws"
        async with openline.connect(uri, subprotocols=offers) as ws:
            welcome = json.loads(await ws.recv())
            assert welcome["user"] == given["user"]
        # A node with its own random key refuses it: 401.
        assert await other.status(None, subprotocols=offers) == 401


async def test_workers_share_one_signing_key(redis_server: Any) -> None:
    pytest.importorskip("redis")
    async with Serving("--no-ticker", "--redis", redis_server.url, "--workers", "2") as hub:
        # SO_REUSEPORT spreads connections over both workers: with a key per
        # worker, about half of these handshakes would get 401.
        for n in range(8):
            given = await hub.session(f"user{n}")
            offers = ["openline.v1", f"openline.token.{given['token']}"]
            for _ in range(2):
                assert await hub.status(None, subprotocols=offers) == 101


async def test_serve_with_a_jwt_public_key_accepts_its_tokens_only(tmp_path: Any) -> None:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "jwt.pem"
    key_file.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    claims = {"sub": "ada", "exp": int(time.time()) + 60}
    async with Serving("--no-ticker", "--jwt-public-key", str(key_file)) as hub:
        token = jwt.encode(claims, private, algorithm="ES256")
        uri = f"ws://127.0.0.1:{hub.port}/ws"
        headers = {"Authorization": f"Bearer {token}"}
        async with openline.connect(
            uri, subprotocols=["openline.v1"], additional_headers=headers
        ) as ws:
            assert json.loads(await ws.recv())["user"] == "ada"
        # The demo's own tokens no longer pass.
        given = await hub.session("Ada")
        offers = ["openline.v1", f"openline.token.{given['token']}"]
        assert await hub.status(None, subprotocols=offers) == 401
