"""Flood a server with WebSocket pings from a client that never reads; print the server's RSS.

``python bench/ping_flood.py --target echo|hub --frames 2000000 --seconds 10``

The server runs in a subprocess on 127.0.0.1 (this same script, with ``--child``),
so its resident set size is its own. This process completes the opening
handshake, then writes pre-built masked ping frames to a non-blocking socket as
fast as the kernel takes them and never reads a byte. Once a second, and at the
end, it prints the server's RSS (from ``/proc/<pid>/status``) and how many
frames the kernel accepted so far. The flood stops after ``--frames`` frames or
``--seconds`` seconds, whichever comes first.

Run it on two checkouts to compare them, e.g.
``PYTHONPATH=src python bench/ping_flood.py`` against another ``src``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import select
import socket
import subprocess
import sys
import time
from typing import Any

_SUBPROTOCOL = "openline.v1"
_WS_PATH = "/ws"
_BATCH_BYTES = 65536  # bytes per send() call, in whole frames


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the flood, or the server when ``--child`` is given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=("echo", "hub"), default="echo")
    parser.add_argument("--frames", type=_positive_int, default=2_000_000, help="pings to send")
    parser.add_argument("--seconds", type=_positive_float, default=10.0, help="flood duration")
    parser.add_argument(
        "--payload",
        type=int,
        choices=range(126),
        default=0,
        metavar="0..125",
        help="bytes of payload per ping (0: the most pings per byte; 125: the largest pongs)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _run_loop(_serve(args.target))
        return 0
    return _flood(args.target, args.frames, args.seconds, args.payload)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


# --- the server (child process) ---------------------------------------------------------


def _run_loop(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


async def _echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def _serve(target: str) -> None:
    import openline

    if target == "hub":
        from openline.hub import Hub

        server = Hub().serve("127.0.0.1", 0)
    else:
        server = openline.serve(_echo, "127.0.0.1", 0)
    async with server as running:
        port = running.sockets[0].getsockname()[1]
        print(port, flush=True)
        # Runs until the parent closes our stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# --- the flood (this process) -----------------------------------------------------------


def _flood(target: str, frames: int, seconds: float, payload: int) -> int:
    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--child", "--target", target],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        time.sleep(0.2)  # let the server settle before the baseline
        print(f"target {target}: server pid {child.pid} on 127.0.0.1:{port}, {payload}-byte pings")
        print(f"before the flood: server RSS {_rss_mb(child.pid):.1f} MB")
        sock = _handshake(port, target)
        sent, elapsed = _send_pings(sock, child.pid, _ping(payload), frames, seconds)
        rss = _rss_mb(child.pid)
        print(f"end: {sent} pings in {elapsed:.1f} s, server RSS {rss:.1f} MB")
        sock.close()
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 0


def _handshake(port: int, target: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    path = _WS_PATH if target == "hub" else "/"
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if target == "hub":
        lines.append(f"Sec-WebSocket-Protocol: {_SUBPROTOCOL}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit(f"the server closed the connection during the handshake: {head!r}")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101 "):
        raise SystemExit(f"the server refused the handshake: {head[:200]!r}")
    sock.setblocking(False)
    return sock


def _ping(size: int) -> bytes:
    """A masked ping (FIN + opcode 9, mask bit + length, key) whose payload is ``size`` zeros."""
    return bytes([0x89, 0x80 | size]) + b"\x00\x00\x00\x00" + b"\x00" * size


def _send_pings(
    sock: socket.socket, pid: int, ping: bytes, frames: int, seconds: float
) -> tuple[int, float]:
    """Write pings until ``frames`` are out; report RSS every second until ``seconds`` passed.

    Sampling goes on after the last ping is out: the server may still be working
    through what the kernel buffered.
    """
    batch = ping * max(1, _BATCH_BYTES // len(ping))
    sent_bytes = 0
    total = frames * len(ping)
    start = time.monotonic()
    next_report = start + 1.0
    pending = memoryview(batch)[: min(len(batch), total)]
    while True:
        now = time.monotonic()
        if now >= next_report:
            print(f"{now - start:5.1f} s: {sent_bytes // len(ping):>9} pings, ", end="")
            print(f"server RSS {_rss_mb(pid):.1f} MB", flush=True)
            next_report += 1.0
        if now - start >= seconds:
            break
        if sent_bytes >= total:
            time.sleep(max(0.0, min(next_report, start + seconds) - now))
            continue
        if not pending:
            pending = memoryview(batch)[: min(len(batch), total - sent_bytes)]
        try:
            n = sock.send(pending)
        except BlockingIOError:
            select.select([], [sock], [], 0.05)
            continue
        except OSError as exc:
            print(f"{now - start:5.1f} s: the server closed the connection: {exc}")
            total = sent_bytes  # stop sending, keep sampling
            continue
        sent_bytes += n
        pending = pending[n:]
    return sent_bytes // len(ping), time.monotonic() - start


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    sys.exit(main())
