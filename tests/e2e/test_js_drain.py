"""openline.js honours a draining hub's retry hint (``retry-after=S`` on 1012), in Chromium."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .conftest import Pages
from .server import ServerThread
from .test_openline_js import hub_url, load

#: The hint the drain sends: far above FAST's backoff (at most 0.3 s).
HINT = 1.2


@pytest.fixture
def quiet(make_server: Callable[..., ServerThread]) -> ServerThread:
    """A server without the ticker."""
    return make_server(ticker=False)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("retry-after=1.25", 1.25),
        ("retry-after=3", 3),
        ("retry-after=2; node restarting", 2),
        ("retry-after=100000", 300),
        ("", None),
        ("going away", None),
        ("retry-after=", None),
        ("retry-after=-1", None),
        ("retry-after=1e3", None),
        (" retry-after=1", None),
    ],
)
def test_parse_retry_hint_reads_what_the_python_side_reads(
    quiet: ServerThread, pages: Pages, reason: str, expected: float | None
) -> None:
    page = load(pages, quiet)
    assert page.evaluate("(reason) => ol.parseRetryHint(reason)", reason) == expected


def test_the_client_waits_at_least_the_hint_after_a_drain(
    quiet: ServerThread, pages: Pages
) -> None:
    page = load(pages, quiet)
    page.evaluate(
        """async (url) => {
            const client = window.client = new ol.Client(url, FAST);
            window.events = [];
            for (const type of ["connected", "disconnected", "reconnecting"]) {
                client.on(type, (detail) => events.push({type, t: performance.now(), ...detail}));
            }
            client.start();
            while (client.state !== "open") await new Promise((r) => setTimeout(r, 10));
        }""",
        hub_url(quiet),
    )
    report = quiet.drain(0, retry_after=(HINT, HINT))
    quiet.start()  # back at once, on the same port: only the hint keeps the client away
    events = page.evaluate(
        """async () => {
            while (events.filter((e) => e.type === "connected").length < 2) {
                await new Promise((r) => setTimeout(r, 10));
            }
            client.close();
            return events;
        }"""
    )
    lost = next(e for e in events if e["type"] == "disconnected")
    redial = next(e for e in events if e["type"] == "reconnecting")
    back = [e for e in events if e["type"] == "connected"][1]
    away = (back["t"] - lost["t"]) / 1000
    print(
        f"\n{report}; closed {lost['code']} {lost['reason']!r}; redial delay "
        f"{redial['delay']:.3f} s; back after {away:.3f} s"
    )
    assert report.connections == 1
    assert (lost["code"], lost["reason"]) == (1012, "retry-after=1.2")
    assert redial["delay"] >= HINT
    assert away >= HINT
