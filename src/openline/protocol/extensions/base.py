"""The interface every extension implements (RFC 6455, section 9).

An extension negotiated in the opening handshake transforms frames on their
way in (:meth:`Extension.decode`) and out (:meth:`Extension.encode`). The
connection applies decoders in reverse order of negotiation and encoders in
order. Factories do the negotiation, one per side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..frames import Frame

__all__ = ["ClientExtensionFactory", "Extension", "ExtensionParameter", "ServerExtensionFactory"]

#: One ``name[=value]`` parameter of an extension offer or response.
ExtensionParameter = tuple[str, "str | None"]


class Extension(Protocol):
    """A negotiated extension, bound to one connection."""

    #: The registered extension name, such as ``"permessage-deflate"``.
    name: str

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        """Undo the extension on a received data frame.

        Called for every received data frame (TEXT, BINARY and CONT) in order; not
        for control frames.

        Args:
            frame: The received frame.
            max_size: How many more bytes the message may grow by after decoding;
                ``None`` means no limit.

        Raises:
            PayloadTooBig: Decoding would exceed ``max_size``.
            ProtocolError: The frame cannot be decoded (the error carries its close code).
        """
        ...

    def encode(self, frame: Frame) -> Frame:
        """Apply the extension to a data frame about to be sent."""
        ...


class ClientExtensionFactory(Protocol):
    """Offers an extension from the client and accepts the server's answer."""

    name: str

    def get_request_params(self) -> list[ExtensionParameter]:
        """Return the parameters to offer in ``Sec-WebSocket-Extensions``."""
        ...

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> Extension:
        """Build the extension from the server's accepted parameters.

        Args:
            params: The parameters the server answered with.
            accepted: The extensions accepted before this one, in order.

        Raises:
            NegotiationError: The answer is not acceptable.
        """
        ...


class ServerExtensionFactory(Protocol):
    """Answers a client's extension offer on the server."""

    name: str

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], Extension]:
        """Accept one offer: return the parameters to answer with and the extension.

        Args:
            params: The parameters of one offer from the client.
            accepted: The extensions accepted before this one, in order.

        Raises:
            NegotiationError: This offer cannot be accepted (the server then tries
                the next offer, or goes on without the extension).
        """
        ...
