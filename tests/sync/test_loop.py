"""The loop thread behind openline.sync, in processes of its own: exit and fork."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from .conftest import TIMEOUT

# Serves an echo server on a loop thread of the script's own, then runs BODY.
PRELUDE = """
import asyncio, os, sys, threading
import openline, openline.sync

server_loop = asyncio.new_event_loop()
threading.Thread(target=server_loop.run_forever, daemon=True).start()

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def start():
    return await openline.serve(echo, "127.0.0.1", 0)

server = asyncio.run_coroutine_threadsafe(start(), server_loop).result(10)
url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
"""


def run_script(body: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )


def test_the_interpreter_exits_with_a_connection_left_open() -> None:
    result = run_script(
        """
        ws = openline.sync.connect(url)
        ws.send("still open at exit")
        print(ws.recv(timeout=5))
        # A daemon thread waits (or is about to wait) in recv() at exit: exiting
        # neither waits for it nor complains.
        waiting = threading.Event()
        def receive():
            waiting.set()
            try:
                ws.recv()
            except BaseException:
                pass
        threading.Thread(target=receive, daemon=True).start()
        waiting.wait(5)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "still open at exit\n"
    assert result.stderr == ""  # nothing logged, no "Task was destroyed" warnings


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_gets_a_loop_thread_of_its_own() -> None:
    result = run_script(
        """
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        with openline.sync.connect(url) as ws:
            ws.send("parent")
            print(ws.recv(timeout=5), flush=True)
        pid = os.fork()
        if pid == 0:
            with openline.sync.connect(url) as ws:
                ws.send("child")
                print(ws.recv(timeout=5), flush=True)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["parent", "child", "child exit 0"]
