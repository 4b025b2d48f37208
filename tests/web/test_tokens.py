"""Signed demo tokens and the hub's authentication hook for them, as functions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from openline.hub import Credentials, Reject
from openline.protocol.http11 import Headers, Request
from openline.web.tokens import (
    DEFAULT_TOKEN_TTL,
    InvalidToken,
    TokenSigner,
    authenticator,
    clean_name,
)

SECRET = "a secret of more than sixteen bytes"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def credentials(token: str | None) -> Credentials:
    return Credentials(token, Request("/ws", Headers()), ("127.0.0.1", 1))


def test_a_signed_token_is_a_standard_hs256_jwt() -> None:
    clock = Clock()
    session = TokenSigner(SECRET, clock=clock).issue("Ada")
    header, claims, signature = session.token.split(".")
    assert json.loads(unb64(header)) == {"alg": "HS256", "typ": "JWT"}
    assert json.loads(unb64(claims)) == {
        "sub": session.user,
        "name": "Ada",
        "iat": int(clock.now),
        "exp": int(clock.now + DEFAULT_TOKEN_TTL),
    }
    expected = hmac.new(SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    assert unb64(signature) == expected
    assert session.user.startswith("u.") and len(session.user) == 18
    print(f"token of {len(session.token)} characters for a 3-character name")


def test_the_server_picks_the_user_and_a_renewal_keeps_it() -> None:
    signer = TokenSigner(SECRET)
    first, second = signer.issue("Ada"), signer.issue("Ada")
    assert first.user != second.user
    renamed = signer.issue("Ada L.", signer.verify(first.token).user)
    assert signer.verify(renamed.token).user == first.user
    assert signer.verify(renamed.token).name == "Ada L."
    with pytest.raises(ValueError, match="not a signed user id"):
        signer.issue("Mallory", "ada")


def test_two_signers_with_one_secret_accept_each_others_tokens() -> None:
    token = TokenSigner(SECRET).issue("Ada").token
    assert TokenSigner(SECRET.encode()).verify(token).name == "Ada"
    with pytest.raises(InvalidToken, match="bad signature"):
        TokenSigner("another secret, sixteen bytes+").verify(token)
    # Without a secret: one random key per process, so a restart in place keeps tokens.
    assert TokenSigner().verify(TokenSigner().issue("Ada").token).name == "Ada"
    with pytest.raises(InvalidToken, match="bad signature"):
        TokenSigner(SECRET).verify(TokenSigner().issue("Ada").token)


def tampered(token: str, **claims: object) -> str:
    header, body, signature = token.split(".")
    changed = {**json.loads(unb64(body)), **claims}
    return f"{header}.{b64(json.dumps(changed).encode())}.{signature}"


def test_forged_tampered_and_expired_tokens_are_refused() -> None:
    clock = Clock()
    signer = TokenSigner(SECRET, ttl=60, clock=clock)
    token = signer.issue("Ada").token
    header, body, signature = token.split(".")
    alg_none = b64(b'{"alg":"none","typ":"JWT"}')
    hs512 = b64(b'{"alg":"HS512","typ":"JWT"}')
    cases = {
        "another user": tampered(token, sub="u.0123456789abcdef"),
        "a later expiry": tampered(token, exp=int(clock.now) + 10**6),
        "no signature": f"{header}.{body}.",
        "a signature by another key": TokenSigner("x" * 16).issue("Ada").token,
        "alg none": f"{alg_none}.{body}.",
        "another header": f"{hs512}.{body}.{signature}",
        "garbage": "a.b.c",
        "too long": token + "A" * 1024,
    }
    for what, forged in cases.items():
        with pytest.raises(InvalidToken) as caught:
            signer.verify(forged)
        print(f"{what}: {caught.value}")
    clock.now += 59
    assert signer.verify(token).name == "Ada"
    clock.now += 1
    with pytest.raises(InvalidToken, match="token expired 0 s ago"):
        signer.verify(token)


def test_claims_are_checked_even_under_a_good_signature() -> None:
    # Only a holder of the key could make these; still, nothing odd is trusted.
    for claims in ({"sub": "ada", "name": "A", "exp": 2**40}, {"sub": "u.0123456789abcdef"}):
        body = b64(json.dumps(claims).encode())
        header = b64(b'{"alg":"HS256","typ":"JWT"}')
        mac = hmac.new(SECRET.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
        with pytest.raises(InvalidToken, match="malformed claims"):
            TokenSigner(SECRET).verify(f"{header}.{body}.{b64(mac)}")


def test_a_signer_wants_a_long_enough_secret_and_a_positive_ttl() -> None:
    with pytest.raises(ValueError, match="secret must be at least 16 bytes, got 5"):
        TokenSigner("short")
    with pytest.raises(ValueError, match="ttl must be a positive number"):
        TokenSigner(SECRET, ttl=0)


# --- the hub's hook ------------------------------------------------------------------


def test_the_hook_reads_signed_tokens() -> None:
    signer = TokenSigner(SECRET)
    session = signer.issue("Grace")
    identity = authenticator(signer)(credentials(session.token))
    assert (identity.user, dict(identity.info), identity.anonymous) == (
        session.user,
        {"name": "Grace"},
        False,
    )


@pytest.mark.parametrize(
    "token",
    [
        "forged.token.here",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.AAAA",
        # The old, unsigned demo token: base64url of {"id", "name"}.
        b64(json.dumps({"id": "victim-1234", "name": "Victim"}).encode()),
        "u.0123456789abcdef",  # a signed user's id, as a plain name
        "guest.0123456789ab",
        "x" * 33,
        "two words",
        "",
    ],
)
def test_the_hook_refuses_anything_else_with_401(token: str) -> None:
    hook = authenticator(TokenSigner(SECRET))
    with pytest.raises(Reject) as caught:
        hook(credentials(token))
    assert caught.value.status == 401
    assert caught.value.reason.startswith("invalid token: ")
    assert "\n" not in caught.value.reason


def test_plain_names_and_guests_never_share_an_id_with_a_signed_user() -> None:
    signer = TokenSigner(SECRET)
    hook = authenticator(signer)
    ada = hook(credentials("ada"))
    assert (ada.user, dict(ada.info), ada.anonymous) == ("ada", {"name": "ada"}, False)
    first, second = hook(credentials(None)), hook(credentials(None))
    assert first.anonymous and second.anonymous
    assert first.user.startswith("guest.") and first.user != second.user
    assert dict(first.info) == {}
    # Signed ids have a dot, plain names never do; guests are "guest.": three namespaces.
    assert "." in signer.issue("ada").user and "." not in ada.user


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Grace", "Grace"),
        ("  Ada \t Lovelace ", "Ada Lovelace"),
        ("\x00\x1b[2J", "[2J"),
        ("x" * 100, "x" * 32),
        ("   ", ""),
    ],
)
def test_clean_name(text: str, name: str) -> None:
    assert clean_name(text) == name
