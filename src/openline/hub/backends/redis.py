"""The Redis engine: one hub across any number of processes and machines.

Every process (a **node**) that shares a Redis server and a key prefix acts as
one hub: a message published on any node reaches subscribers on every node, in
one order, with the same offsets everywhere.

* **History**: one Redis Stream per channel, trimmed to the history window; the
  stream entry's id *is* the offset (``<offset>-0``), so offsets are plain
  integers shared by all nodes. The channel's **epoch** lives in Redis next to
  it and changes when the history is lost (Redis restarted without persistence,
  keys deleted or expired): resuming clients then get a gap, never wrong offsets.
* **Publishing** is one Lua script: check the idempotency key, store the
  message, trim, and ``PUBLISH`` it on the channel's pub/sub channel, all
  atomically. So a message is stored before anyone hears of it, pub/sub order
  is offset order, and a retried publish is stored once whichever node it lands on.
* **Live delivery**: each node holds one pub/sub connection (:mod:`.redis_feed`)
  and subscribes once per channel it has local subscribers on, whatever their
  number; the hub fans out locally.
* **Presence** is shared: hashes per channel, and per node the list of its
  entries. Each node renews its deadline (``presence_ttl``) by a heartbeat; a
  node whose deadline passed is reaped by any other, which removes its users
  and announces their ``leave``. So a crashed node's users leave within
  ``presence_ttl`` plus one heartbeat.
* **Control**: one pub/sub channel per prefix, ``<prefix>:control``, that every
  node's feed subscribes to once it has a control callback; the hub's server
  API sends its commands there, so that they reach every node (at most once: a
  node whose feed is down misses them).
* **Outages**: commands raise :class:`~openline.exceptions.BackendUnavailable`
  (clients get ``error unavailable`` and retry), :meth:`RedisEngine.health`
  says ``degraded``, and every failure is logged and counted. A supervisor task
  (:mod:`.redis_nodes`, which also runs the heartbeat and reaps dead nodes)
  redials with backoff and full jitter; once Redis is back it re-subscribes,
  re-registers this node's presence, and delivers a
  :class:`~openline.hub.backends.base.Position` per channel so that the hub
  reads what it missed from the streams (or reports a gap: new epoch).

Redis Cluster is not supported (the scripts touch keys of several channels when
reaping a node); a single primary, with replicas or Sentinel for failover, is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import ssl
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ...asyncio.backoff import Backoff
from ...asyncio.config import check_timeout
from ...exceptions import BackendUnavailable
from ..config import check_positive, check_positive_int
from ..metrics import Timings
from . import redis_lua
from .base import (
    Callback,
    ControlCallback,
    Event,
    HistoryResult,
    Message,
    Position,
    PresenceEvent,
    PresenceSnapshot,
    PresenceUser,
    PublishResult,
)
from .options import (
    DEFAULT_HISTORY_SIZE,
    DEFAULT_HISTORY_TTL,
    Default,
    check_windows,
)
from .redis_feed import Feed, parse_endpoint
from .redis_nodes import NodeSupervisor

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["DEFAULT_PRESENCE_TTL", "RedisEngine"]

#: Seconds a node's presence entries outlive its last heartbeat.
DEFAULT_PRESENCE_TTL = 15.0
#: Seconds a channel's keys outlive its last use.
DEFAULT_CHANNEL_TTL = 86400.0
#: Seconds a Redis command or connection attempt may take.
DEFAULT_TIMEOUT = 5.0
#: Connections for commands per node.
DEFAULT_MAX_CONNECTIONS = 32

logger = logging.getLogger("openline.hub")

_Status = Literal["starting", "ok", "degraded", "closed"]


class RedisEngine:
    """History, live delivery and presence in Redis, shared by every node on the same prefix.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://…`` (TLS) or
            ``unix:///path``.
        prefix: Prefix of every key; nodes with the same prefix form one hub.
        history_size: Messages kept per channel; ``None`` keeps any number
            (bounded by ``history_ttl`` then); 0 keeps none.
        history_ttl: Seconds a message stays in history; ``None``: until
            ``history_size`` pushes it out.
        id_size: Idempotency keys remembered per channel; ``history_size`` (or
            1000) by default.
        id_ttl: Seconds an idempotency key is remembered; ``history_ttl`` by default.
        presence_ttl: Seconds after its last heartbeat (sent every third of it)
            at which a silent node's users leave.
        channel_ttl: Seconds after a channel's last publish or read at which its
            keys expire (its next use starts a new epoch); ``None``: never.
        node: This process's name among the nodes; a random one by default.
        timeout: Seconds a command, a connection attempt or a feed ping may take.
        max_connections: Connections for commands (the pub/sub feed has its
            own); more concurrent commands wait for one, up to ``timeout``.
        retry_base: Upper bound of the first delay before redialling Redis.
        retry_cap: Upper bound of every delay before redialling Redis.
        ssl_context: For ``rediss://``: the TLS context of the feed connection.
        clock: Wall-clock seconds for the time windows; Redis's ``TIME`` when
            ``None`` (tests inject a clock).

    Raises:
        ImportError: The ``redis`` package is missing (``pip install 'openline[redis]'``).
        ValueError: An argument is out of range, or the URL isn't a Redis URL.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "openline",
        # limits
        history_size: int | None = DEFAULT_HISTORY_SIZE,
        history_ttl: float | None = DEFAULT_HISTORY_TTL,
        id_size: int | Literal[Default.TOKEN] | None = Default.TOKEN,
        id_ttl: float | Literal[Default.TOKEN] | None = Default.TOKEN,
        presence_ttl: float = DEFAULT_PRESENCE_TTL,
        channel_ttl: float | None = DEFAULT_CHANNEL_TTL,
        # identity and connection
        node: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        retry_base: float = 0.1,
        retry_cap: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        # advanced
        clock: Callable[[], float] | None = None,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError as exc:  # pragma: no cover - the dev extra installs it
            raise ImportError(
                "the Redis engine needs the redis package: pip install 'openline[redis]'"
            ) from exc
        windows = check_windows(history_size, history_ttl, id_size, id_ttl)
        self._history_size, self._history_ttl, self._id_size, self._id_ttl = windows
        self._presence_ttl = check_positive("presence_ttl", presence_ttl)
        self._channel_ttl = check_timeout("channel_ttl", channel_ttl)
        self._timeout = check_positive("timeout", timeout)
        self._max_connections = check_positive_int("max_connections", max_connections)
        backoff = Backoff(retry_base, retry_cap)
        if not prefix or "\n" in prefix:
            raise ValueError(f"prefix must be a non-empty line, got {prefix!r}")
        self._endpoint = parse_endpoint(url)
        self._url = url
        self._prefix = prefix
        self._ssl_context = ssl_context
        self._clock = clock
        #: This process's name among the nodes.
        self.node = node or uuid.uuid4().hex
        if "\n" in self.node:
            raise ValueError("node must not contain a newline")
        self._nodes_key = f"{prefix}:nodes"
        self._control_key = f"{prefix}:control".encode()
        self._control: list[ControlCallback] = []
        self._node_key = f"{prefix}:node:{self.node}"
        # Window arguments as the scripts take them (ms; -1 for none).
        self._args_history_size = -1 if self._history_size is None else self._history_size
        self._args_history_ttl = _ms(self._history_ttl)
        self._args_id_size = -1 if self._id_size is None else self._id_size
        self._args_id_ttl = _ms(self._id_ttl)
        self._args_channel_ttl = max(_ms(self._channel_ttl), 0)
        if self._args_channel_ttl:
            # Keys must outlive what they hold.
            longest = max(self._args_history_ttl, self._args_id_ttl, 0)
            self._args_channel_ttl = max(self._args_channel_ttl, 2 * longest)
        self._node_ttl_ms = _ms(self._presence_ttl)
        #: Heartbeat, reaping and recovery (:mod:`.redis_nodes`).
        self._supervisor = NodeSupervisor(
            _Seam(self),
            node=self.node,
            prefix=prefix,
            presence_ttl=self._presence_ttl,
            node_ttl_ms=self._node_ttl_ms,
            timeout=self._timeout,
            backoff=backoff,
        )
        self._redis: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._feed: Feed | None = None
        self._start_lock: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Live delivery: channel -> callbacks, and pub/sub channel -> channel.
        self._callbacks: dict[str, list[Callback]] = {}
        self._live: dict[bytes, str] = {}
        self._confirming: dict[str, asyncio.Future[None]] = {}
        # This node's presence entries, re-registered after an outage.
        self._present: dict[tuple[str, str], tuple[str, str]] = {}
        self._state_timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        # Leaves that failed during an outage, done once Redis is back.
        self._leaving: dict[tuple[str, str], str] = {}
        # Health.
        self._status: _Status = "starting"
        self._down_since: float | None = None
        self._last_error = ""
        self._errors = 0
        self._outages = 0
        self._delivered = 0
        #: Seconds each script took, by script name (``PUBLISH``, ``HISTORY``...),
        #: failures included: what ``/metrics`` shows as Redis round trips.
        self.round_trips: dict[str, Timings] = {}

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to Redis, open the live feed, and start the heartbeat.

        Every other method starts the engine when it isn't yet; call this to
        fail early when Redis can't be reached.

        Raises:
            BackendUnavailable: Redis can't be reached.
            RuntimeError: The engine is closed.
        """
        if self._status == "closed":
            raise RuntimeError("the engine is closed")
        if self._supervisor.started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if not self._supervisor.started:
                await self._start()

    async def _start(self) -> None:
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # A bounded pool: a burst of subscribes (clients redialling after a node
        # died) queues for a connection instead of opening thousands of them.
        pool = BlockingConnectionPool.from_url(
            self._url,
            max_connections=self._max_connections,
            timeout=self._timeout,
            decode_responses=False,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            # One immediate retry on a fresh connection: a pooled one may be
            # stale after Redis restarted. Longer outages are the supervisor's.
            retry=Retry(NoBackoff(), 1),
        )
        client: Redis = Redis(connection_pool=pool)
        try:
            await client.ping()
            feed = await Feed.open(
                self._endpoint,
                self._on_feed,
                self._on_feed_lost,
                timeout=self._timeout,
                ssl_context=self._ssl_context,
            )
        except Exception as exc:
            await _close_client(client)
            self._errors += 1
            raise BackendUnavailable(f"can't reach Redis at {self._url_safe()}: {exc}") from exc
        self._redis = client
        self._scripts = {
            name: client.register_script(getattr(redis_lua, name)) for name in redis_lua.__all__
        }
        self._feed = feed
        self._status = "ok"
        await self._supervisor.beat()
        self._supervisor.start()
        logger.info(
            "Redis engine: node %s on %s, prefix %r", self.node, self._url_safe(), self._prefix
        )

    async def close(self) -> None:
        """Leave presence, close the connections, and stop the heartbeat."""
        if self._status == "closed":
            return
        self._status = "closed"
        for timer in self._state_timers.values():
            timer.cancel()
        self._state_timers.clear()
        await self._supervisor.stop()
        for task in list(self._tasks):
            task.cancel()
        if self._redis is not None:
            # Leave presence and the node registry now, rather than after presence_ttl.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._supervisor.reap(self.node, force=True), self._timeout)
        self._present.clear()
        if self._feed is not None:
            self._feed.close()
            self._feed = None
        if self._redis is not None:
            await _close_client(self._redis)
        self._callbacks.clear()
        self._live.clear()
        self._control.clear()

    def health(self) -> dict[str, Any]:
        """The engine's state and counters, for ``/healthz``."""
        loop_time = _loop_time()
        down = self._down_since
        return {
            "engine": "redis",
            "status": self._status,
            "node": self.node,
            "prefix": self._prefix,
            "redis": self._url_safe(),
            "channels": len(self._callbacks),
            "presence_entries": len(self._present),
            "delivered": self._delivered,
            "errors": self._errors,
            "outages": self._outages,
            "reconnects": self._supervisor.reconnects,
            "reaped_nodes": self._supervisor.reaped,
            "down_for": None if down is None or loop_time is None else round(loop_time - down, 3),
            "last_error": self._last_error,
        }

    # --- messages ----------------------------------------------------------------------

    async def publish(
        self,
        ch: str,
        data: bytes | str,
        *,
        msg_id: str | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> PublishResult:
        """Store a message and deliver it; see :meth:`.base.Engine.publish`."""
        keys, args = self._publish_args(ch, data, msg_id, meta)
        epoch, offset, duplicate = await self._run("PUBLISH", keys, args)
        return PublishResult(epoch.decode(), int(offset), bool(duplicate))

    async def publish_many(
        self, items: Sequence[tuple[str, bytes | str, str | None, Mapping[str, str] | None]]
    ) -> list[PublishResult | Exception]:
        """Store several messages in one round trip, in order: ``(ch, data, msg_id, meta)`` each.

        One pipeline of the publish script (not a transaction): Redis runs the
        scripts one after the other, exactly as for as many :meth:`publish`
        calls, and answers them together. A failure of the connection fails
        every publish of the batch (some may have been stored; their ids make a
        retry safe, as after a lost reply to :meth:`publish`); an error reply
        fails its publish alone.

        Returns:
            Each message's :class:`PublishResult`, or the
            :class:`BackendUnavailable` it failed with, in order.
        """
        if not items:
            return []
        await self.start()
        from redis.exceptions import RedisError

        client = self._redis
        if client is None:
            raise BackendUnavailable("the Redis engine is closed")
        script = self._scripts["PUBLISH"]
        started = time.perf_counter()
        try:
            async with client.pipeline(transaction=False) as pipe:
                for ch, data, msg_id, meta in items:
                    keys, args = self._publish_args(ch, data, msg_id, meta)
                    await script(keys=keys, args=args, client=pipe)
                replies = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._failed(exc)
            failed = BackendUnavailable(f"Redis failed (publish): {exc}")
            return [failed] * len(items)
        finally:
            timings = self.round_trips.get("PUBLISH")
            if timings is None:
                timings = self.round_trips["PUBLISH"] = Timings()
            timings.observe(time.perf_counter() - started)
        results: list[PublishResult | Exception] = []
        for reply in replies:
            if isinstance(reply, Exception):
                self._failed(reply)
                results.append(BackendUnavailable(f"Redis failed (publish): {reply}"))
            else:
                epoch, offset, duplicate = reply
                results.append(PublishResult(epoch.decode(), int(offset), bool(duplicate)))
        return results

    def _publish_args(
        self, ch: str, data: bytes | str, msg_id: str | None, meta: Mapping[str, str] | None
    ) -> tuple[list[str], list[Any]]:
        if isinstance(data, str):
            kind, payload = b"s", data.encode()
        else:
            kind, payload = b"d", data
        k = self._prefix + ":ch:" + ch
        keys = [k + ":m", k + ":s", k + ":i", k + ":q", k + ":live"]
        args = [
            _new_epoch(),
            self._now(),
            kind,
            payload,
            _dump_meta(meta),
            msg_id if msg_id is not None else "",
            self._args_history_size,
            self._args_history_ttl,
            self._args_id_size,
            self._args_id_ttl,
            self._args_channel_ttl,
        ]
        return keys, args

    async def history(
        self, ch: str, *, since: int | None = None, epoch: str | None = None
    ) -> HistoryResult:
        """Read the position and the messages after ``since``; see :meth:`.base.Engine.history`."""
        k = self._prefix + ":ch:" + ch
        reply = await self._run(
            "HISTORY",
            [k + ":m", k + ":s", k + ":i", k + ":q"],
            [
                _new_epoch(),
                self._now(),
                "" if since is None else since,
                epoch if epoch is not None else "",
                self._args_history_ttl,
                self._args_channel_ttl,
            ],
        )
        current, last, first, recovered, entries = reply
        current = current.decode()
        messages = [_entry(ch, current, entry) for entry in entries]
        return HistoryResult(current, int(last), int(first), messages, bool(recovered))

    async def subscribe(self, ch: str, callback: Callback) -> None:
        """Deliver the channel's events to ``callback``; see :meth:`.base.Engine.subscribe`."""
        await self.start()
        callbacks = self._callbacks.get(ch)
        if callbacks is not None:
            if callback not in callbacks:
                callbacks.append(callback)
            confirming = self._confirming.get(ch)
            if confirming is not None:
                await self._confirmed(ch, callback, confirming)
            return
        feed = self._feed
        if feed is None:
            raise BackendUnavailable(f"Redis is unreachable: {self._last_error}")
        live = (self._prefix + ":ch:" + ch + ":live").encode()
        self._callbacks[ch] = [callback]
        self._live[live] = ch
        try:
            (confirming,) = feed.subscribe([live])
        except BackendUnavailable:
            self._drop(ch, callback)
            raise
        self._confirming[ch] = confirming
        try:
            await self._confirmed(ch, callback, confirming)
        finally:
            if self._confirming.get(ch) is confirming:
                del self._confirming[ch]

    async def _confirmed(
        self, ch: str, callback: Callback, confirming: asyncio.Future[None]
    ) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(confirming), self._timeout)
        except (BackendUnavailable, asyncio.TimeoutError) as exc:
            self._drop(ch, callback)
            self._failed(exc)
            raise BackendUnavailable(f"Redis didn't confirm the subscription: {exc!r}") from exc

    async def unsubscribe(self, ch: str, callback: Callback) -> None:
        """Stop delivering to ``callback``; see :meth:`.base.Engine.unsubscribe`."""
        self._drop(ch, callback)

    def _drop(self, ch: str, callback: Callback) -> None:
        callbacks = self._callbacks.get(ch)
        if callbacks is None or callback not in callbacks:
            return
        callbacks.remove(callback)
        if callbacks:
            return
        del self._callbacks[ch]
        live = (self._prefix + ":ch:" + ch + ":live").encode()
        self._live.pop(live, None)
        feed = self._feed
        if feed is not None:
            with contextlib.suppress(BackendUnavailable):
                feed.unsubscribe([live])

    # --- control -----------------------------------------------------------------------

    async def send_control(self, payload: bytes) -> None:
        """Publish ``payload`` to every node; see :meth:`.base.Control.send_control`."""
        await self.start()
        assert self._redis is not None
        await self._command(self._redis.publish(self._control_key, payload), "control")

    async def subscribe_control(self, callback: ControlCallback) -> None:
        """Hear every node's control payloads; see :meth:`.base.Control.subscribe_control`."""
        await self.start()
        if callback in self._control:
            return
        self._control.append(callback)
        if len(self._control) > 1:
            return
        feed = self._feed
        if feed is None:
            return  # the recovery subscribes once the feed is back
        try:
            (confirming,) = feed.subscribe([self._control_key])
            await asyncio.wait_for(asyncio.shield(confirming), self._timeout)
        except (BackendUnavailable, asyncio.TimeoutError) as exc:
            self._control.remove(callback)
            self._failed(exc)
            raise BackendUnavailable(f"Redis didn't confirm the control channel: {exc!r}") from exc

    async def unsubscribe_control(self, callback: ControlCallback) -> None:
        """Stop hearing control payloads; see :meth:`.base.Control.unsubscribe_control`."""
        if callback not in self._control:
            return
        self._control.remove(callback)
        feed = self._feed
        if not self._control and feed is not None:
            with contextlib.suppress(BackendUnavailable):
                feed.unsubscribe([self._control_key])

    async def present_channels(self, limit: int) -> list[str]:
        """Channels with present users; see :meth:`.base.Control.present_channels`.

        Scans the keys of the prefix (``SCAN``, in batches), so it costs a walk
        of the key space: meant for an operator's occasional question.
        """
        await self.start()
        assert self._redis is not None
        head = (_glob_escape(self._prefix) + ":ch:").encode()
        start, end = len(self._prefix) + 4, -3
        names: set[str] = set()

        async def scan() -> None:
            assert self._redis is not None
            async for key in self._redis.scan_iter(match=head + b"*:pu", count=1000):
                names.add(key[start:end].decode())
                if len(names) >= limit:
                    return

        await self._command(scan(), "scan")
        return sorted(names)[:limit]

    def _on_control(self, payload: bytes) -> None:
        for callback in list(self._control):
            try:
                callback(payload)
            except Exception:
                logger.exception("control callback failed")

    async def _command(self, command: Any, what: str) -> Any:
        """Await a client command; Redis errors become :class:`BackendUnavailable`."""
        from redis.exceptions import RedisError

        try:
            return await command
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._failed(exc)
            raise BackendUnavailable(f"Redis failed ({what}): {exc}") from exc

    # --- presence ----------------------------------------------------------------------

    async def presence_join(self, ch: str, user: str, client: str, info: str) -> bool:
        """Add a connection; see :meth:`.base.Engine.presence_join`."""
        self._present[(ch, client)] = (user, info)
        try:
            return await self._join(ch, user, client, info)
        except BaseException:
            self._present.pop((ch, client), None)
            raise

    async def _join(self, ch: str, user: str, client: str, info: str) -> bool:
        k = self._prefix + ":ch:" + ch
        first = await self._run(
            "JOIN",
            [k + ":pc", k + ":pu", k + ":pk", self._node_key, self._nodes_key, k + ":live"],
            [client, user, info, ch, self.node, self._now(), self._node_ttl_ms],
        )
        return bool(first)

    async def presence_leave(self, ch: str, user: str, client: str) -> bool:
        """Remove a connection; see :meth:`.base.Engine.presence_leave`.

        When Redis can't be reached, the leave is remembered and done once it
        is back (and raises :class:`BackendUnavailable` now, as the contract says).
        """
        self._present.pop((ch, client), None)
        try:
            last = await self._leave(ch, user, client)
        except BackendUnavailable:
            self._leaving[(ch, client)] = user
            raise
        self._leaving.pop((ch, client), None)
        return last

    async def _leave(self, ch: str, user: str, client: str) -> bool:
        k = self._prefix + ":ch:" + ch
        last = await self._run(
            "LEAVE",
            [k + ":pc", k + ":pu", k + ":pk", k + ":ps", k + ":pt", self._node_key, k + ":live"],
            [client, user, ch],
        )
        if last:
            timer = self._state_timers.pop((ch, user), None)
            if timer is not None:
                timer.cancel()
        return bool(last)

    async def presence_state(
        self, ch: str, user: str, state: str | None, ttl: float | None
    ) -> None:
        """Set or clear a user's state; see :meth:`.base.Engine.presence_state`."""
        k = self._prefix + ":ch:" + ch
        timer = self._state_timers.pop((ch, user), None)
        if timer is not None:
            timer.cancel()
        deadline = await self._run(
            "STATE",
            [k + ":pu", k + ":ps", k + ":pt", k + ":live"],
            [
                user,
                state if state is not None else "",
                "0" if state is None else "1",
                "" if ttl is None else max(1, round(ttl * 1000)),
                "" if ttl is None else repr(float(ttl)),
                self._now(),
            ],
        )
        if deadline and ttl is not None and state is not None:
            loop = asyncio.get_running_loop()
            self._state_timers[(ch, user)] = loop.call_later(
                ttl, self._expire_state, ch, user, deadline
            )

    def _expire_state(self, ch: str, user: str, deadline: bytes) -> None:
        self._state_timers.pop((ch, user), None)
        k = self._prefix + ":ch:" + ch
        self._spawn(
            self._run(
                "EXPIRE_STATE", [k + ":pu", k + ":ps", k + ":pt", k + ":live"], [user, deadline]
            ),
            f"expire the state of {user!r} in {ch!r}",
        )

    async def presence_snapshot(self, ch: str, *, max_users: int | None = None) -> PresenceSnapshot:
        """Read who is in the channel; see :meth:`.base.Engine.presence_snapshot`."""
        k = self._prefix + ":ch:" + ch
        reply = await self._run(
            "SNAPSHOT",
            [k + ":pu", k + ":pk", k + ":ps", k + ":pt", k + ":pv"],
            [-1 if max_users is None else max_users, self._now()],
        )
        count, seq = int(reply[0]), int(reply[1])
        if len(reply) == 2 and max_users is not None and count > max_users:
            return PresenceSnapshot(count, None, seq)
        users = {}
        for i in range(2, len(reply), 4):
            state = reply[i + 3]
            users[reply[i].decode()] = PresenceUser(
                reply[i + 1].decode(), int(reply[i + 2]), None if state is None else state.decode()
            )
        return PresenceSnapshot(count, users, seq)

    # --- the live feed -----------------------------------------------------------------

    def _on_feed(self, channel: bytes, payload: bytes) -> None:
        if channel == self._control_key:
            self._on_control(payload)
            return
        ch = self._live.get(channel)
        if ch is None:
            return  # unsubscribed meanwhile
        callbacks = self._callbacks.get(ch)
        if not callbacks:
            return
        try:
            event = _decode(ch, payload)
        except (ValueError, KeyError, TypeError):
            self._errors += 1
            logger.error("unreadable message on the Redis feed of %r: %r", ch, payload[:80])
            return
        self._delivered += 1
        _notify(callbacks, event)

    def _on_feed_lost(self, exc: Exception | None) -> None:
        if self._status == "closed":
            return
        self._feed = None
        self._errors += 1
        self._degrade(f"the pub/sub connection was lost ({exc!r})")

    # --- for the supervisor (through _Seam) -----------------------------------------------

    async def _open_feed(self) -> Feed:
        assert self._redis is not None
        feed: Feed | None = None
        try:
            await self._redis.ping()
            feed = await Feed.open(
                self._endpoint,
                self._on_feed,
                self._on_feed_lost,
                timeout=self._timeout,
                ssl_context=self._ssl_context,
            )
            lives = [(self._prefix + ":ch:" + ch + ":live").encode() for ch in self._callbacks]
            if self._control:
                lives.append(self._control_key)
            confirmations = []
            for i in range(0, len(lives), 500):
                confirmations += feed.subscribe(lives[i : i + 500])
            await asyncio.wait_for(asyncio.gather(*confirmations), self._timeout)
        except Exception:
            if feed is not None:
                feed.close()
            raise
        return feed

    def _drop_feed(self, feed: Feed, reason: str) -> None:
        if self._feed is feed:
            feed.close()
            self._feed = None
            self._degrade(reason)

    async def _rejoin(self) -> None:
        # Presence: this node's entries may be gone (Redis restarted, or other
        # nodes reaped us as dead); joining again announces who is back.
        try:
            for (ch, client), (user, info) in list(self._present.items()):
                await self._join(ch, user, client, info)
            for (ch, client), user in list(self._leaving.items()):
                await self._leave(ch, user, client)
                self._leaving.pop((ch, client), None)
        except BackendUnavailable:
            return  # down again: the next recovery does it
        # Messages stored while the feed was down: let each channel catch up.
        for ch in list(self._callbacks):
            try:
                head = await self.history(ch)
            except BackendUnavailable:
                return
            callbacks = self._callbacks.get(ch)
            if callbacks:
                _notify(callbacks, Position(ch, head.epoch, head.last_offset))

    async def _ping(self) -> bool:
        assert self._redis is not None
        try:
            await self._redis.ping()
        except Exception as exc:
            self._last_error = repr(exc)
            return False
        return True

    # --- private -----------------------------------------------------------------------

    async def _run(
        self, script: str, keys: list[str], args: list[Any], *, start: bool = True
    ) -> Any:
        """Run a script; Redis errors become :class:`BackendUnavailable`, logged and counted."""
        if start:
            await self.start()
        from redis.exceptions import RedisError

        started = time.perf_counter()
        try:
            return await self._scripts[script](keys=keys, args=args)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._failed(exc)
            raise BackendUnavailable(f"Redis failed ({script.lower()}): {exc}") from exc
        finally:
            timings = self.round_trips.get(script)
            if timings is None:
                timings = self.round_trips[script] = Timings()
            timings.observe(time.perf_counter() - started)

    def _closed(self) -> bool:
        # A method, so that type checkers don't narrow the status across awaits.
        return self._status == "closed"

    def _failed(self, exc: BaseException) -> None:
        self._errors += 1
        self._last_error = repr(exc)
        self._degrade(repr(exc))

    def _degrade(self, reason: str) -> None:
        self._last_error = reason
        if self._status == "ok":
            self._status = "degraded"
            self._outages += 1
            self._down_since = _loop_time()
            logger.warning("Redis engine degraded: %s; clients stay connected, redialling", reason)
        self._supervisor.wake()

    def _restored(self) -> None:
        if self._status != "degraded":
            return
        self._status = "ok"
        now, since = _loop_time(), self._down_since
        self._down_since = None
        took = f" after {now - since:.1f} s" if now is not None and since is not None else ""
        logger.warning("Redis engine back%s", took)

    def _spawn(self, coro: Any, what: str) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                logger.warning("can't %s: %s", what, task.exception())

        task.add_done_callback(done)

    def _now(self) -> str:
        clock = self._clock
        return "" if clock is None else str(max(0, int(clock() * 1000)))

    def _url_safe(self) -> str:
        e = self._endpoint
        where = f"unix://{e.path}" if e.path is not None else f"{e.host}:{e.port}"
        return ("rediss://" if e.tls else "") + where

    def __repr__(self) -> str:
        return f"RedisEngine({self._url_safe()!r}, prefix={self._prefix!r}, node={self.node!r})"


class _Seam:
    """The engine as its supervisor sees it (:class:`.redis_nodes.Supervised`)."""

    __slots__ = ("_engine",)

    def __init__(self, engine: RedisEngine) -> None:
        self._engine = engine

    @property
    def feed(self) -> Feed | None:
        return self._engine._feed

    def is_closed(self) -> bool:
        return self._engine._closed()

    def is_degraded(self) -> bool:
        return self._engine._status == "degraded"

    def drop_feed(self, feed: Feed, reason: str) -> None:
        self._engine._drop_feed(feed, reason)

    async def open_feed(self) -> Feed:
        return await self._engine._open_feed()

    def adopt_feed(self, feed: Feed) -> None:
        self._engine._feed = feed

    def record_error(self, exc: BaseException) -> None:
        self._engine._errors += 1
        self._engine._last_error = repr(exc)

    def restored(self) -> None:
        self._engine._restored()

    async def ping(self) -> bool:
        return await self._engine._ping()

    async def rejoin(self) -> None:
        await self._engine._rejoin()

    async def run_script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._engine._run(name, keys, args, start=False)

    def now(self) -> str:
        return self._engine._now()


def _glob_escape(text: str) -> str:
    """Escape the characters that ``SCAN MATCH`` patterns give a meaning."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _ms(seconds: float | None) -> int:
    return -1 if seconds is None else max(1, round(seconds * 1000))


def _new_epoch() -> str:
    # 12 random bytes: two channels' epochs never collide.
    return secrets.token_hex(12)


def _dump_meta(meta: Mapping[str, str] | None) -> str:
    return json.dumps(dict(meta), separators=(",", ":")) if meta else ""


def _entry(ch: str, epoch: str, entry: list[Any]) -> Message:
    """A stream entry ``[b"<offset>-0", [b"t", ms, b"d"|b"s", data, (b"m", meta)]]``."""
    offset = int(entry[0].split(b"-", 1)[0])
    fields = entry[1]
    data: bytes | str = fields[3]
    if fields[2] == b"s":
        data = fields[3].decode()
    meta = json.loads(fields[5]) if len(fields) > 5 else None
    return Message(ch, epoch, offset, data, meta)


def _decode(ch: str, payload: bytes) -> Event:
    kind = payload[:1]
    if kind == b"p":
        e = json.loads(payload[1:])
        ttl = e.get("t")
        return PresenceEvent(
            ch,
            e["k"],
            e["u"],
            int(e["c"]),
            info=e.get("i"),
            state=e.get("s"),
            ttl=None if ttl is None else float(ttl),
            seq=int(e["q"]),
        )
    epoch, offset, meta, data = payload[1:].split(b"\n", 3)
    return Message(
        ch,
        epoch.decode(),
        int(offset),
        data.decode() if kind == b"s" else data,
        json.loads(meta) if meta else None,
    )


def _notify(callbacks: list[Callback], event: Event) -> None:
    for callback in list(callbacks):
        try:
            callback(event)
        except Exception:
            logger.exception("engine callback failed for channel %r", event.ch)


def _loop_time() -> float | None:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return None


async def _close_client(client: Redis) -> None:
    with contextlib.suppress(Exception):
        close = getattr(client, "aclose", None) or client.close
        await close()
        await client.connection_pool.disconnect()
