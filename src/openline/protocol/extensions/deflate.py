"""The permessage-deflate extension (RFC 7692).

Negotiation happens in the opening handshake: the client offers parameters with
:class:`ClientPerMessageDeflateFactory`, the server answers with
:class:`ServerPerMessageDeflateFactory`, and each side ends up with a
:class:`PerMessageDeflate` that compresses the messages it sends and inflates the
ones it receives.

See `RFC 7692 <https://datatracker.ietf.org/doc/html/rfc7692>`_.

Decisions worth knowing:

* **Corrupt compressed data** fails the connection with close code 1007 (invalid
  frame payload data): the frames themselves were well-formed, their payload was
  not. Framing mistakes, such as RSV1 on a continuation frame, use 1002.
* **A window of 8 bits.** RFC 7692 allows ``*_max_window_bits=8`` but zlib refuses
  to *compress* raw deflate with an 8-bit window (since zlib 1.2.9). When the peer
  limits our window to 8 bits we compress with a 9-bit window and the ``Z_RLE``
  strategy, which zlib documents as limiting match distances to one byte, so no
  back-reference can reach past what an 8-bit decoder keeps. Compression is weaker
  but always decodable. When we *inflate* a peer limited to 8 bits we use a 9-bit
  window: a larger window than needed is always safe, costs 256 bytes, and
  tolerates zlib-based peers that silently promote 8 to 9.
* **Memory.** A compressor costs about ``2 ** (window_bits + 2) + 2 ** (memLevel + 9)``
  bytes, 256 KiB with the defaults (15 bits, ``memLevel=8``); a decompressor about
  ``2 ** window_bits`` bytes plus 7 KiB, 32 KiB with 15 bits. Both are created on
  first use, and released after each message when that direction negotiated
  ``no_context_takeover``, so an idle connection then holds neither. A server with
  many connections can lower ``server_max_window_bits`` (e.g. 12) and ``memLevel``
  (e.g. 5) to cost about 32 KiB per compressor.
"""

from __future__ import annotations

import dataclasses
import types
import zlib
from collections.abc import Callable, Mapping, Sequence

from ...exceptions import (
    DuplicateParameter,
    InvalidParameterName,
    InvalidParameterValue,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
)
from ..frames import CONTROL_OPCODES, Frame, Opcode
from .base import Extension, ExtensionParameter

__all__ = [
    "ClientPerMessageDeflateFactory",
    "PerMessageDeflate",
    "ServerPerMessageDeflateFactory",
]

NAME = "permessage-deflate"

#: The compression settings used unless ``compress_settings`` overrides them.
DEFAULT_COMPRESS_SETTINGS: Mapping[str, int] = types.MappingProxyType(
    {"level": 6, "memLevel": 8, "strategy": zlib.Z_DEFAULT_STRATEGY}
)

# RFC 7692, section 7.2.1: a sync flush ends with an empty stored block whose last
# four octets are removed before sending and appended again before inflating.
_SYNC_TAIL = b"\x00\x00\xff\xff"

_MIN_WINDOW_BITS = 8
_MAX_WINDOW_BITS = 15
# zlib can't compress raw deflate with 8 bits; see the module docstring.
_MIN_ZLIB_WINDOW_BITS = 9

# Section 7.1.2.1: "a decimal integer value without leading zeroes between 8 to 15".
# A lookup rejects "09", "+9", " 9" and non-ASCII digits that int() would accept.
_WINDOW_BITS_VALUES = {str(bits): bits for bits in range(_MIN_WINDOW_BITS, _MAX_WINDOW_BITS + 1)}

_STRATEGIES = frozenset(
    (zlib.Z_DEFAULT_STRATEGY, zlib.Z_FILTERED, zlib.Z_HUFFMAN_ONLY, zlib.Z_RLE, zlib.Z_FIXED)
)
_PARAMETER_NAMES = (
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
)
_EXTENSION_ARGUMENTS = (
    "remote_no_context_takeover",
    "local_no_context_takeover",
    "remote_max_window_bits",
    "local_max_window_bits",
)

_VALID_SETTING: Mapping[str, Callable[[int], bool]] = {
    "level": lambda value: -1 <= value <= 9,
    "memLevel": lambda value: 1 <= value <= 9,
    "strategy": lambda value: value in _STRATEGIES,
}


class PerMessageDeflate:
    """The permessage-deflate extension, bound to one connection.

    "Local" is the side this object sends from, "remote" the peer. Build it with
    a factory rather than directly, unless you drive the negotiation yourself.

    Args:
        remote_no_context_takeover: The peer resets its compressor after each
            message, so the decompressor can be reset (and released) too.
        local_no_context_takeover: Reset (and release) the compressor after each
            message.
        remote_max_window_bits: The peer's LZ77 window, 8 to 15.
        local_max_window_bits: Our LZ77 window, 8 to 15.
        compress_settings: ``level`` (-1 to 9), ``memLevel`` (1 to 9) and
            ``strategy`` (a ``zlib.Z_*`` strategy) for the compressor; ``None`` uses
            :data:`DEFAULT_COMPRESS_SETTINGS`. The window comes from negotiation.

    Raises:
        ValueError: An argument is out of range.
    """

    __slots__ = (
        "_decoder",
        "_decoding",
        "_deflate_window_bits",
        "_encoder",
        "_inflate_window_bits",
        "_level",
        "_mem_level",
        "_strategy",
        "local_max_window_bits",
        "local_no_context_takeover",
        "remote_max_window_bits",
        "remote_no_context_takeover",
    )

    name = NAME

    def __init__(
        self,
        remote_no_context_takeover: bool,
        local_no_context_takeover: bool,
        remote_max_window_bits: int,
        local_max_window_bits: int,
        compress_settings: Mapping[str, int] | None = None,
    ) -> None:
        _check_window_bits("remote_max_window_bits", remote_max_window_bits)
        _check_window_bits("local_max_window_bits", local_max_window_bits)
        settings = _check_compress_settings(compress_settings)
        strategy = settings["strategy"]
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_max_window_bits = remote_max_window_bits
        self.local_max_window_bits = local_max_window_bits
        if local_max_window_bits < _MIN_ZLIB_WINDOW_BITS and strategy != zlib.Z_HUFFMAN_ONLY:
            # zlib documents Z_RLE as limiting match distances to one, which an 8-bit
            # window holds; Z_HUFFMAN_ONLY emits no matches at all.
            strategy = zlib.Z_RLE
        self._level = settings["level"]
        self._mem_level = settings["memLevel"]
        self._strategy = strategy
        self._deflate_window_bits = max(local_max_window_bits, _MIN_ZLIB_WINDOW_BITS)
        self._inflate_window_bits = max(remote_max_window_bits, _MIN_ZLIB_WINDOW_BITS)
        # Created on first use so that a connection that never sends, or never
        # receives, compressed data pays nothing for that direction.
        self._encoder: zlib._Compress | None = None
        self._decoder: zlib._Decompress | None = None
        # Whether the message being received is compressed (its first frame had RSV1).
        self._decoding = False

    def __repr__(self) -> str:
        return _repr(self, _EXTENSION_ARGUMENTS)

    # --- receiving ----------------------------------------------------------------------

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        """Inflate a received data frame if its message is compressed.

        Only the first frame of a message says whether the message is compressed
        (RSV1 set); frames of an uncompressed message are returned unchanged.

        Args:
            frame: The received frame.
            max_size: How many bytes the message may still grow by; inflating never
                produces more than one byte past it. ``None`` means no limit.

        Returns:
            The frame with its payload inflated and RSV1 cleared.

        Raises:
            ProtocolError: RSV1 is set on a continuation or control frame (code
                1002), or the compressed data is corrupt (code 1007).
            PayloadTooBig: The inflated payload exceeds ``max_size`` (code 1009).
        """
        if frame.opcode in CONTROL_OPCODES:
            # RFC 7692, section 6.1: RSV1 on a control frame fails the connection.
            if frame.rsv1:
                raise ProtocolError(f"rsv1 set on a {frame.opcode.name} frame", 1002)
            return frame
        if frame.opcode is Opcode.CONT:
            # Section 6.1: only the first frame of a message carries RSV1.
            if frame.rsv1:
                raise ProtocolError("rsv1 set on a continuation frame", 1002)
            if not self._decoding:
                return frame
        else:
            if not frame.rsv1:
                return frame
            self._decoding = True
        data = frame.data
        if frame.fin:
            # Section 7.2.2: append the tail removed by the sender.
            data += _SYNC_TAIL
        inflated = self._inflate(data, max_size, final=frame.fin)
        if frame.fin:
            self._decoding = False
            if self.remote_no_context_takeover:
                self._decoder = None
        return Frame(frame.opcode, inflated, frame.fin, False, frame.rsv2, frame.rsv3)

    def _inflate(self, data: bytes, max_size: int | None, *, final: bool) -> bytes:
        """Inflate ``data``, producing at most ``max_size + 1`` bytes.

        Raises:
            ProtocolError: The data is corrupt (code 1007).
            PayloadTooBig: The output exceeds ``max_size``.
        """
        chunks: list[bytes] = []
        size = 0
        while True:
            decoder = self._decoder
            if decoder is None:
                decoder = self._decoder = zlib.decompressobj(wbits=-self._inflate_window_bits)
            try:
                if max_size is None:
                    chunk = decoder.decompress(data)
                else:
                    # Decompression bombs: stop one byte past the budget instead of
                    # inflating everything. (A max_length of 0 would mean "no limit".)
                    chunk = decoder.decompress(data, max_size - size + 1)
            except zlib.error as exc:
                self._decoder = None
                raise ProtocolError("invalid compressed data", 1007) from exc
            size += len(chunk)
            if max_size is not None and size > max_size:
                # The rest of the input, if any, is in decoder.unconsumed_tail; the
                # connection fails anyway, so the decoder is dropped with it.
                self._decoder = None
                raise PayloadTooBig(size, max_size, what="inflated data")
            chunks.append(chunk)
            if not decoder.eof:
                break
            # A block with BFINAL set ends zlib's stream, yet section 7.2.1 lets more
            # blocks follow: start a new stream for them, and for later messages.
            self._decoder = None
            data = decoder.unused_data
            # Section 7.2.1 wants an empty stored block after the final block; when a
            # sender omits it, only the tail we appended is left, and it is skipped.
            if not data or (final and data == _SYNC_TAIL):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # --- sending ------------------------------------------------------------------------

    def encode(self, frame: Frame) -> Frame:
        """Compress a data frame about to be sent.

        Every message is compressed: its first frame gets RSV1, continuation frames
        don't. Each frame is flushed so the peer can inflate it on arrival.

        Args:
            frame: The frame to send.

        Returns:
            The frame with its payload compressed.
        """
        if frame.opcode in CONTROL_OPCODES:
            return frame
        encoder = self._encoder
        if encoder is None:
            encoder = self._encoder = zlib.compressobj(
                self._level,
                zlib.DEFLATED,
                -self._deflate_window_bits,
                self._mem_level,
                self._strategy,
            )
        # Z_SYNC_FLUSH ends the output with an empty stored block: three header bits,
        # padding to a byte boundary, then 0x00 0x00 0xff 0xff (zlib.h documents it).
        data = encoder.compress(frame.data) + encoder.flush(zlib.Z_SYNC_FLUSH)
        if frame.fin:
            # RFC 7692, section 7.2.1: remove the 0x00 0x00 0xff 0xff tail. The header
            # bits always leave at least one octet, so an empty message becomes 0x00,
            # the empty block of section 7.2.3.6.
            data = data[:-4]
            if self.local_no_context_takeover:
                self._encoder = None
        rsv1 = frame.opcode is not Opcode.CONT
        return Frame(frame.opcode, data, frame.fin, rsv1, frame.rsv2, frame.rsv3)


# --- negotiation ------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Params:
    """The permessage-deflate parameters of one offer or response, parsed."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    #: Whether client_max_window_bits is present, with or without a value.
    client_max_window_bits_present: bool = False
    client_max_window_bits: int | None = None


def _parse_params(params: Sequence[ExtensionParameter], *, is_response: bool) -> _Params:
    """Parse and check the parameters of an offer or a response (RFC 7692, section 7.1).

    Raises:
        DuplicateParameter: A parameter appears twice.
        InvalidParameterName: A parameter is unknown.
        InvalidParameterValue: A parameter has a value it can't have.
    """
    parsed = _Params()
    seen: set[str] = set()
    for name, value in params:
        # Section 7.1: offers and responses with a repeated parameter are rejected.
        if name in seen:
            raise DuplicateParameter(name)
        seen.add(name)
        if name == "server_no_context_takeover":
            _check_no_value(name, value)
            parsed.server_no_context_takeover = True
        elif name == "client_no_context_takeover":
            _check_no_value(name, value)
            parsed.client_no_context_takeover = True
        elif name == "server_max_window_bits":
            parsed.server_max_window_bits = _parse_window_bits(name, value)
        elif name == "client_max_window_bits":
            parsed.client_max_window_bits_present = True
            # Section 7.1.2.2: the value is optional in an offer, required in a response.
            if value is not None or is_response:
                parsed.client_max_window_bits = _parse_window_bits(name, value)
        else:
            raise InvalidParameterName(name)
    return parsed


def _check_no_value(name: str, value: str | None) -> None:
    """Reject a value on a parameter that takes none (section 7.1.1)."""
    if value is not None:
        raise InvalidParameterValue(name, value)


def _parse_window_bits(name: str, value: str | None) -> int:
    """Parse a ``*_max_window_bits`` value (section 7.1.2)."""
    bits = None if value is None else _WINDOW_BITS_VALUES.get(value)
    if bits is None:
        raise InvalidParameterValue(name, value)
    return bits


def _check_not_accepted(accepted: Sequence[Extension]) -> None:
    """Refuse to negotiate permessage-deflate twice on one connection."""
    if any(extension.name == NAME for extension in accepted):
        raise NegotiationError(f"{NAME} is already negotiated")


def _check_window_bits(name: str, bits: int | None, *, optional: bool = False) -> None:
    """Raise ``ValueError`` unless ``bits`` is a window size from 8 to 15."""
    if bits is None and optional:
        return
    if (
        isinstance(bits, bool)
        or not isinstance(bits, int)
        or not _MIN_WINDOW_BITS <= bits <= _MAX_WINDOW_BITS
    ):
        raise ValueError(f"{name} must be an integer from 8 to 15, got {bits!r}")


def _check_compress_settings(settings: Mapping[str, int] | None) -> dict[str, int]:
    """Validate ``compress_settings`` and merge it over the defaults.

    Raises:
        ValueError: A key is unknown, or a value is out of range.
    """
    merged = dict(DEFAULT_COMPRESS_SETTINGS)
    if settings is None:
        return merged
    for key, value in settings.items():
        if key == "wbits":
            raise ValueError(
                "compress_settings can't set wbits: the window size is negotiated "
                "with client_max_window_bits and server_max_window_bits"
            )
        if key not in merged:
            raise ValueError(f"compress_settings accepts level, memLevel and strategy, got {key!r}")
        if isinstance(value, bool) or not isinstance(value, int) or not _VALID_SETTING[key](value):
            raise ValueError(f"compress_settings[{key!r}] is out of range: {value!r}")
        merged[key] = value
    return merged


class ClientPerMessageDeflateFactory:
    """Offer permessage-deflate from a client and check the server's answer.

    With no arguments it offers ``permessage-deflate; client_max_window_bits``, as
    browsers do: the server may then limit our window, and otherwise decides alone.

    Args:
        server_no_context_takeover: Ask the server to reset its compressor after
            each message, so our decompressor can be released between messages.
        client_no_context_takeover: Reset our compressor after each message, and
            tell the server so.
        server_max_window_bits: Ask the server to use at most this window (8 to
            15); ``None`` doesn't ask.
        client_max_window_bits: Our window (8 to 15) announced in the offer;
            ``True`` offers the parameter without a value, letting the server pick
            our window; ``None`` or ``False`` doesn't offer it (then we compress with
            15 bits).
        compress_settings: See :class:`PerMessageDeflate`.

    Raises:
        ValueError: An argument is out of range.
    """

    name = NAME

    def __init__(
        self,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | bool | None = True,
        compress_settings: Mapping[str, int] | None = None,
    ) -> None:
        _check_window_bits("server_max_window_bits", server_max_window_bits, optional=True)
        if not isinstance(client_max_window_bits, bool):
            _check_window_bits("client_max_window_bits", client_max_window_bits, optional=True)
        self._compress_settings = _check_compress_settings(compress_settings)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits

    def __repr__(self) -> str:
        return _repr(self, _PARAMETER_NAMES)

    def get_request_params(self) -> list[ExtensionParameter]:
        """Return the parameters to offer in ``Sec-WebSocket-Extensions``."""
        params: list[ExtensionParameter] = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits is not None:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        if self.client_max_window_bits is True:
            params.append(("client_max_window_bits", None))
        elif self.client_max_window_bits:
            params.append(("client_max_window_bits", str(self.client_max_window_bits)))
        return params

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> PerMessageDeflate:
        """Check the server's answer to our offer (RFC 7692, section 7.1).

        Args:
            params: The parameters the server answered with.
            accepted: The extensions accepted before this one, in order.

        Returns:
            The extension, sending as the client.

        Raises:
            DuplicateParameter: A parameter appears twice.
            InvalidParameterName: A parameter is unknown.
            InvalidParameterValue: A parameter has an invalid value.
            NegotiationError: permessage-deflate is already in ``accepted``, or the
                answer doesn't match the offer.
        """
        _check_not_accepted(accepted)
        response = _parse_params(params, is_response=True)
        # Section 7.1.1.1: a server accepting server_no_context_takeover MUST echo it.
        if self.server_no_context_takeover and not response.server_no_context_takeover:
            raise NegotiationError("server ignored server_no_context_takeover")
        # Section 7.1.2.1: the server answers server_max_window_bits with a value no
        # larger than asked; unasked, it may still announce its window.
        server_bits = response.server_max_window_bits
        if self.server_max_window_bits is not None:
            if server_bits is None:
                raise NegotiationError("server ignored server_max_window_bits")
            if server_bits > self.server_max_window_bits:
                raise NegotiationError(
                    f"server_max_window_bits={server_bits} exceeds the "
                    f"{self.server_max_window_bits} requested"
                )
        # Section 7.1.2.2: the response MUST NOT include client_max_window_bits unless
        # the offer did.
        client_bits = _MAX_WINDOW_BITS
        if response.client_max_window_bits is not None:
            if not self.client_max_window_bits:
                raise NegotiationError("server sent client_max_window_bits, which wasn't offered")
            client_bits = response.client_max_window_bits
        if not isinstance(self.client_max_window_bits, bool) and self.client_max_window_bits:
            # We announced our window; a server that ignores the value can't enlarge it.
            client_bits = min(client_bits, self.client_max_window_bits)
        return PerMessageDeflate(
            remote_no_context_takeover=response.server_no_context_takeover,
            local_no_context_takeover=(
                self.client_no_context_takeover or response.client_no_context_takeover
            ),
            remote_max_window_bits=server_bits or _MAX_WINDOW_BITS,
            local_max_window_bits=client_bits,
            compress_settings=self._compress_settings,
        )


class ServerPerMessageDeflateFactory:
    """Answer a client's permessage-deflate offer on the server.

    With no arguments it accepts any valid offer, honouring what the client asks.

    Args:
        server_no_context_takeover: Reset our compressor after each message, and
            tell the client so.
        client_no_context_takeover: Require the client to reset its compressor after
            each message, so our decompressor can be released between messages.
            It is also agreed, at no cost, whenever the client offers it.
        server_max_window_bits: Our window (8 to 15); the client may ask for a
            smaller one. ``None`` uses 15 unless the client asks for less.
        client_max_window_bits: The largest window (8 to 15) we let the client use,
            when its offer allows limiting it; ``None`` sets no limit.
        require_client_max_window_bits: Decline offers that don't allow limiting
            the client's window; needs ``client_max_window_bits``.
        compress_settings: See :class:`PerMessageDeflate`.

    Raises:
        ValueError: An argument is out of range, or
            ``require_client_max_window_bits`` is set without ``client_max_window_bits``.
    """

    name = NAME

    def __init__(
        self,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | None = None,
        require_client_max_window_bits: bool = False,
        compress_settings: Mapping[str, int] | None = None,
    ) -> None:
        _check_window_bits("server_max_window_bits", server_max_window_bits, optional=True)
        _check_window_bits("client_max_window_bits", client_max_window_bits, optional=True)
        if require_client_max_window_bits and client_max_window_bits is None:
            raise ValueError("require_client_max_window_bits needs client_max_window_bits")
        self._compress_settings = _check_compress_settings(compress_settings)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.require_client_max_window_bits = require_client_max_window_bits

    def __repr__(self) -> str:
        return _repr(self, (*_PARAMETER_NAMES, "require_client_max_window_bits"))

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        """Accept one offer from the client (RFC 7692, section 7.1).

        Args:
            params: The parameters of one offer.
            accepted: The extensions accepted before this one, in order.

        Returns:
            The parameters to answer with, and the extension, sending as the server.

        Raises:
            DuplicateParameter: A parameter appears twice.
            InvalidParameterName: A parameter is unknown.
            InvalidParameterValue: A parameter has an invalid value.
            NegotiationError: permessage-deflate is already in ``accepted``, or the
                offer doesn't allow limiting the client's window while
                ``require_client_max_window_bits`` is set.
        """
        _check_not_accepted(accepted)
        offer = _parse_params(params, is_response=False)
        # Section 7.1.1.1: accepting server_no_context_takeover means echoing it; we
        # may also announce it unasked. Section 7.1.1.2 is the client's mirror image.
        server_no_context_takeover = (
            self.server_no_context_takeover or offer.server_no_context_takeover
        )
        client_no_context_takeover = (
            self.client_no_context_takeover or offer.client_no_context_takeover
        )
        # Section 7.1.2.1: answer with the requested window or a smaller one.
        server_bits = _smallest(self.server_max_window_bits, offer.server_max_window_bits)
        # Section 7.1.2.2: client_max_window_bits may appear in the response only if
        # it appears in the offer.
        client_bits = None
        if offer.client_max_window_bits_present:
            client_bits = _smallest(self.client_max_window_bits, offer.client_max_window_bits)
        elif self.require_client_max_window_bits:
            raise NegotiationError("client didn't offer client_max_window_bits")

        response: list[ExtensionParameter] = []
        if server_no_context_takeover:
            response.append(("server_no_context_takeover", None))
        if client_no_context_takeover:
            response.append(("client_no_context_takeover", None))
        if server_bits is not None:
            response.append(("server_max_window_bits", str(server_bits)))
        if client_bits is not None:
            response.append(("client_max_window_bits", str(client_bits)))
        extension = PerMessageDeflate(
            remote_no_context_takeover=client_no_context_takeover,
            local_no_context_takeover=server_no_context_takeover,
            remote_max_window_bits=client_bits or _MAX_WINDOW_BITS,
            local_max_window_bits=server_bits or _MAX_WINDOW_BITS,
            compress_settings=self._compress_settings,
        )
        return response, extension


def _repr(obj: object, names: Sequence[str]) -> str:
    """Show the negotiation arguments of ``obj``."""
    arguments = ", ".join(f"{name}={getattr(obj, name)!r}" for name in names)
    return f"{type(obj).__name__}({arguments})"


def _smallest(first: int | None, second: int | None) -> int | None:
    """Return the smaller of two optional window sizes; ``None`` means unlimited."""
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)
