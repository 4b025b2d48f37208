"""Echo throughput of an ASGI app under uvicorn, per WebSocket engine (``--ws``).

``python bench/uvicorn_engines.py [--window 3] [--rounds 2] [--scenarios echo-32-x1,...]``

The same ASGI echo application (``websocket.receive`` -> ``websocket.send``)
runs under ``uvicorn`` in a subprocess on 127.0.0.1, once per engine: openline's
(``openline.uvicorn:WebSocketProtocol``), uvicorn's default (``websockets-sansio``,
what ``--ws auto`` picks), its legacy ``websockets`` engine and ``wsproto``.
openline's load generator (``python -m openline.bench.loadgen``, a separate
process) drives each one with the scenarios of ``openline bench``. Rounds
alternate the engines, so that a noisy neighbour slows them all alike; the table
shows the best round of each, its ratio to uvicorn's default engine, and the
messages per second of the server's own CPU time with that ratio too (``/CPU``):
the server is one process, so this is what each message costs it, and it moves
less than raw throughput when other work shares the machine.

Both processes share the machine: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

ENGINES = {
    "openline": "openline.uvicorn:WebSocketProtocol",
    "websockets-sansio": "websockets-sansio",
    "websockets": "websockets",
    "wsproto": "wsproto",
}
BASELINE = "websockets-sansio"
DEFAULT_SCENARIOS = "echo-32-x1,echo-32-x16,echo-64k"

Message = MutableMapping[str, Any]


async def echo(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """The application every engine serves."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:
            await send({"type": "websocket.send", "text": message["text"]})


def serve(engine: str, port: int) -> None:
    """The server process: uvicorn with ``engine``, uvloop and httptools."""
    import warnings

    import uvicorn

    warnings.simplefilter("ignore", DeprecationWarning)  # the legacy engine warns
    uvicorn.run(
        echo,
        host="127.0.0.1",
        port=port,
        ws=engine,  # type: ignore[arg-type]
        ws_per_message_deflate=False,
        lifespan="off",
        log_level="warning",
        access_log=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(200):  # 20 s at most
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not listen within 20 s")


def measure(engine: str, scenario: dict[str, Any], window: float) -> dict[str, float]:
    """Start uvicorn with ``engine``, run one scenario against it, stop it."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", ENGINES[engine], str(port)],
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, server)
        config = {
            "scenario": scenario,
            "port": port,
            "server_pid": server.pid,
            "window": window,
            "warmup": 1.0,
        }
        output = subprocess.run(
            [sys.executable, "-m", "openline.bench.loadgen", json.dumps(config)],
            capture_output=True,
            text=True,
            timeout=window + 120,
            check=False,
        )
        result = json.loads(output.stdout.strip().splitlines()[-1])
        if "error" in result:
            raise RuntimeError(f"{engine}: {result['error']}")
        metrics: dict[str, float] = result["metrics"]
        return metrics
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def per_cpu(metrics: dict[str, float]) -> float:
    """Messages per second of the server's CPU time: steadier than msgs/s on a shared machine."""
    cpu = metrics.get("server_cpu_pct", 0.0)
    return metrics["msgs_per_s"] / (cpu / 100) if cpu > 0 else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=3.0, help="seconds measured per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per engine and scenario")
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--serve", nargs=2, metavar=("ENGINE", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    from openline.bench.scenarios import SCENARIOS

    engines = args.engines.split(",")
    print(f"uvicorn echo, {args.rounds} round(s) of {args.window:g} s; best round shown")
    print(
        f"{'scenario':<14} {'engine':<18} {'msgs/s':>10} {'MB/s':>8} {'p50 ms':>8} "
        f"{'srv CPU':>8} {'msgs/CPU-s':>11} {'ratio':>6} {'/CPU':>6}"
    )
    for name in args.scenarios.split(","):
        scenario = SCENARIOS[name]
        best: dict[str, dict[str, float]] = {}
        for _ in range(args.rounds):
            for engine in engines:
                metrics = measure(engine, scenario.to_json(), args.window)
                if engine not in best or metrics["msgs_per_s"] > best[engine]["msgs_per_s"]:
                    best[engine] = metrics
        base = best.get(BASELINE)
        for engine in engines:
            metrics = best[engine]
            p50 = metrics.get("p50_ms", float("nan"))
            cpu = metrics.get("server_cpu_pct", float("nan"))
            ratio = per_cpu_ratio = "-"
            if base:
                ratio = f"{metrics['msgs_per_s'] / base['msgs_per_s']:.2f}"
                per_cpu_ratio = f"{per_cpu(metrics) / per_cpu(base):.2f}"
            print(
                f"{name:<14} {engine:<18} {metrics['msgs_per_s']:>10.0f} "
                f"{metrics['mb_per_s']:>8.1f} {p50:>8.2f} {cpu:>7.0f}% "
                f"{per_cpu(metrics):>11.0f} {ratio:>6} {per_cpu_ratio:>6}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
