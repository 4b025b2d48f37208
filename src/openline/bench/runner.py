"""The benchmark runner behind ``openline bench``: plan, run, summarise, report.

Each run starts a fresh server process pinned to one CPU and a fresh load
generator process pinned to another, waits for the generator's JSON result
within a time budget, and stops both. Every repetition runs every scenario
against every server, rotating the servers' order from one repetition to the
next, so that the peers of a ratio always ran minutes apart at most.

Nothing outlives the runner: its children are stopped when a run ends, when
it fails or times out, on Ctrl-C and on SIGTERM, and Linux kills them if the
runner itself is killed (see :func:`.system.die_with_parent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import sys
import tempfile
import time
from typing import Any, TextIO

from . import report
from .scenarios import Scenario, quick, select
from .servers import SERVERS, unavailable
from .stats import summarize
from .system import (
    available_cpus,
    machine_info,
    open_files_hard_limit,
    pin_to_cpu,
)

__all__ = ["Options", "run"]

#: openline's variants: each is compared with every other server.
SUBJECTS = ("openline", "openline-lowlevel")
#: File descriptors a process needs beyond its connections.
_SPARE_FILES = 256


@dataclasses.dataclass
class Options:
    """What ``openline bench`` was asked to do; see ``openline bench --help``."""

    scenarios: list[str] | None = None
    servers: list[str] | None = None
    repetitions: int | None = None
    window: float | None = None
    warmup: float | None = None
    deadline: float = 0.1
    quick: bool = False
    output: str | None = None
    server_cpu: int | None = 0
    client_cpu: int | None = 1
    idle_connections: int | None = None
    chart: bool = True
    profile: bool = False

    def resolved(self) -> Options:
        """A copy with the defaults that depend on ``quick`` filled in.

        Raises:
            ValueError: A value is out of range or names nothing known.
        """
        quick_mode = self.quick
        resolved = dataclasses.replace(
            self,
            repetitions=self.repetitions or (1 if quick_mode else 3),
            window=self.window or (0.5 if quick_mode else 10.0),
            warmup=self.warmup if self.warmup is not None else (0.2 if quick_mode else 1.0),
            output=self.output or ("bench/results/quick" if quick_mode else "bench/results"),
        )
        select(resolved.scenarios)  # raises for an unknown name
        for name in resolved.servers or ():
            if name not in SERVERS:
                raise ValueError(f"unknown server {name!r}; choose from {', '.join(SERVERS)}")
        if resolved.deadline <= 0:
            raise ValueError(f"deadline must be positive, got {resolved.deadline}")
        return resolved


@dataclasses.dataclass
class Plan:
    """The scenarios, servers and system settings of one invocation."""

    options: Options
    scenarios: list[Scenario]
    servers: list[str]
    server_cpu: int | None
    client_cpu: int | None
    open_files: int
    notes: list[str]

    @property
    def runs(self) -> list[tuple[int, Scenario, str]]:
        """Every (repetition, scenario, server) to run, in order."""
        runs: list[tuple[int, Scenario, str]] = []
        assert self.options.repetitions is not None
        for repetition in range(self.options.repetitions):
            shift = repetition % len(self.servers) if self.servers else 0
            order = self.servers[shift:] + self.servers[:shift]
            for scenario in self.scenarios:
                runs.extend(
                    (repetition, scenario, server)
                    for server in order
                    if _skip_reason(server, scenario) is None
                )
        return runs


def _skip_reason(server: str, scenario: Scenario) -> str | None:
    reason = unavailable(server)
    if reason is not None:
        return reason
    if scenario.deflate and not SERVERS[server].deflate:
        return "no permessage-deflate support"
    return None


def _plan(options: Options) -> Plan:
    notes: list[str] = []
    scenarios = select(options.scenarios)
    if options.quick:
        scenarios = [quick(scenario) for scenario in scenarios]
    if options.idle_connections:
        scenarios = [
            dataclasses.replace(s, connections=options.idle_connections) if s.kind == "idle" else s
            for s in scenarios
        ]
    servers = [name for name in SERVERS if not options.servers or name in options.servers]
    server_cpu, client_cpu = options.server_cpu, options.client_cpu
    cpus = available_cpus()
    if len(cpus) < 2 or server_cpu == client_cpu:
        notes.append(f"not pinned: {len(cpus)} usable CPU(s); server and generator share them")
        server_cpu = client_cpu = None
    else:
        for cpu in (server_cpu, client_cpu):
            if cpu is not None and cpu not in cpus:
                raise ValueError(f"CPU {cpu} is not usable here; usable CPUs: {cpus}")
    needed = max(s.connections * 101 // 100 + 10 for s in scenarios) + _SPARE_FILES
    hard = open_files_hard_limit()
    open_files = needed if hard is None else min(needed, hard)
    if open_files < needed:
        limit = open_files - _SPARE_FILES
        for scenario in scenarios:
            if scenario.connections * 101 // 100 + 10 > limit:
                notes.append(
                    f"{scenario.name}: the hard limit of {hard} open files allows "
                    f"{limit * 100 // 101 - 10} connections, not {scenario.connections}"
                )
        scenarios = [
            dataclasses.replace(s, connections=min(s.connections, limit * 100 // 101 - 10))
            for s in scenarios
        ]
    return Plan(options, scenarios, servers, server_cpu, client_cpu, open_files, notes)


# --- progress ---------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """A one-line progress bar on a terminal; one line per finished run otherwise."""

    WIDTH = 24

    def __init__(self, expected: list[float], stream: TextIO) -> None:
        self._expected = expected
        self._stream = stream
        self._tty = stream.isatty()
        self._done = 0
        self._started = time.monotonic()
        self._label = ""

    def start(self, label: str) -> None:
        self._label = label
        self.draw()

    def finish(self, summary: str) -> None:
        self._done += 1
        if self._tty:
            self.draw()
        else:
            self._stream.write(self._line(summary) + "\n")
            self._stream.flush()

    def close(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()

    def draw(self) -> None:
        if self._tty:
            columns = shutil.get_terminal_size().columns
            self._stream.write("\r" + self._line()[: columns - 1] + "\x1b[K")
            self._stream.flush()

    def _line(self, summary: str = "") -> str:
        total = len(self._expected)
        filled = self.WIDTH * self._done // total if total else self.WIDTH
        elapsed = time.monotonic() - self._started
        done_share = sum(self._expected[: self._done])
        left = sum(self._expected[self._done :])
        eta = left * elapsed / done_share if done_share else left
        bar = "#" * filled + "." * (self.WIDTH - filled)
        result = f": {summary}" if summary else ""
        return (
            f"[{bar}] {self._done}/{total} {self._label}{result}  "
            f"({_clock(elapsed)} elapsed, ~{_clock(eta)} left)"
        )


def _expected_seconds(scenario: Scenario, options: Options) -> float:
    assert options.window is not None and options.warmup is not None
    setup = {"echo": 1.5, "fanout": 3.0, "idle": 3.0}[scenario.kind]
    setup += scenario.connections / 2000
    return setup + (options.window + options.warmup if scenario.kind != "idle" else 1.0)


# --- one run ----------------------------------------------------------------------------


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived: no new process may start."""


class Children:
    """The processes this runner started; all are stopped on the way out."""

    def __init__(self) -> None:
        self.processes: set[asyncio.subprocess.Process] = set()
        self.closed = False

    async def start(self, *args: str, log: TextIO | int) -> asyncio.subprocess.Process:
        """Start ``python *args``.

        Raises:
            Interrupted: :meth:`close` was called.
        """
        if self.closed:
            raise Interrupted
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        self.processes.add(process)
        return process

    async def stop(self, process: asyncio.subprocess.Process, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), grace)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        self.processes.discard(process)

    def close(self) -> None:
        """Kill every child now and refuse to start more."""
        self.closed = True
        self.kill_all()

    def kill_all(self) -> None:
        """The last resort, synchronous: SIGKILL every child still running."""
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        self.processes.clear()


def _tail(path: pathlib.Path, lines: int = 3) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text(errors="replace").strip().splitlines()
        if text:
            return " | ".join(line.strip() for line in text[-lines:])
    return ""


async def _run_one(
    plan: Plan,
    children: Children,
    scenario: Scenario,
    server: str,
    logs: pathlib.Path,
    profile: pathlib.Path | None,
) -> dict[str, Any]:
    """Run ``scenario`` against ``server`` once; return the generator's result or an error."""
    options = plan.options
    assert options.window is not None and options.warmup is not None
    setup_timeout = 20.0 if options.quick else 60.0
    server_config = {
        "server": server,
        "kind": scenario.kind,
        "deflate": scenario.deflate,
        "cpu": plan.server_cpu,
        "open_files": plan.open_files,
        "profile": str(profile) if profile else None,
    }
    server_log = logs / f"{scenario.name}.{server}.server.log"
    generator_log = logs / f"{scenario.name}.{server}.generator.log"
    with open(server_log, "w") as log:
        process = await children.start(
            "-m", "openline.bench.servers", json.dumps(server_config), log=log
        )
    generator = None
    try:
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), setup_timeout)
        except asyncio.TimeoutError:
            line = b""
        if not line.startswith(b"READY "):
            return {"error": f"the server did not start: {_tail(server_log) or 'no output'}"}
        ready = json.loads(line[6:])
        generator_config = {
            "scenario": scenario.to_json(),
            "port": ready["port"],
            "server_pid": process.pid,
            "framing": SERVERS[server].framing,
            "window": options.window,
            "warmup": options.warmup,
            "deadline": options.deadline,
            "cpu": plan.client_cpu,
            "server_cpu": plan.server_cpu,
            "open_files": plan.open_files,
            "setup_timeout": setup_timeout,
        }
        budget = 2 * setup_timeout + options.warmup + options.window + 60
        with open(generator_log, "w") as log:
            generator = await children.start(
                "-m", "openline.bench.loadgen", json.dumps(generator_config), log=log
            )
        try:
            output, _ = await asyncio.wait_for(generator.communicate(), budget)
        except asyncio.TimeoutError:
            return {"error": f"timed out after {budget:.0f} s"}
        lines = output.decode(errors="replace").strip().splitlines()
        if not lines:
            return {"error": f"the generator failed: {_tail(generator_log) or 'no output'}"}
        result: dict[str, Any] = json.loads(lines[-1])
        if "error" in result and _tail(server_log):
            result["error"] += f" (server log: {_tail(server_log)})"
        result["variant"] = ready.get("variant", "")
        return result
    finally:
        if generator is not None:
            await children.stop(generator)
        await children.stop(process, grace=30.0 if profile else 3.0)


def _summary(scenario: Scenario, result: dict[str, Any]) -> str:
    if "error" in result:
        return f"error: {result['error']}"
    metrics = result.get("metrics", {})
    value = metrics.get(scenario.primary)
    return report.format_metric(scenario.primary, value) if value is not None else "no data"


class _Interrupt:
    """Ctrl-C and SIGTERM: kill the children, so that the run in progress ends at once.

    The runner's task is not cancelled: on Python 3.11, ``asyncio.wait_for`` can
    swallow a cancellation that arrives as the awaited child exits, which is
    exactly what happens when Ctrl-C reaches the whole process group.
    """

    def __init__(self, children: Children) -> None:
        self._children = children
        self.signal: int | None = None

    def __call__(self, signum: int) -> None:
        if self.signal is None:
            self.signal = signum
            self._children.close()


async def _execute(plan: Plan, stream: TextIO) -> tuple[dict[str, Any], int | None]:
    options = plan.options
    runs = plan.runs
    progress = Progress([_expected_seconds(scenario, options) for _, scenario, _ in runs], stream)
    results: dict[str, dict[str, list[dict[str, Any] | None]]] = {
        s.name: {server: [None] * (options.repetitions or 1) for server in plan.servers}
        for s in plan.scenarios
    }
    children = Children()
    output = pathlib.Path(options.output or ".")
    profiles = output / "profiles"
    if options.profile:
        profiles.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    interrupt = _Interrupt(children)
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, interrupt, signum)
    started = machine_info()
    done = 0
    try:
        with tempfile.TemporaryDirectory(prefix="openline-bench-") as directory:
            for repetition, scenario, server in runs:
                label = f"rep {repetition + 1}/{options.repetitions} {scenario.name} {server}"
                progress.start(label)
                profile = None
                if options.profile and server in SUBJECTS:
                    profile = profiles / f"{scenario.name}.{server}.rep{repetition + 1}.pstats"
                began = time.monotonic()
                with contextlib.suppress(Interrupted):
                    result = await _run_one(
                        plan, children, scenario, server, pathlib.Path(directory), profile
                    )
                if interrupt.signal is not None:
                    break  # the run was cut short: its numbers mean nothing
                result["seconds"] = round(time.monotonic() - began, 2)
                results[scenario.name][server][repetition] = result
                progress.finish(_summary(scenario, result))
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


def _document(
    plan: Plan, started: dict[str, Any], results: dict[str, dict[str, list[dict[str, Any] | None]]]
) -> dict[str, Any]:
    """Everything measured, summarised, as the JSON document of the results."""
    options = plan.options
    finished_load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    scenarios = []
    for scenario in plan.scenarios:
        runs = results[scenario.name]
        metrics = {
            server: [
                (run or {}).get("metrics") if run and "error" not in run else None
                for run in repetitions
            ]
            for server, repetitions in runs.items()
            if _skip_reason(server, scenario) is None
        }
        medians, ratios = summarize(metrics, SUBJECTS)
        skipped = {
            server: reason
            for server in plan.servers
            if (reason := _skip_reason(server, scenario)) is not None
        }
        scenarios.append(
            {
                **scenario.to_json(),
                "primary": scenario.primary,
                "runs": {server: reps for server, reps in runs.items() if server not in skipped},
                "skipped": skipped,
                "medians": medians,
                "ratios": ratios,
            }
        )
    return {
        "format": 1,
        "machine": {**started, "load_average_after": finished_load},
        "config": {
            "repetitions": options.repetitions,
            "window_s": options.window,
            "warmup_s": options.warmup,
            "deadline_ms": options.deadline * 1000,
            "quick": options.quick,
            "server_cpu": plan.server_cpu,
            "client_cpu": plan.client_cpu,
            "open_files": plan.open_files,
        },
        "servers": {name: SERVERS[name].label for name in plan.servers},
        "notes": list(plan.notes),
        "scenarios": scenarios,
    }


def run(options: Options, stream: TextIO = sys.stderr) -> dict[str, Any]:
    """Run the benchmark and write its results; return the results document.

    Raises:
        ValueError: An option is out of range or names nothing known.
        KeyboardInterrupt: Interrupted; every child process is stopped first.
    """
    options = options.resolved()
    plan = _plan(options)
    for note in plan.notes:
        stream.write(f"note: {note}\n")
    # The runner sleeps during the windows; keep it off the server's CPU, and
    # give the calling process its CPUs back afterwards.
    cpus = available_cpus()
    pin_to_cpu(plan.client_cpu)
    try:
        document, interrupted = asyncio.run(_execute(plan, stream))
    finally:
        if cpus:
            os.sched_setaffinity(0, cpus)
    output = pathlib.Path(options.output or ".")
    written = report.write(document, output, chart=options.chart)
    for path in written:
        stream.write(f"wrote {path}\n")
    if interrupted is not None:
        stream.write("interrupted: the results above are partial\n")
        raise KeyboardInterrupt
    return document
