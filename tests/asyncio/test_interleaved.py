"""Large and small messages interleaved over many connections, TCP and TLS.

Messages larger than a read (256 KiB on uvloop) span several reads and meet small
ones in the same read; many connections share the event loop. Every byte that comes
back is checked, on both event loops.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest
import trustme

from openline.asyncio.client import connect

from .helpers import TIMEOUT, run_server, url_of

CONNECTIONS = 6
ROUNDS = 4


def payload(conn: int, rnd: int, size: int) -> bytes:
    """Bytes that tell which connection and round they belong to, at every offset."""
    pattern = bytes((conn * 31 + rnd * 7 + i) % 251 for i in range(251))
    return (pattern * (size // 251 + 1))[:size]


async def exchange(url: str, conn: int, ssl: ssl.SSLContext | None = None) -> None:
    # Larger than uvloop's reads, so one message spans several of them.
    big = 256 * 1024 + 12_345
    async with connect(url, max_size=2**21, ssl=ssl) as ws:
        for rnd in range(ROUNDS):
            messages = [
                payload(conn, rnd, big),
                payload(conn, rnd, 7).hex(),
                payload(conn, rnd, 70_000),
                payload(conn, rnd, 1),
            ]
            for message in messages:
                await ws.send(message)
            for message in messages:
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message


async def test_interleaved_connections() -> None:
    async with run_server(max_size=2**21) as server:
        await asyncio.gather(*(exchange(url_of(server), n) for n in range(CONNECTIONS)))


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


async def test_interleaved_connections_over_tls(certificate_authority: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    certificate_authority.configure_trust(client_context)
    async with run_server(ssl=server_context, max_size=2**21) as server:
        url = url_of(server, scheme="wss")
        await asyncio.gather(*(exchange(url, n, ssl=client_context) for n in range(3)))
