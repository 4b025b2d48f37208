"""Readings of processes and CPUs from the operating system."""

from __future__ import annotations

import os
import sys

import pytest

from openline.bench import system

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@linux
def test_cpu_seconds_of_this_process_grow() -> None:
    before = system.cpu_seconds(os.getpid())
    deadline = system.cpu_seconds(os.getpid())
    while deadline == before:  # burn a clock tick
        deadline = system.cpu_seconds(os.getpid())
    assert before is not None and deadline is not None and deadline > before


@linux
def test_rss_of_this_process_is_megabytes() -> None:
    rss = system.rss_bytes(os.getpid())
    assert rss is not None and rss > 1_000_000


@linux
def test_core_busy_time_is_part_of_its_total() -> None:
    times = system.core_times(system.available_cpus()[0])
    assert times is not None
    busy, total = times
    assert 0 < busy <= total


def test_readings_of_a_missing_process_or_cpu_are_none() -> None:
    assert system.cpu_seconds(2**22 + 1) is None
    assert system.rss_bytes(2**22 + 1) is None
    assert system.core_times(100000) is None


def test_open_files_limit_is_never_lowered() -> None:
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert system.raise_open_files_limit(16) >= soft


def test_machine_info_names_the_libraries_and_the_cpu() -> None:
    info = system.machine_info()
    assert info["libraries"]["openline"]
    assert info["cpu"] and info["cpus"] >= 1
    assert isinstance(info["openline_speedups"], bool)
