"""The browser client ``openline.js`` itself, in headless Chromium against a real hub.

Each test loads the module into a page of the server's origin and drives it
with ``page.evaluate``; the demo page's tests cover the rest through the UI.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import Pages
from .server import ServerThread

POLICY_JSON = pathlib.Path(__file__).parents[2] / "src" / "openline" / "hub" / "policy.json"


def load(pages: Pages, server: ServerThread) -> Any:
    """A page of the server's origin with the module as ``window.ol``.

    ``FAST`` holds options for fast redials, so that the tests don't wait for
    the default backoff.
    """
    page = pages.open(server.url + "healthz")
    page.evaluate(
        """async () => {
            window.ol = await import('/openline.js');
            window.FAST = {backoffBase: 0.1, backoffCap: 0.3};
        }"""
    )
    return page


def hub_url(server: ServerThread) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


@pytest.fixture
def quiet(make_server: Callable[..., ServerThread]) -> ServerThread:
    """A server without the ticker."""
    return make_server(ticker=False)


def test_publishes_made_offline_go_out_in_order_once_connected(
    quiet: ServerThread, pages: Pages
) -> None:
    page = load(pages, quiet)
    result = page.evaluate(
        """async (url) => {
            const client = new ol.Client(url, FAST);
            const acks = [1, 2, 3].map((n) => client.publish("room:q", {n}));
            const pending = client.pending;
            const room = client.subscribe("room:q", {history: true});
            const seen = [];
            room.on("message", (m) => seen.push(m.data.n));
            client.start();
            const done = await Promise.all(acks);
            while (seen.length < 3) await new Promise((r) => setTimeout(r, 10));
            const again = await client.publish("room:q", {n: 4}, {id: done[0].id});
            client.close();
            return {pending, offsets: done.map((a) => a.offset), seen, again, left: client.pending};
        }""",
        hub_url(quiet),
    )
    assert result["pending"] == 3
    assert result["offsets"] == [1, 2, 3]
    assert result["seen"] == [1, 2, 3]
    # The same id again: stored once, the ack points at the original.
    assert result["again"]["duplicate"] is True and result["again"]["offset"] == 1
    assert result["left"] == 0


def test_publishes_in_flight_survive_a_server_restart_and_are_stored_once(
    quiet: ServerThread, pages: Pages
) -> None:
    page = load(pages, quiet)
    page.evaluate(
        """async (url) => {
            const client = window.client = new ol.Client(url, FAST);
            window.events = [];
            for (const type of ["connected", "reconnecting", "resumed", "gap"]) {
                client.on(type, (detail) => events.push({type, ...detail}));
            }
            const room = client.subscribe("room:r");
            window.seen = [];
            room.on("message", (m) => seen.push(m.offset));
            client.start();
            await room.ready;
        }""",
        hub_url(quiet),
    )
    quiet.stop()
    page.wait_for_function("client.state === 'reconnecting' || client.state === 'connecting'")
    page.evaluate("window.acks = [1, 2, 3, 4].map((n) => client.publish('room:r', {n}))")
    quiet.publish("room:r", {"n": "server"})
    assert page.evaluate("client.pending") == 4
    quiet.start()
    result = page.evaluate(
        """async () => {
            const done = await Promise.all(acks);
            while (seen.length < 5) await new Promise((r) => setTimeout(r, 10));
            client.close();
            return {offsets: done.map((a) => a.offset), seen, events, state: client.state};
        }"""
    )
    assert sorted(result["offsets"]) == [2, 3, 4, 5]
    assert result["seen"] == [1, 2, 3, 4, 5]
    types = [event["type"] for event in result["events"]]
    assert types[0] == "connected" and "reconnecting" in types
    resumed = [event for event in result["events"] if event["type"] == "resumed"]
    assert resumed == [{"type": "resumed", "ch": "room:r", "recovered": 1, "gap": False}]
    assert result["state"] == "closed"


def test_resuming_beyond_the_history_window_reports_the_gap(
    make_server: Callable[..., ServerThread], pages: Pages
) -> None:
    server = make_server(ticker=False, engine={"history_size": 3})
    page = load(pages, server)
    page.evaluate(
        """async (url) => {
            const client = window.client = new ol.Client(url, FAST);
            window.events = [];
            client.on("resumed", (d) => events.push({type: "resumed", ...d}));
            const room = client.subscribe("room:g");
            window.items = [];
            room.on("message", (m) => items.push(["message", m.offset, m.replayed]));
            room.on("gap", (g) => items.push(["gap", g.since[1], g.first]));
            client.start();
            await room.ready;
        }""",
        hub_url(server),
    )
    server.publish("room:g", 1)
    page.wait_for_function("items.length === 1")
    server.stop()
    for n in range(2, 8):
        server.publish("room:g", n)
    server.start()
    page.wait_for_function("items.length === 5")
    result = page.evaluate("({items, events})")
    # Offsets 2, 3 and 4 fell out of the 3-message window: said so, exactly there.
    assert result["items"] == [
        ["message", 1, False],
        ["gap", 1, 5],
        ["message", 5, True],
        ["message", 6, True],
        ["message", 7, True],
    ]
    assert result["events"] == [{"type": "resumed", "ch": "room:g", "recovered": 3, "gap": True}]


def test_presence_state_and_unsubscribe(quiet: ServerThread, pages: Pages) -> None:
    page = load(pages, quiet)
    result = page.evaluate(
        """async (url) => {
            const token = (name) => () => name;  // a function: asked before each dial
            const ada = new ol.Client(url, {token: token("ada")});
            const bob = new ol.Client(url, {token: token("bob")});
            const log = [];
            const room = ada.subscribe("room:p", {presence: true});
            room.on("join", ({user}) => log.push(`join ${user}`));
            room.on("leave", ({user}) => log.push(`leave ${user}`));
            room.on("state", ({user, state}) => log.push(`state ${user} ${JSON.stringify(state)}`));
            ada.start();
            await room.ready;
            bob.start();
            await bob.subscribe("room:p", {presence: true}).ready;
            const wait = async (text) => {
                while (!log.includes(text)) await new Promise((r) => setTimeout(r, 10));
            };
            await wait("join bob");
            bob.setState("room:p", {typing: true});
            await wait('state bob {"typing":true}');
            const typing = room.members.get("bob").state;
            const snapshot = await bob.presence("room:p");
            bob.unsubscribe("room:p");
            await wait("leave bob");
            ada.close();
            bob.close();
            return {
                log, typing, user: bob.user,
                members: [...snapshot.members.values()].map((m) => [m.user, m.info.name]).sort(),
                after: [...room.members.keys()],
            };
        }""",
        hub_url(quiet),
    )
    assert result["user"] == "bob"
    assert result["typing"] == {"typing": True}
    assert result["members"] == [["ada", "ada"], ["bob", "bob"]]
    assert result["log"][:2] == ["join bob", 'state bob {"typing":true}']
    assert result["log"][-1] == "leave bob"
    assert result["after"] == ["ada"]


def test_refused_requests_reject_and_abuse_stops_the_client(
    server: ServerThread, pages: Pages
) -> None:
    page = load(pages, server)
    result = page.evaluate(
        """async (url) => {
            const client = new ol.Client(url, FAST);
            const errors = [];
            client.on("error", ({error, fatal}) => {
                errors.push([error.code, error.closeCode, fatal]);
            });
            client.start();
            const refusals = [];
            // The ticker is read-only: each publish is refused, and 20 refusals are abuse (1008).
            const publishes = [];
            for (let i = 0; i < 25; i++) {
                publishes.push(client.publish("ticker", i).catch((e) => refusals.push(e.code)));
            }
            await Promise.all(publishes);
            while (client.state !== "closed") await new Promise((r) => setTimeout(r, 10));
            let late = null;
            try { await client.publish("room:x", 1); } catch (e) { late = e.code; }
            return {refusals, errors, late, state: client.state};
        }""",
        hub_url(server),
    )
    assert result["refusals"][:20] == ["forbidden"] * 20
    assert set(result["refusals"]) <= {"forbidden", "closed"}
    assert result["errors"][-1] == ["closed", 1008, True]
    assert result["late"] == "closed"
    assert result["state"] == "closed"


def test_publishes_are_paced_to_the_announced_rate_and_never_refused(
    make_server: Callable[..., ServerThread], pages: Pages
) -> None:
    # Needs the hub to announce limits.rate and limits.burst in its welcome.
    server = make_server(ticker=False, rate_limit=(5, 0.5))
    page = load(pages, server)
    result = page.evaluate(
        """async (url) => {
            const client = new ol.Client(url, FAST);
            client.start();
            await new Promise((resolve) => client.on("connected", resolve));
            const started = performance.now();
            const acks = await Promise.all(
                Array.from({length: 30}, (_, n) => client.publish("room:rl", n)));
            const seconds = (performance.now() - started) / 1000;
            const stats = client.stats;
            const limits = client.limits;
            client.close();
            return {offsets: acks.map((a) => a.offset), republished: stats.republished,
                    seconds, limits};
        }""",
        hub_url(server),
    )
    assert server.app is not None
    refused = server.app.hub.stats.errors["rate_limited"]
    print(f"30 publishes at 90 % of 10/s: {result['seconds']:.2f} s, {refused} refused")
    assert result["limits"]["rate"] == 10 and result["limits"]["burst"] == 5
    assert result["offsets"] == list(range(1, 31))  # in order
    assert refused == 0 and result["republished"] == 0
    # 2 at once (half the burst), then 9 per second: 28 / 9 = 3.1 s at least.
    assert result["seconds"] > 2.8
    assert server.history("room:rl") == list(range(30))


def test_arguments_and_the_redial_policy(quiet: ServerThread, pages: Pages) -> None:
    page = load(pages, quiet)
    result = page.evaluate(
        """() => {
            const ranges = [];
            for (let attempt = 1; attempt <= 6; attempt++) {
                let low = Infinity, high = 0;
                for (let i = 0; i < 300; i++) {
                    const d = ol.redialDelay(attempt);
                    low = Math.min(low, d);
                    high = Math.max(high, d);
                }
                ranges.push([low, high]);
            }
            const edges = [1, 2, 3].map((n) => [ol.redialDelay(n, undefined, () => 0),
                                               ol.redialDelay(n, undefined, () => 1)]);
            const refused = [];
            for (const options of [{heartbeatInterval: 0}, {maxQueue: 1.5}, {backoffCap: 0.1}]) {
                try { new ol.Client("ws://x/", options); } catch (e) { refused.push(e.name); }
            }
            const client = new ol.Client("/ws");
            return {ranges, edges, refused, url: client.url, state: client.state};
        }"""
    )
    # policy.json: 0.5-1 s first, then uniform(c/2, c) with c = min(3, 2^(n-1)).
    assert result["edges"] == [[0.5, 1], [1, 2], [1.5, 3]]
    bounds = [(0.5, 1.0), (1.0, 2.0), (1.5, 3.0), (1.5, 3.0), (1.5, 3.0), (1.5, 3.0)]
    for (low, high), (lowest, highest) in zip(result["ranges"], bounds, strict=True):
        assert lowest <= low <= high <= highest
        assert high - low > (highest - lowest) / 2  # jittered over the range
    assert result["refused"] == ["RangeError"] * 3
    assert result["url"] == f"ws://127.0.0.1:{quiet.port}/ws"
    assert result["state"] == "idle"


def test_the_policy_copy_in_openline_js_equals_policy_json(
    quiet: ServerThread, pages: Pages
) -> None:
    page = load(pages, quiet)
    copy = page.evaluate("JSON.parse(JSON.stringify(ol.POLICY))")
    table = json.loads(POLICY_JSON.read_text())
    del table["comment"]
    assert copy == table


def test_an_oversized_publish_is_refused_at_once_and_never_sent(
    make_server: Callable[..., ServerThread], pages: Pages
) -> None:
    server = make_server(ticker=False, max_message_size=1000)
    page = load(pages, server)
    result = page.evaluate(
        """async (url) => {
            const client = new ol.Client(url, FAST);
            const failed = [];
            client.on("publish-failed", ({error, ch}) => failed.push([error.code, ch]));
            // Queued before any welcome: settled when the first one announces the limit.
            const early = client.publish("room:big", "x".repeat(2000)).catch((e) => e.code);
            const small = client.publish("room:big", "small");
            client.start();
            const first = await Promise.all([early, small]);
            const started = performance.now();
            let code = null;
            try { await client.publish("room:big", "y".repeat(5000)); } catch (e) { code = e.code; }
            const ms = performance.now() - started;
            const after = await client.publish("room:big", "after");
            const pending = client.pending;
            client.close();
            return {early: first[0], small: first[1].offset, code, ms, after: after.offset,
                    failed, pending, limit: client.limits.message};
        }""",
        hub_url(server),
    )
    print(f"oversized publish rejected after {result['ms']:.1f} ms")
    assert result["limit"] == 1000
    assert result["early"] == "too_large"
    assert result["code"] == "too_large"
    assert result["ms"] < 100
    assert (result["small"], result["after"]) == (1, 2)  # nothing else was stored
    assert result["failed"] == [["too_large", "room:big"], ["too_large", "room:big"]]
    assert result["pending"] == 0
    assert server.history("room:big") == ["small", "after"]


def test_a_publish_refused_for_good_settles_and_is_never_sent_again(
    server: ServerThread, pages: Pages
) -> None:
    page = load(pages, server)
    result = page.evaluate(
        """async (url) => {
            const client = window.client = new ol.Client(url, FAST);
            const failed = [];
            client.on("publish-failed", ({error, ch, id}) => failed.push([error.code, ch, id]));
            client.start();
            let refusal = null;
            try {
                await client.publish("ticker", 1, {id: "read-only-1"});
            } catch (e) {
                refusal = e;
            }
            const pending = client.pending;
            return {code: refusal.code, id: refusal.id, failed, pending};
        }""",
        hub_url(server),
    )
    assert result["code"] == "forbidden"
    assert result["failed"] == [["forbidden", "ticker", "read-only-1"]]
    assert result["pending"] == 0
    # A redial sends nothing again: the queue is empty.
    server.stop()
    page.wait_for_function("client.state !== 'open'")
    server.start()
    page.wait_for_function("client.state === 'open'", timeout=15_000)
    assert page.evaluate("client.pending") == 0


def test_a_token_function_refreshes_in_place_and_4001_redials_with_a_new_token(
    make_server: Callable[..., ServerThread], pages: Pages
) -> None:
    import time

    import jwt

    from openline.hub import JwtAuth

    secret = "an e2e secret of at least 32 bytes, for HS256"
    server = make_server(ticker=False, jwt=JwtAuth(secret=secret, leeway=0))

    def token(user: str, lifetime: int) -> str:
        return jwt.encode({"sub": user, "exp": int(time.time()) + lifetime}, secret)

    # "refresh" comes at most halfway through a token's life: 1-2 s into these.
    tokens = {
        "kept": [token("kept", 3), token("kept", 3600)],
        "expired": [token("gone", 3), None, token("gone", 3600)],  # None: the refresh fails
    }
    page = load(pages, server)
    result = page.evaluate(
        """async ([url, tokens]) => {
            const run = (queue) => new Promise((resolve) => {
                const log = [];
                const token = async () => {
                    const next = queue.shift();
                    if (next === null) throw new Error("token service down");
                    return next;
                };
                const client = new ol.Client(url, {...FAST, token});
                client.on("connected", ({user}) => log.push(`connected ${user}`));
                client.on("disconnected", ({code}) => log.push(`disconnected ${code}`));
                client.start();
                const started = Date.now();
                const poll = setInterval(() => {
                    const refreshed = client.stats.refreshes > 0;
                    if ((refreshed || log.length >= 3) && Date.now() - started > 3500) {
                        clearInterval(poll);
                        client.close();
                        resolve({log, refreshes: client.stats.refreshes, left: queue.length});
                    }
                }, 50);
            });
            const [kept, expired] = await Promise.all([run(tokens.kept), run(tokens.expired)]);
            return {kept, expired};
        }""",
        [hub_url(server), tokens],
    )
    print(result)
    # Refreshed in place: one connection for longer than the first token lived.
    assert result["kept"] == {"log": ["connected kept"], "refreshes": 1, "left": 0}
    # Not refreshed: closed with 4001 at expiry, redialled with a new token.
    assert result["expired"]["log"][:3] == ["connected gone", "disconnected 4001", "connected gone"]
    assert result["expired"]["left"] == 0
