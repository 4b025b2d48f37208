"""A blocking facade of the resilient hub client, for synchronous code.

For Django views, Celery tasks and scripts::

    import openline.sync.hub

    with openline.sync.hub.connect("wss://example.com/hub", token=token) as client:
        ack = client.publish("orders", {"id": 42}, timeout=5)
        print(ack.offset)

Underneath runs an :class:`openline.hub.Client` on the event loop thread of
:mod:`openline.sync`: it keeps redialling, resumes subscriptions from their
position and queues publishes while offline, exactly as in asyncio code. The
names, arguments, return values and errors are that client's; each blocking
call adds a ``timeout``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

from .. import hub as _hub
from ..hub import Ack, ClientClosed, Presence
from ..hub.events import ClientEvent, Item, Member
from ._loop import run, within

__all__ = ["Client", "Subscription", "connect"]


def connect(uri: str | list[str], *, timeout: float | None = None, **kwargs: Any) -> Client:
    """Start a hub client and wait for its first connection attempt.

    Returns once connected, or once the first dial failed in a way worth
    retrying: the client then keeps redialling in the background, and calls
    wait for it. Use as ``with connect(uri, token=...) as client:``.

    Args:
        uri: The hub's URI, or several of nodes serving the same hub.
        timeout: Seconds to wait for the first outcome; ``None`` waits as long
            as the first dial may take (its ``open_timeout``).
        **kwargs: Every keyword argument of :class:`openline.hub.Client`
            (``token``, ``get_token``, ``backoff``, ``max_attempts``,
            ``heartbeat_interval``, ``max_queue``, ``on_event``...). An
            ``on_event`` callback runs on the loop thread: it must not call this
            client's blocking methods.

    Raises:
        ValueError: An argument is out of range; the message names it.
        InvalidURI: ``uri`` isn't a WebSocket URI.
        TimeoutError: The first outcome took longer than ``timeout``.
        Exception: The first dial failed for good, for example
            :class:`~openline.exceptions.InvalidStatus` for a 401 or 403.
    """

    # Built on the loop, where the client's futures belong; a client that
    # doesn't start is closed before the error is raised.
    async def start() -> _hub.Client:
        client = _hub.Client(uri, **kwargs)
        try:
            await client.start()
        except BaseException:
            await client.close()
            raise
        return client

    return Client(run(within(start, timeout, "connect()")))


class Client:
    """A hub client with blocking methods; see :class:`openline.hub.Client`.

    Every method may be called from any thread, and several threads may use
    one client at once: each call is a request of its own (publishes go out in
    the order the loop thread receives them).

    Attributes:
        stats: The counters of :attr:`openline.hub.Client.stats`.
    """

    def __init__(self, client: _hub.Client) -> None:
        self._client = client
        self.stats = client.stats

    # --- public API: lifecycle ---------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """Whether a connection is open and welcomed right now."""
        return self._client.is_connected

    @property
    def client_id(self) -> str | None:
        """The hub's id for the current (or last) connection."""
        return self._client.client_id

    @property
    def user(self) -> str | None:
        """Who the hub says we are."""
        return self._client.user

    def events(self) -> Iterator[ClientEvent]:
        """Iterate over the client's events from now on, until it closes or stops.

        Each call returns a new iterator with its own queue of ``max_events``
        (the oldest are dropped beyond). Only one thread may wait on an iterator.
        """
        stream = self._client.events()

        def following() -> Iterator[ClientEvent]:
            while True:
                try:
                    yield run(stream.__anext__)
                except StopAsyncIteration:
                    return

        return following()

    def close(self) -> None:
        """Close the connection and stop; pending calls raise ``ClientClosed``."""
        run(self._client.close)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- public API: channels ----------------------------------------------------------

    def publish(
        self, ch: str, data: Any, *, id: str | None = None, timeout: float | None = None
    ) -> Ack:
        """Publish ``data`` on ``ch`` and wait for the hub's ack.

        While offline, the publish waits in the client's queue and goes out
        after the redial; the hub stores it once however often it is sent.

        Args:
            ch: The channel.
            data: Any JSON-serializable value.
            id: The client message id; a unique one by default.
            timeout: Seconds to wait for the ack; ``None`` waits until it comes
                or the client stops. When it runs out, the publish is withdrawn
                from the queue, but one already sent may still be stored: publish
                again with the same ``id`` to find out (the ack then says
                ``duplicate``).

        Returns:
            The ack: channel, epoch, offset and id of the stored message.

        Raises:
            TimeoutError: No ack within ``timeout``.
            TypeError: ``data`` isn't JSON-serializable.
            ValueError: ``data`` holds NaN or infinity, or ``id`` is empty or too long.
            HubError: The hub refused the publish (a request error with a
                ``code`` such as ``forbidden`` or ``too_large``).
            ClientClosed: The client closed before the ack.
            Exception: The error that stopped the client.
        """
        return run(within(lambda: self._client.publish(ch, data, id=id), timeout, "publish()"))

    def subscribe(
        self,
        ch: str,
        *,
        presence: bool = False,
        since: tuple[str, int] | None = None,
        timeout: float | None = None,
    ) -> Subscription:
        """Subscribe to ``ch`` and wait until the hub confirms it.

        Args:
            ch: The channel.
            presence: Whether to receive presence snapshots and events.
            since: Resume after this ``(epoch, offset)``, as kept from
                :attr:`Subscription.position`; ``None`` starts with new messages.
            timeout: Seconds to wait for the confirmation; ``None`` waits
                (while offline, until a connection opens). When it runs out,
                the subscription is dropped.

        Raises:
            TimeoutError: No confirmation within ``timeout``.
            ValueError: Already subscribed to ``ch``.
            HubError: The hub refused, e.g. with ``forbidden``.
            ClientClosed: The client closed meanwhile.
            Exception: The error that stopped the client.
        """
        client = self._client
        subscribing = within(
            lambda: client.subscribe(ch, presence=presence, since=since), timeout, "subscribe()"
        )
        return Subscription(run(subscribing))

    def unsubscribe(self, ch: str) -> None:
        """Leave ``ch``; its subscription's iteration ends. Does nothing if not subscribed."""
        run(lambda: self._client.unsubscribe(ch))

    def set_state(self, ch: str, state: Mapping[str, Any] | None) -> None:
        """Set (or clear, with ``None``) your ephemeral state on ``ch``.

        Raises:
            ValueError: Not subscribed to ``ch``.
            TypeError: ``state`` isn't JSON-serializable.
            HubError: ``too_large``, over the hub's message limit.
        """
        run(lambda: self._client.set_state(ch, state))

    def presence(self, ch: str, *, timeout: float | None = None) -> Presence:
        """Ask the hub who is in ``ch``; while offline, wait for a connection.

        Raises:
            TimeoutError: No answer within ``timeout``.
            HubError: The hub refused, e.g. with ``forbidden``.
            ClientClosed: The client closed meanwhile.
            Exception: The error that stopped the client.
        """
        return run(within(lambda: self._client.presence(ch), timeout, "presence()"))


class Subscription:
    """A channel the client subscribed to: iterate over it for the channel's items.

    Yields :class:`~openline.hub.Publication` items (each with its ``offset``)
    in offset order, each once, with a :class:`~openline.hub.Gap` exactly
    where messages were lost; with ``presence=True``, presence snapshots and
    events too. The iteration ends after :meth:`unsubscribe` or
    :meth:`Client.close`, and raises the error that stopped the client.
    Only one thread may wait for items at a time.
    """

    def __init__(self, subscription: _hub.Subscription) -> None:
        self._sub = subscription

    @property
    def ch(self) -> str:
        """The channel."""
        return self._sub.ch

    @property
    def position(self) -> tuple[str, int] | None:
        """The ``(epoch, offset)`` of the last message received, or ``None`` before any."""
        return self._sub.position

    @property
    def members(self) -> Mapping[str, Member]:
        """Who is in the channel, kept current when ``presence`` is on."""
        return self._sub.members

    def get(self, timeout: float | None = None) -> Item:
        """Return the next item, waiting for it.

        Args:
            timeout: Seconds to wait; ``None`` waits; 0 returns only an item
                already received.

        Raises:
            TimeoutError: No item within ``timeout``; none is lost.
            ClientClosed: The subscription ended (unsubscribed, or the client closed).
            Exception: The error that stopped the client.
        """
        return run(within(self._sub.get, timeout, "get()"))

    def __iter__(self) -> Iterator[Item]:
        """Yield items until the subscription ends; see the class docstring."""
        while True:
            try:
                yield self.get()
            except ClientClosed:
                return

    def unsubscribe(self) -> None:
        """Leave the channel; the iteration ends after the items already received."""
        run(self._sub.unsubscribe)
