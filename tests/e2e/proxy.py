"""A TCP proxy on 127.0.0.1 that can silence its links: a line that dies without a FIN.

:meth:`LineProxy.blackhole` drops every byte on the links open now, both ways,
and keeps their sockets open, like a train entering a tunnel: neither end hears
of it, and each must notice the silence by its own heartbeat. Links opened
afterwards work normally, so a client that gives up and redials gets through.
"""

from __future__ import annotations

import asyncio
import contextlib


class _Link:
    def __init__(self) -> None:
        self.silent = False
        self.writers: list[asyncio.StreamWriter] = []


class LineProxy:
    """Forward 127.0.0.1:``port`` to 127.0.0.1:``target``, with blackholes on demand."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.links: list[_Link] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def blackhole(self) -> int:
        """Silence every link open now; return how many."""
        count = 0
        for link in self.links:
            if not link.silent:
                link.silent = True
                count += 1
        return count

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self.links:
            for writer in link.writers:
                writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        link = _Link()
        link.writers = [writer, up_writer]
        self.links.append(link)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(link, source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(link: _Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await source.read(65536):
                if link.silent:
                    continue  # dropped: the tunnel
                sink.write(data)
                await sink.drain()
            if not link.silent:
                sink.close()
