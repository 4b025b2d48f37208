"""The sqlite engine beyond the shared contract: what survives a restart, clean or killed."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import urllib.request
from typing import Any

import pytest

import openline
from openline.exceptions import BackendUnavailable
from openline.hub.backends.base import Message
from openline.hub.backends.sqlite import SqliteEngine, check_database, data_file

from ..timing import MS

CLI = [sys.executable, "-m", "openline"]
TIMEOUT = 30000 * MS


async def _publish_ten(engine: SqliteEngine) -> str:
    epochs = set()
    for n in range(10):
        result = await engine.publish("room", f"m{n}", msg_id=f"id{n}", meta={"user": "ada"})
        assert result.offset == n + 1
        epochs.add(result.epoch)
    assert len(epochs) == 1
    return epochs.pop()


async def _assert_intact(engine: SqliteEngine, epoch: str) -> None:
    """Same epoch, same offsets, history and idempotency ids as before the restart."""
    head = await engine.history("room")
    assert (head.epoch, head.last_offset, head.first_offset) == (epoch, 10, 1)
    after = await engine.history("room", since=7, epoch=epoch)
    assert after.recovered is True
    assert [(m.offset, m.data, m.meta) for m in after.messages] == [
        (8, "m7", {"user": "ada"}),
        (9, "m8", {"user": "ada"}),
        (10, "m9", {"user": "ada"}),
    ]
    retried = await engine.publish("room", "m9 again", msg_id="id9")
    assert (retried.epoch, retried.offset, retried.duplicate) == (epoch, 10, True)
    fresh = await engine.publish("room", "m10", msg_id="id10")
    assert (fresh.epoch, fresh.offset, fresh.duplicate) == (epoch, 11, False)


async def test_a_clean_restart_keeps_epoch_offsets_history_and_ids(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "hub.db")
    engine = SqliteEngine(path)
    epoch = await _publish_ten(engine)
    await engine.close()
    reopened = SqliteEngine(path)
    try:
        await _assert_intact(reopened, epoch)
    finally:
        await reopened.close()


_KILLED_WRITER = """
import asyncio, sys
from openline.hub.backends.sqlite import SqliteEngine

async def main():
    engine = SqliteEngine(sys.argv[1])
    for n in range(10):
        await engine.publish("room", f"m{n}", msg_id=f"id{n}", meta={"user": "ada"})
    print((await engine.history("room")).epoch, flush=True)
    await asyncio.sleep(3600)  # killed long before

asyncio.run(main())
"""


async def test_a_killed_process_loses_nothing_it_acknowledged(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "hub.db")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(_KILLED_WRITER),
        path,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout is not None
    try:
        epoch = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode().strip()
    finally:
        proc.kill()  # SIGKILL: no close, no checkpoint; the WAL holds the commits
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert os.path.exists(path + "-wal")
    reopened = SqliteEngine(path)
    try:
        await _assert_intact(reopened, epoch)
    finally:
        await reopened.close()


async def test_windows_still_bound_history_after_a_restart(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "hub.db")
    now = [1000.0]
    engine = SqliteEngine(path, history_size=3, history_ttl=10.0, clock=lambda: now[0])
    for n in range(5):
        await engine.publish("room", n.to_bytes(1, "big"))
    await engine.close()
    now[0] = 1005.0
    engine = SqliteEngine(path, history_size=3, history_ttl=10.0, clock=lambda: now[0])
    try:
        head = await engine.history("room", since=0, epoch="x")
        assert (head.first_offset, head.last_offset) == (3, 5)
        assert [m.data for m in head.messages] == [b"\x02", b"\x03", b"\x04"]
        now[0] = 1010.5  # every message is older than history_ttl
        empty = await engine.history("room", since=5, epoch=head.epoch)
        assert (empty.first_offset, empty.last_offset, empty.recovered) == (6, 5, True)
    finally:
        await engine.close()


async def test_presence_starts_empty_after_a_restart(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "hub.db")
    engine = SqliteEngine(path)
    assert await engine.presence_join("room", "ada", "c1", "{}") is True
    assert (await engine.presence_snapshot("room")).count == 1
    await engine.close()
    engine = SqliteEngine(path)
    try:
        assert (await engine.presence_snapshot("room")).count == 0
    finally:
        await engine.close()


async def test_the_sweep_forgets_idle_empty_channels_only(tmp_path: pathlib.Path) -> None:
    now = [0.0]
    engine = SqliteEngine(
        str(tmp_path / "hub.db"), history_ttl=1.0, channel_ttl=5.0, clock=lambda: now[0]
    )
    try:
        old = (await engine.publish("old", "x")).epoch
        kept = (await engine.publish("kept", "x")).epoch
        await engine.subscribe("kept", lambda event: None)
        now[0] = 10.0
        forgotten = await engine.sweep()
        assert forgotten == 1
        assert (await engine.history("kept")).epoch == kept
        assert (await engine.history("old")).epoch != old  # a new channel: resumes get a gap
    finally:
        await engine.close()


async def test_messages_are_delivered_in_offset_order_under_concurrent_publishes(
    tmp_path: pathlib.Path,
) -> None:
    engine = SqliteEngine(str(tmp_path / "hub.db"))
    seen: list[int] = []
    await engine.subscribe(
        "room", lambda e: seen.append(e.offset) if isinstance(e, Message) else None
    )
    try:
        results = await asyncio.gather(*(engine.publish("room", str(n)) for n in range(200)))
        assert sorted(r.offset for r in results) == list(range(1, 201))
        assert seen == list(range(1, 201))
    finally:
        await engine.close()


async def test_a_second_process_on_the_same_file_is_refused(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "hub.db")
    engine = SqliteEngine(path)
    await engine.start()
    try:
        with pytest.raises(ValueError, match="in use by another process"):
            await asyncio.to_thread(check_database, path, timeout=0.1)
    finally:
        await engine.close()
    await asyncio.to_thread(check_database, path)  # free again


async def test_a_file_that_is_not_a_database_is_refused_with_backend_unavailable(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are not the pages you are looking for" * 100)
    engine = SqliteEngine(str(path))
    try:
        with pytest.raises(BackendUnavailable, match="is not an sqlite database"):
            await engine.start()
        assert engine.health()["status"] == "degraded"
        assert engine.health()["errors"] == 1
    finally:
        await engine.close()


def test_a_database_of_another_application_is_refused(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "other.db")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA application_id = 42")
    with pytest.raises(ValueError, match="of another application"):
        check_database(path)


def test_data_file_names_a_file_in_a_directory(tmp_path: pathlib.Path) -> None:
    assert data_file(f"{tmp_path}/state/") == f"{tmp_path}/state/openline.db"
    assert (tmp_path / "state").is_dir()
    assert data_file(str(tmp_path / "state")) == f"{tmp_path}/state/openline.db"
    assert data_file(str(tmp_path / "a" / "b.db")) == str(tmp_path / "a" / "b.db")
    assert (tmp_path / "a").is_dir()


def test_bad_arguments_raise_value_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="path must be a non-empty str"):
        SqliteEngine("")
    with pytest.raises(ValueError, match="channel_ttl"):
        SqliteEngine(str(tmp_path / "x.db"), channel_ttl=0)


# --- openline serve --data, killed and started again ------------------------------------


class _Serve:
    """``openline serve --data PATH`` in a process."""

    def __init__(self, data: str) -> None:
        self.data = data
        self.port = 0

    async def start(self) -> None:
        # No --secret: the key that signs the tokens is kept next to the database.
        env = {k: v for k, v in os.environ.items() if k != "OPENLINE_SECRET"}
        self.proc = await asyncio.create_subprocess_exec(
            *CLI, "serve", "--port", "0", "--no-ticker", "--data", self.data,
            stdout=subprocess.PIPE, env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), TIMEOUT)).decode()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        self.port = int(match.group(1))

    async def stop(self, signum: int) -> None:
        self.proc.send_signal(signum)
        await asyncio.wait_for(self.proc.wait(), TIMEOUT)

    async def get_json(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"

        def fetch() -> Any:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
                return json.loads(response.read())

        return await asyncio.to_thread(fetch)

    async def token(self, name: str) -> str:
        token: str = (await self.get_json(f"/api/session?name={name}"))["token"]
        return token

    async def dial(self, token: str) -> Any:
        ws = await openline.connect(
            f"ws://127.0.0.1:{self.port}/ws",
            subprotocols=["openline.v1"],
            additional_headers={"Authorization": f"Bearer {token}"},
        )
        assert (await _receive(ws, "welcome"))["type"] == "welcome"
        return ws


async def _receive(ws: Any, kind: str) -> dict[str, Any]:
    """The next frame of type ``kind``, skipping the others (presence, etc.)."""
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if frame["type"] == kind:
            return frame


async def test_serve_data_killed_and_restarted_resumes_with_nothing_lost(
    tmp_path: pathlib.Path,
) -> None:
    server = _Serve(f"{tmp_path}/state/")
    await server.start()
    try:
        token = await server.token("ada")
        ws = await server.dial(token)
        await ws.send(json.dumps({"type": "subscribe", "ch": "room"}))
        await _receive(ws, "subscribed")
        acks = []
        for n in range(5):
            await ws.send(json.dumps({"type": "publish", "ch": "room", "data": n, "id": f"m{n}"}))
            acks.append(await _receive(ws, "ack"))
        assert [a["offset"] for a in acks] == [1, 2, 3, 4, 5]
        epoch = acks[0]["epoch"]
    finally:
        await server.stop(signal.SIGKILL)
    assert server.proc.returncode == -signal.SIGKILL
    await server.start()
    try:
        key = tmp_path / "state" / "openline.db.key"
        assert key.stat().st_mode & 0o777 == 0o600
        ws = await server.dial(token)  # signed with the key kept next to the file: same user
        since = {"epoch": epoch, "offset": 2}
        await ws.send(json.dumps({"type": "subscribe", "ch": "room", "since": since}))
        subscribed = await _receive(ws, "subscribed")
        print(f"after SIGKILL and restart: {subscribed}")
        assert (subscribed["epoch"], subscribed["offset"]) == (epoch, 5)
        assert (subscribed["recovered"], subscribed["missed"]) == (True, 3)
        recovered = [await _receive(ws, "message") for _ in range(3)]
        assert [(m["offset"], m["data"]) for m in recovered] == [(3, 2), (4, 3), (5, 4)]
        await ws.send(json.dumps({"type": "publish", "ch": "room", "data": 4, "id": "m4"}))
        again = await _receive(ws, "ack")
        assert (again["offset"], again["duplicate"]) == (5, True)
        health = await server.get_json("/healthz")
        assert (health["status"], health["engine"]["engine"]) == ("ok", "sqlite")
        assert health["engine"]["path"] == f"{tmp_path}/state/openline.db"
        await ws.close()
    finally:
        await server.stop(signal.SIGINT)
    assert server.proc.returncode == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: (p / "junk.db").write_bytes(b"no pages here" * 100),
            "is not an sqlite database",
        ),
        (lambda p: (p / "file").write_bytes(b""), "a file is in the way"),
    ],
)
def test_serve_with_unusable_data_prints_one_line(
    tmp_path: pathlib.Path, make: Any, message: str
) -> None:
    make(tmp_path)
    target = tmp_path / "junk.db" if "sqlite" in message else tmp_path / "file" / "x.db"
    result = subprocess.run(
        [*CLI, "serve", "--port", "0", "--data", str(target)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("openline serve: error: --data")
    assert message in lines[0]


async def test_a_failing_call_in_a_batch_leaves_the_others_stored(tmp_path: pathlib.Path) -> None:
    engine = SqliteEngine(str(tmp_path / "hub.db"))
    try:
        bad: Any = {"not": "bytes"}  # sqlite can't store a dict: that publish fails alone
        results = await asyncio.gather(
            *(engine.publish("room", bad if n == 5 else f"m{n}") for n in range(10)),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        assert len(failed) == 1 and isinstance(failed[0], BackendUnavailable)
        stored = await engine.history("room", since=0, epoch=(await engine.history("room")).epoch)
        assert [m.data for m in stored.messages] == [f"m{n}" for n in range(10) if n != 5]
        assert [m.offset for m in stored.messages] == list(range(1, 10))
        assert engine.health()["errors"] == 1
    finally:
        await engine.close()


async def test_a_cancelled_publish_is_still_delivered_once_stored(tmp_path: pathlib.Path) -> None:
    engine = SqliteEngine(str(tmp_path / "hub.db"))
    seen: list[Any] = []
    await engine.subscribe("room", seen.append)
    try:
        await engine.start()
        task = asyncio.create_task(engine.publish("room", "x"))
        await asyncio.sleep(0)  # queued on the writer's thread
        task.cancel()
        head = await engine.history("room")  # runs after the publish: same thread, in order
        assert head.last_offset == 1
        assert [m.offset for m in seen if isinstance(m, Message)] == [1]
    finally:
        await engine.close()


def test_a_short_key_file_is_refused_in_one_line(tmp_path: pathlib.Path) -> None:
    (tmp_path / "hub.db.key").write_text("short\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENLINE_SECRET"}
    result = subprocess.run(
        [*CLI, "serve", "--port", "0", "--data", str(tmp_path / "hub.db")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"openline serve: error: --data: {tmp_path}/hub.db.key holds a key of 5 bytes, less than 16"
    ]


def test_a_database_of_a_newer_layout_is_refused(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "newer.db")
    check_database(path)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(ValueError, match="has layout 99, newer than this openline's 1"):
        check_database(path)


async def test_a_closed_engine_refuses_calls(tmp_path: pathlib.Path) -> None:
    engine = SqliteEngine(str(tmp_path / "hub.db"))
    await engine.publish("room", "x")
    await engine.close()
    await engine.close()  # twice: nothing more
    assert engine.health()["status"] == "closed"
    with pytest.raises(RuntimeError, match="the engine is closed"):
        await engine.publish("room", "y")
    with pytest.raises(RuntimeError, match="the engine is closed"):
        await engine.subscribe("room", lambda event: None)
