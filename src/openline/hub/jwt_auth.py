"""JWT connection tokens: the ``authenticate`` and ``authorize`` hooks for them.

Usage::

    auth = JwtAuth(secret=secret_of_32_bytes_or_more)                # HS256
    auth = JwtAuth(public_key=pem_bytes)                             # RS256 / ES256
    hub = Hub(authenticate=auth.authenticate, authorize=auth.authorize)

A token is checked at the handshake and again for each ``token`` message a
client sends to refresh it (docs/protocol.md, "Tokens"). Its claims:

* ``sub`` (required): the user id.
* ``exp`` (required): expiry in Unix seconds; ``nbf`` and ``iat`` are checked
  too when present. All three with ``leeway`` seconds of clock skew.
* ``name`` / ``info`` (optional): public details shown in presence; ``info``
  must be a JSON object, ``name`` a string (copied into ``info["name"]``).
* ``channels`` (optional): ``{"subscribe": [patterns], "publish": [patterns]}``,
  glob patterns (``*``, ``?``, ``[...]``, matched case-sensitively) of the
  channels the token may subscribe to (which also covers presence) and publish
  on. Without the claim the token restricts nothing; with it, an action whose
  list is missing is refused everywhere.

PyJWT is imported lazily: install ``openline[server]``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping
from typing import Any

from .auth import Action, Credentials, Identity, Reject

__all__ = ["MAX_TOKEN_LENGTH", "ChannelClaims", "JwtAuth", "TokenIdentity"]

#: Longest token read at the handshake, in characters; a longer one gets 401 unread.
MAX_TOKEN_LENGTH = 8192
#: Most patterns per action in a ``channels`` claim.
MAX_PATTERNS = 100
#: Default clock skew allowed on ``exp``, ``nbf`` and ``iat``, in seconds.
DEFAULT_LEEWAY = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelClaims:
    """What a token's ``channels`` claim allows.

    Attributes:
        subscribe: Glob patterns of channels it may subscribe to (and see the
            presence of).
        publish: Glob patterns of channels it may publish on.
    """

    subscribe: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()

    def allows(self, action: Action, ch: str) -> bool:
        """Tell whether ``action`` on ``ch`` matches one of the patterns."""
        patterns = self.publish if action == "publish" else self.subscribe
        return any(fnmatch.fnmatchcase(ch, pattern) for pattern in patterns)


@dataclasses.dataclass(frozen=True, slots=True)
class TokenIdentity(Identity):
    """An identity vouched for by a JWT.

    Attributes:
        channels: The token's channel claims; ``None`` restricts nothing.
    """

    channels: ChannelClaims | None = dataclasses.field(default=None, kw_only=True)


class JwtAuth:
    """Verify JWT connection tokens; give the hub's hooks.

    Args:
        secret: The HS256 key, at least 32 bytes.
        public_key: A PEM public key, RSA (RS256) or EC P-256 (ES256). Exactly
            one of ``secret`` and ``public_key`` is required.
        leeway: Seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
        audience: When set, tokens must carry this ``aud``.
        issuer: When set, tokens must carry this ``iss``.

    Raises:
        ValueError: Neither or both keys, a short secret, a key that isn't a PEM
            RSA or EC public key, or a negative ``leeway``.
        ImportError: PyJWT (or ``cryptography`` for a public key) is missing.
    """

    def __init__(
        self,
        *,
        secret: str | bytes | None = None,
        public_key: str | bytes | None = None,
        leeway: float = DEFAULT_LEEWAY,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        self._jwt = _import_jwt()
        if (secret is None) == (public_key is None):
            raise ValueError("give exactly one of secret and public_key")
        if not leeway >= 0:
            raise ValueError(f"leeway must be at least 0 seconds, got {leeway}")
        self._leeway = leeway
        self._audience = audience
        self._issuer = issuer
        if secret is not None:
            key = secret.encode() if isinstance(secret, str) else secret
            # RFC 7518 section 3.2: an HS256 key must be at least as long as the hash.
            if len(key) < 32:
                raise ValueError(f"secret must be at least 32 bytes, got {len(key)}")
            self._key: Any = key
            self.algorithm = "HS256"
        else:
            assert public_key is not None
            self._key, self.algorithm = _load_public_key(public_key)

    def verify(self, token: str) -> TokenIdentity:
        """Check a token and return who it vouches for.

        Raises:
            Reject: With 401 and a reason: ``token expired``, ``token not yet
                valid``, ``invalid token signature``, ``invalid token: ...``.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            raise Reject(401, "token too long")
        claims = self._decode(token)
        return _identity(claims, self._leeway)

    def authenticate(self, credentials: Credentials) -> TokenIdentity:
        """The hub's ``authenticate`` hook: verify the token the client presented.

        Raises:
            Reject: 401, no token or a token that doesn't verify (see :meth:`verify`).
        """
        if credentials.token is None:
            raise Reject(401, "token required")
        return self.verify(credentials.token)

    @staticmethod
    def authorize(identity: Identity, action: Action, ch: str) -> bool:
        """The hub's ``authorize`` hook: apply the token's channel claims.

        An identity without channel claims (or not from a token) may do anything.
        """
        channels = identity.channels if isinstance(identity, TokenIdentity) else None
        return channels is None or channels.allows(action, ch)

    # --- private -----------------------------------------------------------------------

    def _decode(self, token: str) -> dict[str, Any]:
        jwt = self._jwt
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[self.algorithm],
                leeway=self._leeway,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Reject(401, "token expired") from None
        except jwt.ImmatureSignatureError:
            raise Reject(401, "token not yet valid") from None
        except jwt.InvalidSignatureError:
            raise Reject(401, "invalid token signature") from None
        except jwt.InvalidAlgorithmError:
            raise Reject(401, f"invalid token: algorithm must be {self.algorithm}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Reject(401, f"invalid token: missing claim {exc.claim}") from None
        except jwt.InvalidTokenError as exc:
            # PyJWT's messages name the claim or the format; no secret is in them.
            raise Reject(401, f"invalid token: {str(exc)[:80]}") from None
        return claims


def _identity(claims: Mapping[str, Any], leeway: float) -> TokenIdentity:
    """Build the identity from verified claims; it expires at ``exp`` plus ``leeway``.

    Raises:
        Reject: 401, a claim has the wrong type.
    """
    sub, exp = claims["sub"], claims["exp"]
    if not isinstance(sub, str) or not sub:
        raise Reject(401, "invalid token: sub must be a non-empty string")
    info = claims.get("info", {})
    if not isinstance(info, dict):
        raise Reject(401, "invalid token: info must be an object")
    name = claims.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise Reject(401, "invalid token: name must be a string")
        info = {**info, "name": name}
    channels = claims.get("channels")
    return TokenIdentity(
        sub,
        info,
        # exp is checked with the leeway at the handshake: the connection's
        # clock must agree, or a token accepted there would be expired at once.
        expires=float(exp) + leeway,
        channels=None if channels is None else _channel_claims(channels),
    )


def _channel_claims(value: object) -> ChannelClaims:
    """Parse a ``channels`` claim.

    Raises:
        Reject: 401, it isn't an object of lists of at most 100 strings.
    """
    if not isinstance(value, dict) or not set(value) <= {"subscribe", "publish"}:
        raise Reject(401, "invalid token: channels must be {subscribe?, publish?}")
    found: dict[str, tuple[str, ...]] = {}
    for action in ("subscribe", "publish"):
        patterns = value.get(action, [])
        if (
            not isinstance(patterns, list)
            or len(patterns) > MAX_PATTERNS
            or not all(isinstance(p, str) and p for p in patterns)
        ):
            raise Reject(
                401,
                f"invalid token: channels.{action} must be a list of at most "
                f"{MAX_PATTERNS} patterns",
            )
        found[action] = tuple(patterns)
    return ChannelClaims(found["subscribe"], found["publish"])


def _load_public_key(pem: str | bytes) -> tuple[Any, str]:
    """Load a PEM public key and pick the one algorithm it verifies.

    Raises:
        ValueError: It isn't a PEM RSA or EC P-256 public key.
    """
    try:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError as exc:
        raise ImportError(
            "JWT public keys need cryptography: pip install openline[server]"
        ) from exc
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError("public_key isn't a PEM public key") from exc
    # One algorithm per key, so that a token can't pick another one ("alg confusion").
    if isinstance(key, rsa.RSAPublicKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name != "secp256r1":
            raise ValueError(f"public_key: ES256 needs a P-256 key, got {key.curve.name}")
        return key, "ES256"
    raise ValueError(f"public_key must be an RSA or EC key, got {type(key).__name__}")


def _import_jwt() -> Any:
    try:
        import jwt
    except ImportError as exc:
        raise ImportError("JWT authentication needs PyJWT: pip install openline[server]") from exc
    return jwt
