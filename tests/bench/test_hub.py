"""``openline bench --hub``: Socket.IO's framing and the compact envelope in the generator,
the report's comparisons, and a smoke run against every peer.

The smoke run starts real servers: the hub, python-socketio under uvicorn, Socket.IO
on Node and a private ``redis-server``. Without Node's packages or the Redis binary it
skips, which ``CI=true`` turns into a failure. No timing is checked.
"""

from __future__ import annotations

import io
import json
import pathlib
from typing import Any

import pytest

from openline.bench import hub_report, hubload, hubpeers, loadgen, wire
from openline.bench.hubnode import encode_compact
from openline.bench.redis_server import redis_server_binary
from openline.bench.report import TIMES
from openline.bench.scenarios import Scenario
from openline.cli import main
from openline.hub.backends.base import Message

from .test_loadgen import FakeTransport, _feed

SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"


def _text(payload: bytes) -> bytes:
    return wire.server_frame_header(len(payload), wire.OP_TEXT) + payload


async def _subscriber(
    dialect: str,
) -> tuple[loadgen.Generator, hubload.HubSubscriber, FakeTransport]:
    scenario = Scenario("hub", "fanout", "t", 0, 2, 1, 100.0)
    config = {"scenario": scenario.to_json(), "port": 1, "window": 1.0, "warmup": 0.0}
    gen = loadgen.Generator(config)
    client = hubload.HubSubscriber(gen, hubload.Group("node1", 1), hubload.DIALECTS[dialect])
    transport = FakeTransport()
    client.connection_made(transport)  # type: ignore[arg-type]
    return gen, client, transport


def _received(group: hubload.Group) -> list[int]:
    return [
        seq
        for first, last in zip(group.firsts, group.lasts, strict=True)
        for seq in range(first, last + 1)
    ]


async def test_socketio_subscriber_connects_joins_and_reads_messages() -> None:
    gen, client, transport = await _subscriber("socketio")
    open_packet = _text(b'0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000}')
    _feed(client, SWITCHING + open_packet, [])
    request = transport.written[0]
    assert request.startswith(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n")
    assert b"Sec-WebSocket-Protocol" not in request
    # The server spoke first; the client connects to the main namespace, then joins.
    assert transport.written[1] == wire.client_frame(b"40", wire.OP_TEXT)
    _feed(client, _text(b'40{"sid":"xyz"}'), [])
    assert transport.written[2] == wire.client_frame(b'42["join"]', wire.OP_TEXT)
    assert not client.subscribed
    _feed(client, _text(b'42["joined"]'), [])
    assert client.subscribed
    messages = [_text(b'42["msg",{"t":1234.5,"seq":%d}]' % seq) for seq in range(1, 7)]
    size = len(messages[0])
    # The first message is parsed; then one read each, then reads cut inside frames.
    _feed(client, b"".join(messages), [size, 2 * size, 3 * size, 4 * size + 3])
    # Engine.IO's ping is answered with a pong.
    _feed(client, _text(b"2"), [])
    assert transport.written[-1] == wire.client_frame(b"3", wire.OP_TEXT)
    assert not gen.failed.done()
    assert _received(client.group) == list(range(1, 7))
    assert client.group.frame_bytes == size
    assert client.group.irregular == 0


async def test_socketio_subscriber_fails_the_run_when_refused() -> None:
    gen, client, _ = await _subscriber("socketio")
    _feed(client, SWITCHING + _text(b'44{"message":"not authorized"}'), [])
    with pytest.raises(wire.FrameError, match="refused"):
        gen.failed.result()


async def test_compact_envelope_reads_like_the_hubs_own() -> None:
    gen, client, _ = await _subscriber("compact")
    subscribed = _text(
        b'{"type":"subscribed","ch":"bench","epoch":"e","offset":0,"recovered":false,"missed":0}'
    )
    frames = [
        _text(
            encode_compact(
                b'"bench"',
                Message("bench", "e" * 24, seq, b'{"t":1.5,"seq":%d}' % seq, {"user": "u" * 36}),
            )
        )
        for seq in range(1, 5)
    ]
    _feed(client, SWITCHING + subscribed + b"".join(frames), [])
    _feed(client, frames[0].replace(b'"seq":1', b'"seq":5'), [])
    assert not gen.failed.done()
    assert client.subscribed
    assert _received(client.group) == [1, 2, 3, 4, 5]
    assert json.loads(frames[0][2:]) == ["bench", 1, "u" * 36, {"t": 1.5, "seq": 1}]


def test_compact_envelope_is_smaller_and_keeps_what_subscribers_need() -> None:
    from openline.hub.wire import encode_message

    message = Message("bench", "e" * 24, 17, b'{"t":1.5,"seq":17}', {"user": "u" * 36})
    current, compact = encode_message(b'"bench"', message), encode_compact(b'"bench"', message)
    assert json.loads(compact) == ["bench", 17, "u" * 36, {"t": 1.5, "seq": 17}]
    assert len(current) - len(compact) == 80  # type, epoch, and the keys
    anonymous = encode_compact(b'"bench"', Message("bench", "e", 3, b"1", None))
    assert json.loads(anonymous) == ["bench", 3, None, 1]


def _run(deliveries: float, server: float, kb: float) -> dict[str, object]:
    return {
        "groups": {"all": {"deliveries_per_s": deliveries, "in_time_pct": 100.0}},
        "cpu": {"server_cpu_pct": server, "gen_cpu_pct": 10.0, "server_us_per_delivery": 1.0},
        "memory": {"kb_per_subscriber": kb},
        "bytes_per_delivery": 100,
    }


def test_report_compares_deliveries_per_server_core_and_checks_the_targets() -> None:
    runs = {
        "openline": [_run(250_000.0, 50.0, 3.5), _run(240_000.0, 60.0, 3.5)],
        "socketio-node": [_run(100_000.0, 100.0, 20.0), _run(90_000.0, 100.0, 20.0)],
    }
    # Per core: 500k vs 100k, then 400k vs 90k: 5x and 4.44x, median 4.72x.
    assert hub_report._ratio(runs, "openline", "socketio-node", "per_core") == pytest.approx(
        (5.0 + 400_000 / 90_000) / 2
    )
    medians = hub_report.summarize(runs)
    assert medians["openline"]["per_core"] == pytest.approx(450_000.0)
    document = {
        "machine": {"date": "d", "cpu": "c", "cpus": 2, "system": "s", "python": "p"},
        "config": {
            "server_cpu": 0,
            "client_cpu": 1,
            "warmup_s": 1.0,
            "window_s": 10.0,
            "repetitions": 2,
            "deadline_ms": 100.0,
            "quick": False,
        },
        "configurations": {name: hub_report.CONFIGURATIONS[name] for name in runs},
        "runs": {"5000x50": runs},
        "notes": [],
    }
    text = hub_report.markdown(document)
    # Deliveries: 2.5x and 2.67x, median 2.58x.
    assert f"| openline vs socketio-node | 2.58{TIMES} | 4.72{TIMES} |" in text
    assert "≥ 95 % within 100 ms: 100 % (met)" in text
    assert "≤ 4 KB per subscribed connection: 3.50 KB (met)" in text


def test_options_run_both_loads_unless_one_is_named() -> None:
    assert hubpeers.Options().loads() == [(1000, 100.0), (5000, 50.0)]
    assert hubpeers.Options(subscribers=2000).loads() == [(2000, 100.0)]
    assert hubpeers.Options(quick=True).loads() == [hubpeers.QUICK_LOAD]
    with pytest.raises(ValueError, match="unknown configuration"):
        hubpeers.Options(configurations=["nope"]).resolved()


def test_smoke_run_measures_the_hub_and_its_peers(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("uvloop", reason="the servers run on uvloop")
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary (apt-get install redis-server)")
    why = hubpeers.node_available() or hubpeers.socketio_available()
    if why is not None:
        pytest.skip(why)
    progress = io.StringIO()
    options = hubpeers.Options(
        subscribers=20, rate=20.0, quick=True, window=0.3, warmup=0.1, output=str(tmp_path)
    )
    document = hubpeers.run(options, progress)
    runs = document["runs"]["20x20"]
    assert set(runs) == set(hub_report.CONFIGURATIONS)
    for name, results in runs.items():
        (result,) = results
        assert result is not None and "error" not in result, (name, result)
        metrics = result["groups"]["all"]
        assert metrics["subscribers"] == 20
        assert metrics["deliveries_per_s"] > 0
        assert result["cpu"]["gen_cpu_pct"] >= 0
        assert result["memory"]["rss_after"] > 0
        assert result["bytes_per_delivery"] > 0
    sizes = {name: results[0]["bytes_per_delivery"] for name, results in runs.items()}
    assert sizes["openline-compact"] < sizes["openline"]
    # The same 42["msg",...] frames; their numbers (sequence, send time) may differ by a
    # digit between two runs, so a byte or two per delivery.
    assert abs(sizes["socketio-node"] - sizes["python-socketio"]) <= 2
    markdown = (tmp_path / "hub.md").read_text()
    assert "| openline vs socketio-node |" in markdown
    assert json.loads((tmp_path / "hub.json").read_text()) == document
    # The report redraws from the saved document.
    (tmp_path / "hub.md").unlink()
    assert main(["bench", "--report", str(tmp_path / "hub.json")]) == 0
    assert (tmp_path / "hub.md").read_text() == markdown


def test_report_gives_the_cost_of_each_asgi_server_as_ratios_to_openline_serve() -> None:
    def run(deliveries: float, in_time: float, p99: float, cpu_us: float, kb: float) -> Any:
        return {
            "groups": {
                "all": {"deliveries_per_s": deliveries, "in_time_pct": in_time, "p99_ms": p99}
            },
            "cpu": {"server_cpu_pct": 50.0, "server_us_per_delivery": cpu_us},
            "memory": {"kb_per_subscriber": kb},
        }

    runs = {
        "openline": [run(50_000.0, 100.0, 20.0, 10.0, 4.0)],
        "fastapi-uvicorn-openline": [run(45_000.0, 100.0, 30.0, 12.0, 6.0)],
        "fastapi-hypercorn": [run(25_000.0, 50.0, 200.0, 40.0, 20.0)],
    }
    text = "\n".join(
        hub_report._load_section({"runs": {"1000x50": runs}, "configurations": runs}, "1000x50")
    )
    fast = hub_report.CONFIGURATIONS["fastapi-uvicorn-openline"]
    assert (
        f"| {fast} | 0.90{TIMES} | 1.00{TIMES} | 1.50{TIMES} | 1.20{TIMES} | 1.50{TIMES} |" in text
    )
    hypercorn = hub_report.CONFIGURATIONS["fastapi-hypercorn"]
    assert (
        f"| {hypercorn} | 0.50{TIMES} | 0.50{TIMES} | 10.00{TIMES} | 4.00{TIMES} | 5.00{TIMES} |"
        in text
    )
    # A server that wasn't run has no row.
    assert hub_report.CONFIGURATIONS["fastapi-uvicorn"] not in text


def test_the_hub_in_fastapi_starts_and_delivers_under_each_asgi_server(
    tmp_path: pathlib.Path,
) -> None:
    pytest.importorskip("uvloop", reason="the servers run on uvloop")
    names = ["openline", *hub_report.ASGI_CONFIGURATIONS]
    for name in names:
        assert hubpeers.unavailable(name) is None, name
    options = hubpeers.Options(
        subscribers=10,
        rate=10.0,
        quick=True,
        window=0.3,
        warmup=0.1,
        output=str(tmp_path),
        configurations=names,
    )
    document = hubpeers.run(options, io.StringIO())
    runs = document["runs"]["10x10"]
    assert list(runs) == names
    for name, results in runs.items():
        (result,) = results
        assert result is not None and "error" not in result, (name, result)
        metrics = result["groups"]["all"]
        assert metrics["subscribers"] == 10
        assert metrics["deliveries_per_s"] > 0
        assert result["memory"]["rss_after"] > 0
    # The same hub messages whichever server carries them (a digit more or less in the
    # timestamps and sequence numbers).
    sizes = [results[0]["bytes_per_delivery"] for results in runs.values()]
    assert max(sizes) - min(sizes) <= 2, sizes
    markdown = (tmp_path / "hub.md").read_text()
    assert "against `openline serve`" in markdown
    assert "the hub in FastAPI: fastapi " in markdown
    for name in hub_report.ASGI_CONFIGURATIONS:
        assert f"| {hub_report.CONFIGURATIONS[name]} | " in markdown
