"""The behaviour table both hub clients follow: redial delays, retries, pacing.

``policy.json`` beside this module is the one source of these numbers; the
Python client reads it here, and ``openline.js`` carries a copy that the tests
compare with the file, so the two clients cannot drift apart.
docs/protocol.md ("What a resilient client does") explains each entry.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Iterator
from importlib import resources
from typing import Any

__all__ = ["POLICY", "Pacer", "Policy", "PolicyBackoff", "load_policy"]


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """The parsed ``policy.json``.

    Attributes:
        first: ``(low, high)``: the first redial waits uniformly within it, in seconds.
        base: Bound of the second redial's delay, in seconds.
        factor: Growth of the bound per further redial.
        cap: Largest bound, in seconds.
        jitter: Share of the bound that is random: a delay is drawn from
            ``[bound * (1 - jitter), bound]``.
        reset_after: Seconds a connection must last before the backoff starts over.
        redial_close_codes: Close codes after which a client redials.
        token_close_codes: Close codes after which a client gets a new token
            (its ``get_token`` callback), then redials: 4001, token expired.
        retry_hint_close_codes: Close codes whose reason may carry a retry
            hint (``retry-after=1.25``): the least delay before the first redial.
        redial_statuses: HTTP statuses of a refused handshake after which it redials.
        retry_errors: ``error`` codes after which a request is sent again.
        rate_share: Share of the hub's announced rate a client sends at.
        burst_share: Share of the hub's announced burst a client sends at once.
        heartbeat_interval: Seconds between two heartbeat pings.
        heartbeat_timeout: Seconds to hear anything after a ping.
    """

    first: tuple[float, float]
    base: float
    factor: float
    cap: float
    jitter: float
    reset_after: float
    redial_close_codes: frozenset[int]
    token_close_codes: frozenset[int]
    retry_hint_close_codes: frozenset[int]
    redial_statuses: frozenset[int]
    retry_errors: frozenset[str]
    rate_share: float
    burst_share: float
    heartbeat_interval: float
    heartbeat_timeout: float


def load_policy(raw: str | None = None) -> Policy:
    """Parse ``policy.json`` (or ``raw``, its text).

    Raises:
        ValueError: The table is malformed.
    """
    if raw is None:
        raw = resources.files(__package__ or "openline.hub").joinpath("policy.json").read_text()
    try:
        table: dict[str, Any] = json.loads(raw)
        backoff, pacing, heartbeat = table["backoff"], table["pacing"], table["heartbeat"]
        low, high = (float(value) for value in backoff["first"])
        policy = Policy(
            first=(low, high),
            base=float(backoff["base"]),
            factor=float(backoff["factor"]),
            cap=float(backoff["cap"]),
            jitter=float(backoff["jitter"]),
            reset_after=float(backoff["reset_after"]),
            redial_close_codes=frozenset(int(code) for code in table["redial_close_codes"]),
            token_close_codes=frozenset(int(code) for code in table["token_close_codes"]),
            retry_hint_close_codes=frozenset(int(code) for code in table["retry_hint_close_codes"]),
            redial_statuses=frozenset(int(status) for status in table["redial_statuses"]),
            retry_errors=frozenset(str(code) for code in table["retry_errors"]),
            rate_share=float(pacing["rate_share"]),
            burst_share=float(pacing["burst_share"]),
            heartbeat_interval=float(heartbeat["interval"]),
            heartbeat_timeout=float(heartbeat["timeout"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed client policy: {exc!r}") from exc
    if not 0 <= low <= high or not 0 <= policy.jitter <= 1 or policy.cap < policy.base:
        raise ValueError("malformed client policy: backoff bounds out of order")
    if not 0 < policy.rate_share <= 1 or not 0 < policy.burst_share <= 1:
        raise ValueError("malformed client policy: pacing shares must be in (0, 1]")
    return policy


#: The table in force.
POLICY = load_policy()


class PolicyBackoff:
    """Redial delays of the behaviour table: fast first, jittered, capped.

    The first delay is drawn from ``policy.first`` (0.5 to 1 s); the ``n``-th
    (``n >= 2``) from ``[bound * (1 - jitter), bound]`` with ``bound =
    min(cap, base * factor ** (n - 1))`` (1 to 2 s, then 1.5 to 3 s). A 3-5 s
    server restart is thus back within about 1.5 s of the server's return
    on median, and a crowd of clients that lost it together spreads its redials
    over a window at least ``jitter`` of the bound wide. Each ``iter()``
    starts over.

    Args:
        policy: The table; the packaged one by default.
        rng: Where randomness comes from (seed it for reproducible tests).
    """

    def __init__(self, policy: Policy = POLICY, *, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._rng = rng if rng is not None else random.Random()

    def __iter__(self) -> Iterator[float]:
        policy, uniform = self.policy, self._rng.uniform
        yield uniform(*policy.first)
        n = 1
        while True:
            bound = min(policy.cap, policy.base * policy.factor**n)
            yield uniform(bound * (1.0 - policy.jitter), bound)
            if bound < policy.cap:
                n += 1

    def __repr__(self) -> str:
        return f"PolicyBackoff({self.policy.first}, cap={self.policy.cap})"


class Pacer:
    """A token bucket that keeps a client below the hub's announced rate.

    Sans-I/O: the caller passes the time and sleeps for the delays it gets.
    Every message sent spends a token; a message waits until a token is there.
    Spending may run into debt (a heartbeat that can't wait), which later
    messages then wait off.

    Args:
        policy: Where the shares of the announced rate and burst come from.
    """

    __slots__ = ("_at", "_capacity", "_policy", "_rate", "_tokens")

    def __init__(self, policy: Policy = POLICY) -> None:
        self._policy = policy
        self._rate: float | None = None  # tokens per second; None: no pacing
        self._capacity = 0.0
        self._tokens = 0.0
        self._at = 0.0

    @property
    def rate(self) -> float | None:
        """Messages per second this client sends at most; ``None`` when unpaced."""
        return self._rate

    def configure(self, rate: object, burst: object, now: float) -> None:
        """Adopt a hub's announced limits (``welcome.limits``), with a full bucket.

        Values that aren't positive numbers turn pacing off, as a hub without
        a rate limit announces none.
        """
        if not _is_positive(rate):
            self._rate = None
            return
        policy = self._policy
        self._rate = float(rate) * policy.rate_share  # type: ignore[arg-type]  # checked
        size = float(burst) if _is_positive(burst) else 1.0  # type: ignore[arg-type]  # checked
        self._capacity = max(1.0, math.floor(size * policy.burst_share))
        self._tokens = self._capacity
        self._at = now

    def delay(self, now: float) -> float:
        """Seconds to wait before the next message may go (0 when it may now)."""
        if self._rate is None:
            return 0.0
        tokens = self._refill(now)
        # A hair below 1 after waiting the exact delay is float rounding, not debt.
        return 0.0 if tokens >= 1.0 - 1e-9 else (1.0 - tokens) / self._rate

    def spend(self, now: float) -> None:
        """Count one message sent.

        The debt a message sent without waiting can make is bounded by one
        bucket, so that a heartbeat faster than the rate can't starve the rest.
        """
        if self._rate is not None:
            self._tokens = max(-self._capacity, self._refill(now) - 1.0)
            self._at = now

    def drain(self, now: float) -> None:
        """Empty the bucket: the hub said its own is empty."""
        if self._rate is not None:
            self._tokens = min(0.0, self._refill(now))
            self._at = now

    def _refill(self, now: float) -> float:
        assert self._rate is not None
        return min(self._capacity, self._tokens + (now - self._at) * self._rate)


def _is_positive(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
