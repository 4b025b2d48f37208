"""The blocking hub facade against a real hub, served on its own event loop thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import openline.sync.hub
from openline.exceptions import HubError, InvalidStatus
from openline.hub import (
    Ack,
    ClientClosed,
    Connected,
    Credentials,
    Disconnected,
    Gap,
    Identity,
    Presence,
    Publication,
    Reconnecting,
    StateChange,
)

from ..timing import MS
from .conftest import TIMEOUT, HubNode

MakeHub = Callable[..., HubNode]

# Redial fast: the tests restart hubs on purpose.
FAST = {"backoff": [20 * MS] * 500, "heartbeat_interval": None}


def authenticate(credentials: Credentials) -> Identity | None:
    return Identity(credentials.token) if credentials.token in ("alice", "bob") else None


def authorize(identity: Identity, action: str, ch: str) -> bool:
    return not ch.startswith("secret")


def connect(node: HubNode, token: str = "alice", **kwargs: Any) -> openline.sync.hub.Client:
    return openline.sync.hub.connect(node.url, token=token, timeout=TIMEOUT, **FAST, **kwargs)


def publications(sub: openline.sync.hub.Subscription, count: int) -> list[Publication]:
    """The next ``count`` items, which must all be publications: a gap would be a loss."""
    items = [sub.get(timeout=TIMEOUT) for _ in range(count)]
    assert all(isinstance(item, Publication) for item in items), items
    return items  # type: ignore[return-value]


@pytest.fixture
def node(make_hub: MakeHub) -> HubNode:
    return make_hub(authenticate=authenticate, authorize=authorize)


def test_publish_returns_the_ack_and_the_subscription_yields_it(node: HubNode) -> None:
    with connect(node) as client:
        assert client.is_connected and client.user == "alice"
        sub = client.subscribe("room", timeout=TIMEOUT)
        ack = client.publish("room", {"n": 1}, timeout=TIMEOUT)
        assert isinstance(ack, Ack)
        assert (ack.ch, ack.offset, ack.duplicate) == ("room", 1, False)
        node.publish("room", "from the server")
        first, second = publications(sub, 2)
        assert (first.data, first.offset, first.id, first.user) == ({"n": 1}, 1, ack.id, "alice")
        assert (second.data, second.offset) == ("from the server", 2)
        assert sub.position == (ack.epoch, 2)
        assert sub.ch == "room"


def test_publishing_again_with_the_same_id_is_a_duplicate(node: HubNode) -> None:
    with connect(node) as client:
        first = client.publish("room", "once", id="order-7", timeout=TIMEOUT)
        again = client.publish("room", "once", id="order-7", timeout=TIMEOUT)
        assert again.duplicate and again.offset == first.offset


def test_presence_counts_the_subscribers(node: HubNode) -> None:
    with connect(node) as alice, connect(node, token="bob") as bob:
        alice.subscribe("lobby", presence=True, timeout=TIMEOUT)
        bob.subscribe("lobby", timeout=TIMEOUT)
        snapshot = alice.presence("lobby", timeout=TIMEOUT)
        assert isinstance(snapshot, Presence)
        assert snapshot.count == 2
        assert snapshot.members is not None and set(snapshot.members) == {"alice", "bob"}


def test_state_reaches_presence_subscribers_and_unsubscribing_ends_the_iteration(
    node: HubNode,
) -> None:
    with connect(node) as alice, connect(node, token="bob") as bob:
        assert alice.client_id is not None and alice.client_id != bob.client_id
        room = alice.subscribe("room", presence=True, timeout=TIMEOUT)
        theirs = bob.subscribe("room", timeout=TIMEOUT)
        bob.set_state("room", {"typing": True})
        for _ in range(10):  # a snapshot and bob's join may come first
            item = room.get(timeout=TIMEOUT)
            if isinstance(item, StateChange):
                break
        assert isinstance(item, StateChange)
        assert (item.user, item.state) == ("bob", {"typing": True})
        assert room.members["bob"].state == {"typing": True}
        alice.unsubscribe("room")
        assert all(not isinstance(item, Publication) for item in room)  # it ends
        theirs.unsubscribe()
        assert list(theirs) == []


def test_threads_publish_through_one_client(node: HubNode) -> None:
    threads, each = 4, 10
    with connect(node) as client:
        sub = client.subscribe("room", timeout=TIMEOUT)
        acks: list[Ack] = []
        lock = threading.Lock()

        def publish(worker: int) -> None:
            for i in range(each):
                ack = client.publish("room", [worker, i], timeout=TIMEOUT)
                with lock:
                    acks.append(ack)

        workers = [threading.Thread(target=publish, args=(w,)) for w in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(TIMEOUT)
            assert not worker.is_alive()
        items = publications(sub, threads * each)
        assert sorted(ack.offset for ack in acks) == list(range(1, threads * each + 1))
        assert [item.offset for item in items] == list(range(1, threads * each + 1))
        for w in range(threads):  # each thread's publishes stay in its order
            mine = [item.data[1] for item in items if item.data[0] == w]
            assert mine == list(range(each))


def test_publish_and_subscribe_survive_a_hub_restart_without_loss(node: HubNode) -> None:
    with connect(node) as client:
        sub = client.subscribe("room", timeout=TIMEOUT)
        before = [client.publish("room", i, timeout=TIMEOUT) for i in range(3)]
        assert [p.offset for p in publications(sub, 3)] == [1, 2, 3]
        node.stop()
        # Offline: this publish waits in the client's queue until the hub is back.
        offline: list[Ack] = []
        publisher = threading.Thread(
            target=lambda: offline.append(client.publish("room", "offline", timeout=TIMEOUT))
        )
        publisher.start()
        node.start()  # same port, same database: the same epoch, and the history
        node.publish("room", "while resuming")
        after = client.publish("room", "after", timeout=TIMEOUT)
        publisher.join(TIMEOUT)
        assert not publisher.is_alive() and len(offline) == 1
        items = publications(sub, 3)
        assert [item.offset for item in items] == [4, 5, 6]
        assert {item.data for item in items} == {"offline", "while resuming", "after"}
        assert {item.epoch for item in items} == {before[0].epoch}
        assert after.epoch == before[0].epoch
        assert client.stats["connects"] >= 2
        # Nothing more: in particular no Gap, and no message twice.
        with pytest.raises(TimeoutError):
            sub.get(timeout=50 * MS)


def test_a_refused_publish_raises_the_hubs_error(node: HubNode) -> None:
    with connect(node) as client:
        with pytest.raises(HubError) as caught:
            client.publish("secret-room", "x", timeout=TIMEOUT)
        assert getattr(caught.value, "code", None) == "forbidden"
        with pytest.raises(HubError) as caught:
            client.subscribe("secret-room", timeout=TIMEOUT)
        assert getattr(caught.value, "code", None) == "forbidden"
        # The client is still usable.
        assert client.publish("room", "fine", timeout=TIMEOUT).offset == 1


def test_local_errors_are_raised_in_the_calling_thread(node: HubNode) -> None:
    with connect(node) as client:
        with pytest.raises(TypeError):
            client.publish("room", object(), timeout=TIMEOUT)
        client.subscribe("room", timeout=TIMEOUT)
        with pytest.raises(ValueError, match="already subscribed"):
            client.subscribe("room", timeout=TIMEOUT)
        with pytest.raises(ValueError, match="timeout"):
            client.publish("room", 1, timeout=-1)


def test_an_unknown_token_is_refused_with_401(node: HubNode) -> None:
    with pytest.raises(InvalidStatus) as caught:
        openline.sync.hub.connect(node.url, token="mallory", timeout=TIMEOUT, **FAST)
    assert caught.value.status == 401


def test_publish_times_out_while_the_hub_is_down(node: HubNode) -> None:
    with connect(node) as client:
        node.stop()
        with pytest.raises(TimeoutError, match=r"publish\(\) timed out"):
            client.publish("room", "lost?", timeout=50 * MS)
        node.start()
        # The timed-out publish was withdrawn: only the next one is stored.
        sub = client.subscribe("room", timeout=TIMEOUT)
        ack = client.publish("room", "stored", timeout=TIMEOUT)
        assert ack.offset == 1
        assert publications(sub, 1)[0].data == "stored"


def test_closing_ends_the_iteration_and_fails_pending_calls(node: HubNode) -> None:
    client = connect(node)
    sub = client.subscribe("room", timeout=TIMEOUT)
    client.publish("room", "one", timeout=TIMEOUT)
    seen: list[Any] = []
    ended = threading.Event()

    def iterate() -> None:
        for item in sub:
            seen.append(item)
            if len(seen) == 1:
                # The first item is in: close from this other thread's point of view.
                closer.set()
        ended.set()

    closer = threading.Event()
    reader = threading.Thread(target=iterate)
    reader.start()
    assert closer.wait(TIMEOUT)
    client.close()
    assert ended.wait(TIMEOUT)
    reader.join(TIMEOUT)
    assert [item.data for item in seen] == ["one"]
    assert not any(isinstance(item, Gap) for item in seen)
    with pytest.raises(ClientClosed):
        client.publish("room", "too late", timeout=TIMEOUT)


def test_events_report_the_disconnection_and_the_redial(node: HubNode) -> None:
    with connect(node) as client:
        events = client.events()
        node.stop()
        assert isinstance(next(events), Disconnected)
        node.start()
        kinds = []
        for event in events:  # Reconnecting for each refused dial, then Connected
            kinds.append(type(event))
            if isinstance(event, Connected):
                break
        assert kinds[-1] is Connected and set(kinds[:-1]) <= {Reconnecting}
    # Closing ends the iteration, after reporting the disconnection itself.
    rest = list(events)
    assert all(isinstance(event, Disconnected) and event.code == 1000 for event in rest)


def test_blocking_calls_from_the_loop_thread_are_refused(node: HubNode) -> None:
    errors: list[BaseException] = []
    holder: list[openline.sync.hub.Client] = []
    called = threading.Event()

    def on_event(event: object) -> None:
        if holder and not called.is_set():
            try:
                holder[0].publish("room", "from the callback")
            except RuntimeError as exc:
                errors.append(exc)
            called.set()

    with connect(node, on_event=on_event) as client:
        holder.append(client)
        node.stop()  # the disconnection is an event
        assert called.wait(TIMEOUT)
        node.start()
    assert len(errors) == 1 and "own event loop thread" in str(errors[0])
