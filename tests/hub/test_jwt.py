"""JWT connection tokens: the handshake (401), channel claims, refresh, and 4001."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from openline.asyncio.client import connect
from openline.exceptions import ConnectionClosed, InvalidStatus
from openline.hub import Connected, Disconnected, Error, JwtAuth, MemoryEngine
from openline.hub.refresh import TOKEN_EXPIRED

from .helpers import MS, TIMEOUT, HubClient, RunningHub, run_hub
from .test_client import Recorder, client, next_publication

SECRET = "a test secret, 64 bytes long: " + "x" * 34


def sign(claims: dict[str, Any], key: Any = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def claims(user: str = "ada", lifetime: float = 3600, **more: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user, "iat": now, "exp": now + int(lifetime), **more}


def pem(private_key: Any) -> bytes:
    public: bytes = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public


def jwt_hub(auth: JwtAuth, **kwargs: Any) -> Any:
    return run_hub(
        MemoryEngine(), authenticate=auth.authenticate, authorize=auth.authorize, **kwargs
    )


async def with_token(running: RunningHub, token: str) -> HubClient:
    return await running.client(additional_headers={"Authorization": f"Bearer {token}"})


async def refusal(running: RunningHub, token: str) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as caught:
        await connect(
            running.url,
            subprotocols=["openline.v1"],
            additional_headers={"Authorization": f"Bearer {token}"},
        )
    response = caught.value.response
    assert response is not None
    return caught.value.status, response.body


# --- the handshake ------------------------------------------------------------------------


async def test_a_valid_hs256_token_names_the_user_and_its_info() -> None:
    auth = JwtAuth(secret=SECRET)
    async with jwt_hub(auth) as running:
        token = sign(claims(name="Ada L.", info={"avatar": "a.png"}))
        hub_client = await with_token(running, token)
        assert hub_client.welcome["user"] == "ada"
        await hub_client.subscribe("room", presence=True)
        presence = await hub_client.expect("presence")
        assert presence["users"][0]["info"] == {"avatar": "a.png", "name": "Ada L."}


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (sign(claims(lifetime=-120)), b"token expired\n"),
        (sign(claims(nbf=int(time.time()) + 3600)), b"token not yet valid\n"),
        (sign(claims(), "another secret " + "y" * 50), b"invalid token signature\n"),
        (sign({"sub": "ada"}), b"invalid token: missing claim exp\n"),
        (sign(claims(), algorithm="HS512"), b"invalid token: algorithm must be HS256\n"),
        (jwt.encode(claims(), None, algorithm="none"), b"invalid token: algorithm must be HS256\n"),
        ("not.a.token", None),
        (sign(claims(channels={"subscribe": "room:*"})), None),
        (sign(claims(sub=7)), None),
    ],
)
async def test_a_bad_token_is_refused_with_401_and_a_reason(
    token: str, reason: bytes | None
) -> None:
    async with jwt_hub(JwtAuth(secret=SECRET, leeway=0)) as running:
        status, body = await refusal(running, token)
        print(status, body)
        assert status == 401
        if reason is not None:
            assert body == reason
        else:
            assert body.startswith(b"invalid token")


async def test_no_token_is_refused_with_401() -> None:
    async with jwt_hub(JwtAuth(secret=SECRET)) as running:
        with pytest.raises(InvalidStatus) as caught:
            await connect(running.url, subprotocols=["openline.v1"])
        assert caught.value.status == 401


@pytest.mark.parametrize("kind", ["rsa", "ec"])
async def test_a_public_key_verifies_rs256_or_es256_and_refuses_hs256(kind: str) -> None:
    if kind == "rsa":
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        algorithm = "RS256"
    else:
        private = ec.generate_private_key(ec.SECP256R1())
        algorithm = "ES256"
    auth = JwtAuth(public_key=pem(private))
    assert auth.algorithm == algorithm
    async with jwt_hub(auth) as running:
        hub_client = await with_token(running, sign(claims("bob"), private, algorithm))
        assert hub_client.welcome["user"] == "bob"
        # The classic confusion: HMAC "signed" with the public key itself.
        forged = jwt.api_jws.PyJWS()
        forged._algorithms["HS256"].prepare_key = lambda key: key  # type: ignore[method-assign]
        token = forged.encode(
            jwt.utils.force_bytes('{"sub":"eve","exp":%d}' % (time.time() + 60)),  # noqa: UP031
            pem(private),
            algorithm="HS256",
        )
        status, body = await refusal(running, token)
        assert (status, body) == (401, f"invalid token: algorithm must be {algorithm}\n".encode())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of secret and public_key"),
        ({"secret": SECRET, "public_key": b"x"}, "exactly one of secret and public_key"),
        ({"secret": "short"}, "secret must be at least 32 bytes, got 5"),
        ({"public_key": b"-----BEGIN NOTHING-----"}, "public_key isn't a PEM public key"),
        ({"secret": SECRET, "leeway": -1}, "leeway must be at least 0 seconds, got -1"),
    ],
)
def test_bad_settings_raise_value_error_naming_the_argument(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        JwtAuth(**kwargs)


# --- channel claims -----------------------------------------------------------------------


async def test_channel_claims_restrict_subscribe_presence_and_publish() -> None:
    auth = JwtAuth(secret=SECRET)
    token = sign(claims(channels={"subscribe": ["room:*", "news"], "publish": ["room:1"]}))
    async with jwt_hub(auth) as running:
        hub_client = await with_token(running, token)
        await hub_client.subscribe("room:2", presence=True)
        await hub_client.expect("presence", ch="room:2")
        await hub_client.send(type="subscribe", ch="admin", rid=1)
        await hub_client.expect_error("forbidden", ch="admin", rid=1)
        await hub_client.send(type="presence", ch="secret", rid=2)
        await hub_client.expect_error("forbidden", rid=2)
        await hub_client.send(type="publish", ch="room:2", data="no", rid=3)
        await hub_client.expect_error("forbidden", ch="room:2", rid=3)
        ack = await hub_client.publish("room:1", "yes")
        assert ack["offset"] == 1


async def test_without_a_channels_claim_a_token_restricts_nothing() -> None:
    async with jwt_hub(JwtAuth(secret=SECRET)) as running:
        hub_client = await with_token(running, sign(claims()))
        await hub_client.subscribe("anything")
        assert (await hub_client.publish("anything", 1))["offset"] == 1


# --- refresh over the open connection -----------------------------------------------------


async def test_the_hub_asks_for_a_new_token_and_keeps_the_connection() -> None:
    auth = JwtAuth(secret=SECRET, leeway=0)
    async with jwt_hub(auth) as running:
        first = claims(lifetime=3)
        hub_client = await with_token(running, sign(first))
        asked = await hub_client.expect("refresh")
        left = first["exp"] - time.time()
        print(f"refresh asked {left:.2f} s before expiry")
        assert asked["exp"] == first["exp"]
        assert 0 < left <= 2
        # Another user's token is refused; the connection stays.
        await hub_client.send(type="token", token=sign(claims("eve")), rid="k1")
        await hub_client.expect_error("unauthorized", rid="k1", reason="token is for another user")
        await hub_client.send(type="token", token="garbage", rid="k2")
        await hub_client.expect_error("unauthorized", rid="k2")
        renewed = claims(lifetime=3600, channels={"subscribe": ["only"]})
        await hub_client.send(type="token", token=sign(renewed), rid="k3")
        await hub_client.expect("refreshed", exp=renewed["exp"], rid="k3")
        # Past the first token's expiry, still open, under the new token's claims.
        await asyncio.sleep(max(0.0, first["exp"] - time.time()) + 200 * MS)
        await hub_client.send(type="subscribe", ch="other", rid=4)
        await hub_client.expect_error("forbidden", rid=4)


async def test_an_unrefreshed_connection_is_closed_with_4001() -> None:
    async with jwt_hub(JwtAuth(secret=SECRET, leeway=0)) as running:
        first = claims(lifetime=2)
        hub_client = await with_token(running, sign(first))
        await hub_client.expect("refresh")
        with pytest.raises(ConnectionClosed) as caught:
            while True:
                await hub_client.ws.recv()
        late = time.time() - first["exp"]
        print(f"closed {late:.3f} s after expiry")
        assert caught.value.code == TOKEN_EXPIRED == 4001
        assert caught.value.reason == "token expired"
        assert -0.05 <= late <= 2.0


# --- the Python client --------------------------------------------------------------------


def token_source(lifetime: float, fail_on: set[int] | None = None) -> Callable[[], Any]:
    calls: list[int] = []

    async def get_token() -> str:
        calls.append(1)
        await asyncio.sleep(0)
        if fail_on and len(calls) in fail_on:
            raise RuntimeError("token service down")
        return sign(claims(lifetime=lifetime))

    get_token.calls = calls  # type: ignore[attr-defined]
    return get_token


async def test_the_client_refreshes_its_token_without_reconnecting() -> None:
    async with jwt_hub(JwtAuth(secret=SECRET, leeway=0)) as running:
        get_token = token_source(lifetime=2)
        recorder = Recorder()
        async with client(running.url, get_token=get_token, on_event=recorder) as hub_client:
            sub = await hub_client.subscribe("room")
            deadline = time.monotonic() + 4.5
            count = 0
            while time.monotonic() < deadline:
                count += 1
                await running.hub.publish("room", count)
                assert (await next_publication(sub)).data == count
                await asyncio.sleep(100 * MS)
            print(f"refreshes {hub_client.stats['refreshes']}, calls {len(get_token.calls)}")  # type: ignore[attr-defined]
            assert hub_client.stats["refreshes"] >= 2
            assert hub_client.stats["connects"] == 1
            assert recorder.of(Disconnected) == []


async def test_an_expired_client_gets_a_new_token_redials_and_resumes() -> None:
    async with jwt_hub(JwtAuth(secret=SECRET, leeway=0)) as running:
        get_token = token_source(lifetime=2, fail_on={2})  # the refresh fails once
        recorder = Recorder()
        async with client(running.url, get_token=get_token, on_event=recorder) as hub_client:
            sub = await hub_client.subscribe("room")
            await running.hub.publish("room", "before")
            lost = await recorder.wait(Disconnected)
            await running.hub.publish("room", "while away")
            await recorder.wait(Connected, 2)
            await running.hub.publish("room", "after")
            items = [await next_publication(sub) for _ in range(3)]
            assert [item.data for item in items] == ["before", "while away", "after"]
            assert [item.offset for item in items] == [1, 2, 3]
            assert lost.code == 4001
            assert len(get_token.calls) == 3  # type: ignore[attr-defined]
            assert any("token service down" in str(e.error) for e in recorder.of(Error))


async def test_the_client_takes_token_or_get_token_not_both() -> None:
    with pytest.raises(ValueError, match="give token or get_token, not both"):
        client("ws://127.0.0.1:1/", token="a", get_token=lambda: "b")


async def test_a_failing_get_token_is_retried_with_the_redial_delays() -> None:
    async with jwt_hub(JwtAuth(secret=SECRET)) as running:
        get_token = token_source(lifetime=3600, fail_on={1, 2})
        recorder = Recorder()
        async with client(running.url, get_token=get_token, on_event=recorder) as hub_client:
            await asyncio.wait_for(hub_client.subscribe("room"), TIMEOUT)
            assert len(get_token.calls) == 3  # type: ignore[attr-defined]
            assert hub_client.stats["connects"] == 1


async def test_any_hook_may_set_expires_an_expired_identity_gets_401() -> None:
    from openline.hub import Credentials, Identity

    def authenticate(credentials: Credentials) -> Identity:
        lifetime = float(credentials.token or "0")
        return Identity("ada", expires=time.time() + lifetime)

    async with run_hub(MemoryEngine(), authenticate=authenticate) as running:
        assert await refusal(running, "-1") == (401, b"token expired\n")
        hub_client = await with_token(running, "1.5")
        asked = await hub_client.expect("refresh")
        await hub_client.send(type="token", token="3600", rid="k")
        refreshed = await hub_client.expect("refreshed", rid="k")
        assert refreshed["exp"] > asked["exp"] + 3000
