"""What the benchmark needs from the operating system (Linux first, degrading elsewhere).

CPU pinning, the open-file limit, a child's death when its parent dies, and
readings of another process's CPU time and resident memory from ``/proc``.
Every helper works without ``/proc`` or ``sched_setaffinity``: it then
returns ``None`` or does nothing, and the report says what was not measured.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.metadata
import os
import platform
import signal
import subprocess
import sys
import time
from typing import Any

__all__ = [
    "available_cpus",
    "core_times",
    "cpu_seconds",
    "die_with_parent",
    "machine_info",
    "pin_to_cpu",
    "raise_open_files_limit",
    "rss_bytes",
]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PR_SET_PDEATHSIG = 1

#: Distributions whose versions go into the report, in this order.
LIBRARIES = ("openline", "websockets", "aiohttp", "picows", "uvloop", "aiofastnet", "matplotlib")


def available_cpus() -> list[int]:
    """The CPUs this process may run on, sorted; ``[]`` when the OS can't tell."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    return sorted(os.sched_getaffinity(0))


def pin_to_cpu(cpu: int | None) -> bool:
    """Pin the calling process (and the threads it starts later) to one CPU.

    Returns:
        Whether the process is pinned; ``cpu=None`` or a system without
        ``sched_setaffinity`` leaves it unpinned.
    """
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return False
    os.sched_setaffinity(0, {cpu})
    return True


def raise_open_files_limit(wanted: int) -> int:
    """Raise the soft limit on open files towards ``wanted``, up to the hard limit.

    Returns:
        The soft limit in force afterwards (``wanted`` if the OS has no such limit).
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def open_files_hard_limit() -> int | None:
    """The hard limit on open files, or ``None`` if there is none."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux
        return None
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return None if hard == resource.RLIM_INFINITY else hard


def die_with_parent() -> None:
    """Ask Linux to kill this process with SIGKILL when its parent exits.

    A benchmark child must never outlive the runner, even when the runner is
    killed with SIGKILL and can't clean up. Elsewhere this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    if name is None:  # pragma: no cover - every Linux has a libc
        return
    libc = ctypes.CDLL(name, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before prctl: don't linger
        os._exit(1)


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of process ``pid`` and all its threads, in seconds.

    Resolution is one clock tick (10 ms on most systems). ``None`` without ``/proc``.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after it.
    fields = stat[stat.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLOCK_TICKS


def core_times(cpu: int) -> tuple[float, float] | None:
    """Busy and total seconds of one CPU since boot, from ``/proc/stat``.

    Busy time counts everything but idle and I/O wait: every process, and the
    kernel's interrupt and softirq work, which no process is charged for (on
    loopback, much of TCP runs there). ``None`` without ``/proc`` or that CPU.
    """
    prefix = f"cpu{cpu} ".encode()
    try:
        with open("/proc/stat", "rb") as file:
            for line in file:
                if line.startswith(prefix):
                    ticks = [int(field) for field in line.split()[1:]]
                    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
                    total = sum(ticks[:8])  # guest time is already in user time
                    return (total - idle) / _CLOCK_TICKS, total / _CLOCK_TICKS
    except OSError:
        return None
    return None


def rss_bytes(pid: int) -> int | None:
    """Resident set size of process ``pid`` in bytes; ``None`` without ``/proc``."""
    try:
        with open(f"/proc/{pid}/status", "rb") as file:
            for line in file:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None  # pragma: no cover - a kernel thread has no VmRSS


def _cpu_model() -> str:
    with (
        contextlib.suppress(OSError),
        open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file,
    ):
        for line in file:
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """The commit of the openline checkout being measured, when run from one."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        result = subprocess.run(
            ["git", "-C", here, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return result.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def machine_info() -> dict[str, Any]:
    """Describe the machine and software the benchmark runs on, for the report."""
    from ..protocol.mask import SPEEDUPS

    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "usable_cpus": available_cpus(),
        "system": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "libraries": {name: _version(name) for name in LIBRARIES},
        "openline_speedups": SPEEDUPS,
        "openline_commit": _git_commit(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
