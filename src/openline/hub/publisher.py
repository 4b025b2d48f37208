"""Publishing the way the hub does, for code that holds an engine but no hub.

A process that shares the hub's Redis (a worker, a cron job) can publish
straight through :class:`~openline.hub.backends.redis.RedisEngine` with
:func:`publish_to_engine`: the message is stored and delivered exactly as if
:meth:`Hub.publish <openline.hub.Hub.publish>` had published it, and its
idempotency key is the hub's, so a publish retried through the hub, the HTTP
API or this function is stored once::

    engine = RedisEngine("redis://127.0.0.1:6379/0", prefix="openline")
    await publish_to_engine(engine, "news", {"title": "hi"}, id="news-42")
    await engine.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..exceptions import BackendUnavailable
from . import wire
from .backends.base import Engine, PublishResult

#: One publish of a batch: ``(ch, data, msg_id, user, scope)``, as :func:`store` takes them.
Item = tuple[str, bytes, str | None, str | None, str | None]

__all__ = ["idempotency_key", "publish_to_engine", "store_many"]


def idempotency_key(scope: str | None, msg_id: str) -> str:
    """The engine's idempotency key of message id ``msg_id`` in ``scope``.

    The hub scopes ids by the publishing user, so that users can't collide;
    server code (``Hub.publish`` without ``user``, the HTTP API) and anonymous
    clients share the scope ``None``. The scope is length-prefixed, so that no
    ``(scope, id)`` pair can spell another's key.
    """
    owner = scope or ""
    return f"{len(owner)}:{owner}:{msg_id}"


async def publish_to_engine(
    engine: Engine,
    ch: str,
    data: Any,
    *,
    id: str | None = None,
    user: str | None = None,
    max_channel_length: int = 200,
) -> PublishResult:
    """Publish ``data`` to ``ch`` through ``engine`` as :meth:`Hub.publish` would.

    Args:
        engine: The engine the hubs use (same Redis URL and prefix).
        ch: The channel.
        data: Any JSON-serializable value.
        id: The message id: a publish with the same ``id`` (and ``user``) is
            stored once while the engine remembers it.
        user: Shown to subscribers as the message's ``user``, and the scope of ``id``.
        max_channel_length: The hubs' ``max_channel_length``.

    Returns:
        The message's epoch and offset, and whether it was a duplicate.

    Raises:
        ValueError: ``ch``, ``id`` or ``user`` isn't a valid name, or ``data`` isn't JSON.
        TypeError: ``data`` isn't JSON-serializable.
        BackendUnavailable: The engine can't reach its store.
    """
    if not wire.is_text(ch, max_channel_length):
        raise ValueError(f"invalid channel name: {ch!r}")
    if id is not None and not wire.is_text(id, wire.MAX_ID_LENGTH):
        raise ValueError(f"invalid message id: {id!r}")
    if user is not None and not wire.is_text(user, 200):
        raise ValueError(f"invalid user: {user!r}")
    return await store(engine, ch, wire.encode_json(data), id, user, user)


def _prepared(
    ch: str, data: bytes, msg_id: str | None, user: str | None, scope: str | None
) -> tuple[str, bytes, str | None, dict[str, str] | None]:
    meta: dict[str, str] = {}
    if user is not None:
        meta["user"] = user
    key = None
    if msg_id is not None:
        meta["id"] = msg_id
        key = idempotency_key(scope, msg_id)
    return ch, data, key, meta or None


async def store_many(engine: Engine, items: Sequence[Item]) -> list[PublishResult | Exception]:
    """Store several publishes in their order, as one round trip where the engine can.

    An engine with ``publish_many`` (the Redis engine: one pipeline) gets the
    whole batch; any other gets the publishes one after the other, which stops
    at the first failure of a publish with an id: the ones after it are not
    tried and fail too, as the hub's hold would refuse them one by one.

    Returns:
        Each publish's result, or the exception it failed with, in order.
    """
    prepared = [_prepared(*item) for item in items]
    batch = getattr(engine, "publish_many", None)
    if batch is not None and len(prepared) > 1:
        results: list[PublishResult | Exception] = await batch(prepared)
        return results
    results = []
    for index, (ch, data, key, meta) in enumerate(prepared):
        try:
            results.append(await engine.publish(ch, data, msg_id=key, meta=meta))
        except Exception as exc:
            results.append(exc)
            if key is not None:
                rest = len(prepared) - index - 1
                results += [BackendUnavailable("not tried after an earlier failure")] * rest
                break
    return results


async def store(
    engine: Engine,
    ch: str,
    data: bytes,
    msg_id: str | None,
    user: str | None,
    scope: str | None,
) -> PublishResult:
    """Store an encoded message with the hub's metadata and idempotency key."""
    ch, data, key, meta = _prepared(ch, data, msg_id, user, scope)
    return await engine.publish(ch, data, msg_id=key, meta=meta)
