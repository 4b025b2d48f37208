"""A peer that resets the connection before our half-close doesn't fail the handler."""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any

import pytest

import openline
from openline.asyncio.server import ServerConnection

from .helpers import run_server, url_of


class _ResetTransport:
    """A transport whose peer reset the connection: half-closing fails (uvloop's
    transports can't be patched, so this wraps one)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._wrapped = transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    def write_eof(self) -> None:
        # What shutdown(SHUT_WR) says once the peer's RST arrived first.
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")


async def test_half_close_after_a_reset_ends_the_handler_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        ws._transport = _ResetTransport(ws._transport)  # type: ignore[assignment]
        try:
            async for _ in ws:
                pass
        except BaseException as exc:
            ended.set_result(exc)
            raise
        ended.set_result(None)

    with caplog.at_level(logging.ERROR, logger="openline.server"):
        async with run_server(handler) as server:
            async with openline.connect(url_of(server)) as ws:
                await ws.send("hello")
            assert await asyncio.wait_for(ended, 5) is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
