"""The blocking client against real servers: openline's and the ``websockets`` library's."""

from __future__ import annotations

import socket
import threading

import pytest

import openline.sync
from openline.exceptions import (
    ConcurrencyError,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidStatus,
    InvalidURI,
)
from openline.protocol import State

from ..timing import MS
from .conftest import TIMEOUT, Peer


def dial(peer: Peer, path: str) -> openline.sync.ClientConnection:
    # The websockets server refuses clients that offer none of its subprotocols.
    return openline.sync.connect(peer.url + path, subprotocols=["chat"])


def test_client_echoes_text_and_binary(peer: Peer) -> None:
    with dial(peer, "/echo") as ws:
        ws.send("hello")
        assert ws.recv(timeout=TIMEOUT) == "hello"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=TIMEOUT) == b"\x00\xff"
        buffer = bytearray(b"abc")
        ws.send(buffer)
        buffer[0] = ord("X")  # changing it after send() returned changes nothing
        assert ws.recv(timeout=TIMEOUT) == b"abc"
        ws.send(["frag", "mented"])
        assert ws.recv(timeout=TIMEOUT) == "fragmented"


def test_client_exposes_the_handshake_and_addresses(peer: Peer) -> None:
    with dial(peer, "/echo") as ws:
        assert ws.subprotocol == "chat"
        assert ws.request is not None and ws.request.path == "/echo"
        assert ws.response is not None and ws.response.status == 101
        assert ws.remote_address == ("127.0.0.1", peer.port)
        assert ws.local_address[0] == "127.0.0.1"
        assert ws.close_code is None and ws.close_reason is None
        assert ws.state is State.OPEN and ws.id.version == 4


def test_iteration_ends_on_a_normal_close(peer: Peer) -> None:
    with dial(peer, "/send/one,two,three") as ws:
        assert list(ws) == ["one", "two", "three"]
        assert ws.close_code == 1000


def test_iteration_raises_on_an_error_close(peer: Peer) -> None:
    with dial(peer, "/close/4000/go-away") as ws:
        with pytest.raises(ConnectionClosedError) as caught:
            for _ in ws:
                pytest.fail("the server sent nothing")
        assert caught.value.rcvd is not None
        assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4000, "go-away")
        assert (ws.close_code, ws.close_reason) == (4000, "go-away")


def test_recv_after_a_normal_close_raises_connection_closed_ok(peer: Peer) -> None:
    with dial(peer, "/send/last") as ws:
        assert ws.recv(timeout=TIMEOUT) == "last"
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=TIMEOUT)


def test_recv_times_out_and_loses_nothing(peer: Peer) -> None:
    with dial(peer, "/echo") as ws:
        with pytest.raises(TimeoutError, match=r"recv\(\) timed out"):
            ws.recv(timeout=20 * MS)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0)
        ws.send("after the timeout")
        assert ws.recv(timeout=TIMEOUT) == "after the timeout"


def test_recv_with_zero_timeout_returns_a_message_already_received(openline_peer: Peer) -> None:
    # The peer sent both messages before it could see our ping, so once the pong is back the
    # second message has been received too (TCP keeps order), whatever the reads' sizes were.
    with dial(openline_peer, "/pair/first,second") as ws:
        assert ws.recv(timeout=TIMEOUT) == "first"
        ws.ping(b"fence").result(TIMEOUT)
        assert ws.recv(timeout=0) == "second"


def test_recv_rejects_a_negative_timeout(peer: Peer) -> None:
    with dial(peer, "/echo") as ws, pytest.raises(ValueError, match="timeout"):
        ws.recv(timeout=-1)


def test_ping_returns_a_future_of_the_latency(peer: Peer) -> None:
    with dial(peer, "/echo") as ws:
        ws.pong(b"unsolicited")  # a heartbeat the server ignores
        latency = ws.ping(b"abcd").result(TIMEOUT)
        assert isinstance(latency, float) and latency >= 0


def test_second_receiving_thread_raises_concurrency_error(peer: Peer) -> None:
    with dial(peer, "/echo") as ws:
        received: list[object] = []
        refused = threading.Event()

        def receive() -> None:
            try:
                received.append(ws.recv(timeout=TIMEOUT))
            except ConcurrencyError:
                refused.set()

        threads = [threading.Thread(target=receive) for _ in range(2)]
        for thread in threads:
            thread.start()
        # Nothing arrives before the message below, so the first thread is still
        # waiting when the second one tries.
        assert refused.wait(TIMEOUT)
        ws.send("for the waiting thread")
        for thread in threads:
            thread.join(TIMEOUT)
            assert not thread.is_alive()
        assert received == ["for the waiting thread"]


def test_a_thread_sends_while_another_receives(peer: Peer) -> None:
    count = 50
    with dial(peer, "/echo") as ws:

        def send_all() -> None:
            for i in range(count):
                ws.send(str(i))

        sender = threading.Thread(target=send_all)
        sender.start()
        received = [ws.recv(timeout=TIMEOUT) for _ in range(count)]
        sender.join(TIMEOUT)
        assert received == [str(i) for i in range(count)]


def test_closing_from_another_thread_unblocks_recv(peer: Peer) -> None:
    ws = dial(peer, "/echo")
    outcome: list[BaseException] = []

    def receive() -> None:
        try:
            ws.recv()  # no timeout: only the close can end this
        except BaseException as exc:
            outcome.append(exc)

    receiver = threading.Thread(target=receive)
    receiver.start()
    ws.close(1001, "leaving")
    receiver.join(TIMEOUT)
    assert not receiver.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionClosedOK)
    assert peer.closes.get(timeout=TIMEOUT) == (1001, "leaving")


def test_context_manager_closes_with_1000(peer: Peer) -> None:
    with dial(peer, "/echo") as ws:
        ws.send("x")
        assert ws.recv(timeout=TIMEOUT) == "x"
    assert ws.close_code == 1000
    assert peer.closes.get(timeout=TIMEOUT) == (1000, "")
    with pytest.raises(ConnectionClosedOK):
        ws.send("too late")
    ws.close()  # again: nothing more happens


def test_close_sends_the_code_and_reason(peer: Peer) -> None:
    ws = dial(peer, "/echo")
    with pytest.raises(ValueError):
        ws.close(1005)  # reserved: never sent on the wire
    ws.close(4321, "custom")
    assert peer.closes.get(timeout=TIMEOUT) == (4321, "custom")


def test_connect_refused_raises_os_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: the dial is refused
        with pytest.raises(OSError):
            openline.sync.connect(f"ws://127.0.0.1:{port}/")


def test_connect_raises_invalid_status_when_refused_by_http(peer: Peer) -> None:
    # Neither server serves plain HTTP on this path: both answer the upgrade with
    # 101, so refuse with a server that answers 404 instead.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

        server = threading.Thread(target=answer)
        server.start()
        with pytest.raises(InvalidStatus) as caught:
            openline.sync.connect(f"ws://127.0.0.1:{port}/")
        server.join(TIMEOUT)
    assert caught.value.status == 404


def test_connect_validates_its_arguments() -> None:
    with pytest.raises(InvalidURI):
        openline.sync.connect("http://127.0.0.1/")
    with pytest.raises(ValueError, match="max_size"):
        openline.sync.connect("ws://127.0.0.1/", max_size=-1)
    with pytest.raises(TypeError, match="backoff"):
        openline.sync.connect("ws://127.0.0.1/", backoff=[1.0])
