"""``openline bench --cluster``: cross-node fan-out through Redis against one node in memory.

Three configurations run in every repetition, in an order that rotates from
one repetition to the next:

* ``memory``: one hub node with the memory engine holds every subscriber;
* ``redis``: a private ``redis-server`` and two hub nodes on it (the same key
  prefix, so one hub), the subscribers split evenly between them; the
  publisher is on node 1, so node 2's subscribers receive every message
  through Redis;
* ``ceiling``: the raw TCP relay of :mod:`.servers` fed with ready-made hub
  messages, to show how much the load generator itself can take.

Each node (:mod:`.hubnode`), the relay and Redis are processes pinned to the
server CPU; the load generator (:mod:`.hubload`) is pinned to the client CPU.
Every run has a time budget; Ctrl-C or SIGTERM kills every child at once and
the partial results are written; Linux kills the children if this process is
killed (``PR_SET_PDEATHSIG``, Redis included). The results go to
``cluster.json`` and ``cluster.md``; the ratios compare ``redis`` with
``memory`` inside each repetition, then take the median.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import secrets
import signal
import sys
import tempfile
import time
from typing import Any, TextIO

from .cluster_report import CONFIGURATIONS, Results, medians, ratios, write
from .redis_server import RedisServer
from .report import format_number
from .runner import Children, Interrupted, Progress, _Interrupt, _tail
from .scenarios import Scenario
from .system import available_cpus, machine_info, open_files_hard_limit, pin_to_cpu

__all__ = ["Options", "run"]

#: File descriptors a process needs beyond its connections.
_SPARE_FILES = 256


@dataclasses.dataclass
class Options:
    """What ``openline bench --cluster`` was asked to do; see ``openline bench --help``."""

    subscribers: int | None = None
    rate: float = 100.0
    repetitions: int | None = None
    window: float | None = None
    warmup: float | None = None
    deadline: float = 0.1
    quick: bool = False
    output: str | None = None
    server_cpu: int | None = 0
    client_cpu: int | None = 1
    ceiling: bool = True

    def resolved(self) -> Options:
        """A copy with the defaults that depend on ``quick`` filled in.

        Raises:
            ValueError: A value is out of range.
        """
        quick_mode = self.quick
        resolved = dataclasses.replace(
            self,
            subscribers=self.subscribers or (100 if quick_mode else 2000),
            repetitions=self.repetitions or (1 if quick_mode else 3),
            window=self.window or (0.5 if quick_mode else 10.0),
            warmup=self.warmup if self.warmup is not None else (0.2 if quick_mode else 1.0),
            output=self.output or ("bench/results/quick" if quick_mode else "bench/results"),
        )
        assert resolved.subscribers is not None
        if resolved.subscribers < 2:
            raise ValueError(f"subscribers must be at least 2, got {resolved.subscribers}")
        if resolved.rate <= 0:
            raise ValueError(f"rate must be positive, got {resolved.rate}")
        if resolved.deadline <= 0:
            raise ValueError(f"deadline must be positive, got {resolved.deadline}")
        return resolved


@dataclasses.dataclass
class Plan:
    """The configurations and system settings of one invocation."""

    options: Options
    configurations: list[str]
    server_cpu: int | None
    client_cpu: int | None
    open_files: int
    notes: list[str]

    @property
    def runs(self) -> list[tuple[int, str]]:
        """Every (repetition, configuration) to run, rotating the order per repetition."""
        runs: list[tuple[int, str]] = []
        assert self.options.repetitions is not None
        names = self.configurations
        for repetition in range(self.options.repetitions):
            shift = repetition % len(names)
            runs.extend((repetition, name) for name in names[shift:] + names[:shift])
        return runs


def _plan(options: Options) -> Plan:
    notes: list[str] = []
    names = [name for name in CONFIGURATIONS if options.ceiling or name != "ceiling"]
    server_cpu, client_cpu = options.server_cpu, options.client_cpu
    cpus = available_cpus()
    if len(cpus) < 2 or server_cpu == client_cpu:
        notes.append(f"not pinned: {len(cpus)} usable CPU(s); servers and generator share them")
        server_cpu = client_cpu = None
    else:
        for cpu in (server_cpu, client_cpu):
            if cpu is not None and cpu not in cpus:
                raise ValueError(f"CPU {cpu} is not usable here; usable CPUs: {cpus}")
    assert options.subscribers is not None
    needed = options.subscribers + 10 + _SPARE_FILES
    hard = open_files_hard_limit()
    open_files = needed if hard is None else min(needed, hard)
    if open_files < needed:
        raise ValueError(
            f"{options.subscribers} subscribers need {needed} open files; the hard limit is {hard}"
        )
    return Plan(options, names, server_cpu, client_cpu, open_files, notes)


# --- processes --------------------------------------------------------------------------


class RunFailed(Exception):
    """A process of the run didn't start or the generator failed: the run's error."""


class ClusterChildren(Children):
    """The runner's :class:`~.runner.Children`, plus the ``redis-server`` processes."""

    def __init__(self) -> None:
        super().__init__()
        self.redis: set[RedisServer] = set()

    def start_redis(self, cpu: int | None) -> RedisServer:
        """Start a private ``redis-server`` on a free port, pinned to ``cpu``.

        Raises:
            Interrupted: :meth:`close` was called.
            RunFailed: It didn't start.
        """
        if self.closed:
            raise Interrupted
        try:
            server = RedisServer(cpu=cpu, orphan=False)
        except FileNotFoundError as exc:
            raise RunFailed(str(exc)) from None
        self.redis.add(server)
        try:
            server.start()
        except RuntimeError as exc:
            raise RunFailed(str(exc)) from None
        return server

    def stop_redis(self, server: RedisServer) -> None:
        """Stop ``server`` and remove its directory."""
        server.close()
        self.redis.discard(server)

    async def run_generator(
        self, config: dict[str, Any], logs: pathlib.Path, name: str, budget: float
    ) -> dict[str, Any]:
        """Run :mod:`.hubload` with ``config`` for configuration ``name``; its result.

        The result is the generator's last line of JSON, or ``{"error": ...}`` when it
        timed out after ``budget`` seconds, printed nothing, or reported an error (then
        with the tails of the run's logs in ``logs``). The generator is stopped either way.
        """
        log_path = logs / f"{name}.generator.log"
        with open(log_path, "w") as log:
            generator = await self.start(
                "-m", "openline.bench.hubload", json.dumps(config), log=log
            )
        try:
            try:
                output, _ = await asyncio.wait_for(generator.communicate(), budget)
            except asyncio.TimeoutError:
                return {"error": f"timed out after {budget:.0f} s"}
        finally:
            await self.stop(generator)
        lines = output.decode(errors="replace").strip().splitlines()
        if not lines:
            return {"error": f"the generator failed: {_tail(log_path) or 'no output'}"}
        result: dict[str, Any] = json.loads(lines[-1])
        if "error" in result:
            tails = [f"{p.stem}: {t}" for p in logs.glob(f"{name}.*.log") if (t := _tail(p))]
            if tails:
                result["error"] += f" ({'; '.join(tails)})"
        return result

    def kill_all(self) -> None:
        super().kill_all()
        for server in self.redis:
            server.close()
        self.redis.clear()


async def _start(
    children: Children, module: str, config: dict[str, Any], log_path: pathlib.Path, timeout: float
) -> tuple[asyncio.subprocess.Process, int]:
    """Start ``python -m module config`` and wait for its ``READY`` line; return it and its port.

    Raises:
        Interrupted: The run is being interrupted.
        RunFailed: It didn't print ``READY`` within ``timeout`` seconds.
    """
    with open(log_path, "w") as log:
        process = await children.start("-m", module, json.dumps(config), log=log)
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


async def _start_servers(
    plan: Plan,
    children: ClusterChildren,
    name: str,
    logs: pathlib.Path,
    started: list[asyncio.subprocess.Process],
    redis: list[RedisServer],
) -> tuple[list[int], dict[str, int]]:
    """Start configuration ``name``'s servers; return their ports and process ids by name."""
    timeout = 20.0 if plan.options.quick else 60.0
    base = {"cpu": plan.server_cpu, "open_files": plan.open_files}
    if name == "ceiling":
        config = {"server": "raw", "kind": "fanout", "deflate": False, "profile": None, **base}
        process, port = await _start(
            children, "openline.bench.servers", config, logs / "ceiling.relay.log", timeout
        )
        started.append(process)
        return [port], {"relay": process.pid}
    engine: dict[str, Any] = {"engine": "memory"}
    count = 1
    pids: dict[str, int] = {}
    if name == "redis":
        server = children.start_redis(plan.server_cpu)
        redis.append(server)
        assert server.process is not None
        pids["redis"] = server.process.pid
        engine = {"engine": "redis", "url": server.url, "prefix": f"bench-{secrets.token_hex(4)}"}
        count = 2
    ports = []
    for index in range(1, count + 1):
        process, port = await _start(
            children,
            "openline.bench.hubnode",
            {**engine, **base},
            logs / f"{name}.node{index}.log",
            timeout,
        )
        started.append(process)
        pids[f"node{index}"] = process.pid
        ports.append(port)
    return ports, pids


async def _run_one(
    plan: Plan, children: ClusterChildren, name: str, logs: pathlib.Path
) -> dict[str, Any]:
    """Run configuration ``name`` once; return the generator's result or an error."""
    options = plan.options
    assert options.window is not None and options.warmup is not None
    assert options.subscribers is not None
    setup_timeout = 20.0 if options.quick else 60.0
    started: list[asyncio.subprocess.Process] = []
    redis: list[RedisServer] = []
    try:
        ports, pids = await _start_servers(plan, children, name, logs, started, redis)
        scenario = Scenario(
            "cluster", "fanout", name, 0, options.subscribers, 1, options.rate, False
        )
        generator_config = {
            "scenario": scenario.to_json(),
            "port": ports[0],
            "ports": ports,
            "pids": pids,
            "framing": name != "ceiling",
            "subprotocol": "openline.v1" if name != "ceiling" else None,
            "window": options.window,
            "warmup": options.warmup,
            "deadline": options.deadline,
            "cpu": plan.client_cpu,
            "server_cpu": plan.server_cpu,
            "open_files": plan.open_files,
            "setup_timeout": setup_timeout,
        }
        budget = 2 * setup_timeout + options.warmup + options.window + 60
        return await children.run_generator(generator_config, logs, name, budget)
    except RunFailed as exc:
        return {"error": str(exc)}
    finally:
        for process in started:
            await children.stop(process)
        for server in redis:
            children.stop_redis(server)


def _summary(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"error: {result['error']}"
    metrics = result.get("groups", {}).get("all", {})
    deliveries = format_number(metrics.get("deliveries_per_s"))
    return f"{deliveries} deliveries/s, p99 {format_number(metrics.get('p99_ms'))} ms"


async def _execute(plan: Plan, stream: TextIO) -> tuple[dict[str, Any], int | None]:
    options = plan.options
    assert options.window is not None and options.warmup is not None
    assert options.subscribers is not None and options.repetitions is not None
    runs = plan.runs
    expected = 4.0 + options.subscribers / 1000 + options.warmup + options.window
    progress = Progress([expected] * len(runs), stream)
    results: dict[str, list[dict[str, Any] | None]] = {
        name: [None] * options.repetitions for name in plan.configurations
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
        with tempfile.TemporaryDirectory(prefix="openline-cluster-") as directory:
            for repetition, name in runs:
                progress.start(f"rep {repetition + 1}/{options.repetitions} {name}")
                began = time.monotonic()
                result: dict[str, Any] = {"error": "interrupted"}
                with contextlib.suppress(Interrupted):
                    result = await _run_one(plan, children, name, pathlib.Path(directory))
                if interrupt.signal is not None:
                    break  # the run was cut short: its numbers mean nothing
                result["seconds"] = round(time.monotonic() - began, 2)
                results[name][repetition] = result
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


def _document(plan: Plan, started: dict[str, Any], results: Results) -> dict[str, Any]:
    options = plan.options
    notes = list(plan.notes)
    for name, runs in results.items():
        for repetition, run in enumerate(runs, 1):
            if run and "error" in run:
                notes.append(f"{name}, rep {repetition}: {run['error']}")
            notes += [f"{name}, rep {repetition}: {note}" for note in (run or {}).get("notes", ())]
    return {
        "format": 1,
        "kind": "cluster",
        "machine": {
            **started,
            "load_average_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "config": {
            "subscribers": options.subscribers,
            "rate": options.rate,
            "repetitions": options.repetitions,
            "window_s": options.window,
            "warmup_s": options.warmup,
            "deadline_ms": options.deadline * 1000,
            "quick": options.quick,
            "server_cpu": plan.server_cpu,
            "client_cpu": plan.client_cpu,
            "open_files": plan.open_files,
        },
        "configurations": {name: CONFIGURATIONS[name] for name in plan.configurations},
        "runs": results,
        "medians": medians(results),
        "ratios": ratios(results),
        "notes": notes,
    }


def run(options: Options, stream: TextIO = sys.stderr) -> dict[str, Any]:
    """Run the cluster benchmark and write its results; return the results document.

    Raises:
        ValueError: An option is out of range.
        KeyboardInterrupt: Interrupted; every child process is stopped first.
    """
    options = options.resolved()
    plan = _plan(options)
    for note in plan.notes:
        stream.write(f"note: {note}\n")
    # This process sleeps during the windows; keep it off the servers' CPU.
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
