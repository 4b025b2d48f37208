"""``openline.js`` adopts subscriptions made by the server API and ends those it ends."""

from __future__ import annotations

from collections.abc import Callable

from .conftest import Pages
from .server import ServerThread
from .test_openline_js import hub_url, load


def test_the_browser_client_adopts_and_ends_server_subscriptions(
    make_server: Callable[..., ServerThread], pages: Pages
) -> None:
    server = make_server(ticker=False)
    page = load(pages, server)
    page.evaluate(
        """async (url) => {
            window.log = [];
            const client = window.client = new ol.Client(url, {...FAST, token: () => "ada"});
            client.on("server-subscribed", ({ch, subscription}) => {
                log.push(["server-subscribed", ch]);
                subscription.on("subscribed", ({offset}) => log.push(["subscribed", offset]));
                subscription.on("message", (m) => log.push(["message", m.offset, m.data]));
            });
            client.on("server-unsubscribed", ({ch}) => log.push(["server-unsubscribed", ch]));
            const connected = new Promise((resolve) => client.on("connected", resolve));
            client.start();
            await connected;
        }""",
        hub_url(server),
    )
    wait_for = """async (count) => {
        while (log.length < count) await new Promise((r) => setTimeout(r, 10));
        return log;
    }"""
    app = server.app
    assert app is not None
    hub = app.hub
    server.publish("news", "old")
    server.call(lambda: hub.subscribe("ada", "news"))
    assert page.evaluate(wait_for, 2) == [["server-subscribed", "news"], ["subscribed", 1]]
    server.publish("news", "new")
    assert page.evaluate(wait_for, 3)[2] == ["message", 2, "new"]
    assert page.evaluate("() => [...client.subscriptions.keys()]") == ["news"]
    server.call(lambda: hub.unsubscribe("ada", "news"))
    assert page.evaluate(wait_for, 4)[3] == ["server-unsubscribed", "news"]
    assert page.evaluate("() => [...client.subscriptions.keys()]") == []
    page.evaluate("() => client.close()")
