"""``openline serve --redis URL --workers N``: N processes on one port, and their supervisor."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from ..redis_server import RedisServer, free_port
from .nodes import CLI, MS, TIMEOUT, Node, bounded, die_with_parent, need_redis_package, wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


async def start_supervisor(redis_url: str, workers: int) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--redis", redis_url, "--port", "0", "--workers", str(workers),
        "--no-ticker", "--presence-ttl", "1.5",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=die_with_parent,
    )  # fmt: skip
    assert process.stdout is not None
    out = ""
    while "workers" not in out:
        line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
        assert line, f"the supervisor exited: {out}"
        out += line.decode()
    return process, out


@bounded(30)
async def test_workers_share_one_port_print_it_once_and_are_restarted(
    redis_server: RedisServer,
) -> None:
    need_redis_package()
    supervisor, out = await start_supervisor(redis_server.url, 2)
    assert supervisor.stderr is not None
    try:
        assert out.count("open http://") == 1, out
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", out)
        assert match, out
        assert "2 processes on one port" in out
        node = Node(redis_server.url)
        node.port = int(match.group(1))
        workers = children(supervisor.pid)
        assert len(workers) == 2
        # Connections spread over both workers: each is a node of its own.
        seen = set()
        for _ in range(40):
            status, health = await node.health()
            assert status == 200 and health["engine"]["engine"] == "redis"
            seen.add(health["engine"]["node"])
            if len(seen) == 2:
                break
        assert len(seen) == 2, seen

        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        err = b""
        while b"is back" not in err:
            err += await asyncio.wait_for(supervisor.stderr.readline(), TIMEOUT)
        assert f"(pid {victim}) died with signal SIGKILL; starting it again".encode() in err
        assert len(children(supervisor.pid)) == 2
        assert (await node.health())[0] == 200

        supervisor.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(supervisor.wait(), TIMEOUT) == 0
        assert not [pid for pid in children(supervisor.pid) if alive(pid)]
    finally:
        if supervisor.returncode is None:
            supervisor.kill()
            await supervisor.wait()


@bounded(30)
async def test_workers_stop_when_their_supervisor_is_killed(redis_server: RedisServer) -> None:
    need_redis_package()
    supervisor, _ = await start_supervisor(redis_server.url, 2)
    workers = children(supervisor.pid)
    assert len(workers) == 2
    supervisor.kill()
    await supervisor.wait()
    await wait_for(lambda: not any(alive(pid) for pid in workers), TIMEOUT)


@pytest.mark.parametrize("workers", ["1", "3"])
def test_serve_with_an_unreachable_redis_exits_1_in_one_line(workers: str) -> None:
    need_redis_package()
    url = f"redis://127.0.0.1:{free_port()}/0"
    start = time.monotonic()
    result = subprocess.run(
        [*CLI, "serve", "--redis", url, "--port", "0", "--workers", workers],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("openline serve: error: can't reach Redis at 127.0.0.1:"), lines
    assert result.stdout == ""
    assert time.monotonic() - start < 10000 * MS


def test_workers_refuse_a_port_in_use_in_one_line(redis_server: RedisServer) -> None:
    need_redis_package()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*CLI, "serve", "--redis", redis_server.url, "--port", str(port), "--workers", "2"],
            capture_output=True, text=True, timeout=TIMEOUT,
        )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], result.stderr
