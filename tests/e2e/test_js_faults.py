"""openline.js under faults, in headless Chromium: what a page shows, and that no publish is lost.

Each test records the client's timeline in the page (``Date.now()`` times, so
that the test's own clock can mark when it injected a fault) and prints the
numbers it measured; the bounds it asserts are generous, for a busy machine.

The faults: the browser going offline (Playwright's ``set_offline``), a server
restart, a stalled line, a line that dies silently for longer than the
heartbeat (the fault-injecting proxy of ``tests/chaos``), and connection resets.
Publishing tests run the hub with a low rate limit (20 messages per second) so
that the queue a page builds during an outage is far larger than the burst the
hub accepts, and read the channel back with a fresh subscriber: nothing lost,
nothing stored twice, nothing out of order, and never closed for abuse.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..chaos.proxy import ChaosProxy
from .conftest import Pages
from .server import ServerThread

#: The hub's rate limit in the publishing tests: (messages, seconds).
RATE = (20, 1.0)

HARNESS = """async () => {
    window.ol = await import('/openline.js');
    window.timeline = [];
    window.sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
    const summary = {
        connected: (d) => ({attempt: d.attempt}),
        disconnected: (d) => ({code: d.code, reason: d.reason}),
        reconnecting: (d) => ({delay: d.delay, attempt: d.attempt}),
        offline: (d) => ({pending: d.pending}),
        online: (d) => ({pending: d.pending}),
        stopped: (d) => ({code: d.code, reason: d.reason}),
        "publish-failed": (d) => ({code: d.error.code}),
    };
    window.watch = (client) => {
        const log = (type, detail) => timeline.push({t: Date.now(), type, ...detail});
        client.on("statechange", ({state}) => log("state", {state}));
        for (const [type, pick] of Object.entries(summary)) {
            client.on(type, (detail) => log(type, pick(detail)));
        }
        return client;
    };
    // Publish `total` messages 0, 1, 2... on `ch`, `perSecond` of them a second.
    window.publishSteadily = (client, ch, perSecond, total) => {
        window.settled = 0;
        window.failures = [];
        window.maxPending = 0;
        let n = 0;
        const timer = setInterval(() => {
            maxPending = Math.max(maxPending, client.pending);
            if (n >= total) {
                clearInterval(timer);
                return;
            }
            client.publish(ch, n++).catch((e) => failures.push(e.code)).finally(() => settled++);
        }, 1000 / perSecond);
    };
    // A fresh subscriber: every message the channel's history holds.
    window.readBack = async (url, ch, total) => {
        const reader = new ol.Client(url);
        const seen = [];
        reader.subscribe(ch, {history: true}).on("message", (m) => seen.push(m.data));
        reader.start();
        const deadline = Date.now() + 15000;
        while (seen.length < total && Date.now() < deadline) await sleep(50);
        await sleep(300);  // a duplicate would arrive now
        reader.close();
        return seen;
    };
}"""


def open_page(pages: Pages, base: str) -> Any:
    """A page of ``base``'s origin with the module as ``ol`` and the harness."""
    page = pages.open(base + "healthz")
    page.evaluate(HARNESS)
    return page


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/ws"


def now_ms() -> float:
    return time.time() * 1000


def first_after(timeline: list[dict[str, Any]], t: float, accept: Callable[[Any], bool]) -> float:
    """Milliseconds from ``t`` to the first entry after it that ``accept`` likes (inf: none)."""
    times = [entry["t"] - t for entry in timeline if entry["t"] >= t and accept(entry)]
    return min(times, default=float("inf"))


def shown_down(entry: dict[str, Any]) -> bool:
    return bool(entry["type"] == "state" and entry["state"] != "open")


def shown_up(entry: dict[str, Any]) -> bool:
    return bool(entry["type"] == "connected")


def check_exactly_once(seen: list[Any], total: int) -> None:
    distinct = set(seen)
    lost = total - len(distinct & set(range(total)))
    duplicated = len(seen) - len(distinct)
    reordered = sum(1 for a, b in itertools.pairwise(seen) if b < a)
    print(
        f"read back {len(seen)} of {total}: lost {lost}, duplicated {duplicated}, "
        f"reordered {reordered}"
    )
    assert (lost, duplicated, reordered) == (0, 0, 0)
    assert seen == list(range(total))


def check_never_abused(timeline: list[dict[str, Any]]) -> None:
    closes = [e["code"] for e in timeline if e["type"] == "disconnected"]
    stops = [e for e in timeline if e["type"] == "stopped"]
    print(f"close codes seen by the page: {closes}")
    assert 1008 not in closes and not stops


@pytest.fixture
def paced(make_server: Callable[..., ServerThread]) -> ServerThread:
    """A hub without the ticker that accepts 20 messages a second per connection."""
    return make_server(ticker=False, rate_limit=RATE)


@pytest.fixture
def proxy(paced: ServerThread) -> Iterator[ChaosProxy]:
    """The fault-injecting proxy in front of ``paced``, on the server's loop."""
    chaos = ChaosProxy("127.0.0.1", paced.port)
    paced.call(chaos.start)
    yield chaos
    paced.call(chaos.close)


def call(server: ServerThread, func: Callable[[], Any]) -> Any:
    """Run a plain function on the server's loop (the proxy lives there)."""

    async def run() -> Any:
        return func()

    return server.call(run)


# --- what the page shows ----------------------------------------------------------------


def test_offline_is_shown_at_once_and_the_page_is_back_at_once_when_online(
    make_server: Callable[..., ServerThread], pages: Pages
) -> None:
    server = make_server(ticker=False)
    cuts = {"10 s": 10.0, "30 s": 30.0}
    opened = {name: open_page(pages, server.url) for name in cuts}
    for page in opened.values():
        page.evaluate(
            """async (url) => {
                const client = window.client = watch(new ol.Client(url));
                client.start();
                while (client.state !== "open") await sleep(20);
            }""",
            ws_url(server.port),
        )
    # Both pages go offline together; each comes back after its own cut.
    offline_at = now_ms()
    for page in opened.values():
        page.context.set_offline(True)
    for page in opened.values():
        page.evaluate("[1, 2, 3].forEach((n) => client.publish('room:off', n))")
    results = {}
    for name, seconds in cuts.items():
        page = opened[name]
        time.sleep(max(0.0, offline_at / 1000 + seconds - time.time()))  # the cut itself
        online_at = now_ms()
        page.context.set_offline(False)
        page.wait_for_function("client.pending === 0", timeout=15_000)
        timeline = page.evaluate("timeline")
        shown = first_after(timeline, offline_at, shown_down)
        back = first_after(timeline, online_at, shown_up)
        events = [e["type"] for e in timeline if e["t"] >= offline_at]
        results[name] = (shown, back)
        print(
            f"{name} offline: shown after {shown:.0f} ms, back {back:.0f} ms after online; "
            f"events {events}"
        )
        offline = [e for e in timeline if e["type"] == "offline"]
        assert offline and offline[0]["t"] - offline_at < 1000
        assert [e["pending"] for e in timeline if e["type"] == "online"] == [3]
        assert "reconnecting" not in events  # no redial while offline
    for shown, back in results.values():
        assert shown < 1000
        assert back < 2500  # about 1 s on a quiet machine
    assert server.history("room:off") == [1, 2, 3, 1, 2, 3]


def test_pages_are_back_soon_after_a_3_s_server_restart(
    make_server: Callable[..., ServerThread], pages: Pages
) -> None:
    server = make_server(ticker=False)
    opened = [open_page(pages, server.url) for _ in range(5)]
    for page in opened:
        page.evaluate(
            """async (url) => {
                const client = window.client = watch(new ol.Client(url));
                client.start();
                while (client.state !== "open") await sleep(20);
            }""",
            ws_url(server.port),
        )
    stopped_at = now_ms()
    server.stop()
    time.sleep(3.0)  # the outage itself
    server.start()
    back_at = now_ms()
    delays = []
    for page in opened:
        page.wait_for_function(
            "(t) => timeline.some((e) => e.type === 'connected' && e.t >= t)",
            arg=stopped_at,
            timeout=20_000,
        )
        delays.append(first_after(page.evaluate("timeline"), stopped_at, shown_up) / 1000)
    outage = (back_at - stopped_at) / 1000
    after = sorted(delay - outage for delay in delays)
    back = [round(d, 2) for d in sorted(delays)]
    print(
        f"server down {outage:.2f} s; pages back after {back} s; "
        f"that is {[round(a, 2) for a in after]} s after the server returned "
        f"(median {statistics.median(after):.2f} s)"
    )
    assert statistics.median(after) < 3.0  # 1-2 s on a quiet machine
    assert max(after) < 4.5  # the longest redial delay is 3 s


# --- every publish stored once, in order ----------------------------------------------


def start_publisher(page: Any, url: str, ch: str, per_second: float, total: int) -> None:
    """Connect a client in ``page`` and start publishing ``total`` messages on ``ch``."""
    page.evaluate(
        """async ([url, ch, perSecond, total]) => {
            const client = window.client = watch(new ol.Client(url));
            client.start();
            while (client.state !== "open") await sleep(20);
            publishSteadily(client, ch, perSecond, total);
        }""",
        [url, ch, per_second, total],
    )


def finish_publisher(page: Any, url: str, ch: str, total: int, *, timeout: float) -> None:
    """Wait until every publish settled; check each was acked and stored once, in order."""
    started = time.monotonic()
    page.wait_for_function(f"settled === {total}", timeout=timeout * 1000)
    drained = time.monotonic() - started
    result = page.evaluate(
        "async ([url, ch, total]) => ({seen: await readBack(url, ch, total), failures, "
        "maxPending, stats: client.stats, timeline})",
        [url, ch, total],
    )
    print(
        f"{total} publishes settled {drained:.1f} s after the fault; most queued at once: "
        f"{result['maxPending']} (the hub's burst: {RATE[0]}); republished "
        f"{result['stats']['republished']}"
    )
    assert result["failures"] == []
    check_exactly_once(result["seen"], total)
    check_never_abused(result["timeline"])


def test_publishing_through_a_5_s_stall_keeps_every_publish_once_and_in_order(
    paced: ServerThread, proxy: ChaosProxy, pages: Pages
) -> None:
    # 12 a second against 20 allowed: 60 %. The stall then delivers 5 s of them at once.
    page = open_page(pages, f"http://127.0.0.1:{proxy.port}/")
    url = ws_url(proxy.port)
    start_publisher(page, url, "room:stall", 12, 120)
    page.wait_for_function("settled >= 10")
    call(paced, proxy.pause)
    time.sleep(5.0)  # the stall itself
    call(paced, proxy.resume)
    finish_publisher(page, url, "room:stall", 120, timeout=40)
    assert paced.app is not None
    stats = paced.app.hub.stats
    print(f"hub: {dict(stats.errors)}, abuse closes {stats.abuse_closes}")
    assert stats.abuse_closes == 0


def test_publishing_through_a_35_s_blackhole_keeps_every_publish_once_and_in_order(
    paced: ServerThread, proxy: ChaosProxy, pages: Pages
) -> None:
    # Longer than the heartbeat (10 + 10 s): the page gives the line up and
    # redials while the way to the hub stays closed, then flushes a queue of
    # ~280 publishes into a hub that takes 20 a second.
    page = open_page(pages, f"http://127.0.0.1:{proxy.port}/")
    url = ws_url(proxy.port)
    per_second = 8  # 40 % of the limit
    start_publisher(page, url, "room:tunnel", per_second, per_second * 37)
    page.wait_for_function("settled >= 8")
    cut_at = now_ms()

    def blackhole() -> int:
        proxy.refuse = True  # redials fail too, until the tunnel ends
        return proxy.cut("blackhole")

    assert call(paced, blackhole) >= 1
    time.sleep(35.0)  # the outage itself
    call(paced, lambda: setattr(proxy, "refuse", False))
    finish_publisher(page, url, "room:tunnel", per_second * 37, timeout=60)
    timeline = page.evaluate("timeline")
    noticed = first_after(timeline, cut_at, shown_down) / 1000
    print(f"the silent line was given up after {noticed:.1f} s")
    assert noticed < 25  # heartbeat 10 s + timeout 10 s, checked every second


def test_publishing_through_a_server_restart_keeps_every_publish_once_and_in_order(
    paced: ServerThread, pages: Pages
) -> None:
    page = open_page(pages, paced.url)
    url = ws_url(paced.port)
    start_publisher(page, url, "room:restart", 12, 100)
    page.wait_for_function("settled >= 10")
    paced.stop()
    time.sleep(3.0)  # the outage itself
    paced.start()
    finish_publisher(page, url, "room:restart", 100, timeout=40)


def test_a_token_less_page_through_resets_stores_each_publish_once(
    paced: ServerThread, proxy: ChaosProxy, pages: Pages
) -> None:
    # A guest is a new user on every connection; retried ids still count once.
    page = open_page(pages, f"http://127.0.0.1:{proxy.port}/")
    url = ws_url(proxy.port)
    start_publisher(page, url, "room:rst", 12, 80)
    for settled in (10, 30):
        page.wait_for_function(f"settled >= {settled}")
        assert call(paced, lambda: proxy.cut("rst")) >= 1
        page.wait_for_function("client.state === 'open'", timeout=15_000)
    finish_publisher(page, url, "room:rst", 80, timeout=40)
    resets = page.evaluate("timeline.filter((e) => e.type === 'disconnected').length")
    assert resets >= 2
