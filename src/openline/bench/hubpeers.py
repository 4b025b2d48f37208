"""``openline bench --hub``: the hub against what users pick instead, one room at a time.

One room, ``N`` subscribers, one publisher at ``R`` messages per second, on:

* ``openline``: one hub node, memory engine (:mod:`.hubnode`);
* ``openline-compact``: the same with the compact envelope prototype
  (measurement only: what ``type``, ``epoch`` and the keys cost per delivery);
* ``fastapi-uvicorn-openline``, ``fastapi-uvicorn``, ``fastapi-hypercorn``:
  the same hub mounted in a FastAPI app (``hub.asgi()`` at ``/hub``) under
  uvicorn with openline's engine (the fast path), uvicorn with its default
  engine and hypercorn (the plain path), each reported as a ratio to the hub
  under ``openline serve``;
* ``python-socketio``: ``socketio.AsyncServer`` as an ASGI app under uvicorn
  (:mod:`.sionode`);
* ``socketio-node``: Socket.IO on Node (``bench/node/sio_server.mjs``; ``make
  bench-node-deps`` installs it);

and each of the three servers again as two nodes on a private ``redis-server``
(``openline-redis``: ``RedisEngine``; ``python-socketio-redis``:
``AsyncRedisManager``; ``socketio-node-redis``: ``@socket.io/redis-adapter``),
the subscribers split evenly, the publisher on node 1.

The load generator is :mod:`.hubload`, the cluster benchmark's, which speaks
the hub's protocol and Socket.IO's framing (Engine.IO 4 over the WebSocket
transport: ``42["msg",{...}]``). Each server process and Redis are pinned to
the server CPU, the generator to the client CPU, as in ``--cluster``.

Reported per load and configuration (medians over repetitions): deliveries/s,
% within the deadline, % delivered, p50/p99, the servers' RSS growth per
subscribed connection, the server side's CPU (nodes and Redis) per delivery
and deliveries per server core-second, the size of a delivered frame, and the
generator's CPU share (what shows that it didn't set the pace).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import secrets
import shutil
import signal
import sys
import tempfile
import time
from typing import Any, TextIO

from .cluster import ClusterChildren, RunFailed
from .hub_report import ASGI_CONFIGURATIONS, CONFIGURATIONS, write
from .redis_server import RedisServer
from .report import format_number
from .runner import Children, Interrupted, Progress, _Interrupt, _tail
from .scenarios import Scenario
from .system import available_cpus, machine_info, open_files_hard_limit, pin_to_cpu

__all__ = ["LOADS", "NODE_DIR", "Options", "node_available", "run"]

#: The loads of a full run: (subscribers, messages per second).
LOADS = [(1000, 100.0), (5000, 50.0)]
#: The quick run's load.
QUICK_LOAD = (100, 20.0)
#: Where Socket.IO's Node server and its packages live.
NODE_DIR = pathlib.Path(__file__).resolve().parents[3] / "bench" / "node"
_SPARE_FILES = 256


def node_available() -> str | None:
    """Why Socket.IO on Node can't run here; ``None`` when it can."""
    if shutil.which("node") is None:
        return "no node binary"
    if not (NODE_DIR / "node_modules" / "socket.io").is_dir():
        return f"socket.io is not installed in {NODE_DIR} (make bench-node-deps)"
    return None


def socketio_available() -> str | None:
    """Why python-socketio can't run here; ``None`` when it can."""
    import importlib.util

    for module in ("socketio", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'openline[bench]')"
    return None


@dataclasses.dataclass
class Options:
    """What ``openline bench --hub`` was asked to do."""

    subscribers: int | None = None
    rate: float | None = None
    repetitions: int | None = None
    window: float | None = None
    warmup: float | None = None
    deadline: float = 0.1
    quick: bool = False
    output: str | None = None
    server_cpu: int | None = 0
    client_cpu: int | None = 1
    configurations: list[str] | None = None

    def loads(self) -> list[tuple[int, float]]:
        """The (subscribers, rate) pairs to run."""
        if self.subscribers or self.rate:
            base = QUICK_LOAD if self.quick else LOADS[0]
            return [(self.subscribers or base[0], self.rate or base[1])]
        return [QUICK_LOAD] if self.quick else list(LOADS)

    def resolved(self) -> Options:
        """A copy with the defaults filled in.

        Raises:
            ValueError: A value is out of range or names nothing known.
        """
        quick_mode = self.quick
        resolved = dataclasses.replace(
            self,
            repetitions=self.repetitions or (1 if quick_mode else 3),
            window=self.window or (0.5 if quick_mode else 10.0),
            warmup=self.warmup if self.warmup is not None else (0.2 if quick_mode else 1.0),
            output=self.output
            or ("bench/results/quick/hub" if quick_mode else "bench/results/hub"),
        )
        for name in resolved.configurations or ():
            if name not in CONFIGURATIONS:
                raise ValueError(
                    f"unknown configuration {name!r}; choose from {', '.join(CONFIGURATIONS)}"
                )
        if resolved.deadline <= 0:
            raise ValueError(f"deadline must be positive, got {resolved.deadline}")
        for subscribers, rate in resolved.loads():
            if subscribers < 2 or rate <= 0:
                raise ValueError(
                    f"need at least 2 subscribers and a positive rate, got {subscribers}, {rate}"
                )
        return resolved


def asgi_available(name: str) -> str | None:
    """Why the hub can't be served in FastAPI for configuration ``name``; ``None`` when it can."""
    import importlib.util

    modules = ["fastapi", "uvloop"]
    modules += ["hypercorn"] if name == "fastapi-hypercorn" else ["uvicorn"]
    if name == "fastapi-uvicorn":
        modules.append("websockets")
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'openline[bench]')"
    return None


def unavailable(name: str) -> str | None:
    """Why configuration ``name`` can't run here; ``None`` when it can."""
    if name in ASGI_CONFIGURATIONS:
        return asgi_available(name)
    if name.startswith("socketio-node"):
        return node_available()
    if name.startswith("python-socketio"):
        return socketio_available()
    return None


# --- processes --------------------------------------------------------------------------


async def _start_argv(
    children: Children, argv: list[str], log_path: pathlib.Path, timeout: float
) -> tuple[asyncio.subprocess.Process, int]:
    """Start ``argv`` and wait for its ``READY {"port": N}`` line.

    Raises:
        Interrupted: The run is being interrupted.
        RunFailed: It didn't print ``READY`` within ``timeout`` seconds.
    """
    if children.closed:
        raise Interrupted
    with open(log_path, "w") as log:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log
        )
    children.processes.add(process)
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout)
    except asyncio.TimeoutError:
        line = b""
    if not line.startswith(b"READY "):
        await children.stop(process)
        raise RunFailed(f"{log_path.stem} did not start: {_tail(log_path) or 'no output'}")
    port: int = json.loads(line[6:])["port"]
    return process, port


def _node_argv(config: dict[str, Any], cpu: int | None) -> list[str]:
    # Node can't ask for PR_SET_PDEATHSIG itself: setpriv does, then execs it.
    argv = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
    if cpu is not None and shutil.which("taskset"):
        argv += ["taskset", "-c", str(cpu)]
    return [*argv, "node", str(NODE_DIR / "sio_server.mjs"), json.dumps(config)]


async def _start_servers(
    plan: Plan,
    children: ClusterChildren,
    name: str,
    logs: pathlib.Path,
    started: list[asyncio.subprocess.Process],
    redis: list[RedisServer],
    open_files: int,
) -> tuple[list[int], dict[str, int]]:
    """Start configuration ``name``'s servers; return their ports and process ids by name."""
    timeout = 20.0 if plan.options.quick else 60.0
    base = {"cpu": plan.server_cpu, "open_files": open_files}
    pids: dict[str, int] = {}
    shared: dict[str, Any] = {}
    count = 1
    if name.endswith("-redis"):
        server = children.start_redis(plan.server_cpu)
        redis.append(server)
        assert server.process is not None
        pids["redis"] = server.process.pid
        count = 2
        shared = {"url": server.url, "redis": server.url, "prefix": f"bench-{secrets.token_hex(4)}"}
    ports = []
    for index in range(1, count + 1):
        log = logs / f"{name}.node{index}.log"
        if name.startswith("socketio-node"):
            argv = _node_argv(shared, plan.server_cpu)
        elif name.startswith("python-socketio"):
            argv = [sys.executable, "-m", "openline.bench.sionode", json.dumps({**shared, **base})]
        else:
            config = {
                "engine": "redis" if count == 2 else "memory",
                "envelope": "compact" if name == "openline-compact" else "standard",
                "server": ASGI_CONFIGURATIONS.get(name, "serve"),
                **shared,
                **base,
            }
            argv = [sys.executable, "-m", "openline.bench.hubnode", json.dumps(config)]
        process, port = await _start_argv(children, argv, log, timeout)
        started.append(process)
        pids[f"node{index}"] = process.pid
        ports.append(port)
    return ports, pids


@dataclasses.dataclass
class Plan:
    options: Options
    configurations: list[str]
    skipped: dict[str, str]
    server_cpu: int | None
    client_cpu: int | None
    notes: list[str]

    def runs(self) -> list[tuple[int, int, float, str]]:
        """Every (repetition, subscribers, rate, configuration), rotating the order."""
        assert self.options.repetitions is not None
        runs = []
        names = self.configurations
        for repetition in range(self.options.repetitions):
            shift = repetition % len(names) if names else 0
            for subscribers, rate in self.options.loads():
                runs += [
                    (repetition, subscribers, rate, name) for name in names[shift:] + names[:shift]
                ]
        return runs


def _plan(options: Options) -> Plan:
    notes: list[str] = []
    wanted = options.configurations or list(CONFIGURATIONS)
    skipped = {name: why for name in wanted if (why := unavailable(name)) is not None}
    names = [name for name in wanted if name not in skipped]
    server_cpu, client_cpu = options.server_cpu, options.client_cpu
    cpus = available_cpus()
    if len(cpus) < 2 or server_cpu == client_cpu:
        notes.append(f"not pinned: {len(cpus)} usable CPU(s); servers and generator share them")
        server_cpu = client_cpu = None
    return Plan(options, names, skipped, server_cpu, client_cpu, notes)


async def _run_one(
    plan: Plan,
    children: ClusterChildren,
    name: str,
    load: tuple[int, float],
    logs: pathlib.Path,
) -> dict[str, Any]:
    options = plan.options
    assert options.window is not None and options.warmup is not None
    subscribers, rate = load
    setup_timeout = 20.0 if options.quick else 60.0
    open_files = subscribers + 10 + _SPARE_FILES
    hard = open_files_hard_limit()
    if hard is not None and open_files > hard:
        return {
            "error": f"{subscribers} subscribers need {open_files} open files; the limit is {hard}"
        }
    started: list[asyncio.subprocess.Process] = []
    redis: list[RedisServer] = []
    try:
        ports, pids = await _start_servers(plan, children, name, logs, started, redis, open_files)
        scenario = Scenario("hub", "fanout", name, 0, subscribers, 1, rate, False)
        dialect = "openline"
        if name.startswith(("python-socketio", "socketio-node")):
            dialect = "socketio"
        elif name == "openline-compact":
            dialect = "compact"
        elif name in ASGI_CONFIGURATIONS:
            dialect = "mounted"
        config = {
            "scenario": scenario.to_json(),
            "port": ports[0],
            "ports": ports,
            "pids": pids,
            "memory_pids": [pid for key, pid in pids.items() if key.startswith("node")],
            "dialect": dialect,
            "framing": True,
            "subprotocol": "openline.v1" if dialect != "socketio" else None,
            "window": options.window,
            "warmup": options.warmup,
            "deadline": options.deadline,
            "cpu": plan.client_cpu,
            "server_cpu": plan.server_cpu,
            "open_files": open_files,
            "setup_timeout": setup_timeout,
        }
        budget = 2 * setup_timeout + options.warmup + options.window + 60
        return await children.run_generator(config, logs, name, budget)
    except RunFailed as exc:
        return {"error": str(exc)}
    finally:
        for process in started:
            await children.stop(process)
        for server in redis:
            children.stop_redis(server)


def load_key(subscribers: int, rate: float) -> str:
    """The results' key of a load: ``"1000x100"``."""
    return f"{subscribers}x{rate:g}"


async def _execute(plan: Plan, stream: TextIO) -> tuple[dict[str, Any], int | None]:
    options = plan.options
    assert options.window is not None and options.warmup is not None
    assert options.repetitions is not None
    runs = plan.runs()
    expected = [4.0 + s / 1000 + options.warmup + options.window for _, s, _, _ in runs]
    progress = Progress(expected, stream)
    results: dict[str, dict[str, list[dict[str, Any] | None]]] = {
        load_key(*load): {name: [None] * options.repetitions for name in plan.configurations}
        for load in options.loads()
    }
    children = ClusterChildren()
    loop = asyncio.get_running_loop()
    interrupt = _Interrupt(children)
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, interrupt, signum)
    started = machine_info()
    done = 0
    try:
        with tempfile.TemporaryDirectory(prefix="openline-hub-") as directory:
            for repetition, subscribers, rate, name in runs:
                key = load_key(subscribers, rate)
                progress.start(f"rep {repetition + 1}/{options.repetitions} {key} {name}")
                began = time.monotonic()
                result: dict[str, Any] = {"error": "interrupted"}
                with contextlib.suppress(Interrupted):
                    result = await _run_one(
                        plan, children, name, (subscribers, rate), pathlib.Path(directory)
                    )
                if interrupt.signal is not None:
                    break
                result["seconds"] = round(time.monotonic() - began, 2)
                results[key][name][repetition] = result
                progress.finish(_summary(result))
                done += 1
    finally:
        children.kill_all()
        progress.close()
        for signum in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
    document = _document(plan, started, results)
    if interrupt.signal is not None:
        document["notes"].append(f"interrupted after {done} of {len(runs)} runs")
    return document, interrupt.signal


def _summary(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"error: {result['error']}"
    metrics = result.get("groups", {}).get("all", {})
    return (
        f"{format_number(metrics.get('deliveries_per_s'))} deliveries/s, "
        f"{format_number(metrics.get('in_time_pct'))} % in time"
    )


def _asgi_versions() -> str:
    """The versions of what serves the hub in FastAPI, as one line."""
    from importlib import metadata

    found = []
    for package in ("fastapi", "starlette", "uvicorn", "hypercorn", "websockets", "wsproto"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} not installed")
    return ", ".join(found)


def _document(
    plan: Plan, started: dict[str, Any], results: dict[str, dict[str, list[dict[str, Any] | None]]]
) -> dict[str, Any]:
    options = plan.options
    notes = list(plan.notes)
    notes += [f"{name}: skipped: {why}" for name, why in plan.skipped.items()]
    if any(name in ASGI_CONFIGURATIONS for name in plan.configurations):
        notes.append(f"the hub in FastAPI: {_asgi_versions()}")
    for key, by_name in results.items():
        for name, runs in by_name.items():
            for repetition, run in enumerate(runs, 1):
                where = f"{key} {name}, rep {repetition}"
                if run and "error" in run:
                    notes.append(f"{where}: {run['error']}")
                notes += [f"{where}: {note}" for note in (run or {}).get("notes", ())]
    return {
        "format": 1,
        "kind": "hub",
        "machine": {
            **started,
            "load_average_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "config": {
            "loads": [list(load) for load in options.loads()],
            "repetitions": options.repetitions,
            "window_s": options.window,
            "warmup_s": options.warmup,
            "deadline_ms": options.deadline * 1000,
            "quick": options.quick,
            "server_cpu": plan.server_cpu,
            "client_cpu": plan.client_cpu,
        },
        "configurations": {name: CONFIGURATIONS[name] for name in plan.configurations},
        "runs": results,
        "notes": notes,
    }


def run(options: Options, stream: TextIO = sys.stderr) -> dict[str, Any]:
    """Run the hub benchmark and write ``hub.json`` and ``hub.md``; return the document.

    Raises:
        ValueError: An option is out of range.
        KeyboardInterrupt: Interrupted; every child process is stopped first.
    """
    options = options.resolved()
    plan = _plan(options)
    for note in plan.notes:
        stream.write(f"note: {note}\n")
    for name, why in plan.skipped.items():
        stream.write(f"skipped {name}: {why}\n")
    cpus = available_cpus()
    pin_to_cpu(plan.client_cpu)
    try:
        document, interrupted = asyncio.run(_execute(plan, stream))
    finally:
        if cpus:
            os.sched_setaffinity(0, cpus)
    for path in write(document, pathlib.Path(options.output or ".")):
        stream.write(f"wrote {path}\n")
    if interrupted is not None:
        stream.write("interrupted: the results above are partial\n")
        raise KeyboardInterrupt
    return document
