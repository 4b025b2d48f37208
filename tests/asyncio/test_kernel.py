"""The kernel's side of a socket: send queue, bytes acknowledged, SO_SNDBUF, reset on close."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import pytest

from openline.asyncio.kernel import bytes_acked, limit_send_buffer, reset_on_close, send_queue_size

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIOCOUTQ, TCP_INFO")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A TCP connection on 127.0.0.1: (server side, client side that reads nothing)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    with server, client:
        yield server, client


def fill(sock: socket.socket) -> int:
    """Send until the kernel refuses more; return how many bytes it took."""
    sock.setblocking(False)
    sent = 0
    try:
        while True:
            sent += sock.send(b"x" * 4096)
    except BlockingIOError:
        return sent


def test_limit_send_buffer_returns_what_the_kernel_granted(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, _ = pair
    granted = limit_send_buffer(server, 16384)
    assert granted is not None
    assert 16384 <= granted <= 4 * 16384  # Linux doubles the request
    # A full queue then holds about that much, not the autotuned megabytes.
    assert fill(server) < 4 * granted


@linux_only
def test_the_send_queue_and_the_acknowledged_bytes_show_a_stalled_reader(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    assert send_queue_size(server) == 0
    acked = bytes_acked(server)
    assert acked is not None
    limit_send_buffer(server, 16384)
    sent = fill(server)
    queued = send_queue_size(server)
    assert queued is not None and 0 < queued <= sent
    # The reader reads: the queue drains and the peer acknowledges more.
    client.settimeout(5)
    received = 0
    while received < sent - queued + 4096:
        received += len(client.recv(65536))
    later = bytes_acked(server)
    assert later is not None and later > acked


@linux_only
def test_closing_after_reset_on_close_resets_the_peer(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    fill(server)
    reset_on_close(server)
    server.close()
    client.settimeout(5)
    with pytest.raises(ConnectionResetError):
        while client.recv(65536):
            pass


def test_the_helpers_tolerate_a_closed_or_missing_socket() -> None:
    sock = socket.socket()
    sock.close()
    assert send_queue_size(sock) is None
    assert bytes_acked(sock) is None
    assert limit_send_buffer(sock, 65536) is None
    reset_on_close(sock)
    assert send_queue_size(None) is None
    assert bytes_acked(None) is None
    assert limit_send_buffer(None, 65536) is None
    reset_on_close(None)
