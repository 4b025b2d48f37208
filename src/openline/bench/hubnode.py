"""One hub node of the cluster benchmark: ``python -m openline.bench.hubnode '{json}'``.

A node is :class:`openline.hub.Hub` served on 127.0.0.1 and a free port, with
the memory engine or :class:`~openline.hub.backends.redis.RedisEngine`; nodes
given the same Redis URL and prefix form one hub. The configuration is the
library's defaults except for what a benchmark must not measure:

* no keepalive pings (as in every other server of ``openline bench``), so that
  the load generator receives nothing it didn't ask for;
* no per-connection rate limit, so that the publisher's catch-up bursts (when
  its loop was late) are never refused.

With ``"envelope": "compact"`` the node delivers messages in a compact
envelope, a prototype measured by ``openline bench --hub`` and not part of the
protocol: ``[ch, offset, user, data]`` (``user`` null when absent) instead of
``{"type":"message","ch":..,"epoch":..,"offset":..,"user":..,"data":..}``;
the epoch, which subscribers learn from ``subscribed``, is left out.

The process takes one JSON argument (``engine``: ``memory`` or ``redis``,
``url``, ``prefix``, ``envelope``, ``cpu``, ``open_files``), prints ``READY {json}`` with the
port once it listens (after reaching Redis, for the Redis engine), and stops
on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from typing import Any

from ..hub.backends.base import Message
from ..hub.wire import encode_str
from .system import die_with_parent, pin_to_cpu, raise_open_files_limit

__all__ = ["main"]

HOST = "127.0.0.1"


def encode_compact(ch_json: bytes, message: Message) -> bytes:
    """The compact envelope prototype: ``[ch, offset, user, data]``."""
    data = message.data
    if isinstance(data, str):
        data = data.encode()
    user = (message.meta or {}).get("user")
    return b"[%b,%d,%b,%b]" % (
        ch_json,
        message.offset,
        b"null" if user is None else encode_str(user),
        data,
    )


async def _serve(config: dict[str, Any]) -> None:
    from ..hub import Hub, MemoryEngine, channel
    from ..hub.backends.base import Engine

    if config.get("envelope") == "compact":
        setattr(channel, "encode_message", encode_compact)  # noqa: B010 (a bench-only patch)

    engine: Engine
    if config["engine"] == "redis":
        from ..hub.backends.redis import RedisEngine

        redis = RedisEngine(config["url"], prefix=config["prefix"])
        await redis.start()  # fail now, not at the first subscriber
        engine = redis
    else:
        engine = MemoryEngine()
    hub = Hub(engine, rate_limit=None, ping_interval=None, ping_timeout=None)
    loop = asyncio.get_running_loop()
    stopping = loop.create_future()

    def stop_soon() -> None:
        if not stopping.done():
            stopping.set_result(None)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_soon)
    try:
        async with hub.serve(HOST, 0) as server:
            port = server.sockets[0].getsockname()[1]
            print("READY " + json.dumps({"port": port}), flush=True)
            await stopping
            server.close(timeout=1)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(hub.close(), 2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(engine.close(), 2)


def main(argv: list[str]) -> None:
    """The node process: ``python -m openline.bench.hubnode '{json}'``."""
    config = json.loads(argv[0])
    die_with_parent()
    pin_to_cpu(config.get("cpu"))
    raise_open_files_limit(config.get("open_files", 1024))
    # Errors go to stderr, which the runner keeps in a log file.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    import uvloop

    uvloop.run(_serve(config))


if __name__ == "__main__":
    main(sys.argv[1:])
