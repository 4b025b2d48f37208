"""What the kernel holds for a TCP socket: its send queue, its progress, its reset.

An asyncio transport only knows its own write buffer: the bytes the kernel
refused. Behind it, the kernel's send queue holds up to ``SO_SNDBUF`` more
(autotuned up to ``net.ipv4.tcp_wmem``'s maximum, 4 MiB by default on Linux) for
a peer that doesn't read. These helpers read and bound that part:

* :func:`send_queue_size`: bytes not yet acknowledged by the peer, with the
  ``SIOCOUTQ`` (``TIOCOUTQ``) ioctl on Linux; ``None`` elsewhere.
* :func:`bytes_acked`: bytes the peer's TCP acknowledged since the connection
  opened (``tcpi_bytes_acked`` of ``TCP_INFO``, Linux 4.1+); ``None`` elsewhere.
  It grows while the peer reads, and stops when its receive window is zero.
* :func:`limit_send_buffer`: set ``SO_SNDBUF``, which also turns off autotuning.
* :func:`reset_on_close`: ``SO_LINGER`` (1, 0), so that closing the socket sends
  RST and frees its send queue at once, instead of the kernel trying to deliver
  it to a peer that doesn't read.

Every helper takes the object from ``transport.get_extra_info("socket")`` and
never raises for a socket that is gone or isn't TCP: it returns ``None`` or does
nothing.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
from typing import Any

__all__ = ["bytes_acked", "limit_send_buffer", "reset_on_close", "send_queue_size"]

_LINUX = sys.platform.startswith("linux")
if _LINUX:
    import fcntl
    import termios

    _TIOCOUTQ: int | None = termios.TIOCOUTQ
else:  # pragma: no cover - measured on Linux only
    _TIOCOUTQ = None

_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None) if _LINUX else None
# struct tcp_info: 8 one-byte fields, 24 u32, then u64 pacing_rate, max_pacing_rate,
# bytes_acked: a stable kernel ABI, appended to but never reordered.
_BYTES_ACKED_OFFSET = 8 + 24 * 4 + 2 * 8
_TCP_INFO_SIZE = _BYTES_ACKED_OFFSET + 8
_ZERO = b"\0\0\0\0"
_LINGER_RESET = struct.pack("ii", 1, 0)


def send_queue_size(sock: Any) -> int | None:
    """Bytes in the kernel's send queue not yet acknowledged by the peer.

    Returns:
        The size, or ``None`` when the platform can't tell or ``sock`` is closed.
    """
    if _TIOCOUTQ is None or sock is None:
        return None
    try:
        answer = fcntl.ioctl(sock.fileno(), _TIOCOUTQ, _ZERO)
    except (OSError, ValueError):
        return None
    size: int = struct.unpack("i", answer)[0]
    return size


def bytes_acked(sock: Any) -> int | None:
    """Bytes the peer acknowledged since the connection opened.

    Returns:
        The count, or ``None`` when the platform can't tell or ``sock`` is closed.
    """
    if _TCP_INFO is None or sock is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_SIZE)
    except (OSError, ValueError):
        return None
    if len(info) < _TCP_INFO_SIZE:  # pragma: no cover - a kernel older than 4.1
        return None
    acked: int = struct.unpack_from("Q", info, _BYTES_ACKED_OFFSET)[0]
    return acked


def limit_send_buffer(sock: Any, size: int) -> int | None:
    """Set ``SO_SNDBUF`` to ``size`` bytes and return what the kernel granted.

    Linux doubles the request to leave room for its bookkeeping and reports the
    doubled value.

    Returns:
        The granted size, or ``None`` if ``sock`` refused the option.
    """
    if sock is None:
        return None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        granted: int = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    except (OSError, ValueError):
        return None
    return granted


def reset_on_close(sock: Any) -> None:
    """Make closing ``sock`` send RST and drop its send queue at once."""
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
