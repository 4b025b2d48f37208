"""The behaviour table both clients follow (``src/openline/hub/policy.json``)."""

from __future__ import annotations

import itertools
import json
import random
from importlib import resources

import pytest

from openline.asyncio.backoff import RETRY_CLOSE_CODES, RETRY_STATUSES
from openline.asyncio.drain import RETRY_HINT_CLOSE_CODES
from openline.hub import client as client_module
from openline.hub.policy import POLICY, Pacer, PolicyBackoff, load_policy


def test_the_python_client_follows_the_table() -> None:
    assert POLICY.redial_close_codes == RETRY_CLOSE_CODES
    assert POLICY.redial_statuses == RETRY_STATUSES
    assert POLICY.heartbeat_interval == client_module.DEFAULT_HEARTBEAT_INTERVAL
    assert POLICY.heartbeat_timeout == client_module.DEFAULT_HEARTBEAT_TIMEOUT
    assert POLICY.reset_after == client_module.DEFAULT_RESET_AFTER
    assert {"rate_limited", "unavailable", "internal"} == POLICY.retry_errors


def test_the_table_is_packaged_json() -> None:
    raw = resources.files("openline.hub").joinpath("policy.json").read_text()
    assert load_policy(raw) == POLICY


def test_the_first_redial_is_fast_and_later_ones_are_capped_and_jittered() -> None:
    for seed in range(50):
        delays = list(itertools.islice(PolicyBackoff(rng=random.Random(seed)), 8))
        assert 0.5 <= delays[0] <= 1.0
        assert 1.0 <= delays[1] <= 2.0
        assert all(1.5 <= delay <= 3.0 for delay in delays[2:])


def test_a_5_s_restart_is_back_within_2_s_of_the_server_on_median() -> None:
    late = []
    for seed in range(200):
        elapsed = 0.0
        for delay in PolicyBackoff(rng=random.Random(seed)):
            elapsed += delay
            if elapsed >= 5.0:
                late.append(elapsed - 5.0)
                break
    late.sort()
    assert late[len(late) // 2] < 2.0


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.pop("backoff"),
        lambda t: t["backoff"].update(first=[1.0, 0.5]),
        lambda t: t["pacing"].update(rate_share=0),
        lambda t: t["backoff"].update(cap=0.1),
    ],
)
def test_a_malformed_table_is_refused(change: object) -> None:
    table = json.loads(resources.files("openline.hub").joinpath("policy.json").read_text())
    change(table)  # type: ignore[operator]
    with pytest.raises(ValueError, match="malformed client policy"):
        load_policy(json.dumps(table))


def test_the_pacer_keeps_below_the_announced_rate() -> None:
    pacer = Pacer()
    pacer.configure(100, 100, now=0.0)  # 90/s, in bursts of 50
    now, sent = 0.0, 0
    while now < 10.0:
        delay = pacer.delay(now)
        if delay > 0:
            now += delay
            continue
        pacer.spend(now)
        sent += 1
    assert sent <= 50 + 90 * 10 + 1
    assert sent >= 90 * 10


def test_the_pacer_is_off_without_an_announced_rate() -> None:
    pacer = Pacer()
    for rate in (None, 0, -1, "fast", True, float("inf")):
        pacer.configure(rate, 10, now=0.0)
        assert pacer.rate is None
        pacer.spend(0.0)
        assert pacer.delay(0.0) == 0.0


def test_a_drained_pacer_waits_and_debt_is_bounded() -> None:
    pacer = Pacer()
    pacer.configure(10, 4, now=0.0)  # 9/s, bursts of 2
    pacer.drain(0.0)
    assert pacer.delay(0.0) == pytest.approx(1 / 9)
    for _ in range(100):  # a heartbeat that never waits
        pacer.spend(0.0)
    assert pacer.delay(0.0) == pytest.approx(3 / 9)


def test_the_policy_names_the_close_codes_whose_retry_hint_is_honoured() -> None:
    assert POLICY.retry_hint_close_codes == RETRY_HINT_CLOSE_CODES
    assert POLICY.retry_hint_close_codes <= POLICY.redial_close_codes
