"""What ``openline serve``'s flags build: the engine, the app, and the lines printed.

Shared by one process (:mod:`.serve`) and the ``--workers`` supervisor
(:mod:`.workers`), which checks the same flags once before starting workers.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import (
    BackendUnavailable,
)
from . import data
from .options import API_KEY_ENV, MIN_SECRET, SECRET_ENV, UsageError, redacted

if TYPE_CHECKING:
    from ..hub.backends.base import Engine
    from ..hub.jwt_auth import JwtAuth
    from ..web import App

__all__ = [
    "engine_name",
    "jwt_from",
    "make_app",
    "make_engine",
    "print_urls",
    "secret_from",
    "start_engine",
    "stop_on_signals",
]


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


def print_urls(sockets: Sequence[socket.socket], secure: bool, engine: str) -> None:
    """Print where the hub listens: the page's URL and the hub's, one pair per socket."""
    from ..web import WS_PATH

    for http_url, ws_url in _listening_urls(sockets, secure):
        print(f"openline hub: open {http_url}/ in a browser (Ctrl-C to stop)", flush=True)
        print(f"  hub endpoint {ws_url}{WS_PATH} (subprotocol openline.v1)", flush=True)
        print(f"  health       {http_url}/healthz", flush=True)
        print(f"  metrics      {http_url}/metrics", flush=True)
        print(f"  ready        {http_url}/readyz", flush=True)
    print(f"  engine       {engine}", flush=True)


def make_engine(args: argparse.Namespace) -> Engine:
    """Build the engine the flags ask for: Redis with ``--redis``, else memory.

    Raises:
        UsageError: The ``redis`` package is missing, or a value is out of range.
    """
    from ..hub import MemoryEngine

    options: dict[str, Any] = {
        name: getattr(args, name) for name in ("history_size", "history_ttl") if hasattr(args, name)
    }
    if hasattr(args, "redis") and importlib.util.find_spec("redis") is None:
        raise UsageError("--redis needs the redis package: pip install 'openline[redis]'")
    if hasattr(args, "data"):
        return data.sqlite_engine(args.data, options)
    try:
        if not hasattr(args, "redis"):
            return MemoryEngine(**options)
        from ..hub.backends.redis import RedisEngine

        if hasattr(args, "presence_ttl"):
            options["presence_ttl"] = args.presence_ttl
        if hasattr(args, "redis_timeout"):
            options["timeout"] = args.redis_timeout
        engine: Engine = RedisEngine(args.redis, **options)
    except ValueError as exc:  # a bad URL too
        raise UsageError(str(exc)) from None
    return engine


def engine_name(args: argparse.Namespace) -> str:
    """How ``openline serve`` names the engine its flags chose, for its start-up line."""
    if hasattr(args, "data"):
        return f"sqlite {args.data} (history survives restarts)"
    return f"redis {redacted(args.redis)}" if hasattr(args, "redis") else "memory (this process)"


async def start_engine(engine: Engine) -> bool:
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


def stop_on_signals(stop: asyncio.Future[Any]) -> None:
    """Set ``stop``'s result to the number of the first SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()

    def set_stop(signum: int) -> None:
        # Ctrl-C reaches the supervisor's workers twice: from the terminal and forwarded.
        if not stop.done():
            stop.set_result(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, set_stop, signum)


def make_app(args: argparse.Namespace, engine: Engine, *, ticker: bool) -> App:
    """Build the app the flags ask for.

    Raises:
        UsageError: A value is out of range.
    """
    from ..web import create_app

    try:
        return create_app(
            engine=engine,
            ticker=ticker and not getattr(args, "no_ticker", False),
            origins=args.origins,
            origin_required=args.origin_required,
            secret=secret_from(args) or data.signing_key(args),
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


def jwt_from(args: argparse.Namespace) -> JwtAuth | None:
    """The JWT verifier of ``--jwt-secret`` or ``--jwt-public-key``, or ``None``.

    Raises:
        UsageError: The key is too short, unreadable, not a public key, or PyJWT is missing.
    """
    from ..hub.jwt_auth import JwtAuth

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
