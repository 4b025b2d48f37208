"""The demo page in headless Chromium against a real server: chat, presence, typing,
resuming after the server restarts or the line goes silent, and push against polling."""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import shutil
import threading
import time
from typing import Any

from .conftest import PHONE, Pages
from .proxy import LineProxy
from .server import ServerThread

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips every test, with the reason (failing in CI)
    expect = None  # type: ignore[assignment]

ROOT = pathlib.Path(__file__).parents[2]
ROOM = "room:lobby"


def shown_messages(page: Any) -> list[str]:
    """The texts of the delivered (not pending) messages, in page order."""
    texts: list[str] = page.eval_on_selector_all(
        "#messages .msg:not(.pending) .msg-text", "nodes => nodes.map(n => n.textContent)"
    )
    return texts


def shown_offsets(page: Any) -> list[int]:
    offsets: list[int] = page.eval_on_selector_all(
        "#messages .msg[data-offset]", "nodes => nodes.map(n => Number(n.dataset.offset))"
    )
    return offsets


def members(page: Any) -> Any:
    return page.locator("#members .member-name")


def test_two_pages_chat_with_history_presence_and_typing(
    server: ServerThread, pages: Pages
) -> None:
    ada = pages.join(server.url, "Ada")
    ada.fill("#text", "first, before Grace came")
    ada.press("#text", "Enter")
    expect(ada.locator("#messages .msg:not(.pending)")).to_have_count(1)

    grace = pages.join(server.url, "Grace")
    # History on join: what was said before is there.
    expect(grace.locator("#messages .msg-text")).to_have_text(["first, before Grace came"])
    # Presence: both pages list both people, and Ada sees Grace arrive.
    for page in (ada, grace):
        expect(members(page)).to_have_text(["Ada", "Grace"] if page is ada else ["Grace", "Ada"])
        expect(page.locator("#online-count")).to_have_text("2 online")
    expect(ada.locator("#messages .notice")).to_have_text(["Grace joined"])

    # Typing dots appear on the other page while Grace types...
    grace.locator("#text").press_sequentially("hello Ada, nice demo", delay=20)
    typing = ada.locator("#typing .typing-inner")
    expect(typing).to_be_visible()
    expect(ada.locator("#typing .typing-who")).to_have_text("Grace is typing")
    expect(grace.locator("#typing .typing-inner")).to_be_hidden()  # not for herself
    pages.screenshot(ada, "chat-typing")
    # ... and vanish when the message is sent, which appears on both pages.
    grace.press("#text", "Enter")
    expect(typing).to_be_hidden()
    expected = ["first, before Grace came", "hello Ada, nice demo"]
    for page in (ada, grace):
        expect(page.locator("#messages .msg:not(.pending) .msg-text")).to_have_text(expected)

    # Typing that stops without sending also clears, by itself.
    ada.locator("#text").press_sequentially("hmm", delay=20)
    expect(grace.locator("#typing .typing-who")).to_have_text("Ada is typing")
    expect(grace.locator("#typing .typing-inner")).to_be_hidden(timeout=6000)
    pages.screenshot(grace, "chat-two-people")

    # Grace closes her page: she leaves Ada's member list.
    grace.close()
    expect(members(ada)).to_have_text(["Ada"])
    expect(ada.locator("#online-count")).to_have_text("1 online")
    expect(ada.locator("#messages .notice").last).to_have_text("Grace left")


def test_page_resumes_after_a_server_restart_with_every_message_once(
    server: ServerThread, pages: Pages
) -> None:
    ada = pages.join(server.url, "Ada")
    watcher = pages.join(server.url, "Bob")
    published: list[str] = []

    def publish(count: int) -> None:
        for _ in range(count):
            text = f"message {len(published) + 1}"
            server.publish(ROOM, {"text": text, "name": "server"})
            published.append(text)
            time.sleep(0.02)

    publish(5)
    expect(ada.locator("#messages .msg-text")).to_have_count(5)

    # The server goes away (1001 to every page) while messages keep coming.
    server.stop()
    expect(ada.locator("#badge")).to_have_attribute("data-state", "reconnecting")
    expect(ada.locator("#badge")).to_contain_text("reconnecting")
    publish(4)
    # Ada writes while offline: the message waits in the queue, marked as such.
    ada.fill("#text", "sent while offline")
    ada.press("#text", "Enter")
    expect(ada.locator("#messages .msg.pending .msg-state")).to_have_text("queued")
    expect(ada.locator("#queue")).to_have_text("1 message waits for the connection")
    pages.screenshot(ada, "resume-reconnecting")
    publish(3)

    # Back on the same port, with the same engine: offsets carry on.
    server.start()
    badge = ada.locator("#badge")
    expect(badge).to_have_attribute("data-state", "resumed", timeout=15_000)
    pages.screenshot(ada, "resume-resumed")
    expect(ada.locator("#messages .pending")).to_have_count(0)  # stored, once
    publish(3)

    everything = [*published[:12], "sent while offline", *published[12:]]
    for page in (ada, watcher):
        expect(page.locator("#messages .msg:not(.pending) .msg-text")).to_have_count(
            len(everything)
        )
        assert shown_messages(page) == everything
        offsets = shown_offsets(page)
        assert offsets == list(range(offsets[0], offsets[0] + len(everything))), offsets
    # What was published while Ada was away came back from history: all 7.
    expect(badge).to_have_text("resumed · 7 missed messages recovered")


def test_a_steady_stream_arrives_once_in_order_across_two_restarts(
    server: ServerThread, pages: Pages
) -> None:
    ada = pages.join(server.url, "Ada")
    stop = threading.Event()

    def publish() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            server.publish(ROOM, {"text": f"tick {n}"})
            time.sleep(0.02)

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        for _ in range(2):
            ada.wait_for_timeout(300)
            server.stop()  # messages keep coming while the page is cut off
            expect(ada.locator("#badge")).to_have_attribute("data-state", "reconnecting")
            ada.wait_for_timeout(300)
            server.start()
            expect(ada.locator("#badge")).to_have_attribute("data-state", "resumed", timeout=15_000)
        ada.wait_for_timeout(300)
    finally:
        stop.set()
        publisher.join()
    stored = [data["text"] for data in server.history(ROOM)]
    assert len(stored) > 50
    # The page shows only its last MAX_SHOWN rows: what it received is in its data model.
    expect(ada.locator("#messages .msg-text").last).to_have_text(stored[-1])
    received = ada.evaluate("window.demo.chat.received")
    assert [m["text"] for m in received] == stored
    assert [m["offset"] for m in received] == list(range(1, len(stored) + 1))
    # And the page ends with the newest of them, in order.
    shown = shown_messages(ada)
    assert shown == stored[-len(shown) :]


def test_page_notices_a_silent_line_and_resumes(server: ServerThread, pages: Pages) -> None:
    proxy = LineProxy(server.port)
    server.call(proxy.start)
    try:
        url = f"http://127.0.0.1:{proxy.port}/?heartbeat=1"
        ada = pages.join(url, "Ada")
        server.publish(ROOM, {"text": "before the tunnel"})
        expect(ada.locator("#messages .msg-text")).to_have_text(["before the tunnel"])

        # Every open link goes silent: no FIN, no RST, nothing. Only a heartbeat can tell.
        assert server.call(_async(proxy.blackhole)) >= 1
        server.publish(ROOM, {"text": "in the tunnel"})
        started = time.monotonic()
        expect(ada.locator("#badge")).to_have_attribute(
            "data-state", re.compile("reconnecting|resumed")
        )
        expect(ada.locator("#badge")).to_have_attribute("data-state", "resumed", timeout=15_000)
        assert time.monotonic() - started < 8
        expect(ada.locator("#badge")).to_have_text("resumed · 1 missed message recovered")
        expect(ada.locator("#messages .msg-text")).to_have_text(
            ["before the tunnel", "in the tunnel"]
        )
    finally:
        server.call(proxy.close)


def test_page_rides_out_a_network_outage(server: ServerThread, pages: Pages) -> None:
    ada = pages.join(server.url + "?heartbeat=1", "Ada")
    server.publish(ROOM, {"text": "before"})
    expect(ada.locator("#messages .msg-text")).to_have_text(["before"])
    # The browser goes offline: the open socket falls silent and dials fail.
    ada.context.set_offline(True)
    for n in range(3):
        server.publish(ROOM, {"text": f"during {n}"})
    # The page says so at once, without waiting for the heartbeat to notice.
    expect(ada.locator("#badge")).to_have_attribute("data-state", "offline")
    # The open socket falls silent: the heartbeat gives it up.
    deadline = time.monotonic() + 10
    while ada.evaluate("window.demo.client.isConnected") and time.monotonic() < deadline:
        ada.wait_for_timeout(100)
    assert not ada.evaluate("window.demo.client.isConnected")
    expect(ada.locator("#badge")).to_have_attribute("data-state", "offline")
    ada.wait_for_timeout(1500)
    # Back online: the page's "online" event redials at once, whatever the backoff says.
    ada.context.set_offline(False)
    expect(ada.locator("#badge")).to_have_text("resumed · 3 missed messages recovered")
    expect(ada.locator("#messages .msg-text")).to_have_text(
        ["before", "during 0", "during 1", "during 2"]
    )


def test_pushed_ticker_is_fresher_than_both_polls(server: ServerThread, pages: Pages) -> None:
    page = pages.join(server.url, "Ada")
    grace = pages.join(server.url, "Grace")
    # A little life in the room, for the screenshot.
    for who, text in ((grace, "Is that price really pushed?"), (page, "Yes: compare the lanes")):
        who.fill("#text", text)
        who.press("#text", "Enter")
    expect(page.locator("#messages .msg:not(.pending)")).to_have_count(2)
    push, fast, slow = (page.locator(f"#lane-{name}") for name in ("push", "fast", "slow"))
    # Let the race run: several ticks pushed, many fast polls, one slow poll.
    expect(push).to_have_attribute("data-updates", re.compile(r"^([5-9]|\d\d+)$"), timeout=10_000)
    expect(fast).to_have_attribute("data-updates", re.compile(r"^([3-9]|\d\d+)$"))
    page.wait_for_timeout(2500)

    def number(lane: Any, name: str) -> float:
        value = lane.get_attribute(f"data-{name}")
        assert value, f"{lane} has no {name}"
        return float(value)

    # Time-averaged age of the value on screen: push beats both polls.
    assert number(push, "avg-age") < number(fast, "avg-age") < number(slow, "avg-age")
    # A new value reaches the page faster by push than by the 200 ms poll.
    assert number(push, "delay") < number(fast, "delay")
    # The 5 s poll is seconds behind; push shows values a fraction of a second old.
    assert number(slow, "age") > number(push, "age")
    assert int(number(push, "requests")) == 0
    assert int(number(slow, "requests")) >= 1
    assert int(number(fast, "requests")) > int(number(slow, "requests"))
    # The picture: the slow poll visibly stale, and Grace typing.
    # (A locator, not wait_for_function: the page's CSP forbids eval.)
    expect(slow).to_have_attribute("data-age", re.compile(r"^(1[5-9]|2\d)\d\d$"))
    grace.locator("#text").press_sequentially("nice", delay=20)
    expect(page.locator("#typing .typing-inner")).to_be_visible()
    pages.screenshot(page, "push-vs-polling")
    if os.environ.get("OPENLINE_UPDATE_SCREENSHOT"):
        shutil.copyfile(pages.screenshot(page, "readme"), ROOT / "docs" / "demo.png")


def test_page_fits_a_phone_screen(server: ServerThread, pages: Pages) -> None:
    page = pages.open(server.url, viewport=PHONE, mobile=True)
    expect(page.locator("#join-form")).to_be_visible()
    pages.screenshot(page, "phone-prompt")
    page.fill("#name", "Grace")
    page.click("#join-form button")
    expect(page.locator("#badge")).to_have_attribute("data-state", "live")
    page.fill("#text", "typed on a phone")
    page.press("#text", "Enter")
    expect(page.locator("#messages .msg:not(.pending) .msg-text")).to_have_text(
        ["typed on a phone"]
    )
    expect(page.locator("#lane-push")).to_have_attribute("data-updates", re.compile(r"^[1-9]"))
    # Nothing sticks out sideways: no horizontal scrolling on a phone.
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    page.screenshot(path=str(pages.screenshot(page, "phone")), full_page=True)


def _async(func: Any) -> Any:
    """Wrap a plain function as a coroutine function, for ServerThread.call."""

    async def run() -> Any:
        await asyncio.sleep(0)
        return func()

    return run
