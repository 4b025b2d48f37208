"""The README's promise, as a new user tries it: ``make serve`` (``openline serve --data``),
two pages chatting, the server killed and started again: nothing lost, nothing twice."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
from typing import Any

from tests.scale.nodes import die_with_parent

from .conftest import Pages
from .test_demo import shown_messages, shown_offsets

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips every test, with the reason (failing in CI)
    expect = None  # type: ignore[assignment]

TIMEOUT = 30.0


class ServeProcess:
    """``openline serve --data PATH`` as a real process, on one port across restarts."""

    def __init__(self, data: pathlib.Path) -> None:
        self.data = data
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "OPENLINE_SECRET"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "openline", "serve", "--port", str(self.port),
             "--no-ticker", "--data", str(self.data)],
            stdout=subprocess.PIPE, text=True, env=env, preexec_fn=die_with_parent,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        self.port = int(match.group(1))

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(TIMEOUT) == -signal.SIGKILL
        self._close_pipe()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(TIMEOUT)
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def say(page: Any, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def test_a_killed_serve_data_comes_back_with_every_message_once(
    tmp_path: pathlib.Path, pages: Pages
) -> None:
    server = ServeProcess(tmp_path / "state" / "openline.db")
    server.start()
    try:
        ada = pages.join(server.url, "Ada")
        bob = pages.join(server.url, "Bob")
        for n in range(3):
            say(bob, f"before {n}")
        expect(ada.locator("#messages .msg:not(.pending) .msg-text")).to_have_count(3)

        server.kill()  # no close frames, no checkpoint: what a crash or kill -9 does
        expect(bob.locator("#badge")).to_have_attribute("data-state", "reconnecting")
        for n in range(2):
            say(bob, f"offline {n}")  # queued in Bob's page until the server is back
        expect(bob.locator("#messages .msg.pending")).to_have_count(2)

        server.start()  # the same file, the same port
        everything = [*(f"before {n}" for n in range(3)), *(f"offline {n}" for n in range(2))]
        for page in (ada, bob):
            expect(page.locator("#badge")).to_have_attribute(
                "data-state", re.compile("resumed|live"), timeout=15_000
            )
            expect(page.locator("#messages .msg:not(.pending) .msg-text")).to_have_text(everything)
            offsets = shown_offsets(page)
            assert offsets == [1, 2, 3, 4, 5], offsets
            # Same epoch: the page never says history was lost.
            expect(page.locator("#messages .notice.warn")).to_have_count(0)
        print(f"after the restart, Ada's badge: {ada.locator('#badge').text_content()!r}")
        expect(bob.locator("#messages .pending")).to_have_count(0)
        assert shown_messages(ada) == everything
    finally:
        server.stop()
