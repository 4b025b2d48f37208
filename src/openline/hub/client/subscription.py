"""One channel on the client side: :class:`Subscription`, its position and its items.

The subscription keeps the channel's position, ``(epoch, offset)`` of the last
message received, checks every message against it (dropping what it has seen,
reporting what is missing) and queues items for the application. The
:class:`~openline.hub.client.Client` owns the connection: it hands each
channel message to its subscription, and resumes from :attr:`Subscription.position`
after a redial.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any

from ...exceptions import ClientClosed
from .events import (
    ClientEvent,
    Gap,
    Item,
    Join,
    Leave,
    Member,
    Presence,
    Publication,
    Resumed,
    StateChange,
)

__all__ = ["Subscription", "parse_presence"]


class Subscription:
    """A channel the client subscribed to: iterate over it for the channel's items.

    Yields :class:`~openline.hub.client.events.Publication` items in offset order,
    each once, with a :class:`~openline.hub.client.events.Gap` exactly where messages
    were lost; with ``presence=True``, presence snapshots and events too::

        async for item in subscription:
            match item:
                case Publication(data=data): ...
                case Gap(): ...

    The iteration ends after :meth:`unsubscribe` or ``Client.close()``, and
    raises the error that stopped the client.

    When the application falls ``max_buffer`` items behind, the client stops
    reading from the hub (its other subscriptions wait too): the hub may then
    treat it as a slow consumer, and the client recovers from history after.

    Attributes:
        ch: The channel.
        presence: Whether presence snapshots and events are delivered.
        members: Who is in the channel, kept current when ``presence`` is on.
        duplicates: Messages received again and dropped.
    """

    def __init__(
        self,
        leave: Callable[[str], Awaitable[None]],
        ch: str,
        *,
        presence: bool,
        since: tuple[str, int] | None,
        max_buffer: int | None,
        report: Callable[[ClientEvent], None],
    ) -> None:
        self.ch = ch
        self.presence = presence
        self.members: dict[str, Member] = {}
        self.duplicates = 0
        self._leave = leave
        self._report = report
        self._epoch: str | None = None if since is None else since[0]
        self._offset = 0 if since is None else since[1]
        self._items: collections.deque[Item] = collections.deque()
        self._max_buffer = max_buffer
        self._getter: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self._end: BaseException | None = None
        #: Resolved by the first ``subscribed``.
        self._confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # The subscribe request of this connection, whether the hub answered it,
        # what it resumed from, and whether the hub reported a gap for it.
        self.rid: str | None = None
        self.answered = False
        self._since_sent: tuple[str, int] | None = None
        self._gap_seen = False

    # --- public API --------------------------------------------------------------------

    @property
    def position(self) -> tuple[str, int] | None:
        """The ``(epoch, offset)`` of the last message received, or ``None`` before any.

        Keep it to resume later with ``Client.subscribe(ch, since=position)``.
        """
        if self._epoch is None:
            return None
        return self._epoch, self._offset

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        try:
            return await self.get()
        except ClientClosed:
            raise StopAsyncIteration from None

    async def get(self) -> Item:
        """Return the next item, waiting for it.

        Raises:
            ClientClosed: The subscription ended (unsubscribed, or the client closed).
            Exception: The error that stopped the client.
        """
        while not self._items:
            if self._end is not None:
                raise self._end
            waiter = self._getter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._getter = None
        item = self._items.popleft()
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)
        return item

    async def unsubscribe(self) -> None:
        """Leave the channel; the iteration ends after the items already received."""
        await self._leave(self.ch)

    # --- driven by the client: requests ------------------------------------------------

    def request(self, rid: str) -> dict[str, Any]:
        """Build the ``subscribe`` request for a (new) connection, resuming from the position."""
        self.rid = rid
        self.answered = False
        self._since_sent = since = self.position
        self._gap_seen = False
        request: dict[str, Any] = {"type": "subscribe", "ch": self.ch, "rid": rid}
        if since is not None:
            request["since"] = {"epoch": since[0], "offset": since[1]}
        if self.presence:
            request["presence"] = True
        return request

    @property
    def confirmed(self) -> bool:
        return self._confirmed.done()

    def finish(self, end: BaseException) -> None:
        """End the iteration, after the items already queued, with ``end``.

        A ``subscribe()`` still waiting for the hub's answer raises ``end`` too.
        """
        if not self._confirmed.done():
            self._confirmed.set_exception(end)
            self._confirmed.exception()  # subscribe() raises it; don't log it as lost
        if self._end is None:
            self._end = end
        for waiter in (self._getter, self._room):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def wait_room(self) -> None:
        """Wait until the application took items out of a full buffer."""
        limit = self._max_buffer
        while limit is not None and len(self._items) >= limit and self._end is None:
            room = self._room = asyncio.get_running_loop().create_future()
            try:
                await room
            finally:
                self._room = None

    # --- driven by the client: what the hub sends --------------------------------------
    # Each returns False when the buffer is full: the client then waits for room.

    def on_subscribed(self, message: dict[str, Any]) -> None:
        since = self._since_sent
        epoch, offset = message["epoch"], int(message["offset"])
        missed = int(message.get("missed", 0))
        recovered = bool(message.get("recovered"))
        self.answered = True
        if since is None:
            self._epoch, self._offset = epoch, offset
        elif not recovered and not self._gap_seen:
            # Never a silent hole, even if the hub forgot to say so.
            self._gap(Gap(self.ch, epoch, since, offset - missed + 1))
        if not self._confirmed.done():
            self._confirmed.set_result(None)
        if since is not None:
            self._report(Resumed(self.ch, missed, gap=not recovered))

    def on_message(self, message: dict[str, Any]) -> bool:
        epoch, offset = message["epoch"], int(message["offset"])
        if epoch == self._epoch:
            if offset <= self._offset:
                # Belt and braces: the hub de-duplicates too.
                self.duplicates += 1
                return True
            if offset > self._offset + 1:
                self._gap(Gap(self.ch, epoch, (epoch, self._offset), offset))
        elif self._epoch is not None:
            self._gap(Gap(self.ch, epoch, (self._epoch, self._offset), offset))
        self._epoch, self._offset = epoch, offset
        data, msg_id, user = message.get("data"), message.get("id"), message.get("user")
        return self._push(Publication(self.ch, epoch, offset, data, msg_id, user))

    def on_gap(self, message: dict[str, Any]) -> bool:
        epoch, first = message["epoch"], int(message["from"])
        if epoch == self._epoch and first <= self._offset + 1:
            return True  # nothing we haven't got is missing
        self._gap_seen = True
        since = message.get("since")
        position = self.position if since is None else (since["epoch"], int(since["offset"]))
        return self._gap(Gap(self.ch, epoch, position, first))

    def on_presence(self, snapshot: Presence) -> bool:
        if not self.presence:
            return True
        # Without users, the channel is counts-only: nobody is listed any more.
        self.members = {} if snapshot.members is None else dict(snapshot.members)
        return self._push(snapshot)

    def on_member(self, kind: str, message: dict[str, Any]) -> bool:
        if not self.presence:
            return True
        user = message["user"]
        item: Item
        # Events around a snapshot may repeat what it says: apply them idempotently,
        # and don't tell the application twice.
        if kind == "join":
            item = Join(self.ch, user, message.get("info") or {})
            listed = self.members.get(user)
            if listed is not None:
                self.members[user] = Member(user, item.info, listed.clients, listed.state)
                return True
            self.members[user] = Member(user, item.info)
        elif kind == "leave":
            if self.members.pop(user, None) is None:
                return True
            item = Leave(self.ch, user)
        else:
            item = StateChange(self.ch, user, message.get("state"), message.get("ttl"))
            member = self.members.get(user)
            if member is not None:
                self.members[user] = Member(user, member.info, member.clients, item.state)
        return self._push(item)

    # --- private -----------------------------------------------------------------------

    def _gap(self, gap: Gap) -> bool:
        """Report a gap in-band and as an event; move past it."""
        self._epoch, self._offset = gap.epoch, gap.first - 1
        self._report(gap)
        return self._push(gap)

    def _push(self, item: Item) -> bool:
        """Queue an item for the application; ``False`` once the buffer is full."""
        self._items.append(item)
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)
        return self._max_buffer is None or len(self._items) < self._max_buffer


def parse_presence(message: dict[str, Any]) -> Presence:
    """Build a :class:`Presence` snapshot from a ``presence`` message.

    Raises:
        KeyError: A field is missing.
        TypeError: A field has the wrong type.
        ValueError: Likewise.
    """
    users = message.get("users")
    members = None
    if users is not None:
        members = {}
        for entry in users:
            user = entry["user"]
            info = entry.get("info") or {}
            members[user] = Member(user, info, int(entry.get("clients", 1)), entry.get("state"))
    return Presence(message["ch"], int(message["count"]), members)
