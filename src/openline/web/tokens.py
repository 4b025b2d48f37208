"""Demo identities that the server signs, and the hub's authentication hook for them.

``openline serve`` hands out tokens from ``GET /api/session`` (see
:mod:`openline.web.app`): the server picks the user id, the client only its
display name. A token is a compact JWT (RFC 7519) signed with HMAC-SHA256
(``HS256``, RFC 7515), three base64url parts joined by dots::

    base64url({"alg":"HS256","typ":"JWT"}) . base64url(claims) . base64url(signature)

where the signature is HMAC-SHA256 of the first two parts (dot included) under
the key, and the claims are ``sub`` (the user id, ``u.`` and 16 hex digits), ``name`` (the
display name), ``iat`` and ``exp`` (issue and expiry times, Unix seconds).
Any JWT library that knows the key can check one; this module accepts only
exactly that header, so no token can choose its own algorithm.

Three kinds of identities never share an id, so none can pose as another:

==================  ==========================  ===================================
token               user id                     who can use the id
==================  ==========================  ===================================
signed (has dots)   ``u.`` + 16 hex digits      the holder of the server's token
plain name          the name itself: 1-32       anyone: for trying things out with
                    letters, digits, ``_``,     ``openline connect`` or scripts
                    ``-`` (never a dot)
none                ``guest.`` + 12 hex digits  nobody else (anonymous, per connection)
==================  ==========================  ===================================

A token with dots that fails the check (forged, tampered with, expired, or
signed with another key, e.g. before a restart without ``--secret``) is
refused with 401, as is any other token that isn't a plain name.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from ..hub import Credentials, Identity
from ..hub.auth import Reject

__all__ = [
    "DEFAULT_TOKEN_TTL",
    "MAX_NAME",
    "MAX_TOKEN",
    "MIN_SECRET",
    "InvalidToken",
    "Session",
    "TokenSigner",
    "authenticator",
    "clean_name",
]

#: Seconds a signed token stays valid.
DEFAULT_TOKEN_TTL = 86400.0
#: Shortest signing key, in bytes (UTF-8 for text).
MIN_SECRET = 16
#: Longest token read, in characters; a longer one is refused unread.
MAX_TOKEN = 1024
#: Longest display name, in characters; longer ones are cut.
MAX_NAME = 32

# The key of signers given none: random, made once per process, so that an app
# restarted in the same process keeps accepting the tokens it gave out.
_PROCESS_KEY = secrets.token_bytes(32)
_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
_USER_RE = re.compile(r"u\.[0-9a-f]{16}")
_PLAIN_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")


class InvalidToken(ValueError):
    """A token failed the check; the message says why, without echoing it."""


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    """A signed token and what it says.

    Attributes:
        token: The token, to present as a bearer token or a subprotocol offer.
        user: The user id the server chose.
        name: The display name.
        expires: When the token expires, in Unix seconds.
    """

    token: str
    user: str
    name: str
    expires: int


class TokenSigner:
    """Issues and checks signed demo tokens (see the module docstring).

    Args:
        secret: The signing key, at least :data:`MIN_SECRET` bytes. ``None``
            uses a random key made once per process: other processes refuse
            its tokens, so they end with the process. Processes that share a
            port (``--workers``) or sit behind one load balancer need one key.
        ttl: Seconds a token stays valid.
        clock: Returns the current Unix time in seconds.

    Raises:
        ValueError: ``secret`` is too short or ``ttl`` isn't positive.
    """

    def __init__(
        self,
        secret: str | bytes | None = None,
        *,
        ttl: float = DEFAULT_TOKEN_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if secret is None:
            key = _PROCESS_KEY
        else:
            key = secret.encode() if isinstance(secret, str) else bytes(secret)
            if len(key) < MIN_SECRET:
                raise ValueError(f"secret must be at least {MIN_SECRET} bytes, got {len(key)}")
        if not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl}")
        self._key = key
        self.ttl = ttl
        self._clock = clock

    def issue(self, name: str, user: str | None = None) -> Session:
        """Sign a token for ``name``; a new user id unless ``user`` (from a checked token).

        Raises:
            ValueError: ``user`` isn't an id this class makes.
        """
        if user is None:
            user = "u." + secrets.token_hex(8)
        elif not _USER_RE.fullmatch(user):
            raise ValueError(f"not a signed user id: {user!r}")
        now = int(self._clock())
        expires = now + max(1, round(self.ttl))
        claims = {"sub": user, "name": name, "iat": now, "exp": expires}
        body = _encode(json.dumps(claims, separators=(",", ":")).encode())
        signed = f"{_HEADER}.{body}"
        return Session(f"{signed}.{self._sign(signed)}", user, name, expires)

    def verify(self, token: str) -> Session:
        """Check a token's signature and expiry; return what it says.

        Raises:
            InvalidToken: The token is malformed, its signature doesn't match
                (forged, tampered with, or another key), or it expired.
        """
        if len(token) > MAX_TOKEN:
            raise InvalidToken(f"token of {len(token)} characters exceeds {MAX_TOKEN}")
        header, _, rest = token.partition(".")
        body, _, signature = rest.partition(".")
        if header != _HEADER or not body or not signature:
            raise InvalidToken("not a token signed by this server")
        # Compare in constant time: timing mustn't reveal how much of a guess is right.
        if not hmac.compare_digest(signature, self._sign(f"{header}.{body}")):
            raise InvalidToken("bad signature: forged, altered, or signed with another key")
        claims = _claims(body)
        expired = int(self._clock()) - claims["exp"]
        if expired >= 0:
            raise InvalidToken(f"token expired {expired} s ago")
        return Session(token, claims["sub"], claims["name"], claims["exp"])

    def _sign(self, signed: str) -> str:
        return _encode(hmac.new(self._key, signed.encode(), hashlib.sha256).digest())


def authenticator(signer: TokenSigner) -> Callable[[Credentials], Identity]:
    """Build the hub's authentication hook: signed tokens, plain names, guests.

    The hook raises :class:`~openline.hub.Reject` with 401 for a token that is
    neither a valid signed token nor a plain name.
    """

    def authenticate(credentials: Credentials) -> Identity:
        token = credentials.token
        if token is None:
            return Identity("guest." + secrets.token_hex(6), {}, anonymous=True)
        if "." in token:
            try:
                session = signer.verify(token)
            except InvalidToken as exc:
                raise Reject(401, f"invalid token: {exc}") from None
            return Identity(session.user, {"name": session.name})
        if _PLAIN_RE.fullmatch(token):
            return Identity(token, {"name": token})
        raise Reject(
            401,
            "invalid token: expected one from /api/session, or a plain name of "
            "1-32 letters, digits, '_' or '-'",
        )

    return authenticate


def clean_name(text: str) -> str:
    """A display name fit to show: one line of printable characters, no runs of spaces.

    Cut to :data:`MAX_NAME` characters; may be empty.
    """
    joined = " ".join(text.split())
    return "".join(char for char in joined if char.isprintable())[:MAX_NAME].strip()


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(body: str) -> dict[str, Any]:
    """Decode the claims of a token whose signature matched.

    Raises:
        InvalidToken: They aren't what :meth:`TokenSigner.issue` writes.
    """
    try:
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed claims") from None
    if (
        not isinstance(claims, dict)
        or not isinstance(claims.get("sub"), str)
        or not _USER_RE.fullmatch(claims["sub"])
        or not isinstance(claims.get("name"), str)
        or type(claims.get("exp")) is not int
    ):
        raise InvalidToken("malformed claims")
    return claims
