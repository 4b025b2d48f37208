"""``openline bench --cluster``: the hub generator's bookkeeping, the ratios, and a smoke run.

The smoke run starts a real ``redis-server``; without the binary it skips,
which ``CI=true`` turns into a failure. No timing is checked.
"""

from __future__ import annotations

import io
import json
import pathlib
from typing import Any

import pytest

from openline.bench import hubload, loadgen, wire
from openline.bench.cluster import Options, run
from openline.bench.cluster_report import markdown, medians, ratios
from openline.bench.redis_server import redis_server_binary
from openline.bench.report import TIMES
from openline.bench.scenarios import Scenario
from openline.cli import main

from .test_loadgen import FakeTransport, _feed

SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Protocol: openline.v1\r\n\r\n"
)


def _text(payload: bytes) -> bytes:
    return wire.server_frame_header(len(payload), wire.OP_TEXT) + payload


def _hub_message(seq: int, offset: int | None = None) -> bytes:
    """A ``message`` as the hub encodes it: ``data`` last, in the publisher's key order."""
    return _text(
        b'{"type":"message","ch":"bench","epoch":"0123456789abcdef01234567","offset":%d,'
        b'"user":"5b1f7c1e-6a47-4c59-9f37-3b1c0c1d2e3f","data":{"t":1234.5,"seq":%d}}'
        % (offset or seq, seq)
    )


async def _hub_subscriber() -> tuple[loadgen.Generator, hubload.HubSubscriber, FakeTransport]:
    scenario = Scenario("cluster", "fanout", "t", 0, 2, 1, 100.0)
    gen = loadgen.Generator(
        {
            "scenario": scenario.to_json(),
            "port": 1,
            "window": 1.0,
            "warmup": 0.0,
            "subprotocol": "openline.v1",
        }
    )
    client = hubload.HubSubscriber(gen, hubload.Group("node2", 1))
    transport = FakeTransport()
    client.connection_made(transport)  # type: ignore[arg-type]
    return gen, client, transport


def _received(group: hubload.Group) -> list[int]:
    return [
        seq
        for first, last in zip(group.firsts, group.lasts, strict=True)
        for seq in range(first, last + 1)
    ]


async def test_hub_subscriber_offers_the_subprotocol_and_subscribes_once_open() -> None:
    gen, client, transport = await _hub_subscriber()
    welcome = _text(b'{"type":"welcome","client":"c","user":"u","limits":{}}')
    _feed(client, SWITCHING + welcome, [])
    assert not gen.failed.done()
    request = transport.written[0]
    assert request.startswith(b"GET / HTTP/1.1\r\n")
    assert b"\r\nSec-WebSocket-Protocol: openline.v1\r\n" in request
    assert transport.written[1] == hubload.SUBSCRIBE
    assert not client.subscribed


async def test_hub_subscriber_reads_sequences_from_messages_cut_anywhere() -> None:
    gen, client, _ = await _hub_subscriber()
    subscribed = _text(
        b'{"type":"subscribed","ch":"bench","epoch":"e","offset":0,"recovered":false,"missed":0}'
    )
    messages = [_hub_message(seq) for seq in range(1, 9)]
    stream = SWITCHING + subscribed + b"".join(messages)
    size = len(messages[0])
    start = len(SWITCHING) + len(subscribed)
    # One read per message for the first three (the usual case), then cuts inside frames.
    cuts = [start, start + size, start + 2 * size, start + 3 * size, start + 4 * size + 7]
    cuts += [start + 6 * size + 1]
    _feed(client, stream, cuts)
    assert not gen.failed.done()
    assert client.subscribed
    assert _received(client.group) == list(range(1, 9))
    assert client.next_seq == 9
    # Only the first message (and the replies before it) needed a full parse.
    assert client.group.parsed == 2
    assert client.group.irregular == 0


async def test_hub_subscriber_parses_any_layout_and_counts_holes() -> None:
    gen, client, _ = await _hub_subscriber()
    reordered = _text(b'{"type":"message","ch":"bench","offset":3,"data":{"seq":3,"t":1.0}}')
    gap = _text(
        b'{"type":"gap","ch":"bench","epoch":"e","since":{"epoch":"e","offset":3},"from":5}'
    )
    _feed(client, SWITCHING + _hub_message(1) + _hub_message(2), [])
    _feed(client, reordered + gap + _hub_message(5), [])
    assert not gen.failed.done()
    assert _received(client.group) == [1, 2, 3, 5]
    assert client.group.gaps == 1
    assert client.group.irregular == 1


async def test_hub_subscriber_fails_the_run_on_an_error_reply() -> None:
    gen, client, _ = await _hub_subscriber()
    _feed(client, SWITCHING + _text(b'{"type":"error","code":"rate_limited","reason":"x"}'), [])
    with pytest.raises(wire.FrameError, match="rate_limited"):
        gen.failed.result()


async def test_publisher_counts_acks_and_fails_the_run_on_an_error_reply() -> None:
    gen, _, _ = await _hub_subscriber()
    client = hubload.PublisherClient(gen)
    client.connection_made(FakeTransport())  # type: ignore[arg-type]
    ack = _text(b'{"type":"ack","ch":"bench","epoch":"e","offset":1,"duplicate":false}')
    _feed(client, SWITCHING + ack + ack, [])
    assert client.acks == 2
    assert not gen.failed.done()
    _feed(client, _text(b'{"type":"error","code":"unavailable","reason":"try again later"}'), [])
    with pytest.raises(wire.FrameError, match="unavailable"):
        gen.failed.result()


def test_ceiling_messages_have_the_layout_and_size_of_hub_messages() -> None:
    made = hubload._RAW_MESSAGE % (7, b"1234.5", 7)
    real = _hub_message(7)
    assert len(made) == len(real) - 4  # the frame header of a 126-65535 byte payload
    assert json.loads(made)["data"] == {"t": 1234.5, "seq": 7}
    assert hubload._last_seq(made, 0, len(made), b"}}") == 7


def test_shares_split_subscribers_evenly() -> None:
    assert hubload.shares(2000, 2) == [1000, 1000]
    assert hubload.shares(51, 2) == [26, 25]
    assert hubload.shares(5, 1) == [5]


def test_tally_of_two_groups_merges_into_the_totals() -> None:
    sent = [0.0, 9.5, 10.2, 10.5, 10.9]
    counts: dict[str, Any] = {
        "window": (10.0, 11.0),
        "published": (2, 4),
        "deadline": 0.1,
        "grace": 1.0,
    }
    first = loadgen.Tally.count(
        sent, ([10.25, 10.55, 11.3], [2, 3, 4], [2, 3, 4]), subscribers=1, **counts
    )
    second = loadgen.Tally.count(sent, ([10.58], [1], [3]), subscribers=1, **counts)
    assert (first.in_window, first.in_time, first.delivered, first.due) == (2, 2, 3, 3)
    assert (second.in_window, second.in_time, second.delivered, second.due) == (3, 1, 2, 3)
    first.merge(second)
    metrics = first.metrics(1.0)
    assert metrics["deliveries_per_s"] == pytest.approx(5.0)
    assert metrics["in_time_pct"] == pytest.approx(50.0)
    assert metrics["delivered_pct"] == pytest.approx(500 / 6)
    assert metrics["p50_ms"] == pytest.approx(80, rel=0.01)


def _run(deliveries: dict[str, float], p99: dict[str, float], subscribers: dict[str, int]) -> Any:
    return {
        "groups": {
            group: {
                "deliveries_per_s": deliveries[group],
                "delivered_pct": 100.0,
                "p50_ms": p99[group] / 4,
                "p99_ms": p99[group],
                "subscribers": subscribers[group],
            }
            for group in deliveries
        },
        "cpu": {"gen_cpu_pct": 50.0, "gen_us_per_delivery": 2.5},
        "published_per_s": 100.0,
    }


def test_ratios_are_medians_of_per_repetition_quotients_per_subscriber() -> None:
    memory = [
        _run({"all": 200.0, "node1": 200.0}, {"all": 10.0, "node1": 10.0}, {"all": 2, "node1": 2})
        for _ in range(3)
    ]
    two = {"all": 2, "node1": 1, "node2": 1}
    redis = [
        _run(
            {"all": 100.0, "node1": 60.0, "node2": 40.0},
            {"all": 20.0, "node1": 15.0, "node2": 30.0},
            two,
        ),
        {"error": "timed out after 100 s"},
        _run(
            {"all": 150.0, "node1": 80.0, "node2": 70.0},
            {"all": 40.0, "node1": 30.0, "node2": 50.0},
            two,
        ),
    ]
    found = ratios({"memory": memory, "redis": redis})
    # The failed repetition is left out: medians of two quotients are their means.
    assert found["all"]["deliveries_per_s"] == pytest.approx((0.5 + 0.75) / 2)
    # Per subscriber: node 1's 60/s for 1 subscriber against 200/s for 2.
    assert found["node1"]["deliveries_per_s"] == pytest.approx((0.6 + 0.8) / 2)
    assert found["node2"]["p99_ms"] == pytest.approx((3.0 + 5.0) / 2)
    summary = medians({"memory": memory, "redis": redis})
    assert summary["redis"]["node2"]["deliveries_per_s"] == pytest.approx(55.0)
    assert summary["memory"]["cpu"]["published_per_s"] == 100.0


def test_no_ratio_without_both_configurations() -> None:
    memory = [_run({"all": 200.0}, {"all": 10.0}, {"all": 2})]
    assert ratios({"memory": memory, "redis": [{"error": "x"}]}) == {}


@pytest.fixture
def redis_binary() -> str:
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return binary


def test_smoke_run_compares_two_nodes_on_redis_with_one_in_memory(
    redis_binary: str, tmp_path: pathlib.Path
) -> None:
    pytest.importorskip("uvloop", reason="openline bench runs every server on uvloop")
    progress = io.StringIO()
    options = Options(
        subscribers=50,
        repetitions=1,
        window=0.5,
        warmup=0.1,
        quick=True,
        output=str(tmp_path),
    )
    document = run(options, progress)

    assert list(document["configurations"]) == ["memory", "redis", "ceiling"]
    runs = {name: reps[0] for name, reps in document["runs"].items()}
    for name, result in runs.items():
        assert "error" not in result, (name, result)
        assert result["published_per_s"] > 0
    redis, memory = runs["redis"]["groups"], runs["memory"]["groups"]
    assert set(redis) == {"all", "node1", "node2"}
    assert set(memory) == {"all", "node1"}
    assert (redis["node1"]["subscribers"], redis["node2"]["subscribers"]) == (25, 25)
    assert memory["all"]["subscribers"] == 50
    # The totals are the sums of the nodes, over the same window.
    total = redis["node1"]["deliveries_per_s"] + redis["node2"]["deliveries_per_s"]
    assert redis["all"]["deliveries_per_s"] == pytest.approx(total)
    assert redis["node2"]["deliveries_per_s"] > 0  # messages crossed over Redis
    for groups in (redis, memory):
        for metrics in groups.values():
            assert 0 <= metrics["in_time_pct"] <= metrics["delivered_pct"] <= 100
            assert 0 < metrics["p50_ms"] <= metrics["p99_ms"]
    # With one repetition the ratio is the quotient of the two runs.
    expected = redis["all"]["p99_ms"] / memory["all"]["p99_ms"]
    assert document["ratios"]["all"]["p99_ms"] == pytest.approx(expected)
    expected = redis["all"]["deliveries_per_s"] / memory["all"]["deliveries_per_s"]
    assert document["ratios"]["all"]["deliveries_per_s"] == pytest.approx(expected)
    cpu = runs["redis"]["cpu"]
    assert {"node1_cpu_pct", "node2_cpu_pct", "redis_cpu_pct", "gen_cpu_pct"} <= set(cpu)

    assert json.loads((tmp_path / "cluster.json").read_text()) == document
    text = (tmp_path / "cluster.md").read_text()
    assert text == markdown(document)
    assert "| node 2 (cross-node) |" in text and "quick smoke mode" in text
    assert progress.getvalue().splitlines()[-1] == f"wrote {tmp_path / 'cluster.md'}"


def test_cli_redraws_a_cluster_report(tmp_path: pathlib.Path) -> None:
    memory = [_run({"all": 200.0}, {"all": 10.0}, {"all": 2})]
    redis = [
        _run(
            {"all": 100.0, "node1": 60.0, "node2": 40.0},
            {"all": 20.0, "node1": 15.0, "node2": 30.0},
            {"all": 2, "node1": 1, "node2": 1},
        )
    ]
    results = {"memory": memory, "redis": redis}
    document = {
        "format": 1,
        "kind": "cluster",
        "machine": {
            "date": "2026-01-01T00:00:00+0000",
            "cpu": "CPU",
            "cpus": 2,
            "system": "Linux",
            "python": "CPython 3.11",
            "libraries": {"openline": "0.1.0"},
        },
        "config": {
            "subscribers": 2,
            "rate": 100.0,
            "repetitions": 1,
            "window_s": 1.0,
            "warmup_s": 0.0,
            "deadline_ms": 100.0,
            "quick": False,
            "server_cpu": 0,
            "client_cpu": 1,
        },
        "configurations": {"memory": "1 node, memory engine", "redis": "2 nodes + Redis"},
        "runs": results,
        "medians": medians(results),
        "ratios": ratios(results),
        "notes": [],
    }
    source = tmp_path / "saved.json"
    source.write_text(json.dumps(document))
    assert main(["bench", "--report", str(source), "-o", str(tmp_path)]) == 0
    text = (tmp_path / "cluster.md").read_text()
    assert text.startswith("# openline bench --cluster")
    cells = " | ".join(f"{value}{TIMES}" for value in ("0.60", "1.00", "1.50", "1.50"))
    assert f"| node 1 (publisher's) | {cells} |" in text


def test_cli_refuses_a_single_subscriber(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--cluster", "--subscribers", "1"]) == 2
    assert "subscribers must be at least 2" in capsys.readouterr().err
