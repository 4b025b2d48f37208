"""One hub connection's budgets: the rate limit's token bucket and the abuse window."""

from __future__ import annotations

import uuid
from typing import cast

import pytest

from openline.asyncio.server import ServerConnection
from openline.hub import Identity
from openline.hub.session import Session


class StandIn:
    """What a session reads from its connection: the id."""

    def __init__(self) -> None:
        self.id = uuid.uuid4()


def session(
    *,
    rate_limit: tuple[int, float] | None = None,
    max_errors: tuple[int, float] | None = None,
    now: float = 0.0,
) -> Session:
    identity = Identity("alice", {"name": "Alice"})
    return Session(
        cast(ServerConnection, StandIn()),
        identity,
        Session.encode_info(identity),
        anonymous=False,
        rate_limit=rate_limit,
        max_errors=max_errors,
        now=now,
    )


def test_a_session_knows_its_user_and_client_id() -> None:
    one = session()
    assert one.user == "alice"
    assert one.client == str(cast(StandIn, one.ws).id)
    assert one.info_json == '{"name":"Alice"}'
    assert (one.subs, one.closing, one.hold, one.limited_since) == ({}, False, None, None)


def test_info_is_compact_json_keeping_non_ascii() -> None:
    assert Session.encode_info(Identity("u", {"name": "Zoë", "n": [1, 2]})) == (
        '{"name":"Zoë","n":[1,2]}'
    )


@pytest.mark.parametrize(
    ("info", "error"),
    [({"n": float("nan")}, ValueError), ({"when": object()}, TypeError)],
)
def test_info_that_isnt_json_is_refused(info: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        Session.encode_info(Identity("u", info))


# --- rate limit -------------------------------------------------------------------------


def test_the_bucket_starts_full_and_empties() -> None:
    one = session(rate_limit=(3, 1.0))
    assert [one.take_token(0.0) for _ in range(4)] == [True, True, True, False]


def test_the_bucket_refills_at_its_rate_and_says_when() -> None:
    one = session(rate_limit=(4, 2.0))  # 2 tokens per second
    for _ in range(4):
        assert one.take_token(0.0)
    assert not one.take_token(0.0)
    assert one.retry_after(0.0) == pytest.approx(0.5)
    assert one.retry_after(0.25) == pytest.approx(0.25)
    assert not one.take_token(0.25)  # half a token
    assert one.take_token(0.5)
    assert one.retry_after(0.5) == pytest.approx(0.5)


def test_an_idle_session_saves_no_more_than_the_capacity() -> None:
    one = session(rate_limit=(2, 1.0))
    assert one.take_token(0.0)
    assert one.retry_after(1000.0) == 0.0
    assert [one.take_token(1000.0) for _ in range(3)] == [True, True, False]


def test_without_a_rate_limit_every_message_passes() -> None:
    one = session(rate_limit=None)
    assert all(one.take_token(0.0) for _ in range(10_000))
    assert one.retry_after(0.0) == 0.0


# --- abuse window -----------------------------------------------------------------------


def test_errors_within_the_window_cross_the_threshold() -> None:
    one = session(max_errors=(3, 10.0))
    assert [one.count_error(t) for t in (0.0, 1.0, 2.0)] == [False, False, True]


def test_the_window_slides() -> None:
    one = session(max_errors=(3, 10.0))
    assert not one.count_error(0.0)
    assert not one.count_error(5.0)
    assert not one.count_error(11.0)  # 0.0 .. 11.0: wider than the window
    assert one.count_error(12.0)  # 5.0 .. 12.0: three within ten seconds
    assert one.count_error(15.0)  # and still, while errors keep coming


def test_without_a_budget_errors_never_count_as_abuse() -> None:
    one = session(max_errors=None)
    assert not any(one.count_error(0.0) for _ in range(1000))
