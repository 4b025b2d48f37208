"""The redial policies: Backoff (full jitter), Classifier, Schedule. No loop, no sockets."""

from __future__ import annotations

import email.utils
import itertools
import random
import ssl
import time
from typing import Any

import pytest

from openline.asyncio.backoff import (
    RETRY_CLOSE_CODES,
    Backoff,
    Classifier,
    Schedule,
    retry_after,
)
from openline.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHeader,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    SecurityError,
)
from openline.protocol.frames import Close
from openline.protocol.http11 import Headers, Response

# --- Backoff ----------------------------------------------------------------------------


def test_backoff_first_delay_is_drawn_between_zero_and_base() -> None:
    firsts = [next(iter(Backoff(0.5, 10.0, rng=random.Random(seed)))) for seed in range(200)]
    assert all(0.0 <= delay <= 0.5 for delay in firsts)
    # Full jitter: spread over the whole interval, not bunched at its top.
    assert min(firsts) < 0.05
    assert max(firsts) > 0.45


def test_backoff_bounds_double_up_to_the_cap() -> None:
    for seed in range(50):
        delays = list(itertools.islice(Backoff(0.1, 3.0, rng=random.Random(seed)), 12))
        for n, delay in enumerate(delays):
            assert 0.0 <= delay <= min(3.0, 0.1 * 2**n)


def test_backoff_delays_grow_on_average() -> None:
    rng = random.Random(7)
    runs = [list(itertools.islice(Backoff(1.0, 64.0, rng=rng), 7)) for _ in range(400)]
    means = [sum(run[n] for run in runs) / len(runs) for n in range(7)]
    # The n-th delay averages half its bound: 0.5, 1, 2, 4, 8, 16, 32.
    for n, mean in enumerate(means):
        assert mean == pytest.approx(0.5 * 2**n, rel=0.15)


def test_backoff_with_the_same_seed_gives_the_same_delays() -> None:
    one = list(itertools.islice(Backoff(1.0, 60.0, rng=random.Random(42)), 10))
    two = list(itertools.islice(Backoff(1.0, 60.0, rng=random.Random(42)), 10))
    assert one == two


def test_backoff_starts_over_at_each_iteration() -> None:
    backoff = Backoff(1.0, 1000.0, rng=random.Random(3))
    long = list(itertools.islice(iter(backoff), 10))
    assert max(long) > 1.0  # grew
    assert next(iter(backoff)) <= 1.0  # and starts over


def test_backoff_never_overflows_after_many_attempts() -> None:
    delays = iter(Backoff(1.0, 5.0, rng=random.Random(0)))
    for _ in range(5000):
        assert 0.0 <= next(delays) <= 5.0


def test_backoff_with_zero_base_redials_at_once() -> None:
    assert list(itertools.islice(Backoff(0.0, 0.0), 3)) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("base", "cap", "match"),
    [(-1.0, 5.0, "base"), (2.0, 1.0, "cap"), (float("nan"), 5.0, "base"), (True, 5.0, "base")],
)
def test_backoff_rejects_bad_arguments(base: Any, cap: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Backoff(base, cap)


def test_backoff_repr_shows_its_bounds() -> None:
    assert repr(Backoff(0.5, 30)) == "Backoff(base=0.5, cap=30.0)"


# --- Classifier -------------------------------------------------------------------------


def status(code: int, **headers: str) -> InvalidStatus:
    fields = Headers()
    for name, value in headers.items():
        fields[name.replace("_", "-")] = value
    return InvalidStatus(code, Response(code, "X", fields))


def closed(rcvd: int | None, sent: int | None = None) -> ConnectionClosedError:
    return ConnectionClosedError(
        None if rcvd is None else Close(rcvd, ""), None if sent is None else Close(sent, "")
    )


@pytest.mark.parametrize(
    "exc",
    [
        OSError("unreachable"),
        ConnectionRefusedError(),
        ConnectionResetError(),
        TimeoutError("timed out during the opening handshake"),
        InvalidMessage("connection closed during the opening handshake"),
        ssl.SSLError("EOF in violation of protocol"),
        status(500),
        status(502),
        status(503),
        status(504),
        status(429),
        status(408),
    ],
    ids=repr,
)
def test_classifier_retries_what_may_heal(exc: Exception) -> None:
    assert Classifier()(exc) == 0.0


@pytest.mark.parametrize(
    "exc",
    [
        status(400),
        status(401),
        status(403),
        status(404),
        status(301, location="ws://elsewhere/"),
        InvalidURI("http://x/", "scheme isn't ws or wss"),
        NegotiationError("server ignored server_no_context_takeover"),
        InvalidHeader("Sec-WebSocket-Accept", "d3Jvbmc="),
        SecurityError("too many headers"),
        ssl.SSLCertVerificationError("certificate verify failed"),
        ValueError("a bug"),
    ],
    ids=repr,
)
def test_classifier_raises_what_would_fail_again(exc: Exception) -> None:
    assert Classifier()(exc) is None


@pytest.mark.parametrize("code", sorted(RETRY_CLOSE_CODES))
def test_classifier_redials_after_close_codes_of_a_passing_trouble(code: int) -> None:
    assert Classifier()(closed(code, code)) == 0.0


@pytest.mark.parametrize("code", [1002, 1003, 1007, 1008, 1009, 1010, 3000, 3003, 4000, 4999])
def test_classifier_stops_after_close_codes_of_a_lasting_trouble(code: int) -> None:
    assert Classifier()(closed(code, code)) is None


def test_classifier_redials_after_a_dead_line() -> None:
    # A keepalive timeout: we sent 1011 into the void, nothing came back.
    assert Classifier()(closed(None, 1011)) == 0.0
    assert Classifier()(ConnectionClosedOK(Close(1000, ""), Close(1000, ""))) == 0.0


@pytest.mark.parametrize("cause", [ProtocolError("bad frame"), PayloadTooBig(10, 5)])
def test_classifier_stops_when_the_server_broke_the_protocol(cause: ProtocolError) -> None:
    exc = closed(None, cause.code)
    exc.__cause__ = cause
    assert Classifier()(exc) is None


def test_classifier_redials_when_the_line_is_cut_in_the_middle_of_a_frame() -> None:
    exc = ConnectionClosedError(None, None)
    exc.__cause__ = ProtocolError("connection closed in the middle of a frame")
    assert Classifier()(exc) == 0.0


def test_classifier_honours_retry_after_in_seconds() -> None:
    assert Classifier()(status(503, retry_after="7")) == 7.0
    assert Classifier()(status(429, retry_after=" 2 ")) == 2.0


def test_classifier_honours_retry_after_as_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    least = Classifier()(status(503, retry_after=when))
    assert least is not None
    assert 25.0 <= least <= 31.0


def test_classifier_cuts_a_long_retry_after_down() -> None:
    assert Classifier()(status(503, retry_after="86400")) == 300.0
    assert Classifier(max_retry_after=1.5)(status(503, retry_after="60")) == 1.5
    assert Classifier(max_retry_after=None)(status(503, retry_after="86400")) == 86400.0


@pytest.mark.parametrize("value", ["soon", "-3", "1.5", "Tue, 99 Foo 2020 00:00:00", ""])
def test_classifier_ignores_a_malformed_retry_after(value: str) -> None:
    assert Classifier()(status(503, retry_after=value)) == 0.0


def test_retry_after_in_the_past_is_zero_and_needs_a_response() -> None:
    assert retry_after(status(503, retry_after="Mon, 01 Jan 2001 00:00:00 GMT")) == 0.0
    assert retry_after(status(503, retry_after="Mon, 01 Jan 2001 00:00:00 -0000")) is None
    assert retry_after(InvalidStatus(503)) is None


@pytest.mark.parametrize("value", [-1, float("inf"), "5"])
def test_classifier_rejects_a_bad_max_retry_after(value: Any) -> None:
    with pytest.raises(ValueError, match="max_retry_after"):
        Classifier(max_retry_after=value)


def test_classifier_repr() -> None:
    assert repr(Classifier(max_retry_after=9)) == "Classifier(max_retry_after=9)"


# --- Schedule ---------------------------------------------------------------------------


def schedule(**kwargs: Any) -> Schedule:
    options: dict[str, Any] = dict(
        backoff=[0.1, 0.2, 0.4], classify=Classifier(), max_attempts=None, reset_after=None
    )
    options.update(kwargs)
    return Schedule(**options)


def test_schedule_walks_the_backoff_then_raises_when_it_runs_out() -> None:
    plan = schedule()
    error = OSError("down")
    delays = []
    for _ in range(3):
        plan.dialled()
        delays.append(plan.next_delay(error))
    assert delays == [0.1, 0.2, 0.4]
    plan.dialled()
    with pytest.raises(OSError, match="down"):
        plan.next_delay(error)


def test_schedule_raises_what_the_classifier_refuses() -> None:
    plan = schedule()
    plan.dialled()
    with pytest.raises(InvalidStatus):
        plan.next_delay(status(401))


def test_schedule_waits_at_least_what_the_classifier_asks() -> None:
    plan = schedule()
    plan.dialled()
    assert plan.next_delay(status(503, retry_after="3")) == 3.0


def test_schedule_stops_after_max_attempts() -> None:
    plan = schedule(backoff=itertools.repeat(0.0), max_attempts=3)
    error = OSError()
    plan.dialled()
    plan.next_delay(error)
    plan.dialled()
    plan.next_delay(error)
    plan.dialled()
    with pytest.raises(OSError):
        plan.next_delay(error)


def test_schedule_starts_over_after_a_connection_that_lasted() -> None:
    plan = schedule(reset_after=5.0)
    plan.dialled()
    assert plan.next_delay(OSError()) == 0.1
    plan.dialled()
    plan.opened(100.0)
    plan.closed(102.0)  # too short: no reset
    assert plan.attempts == 2
    assert plan.next_delay(OSError()) == 0.2
    plan.dialled()
    plan.opened(200.0)
    plan.closed(205.0)  # healthy
    assert plan.attempts == 0
    plan.dialled()
    assert plan.next_delay(OSError()) == 0.1


def test_schedule_without_reset_after_starts_over_at_each_open() -> None:
    plan = schedule()
    plan.dialled()
    assert plan.next_delay(OSError()) == 0.1
    plan.dialled()
    plan.opened(1.0)
    assert plan.attempts == 0
    plan.closed(1.0)
    plan.dialled()
    assert plan.next_delay(OSError()) == 0.1


def test_schedule_closed_without_opened_does_nothing() -> None:
    plan = schedule(reset_after=0.0)
    plan.dialled()
    plan.closed(10.0)
    assert plan.attempts == 1


@pytest.mark.parametrize(
    ("argument", "value"),
    [("max_attempts", 0), ("max_attempts", True), ("max_attempts", 1.5), ("reset_after", -1)],
)
def test_schedule_rejects_bad_arguments(argument: str, value: Any) -> None:
    with pytest.raises(ValueError, match=argument):
        schedule(**{argument: value})
