"""Conformance: the Autobahn|Testsuite against openline's server and client.

The server side runs twice: openline's own server (``openline serve --echo``) and
an ASGI echo app under uvicorn with openline as its WebSocket engine
(``uvicorn_echo.py``). Sections 1-11 run in every test run (about a minute per side); sections 12-13
(permessage-deflate, about 15 minutes per side) run when
``OPENLINE_AUTOBAHN_ALL=1`` (``make autobahn-all``). Every case must be OK or
INFORMATIONAL: NON-STRICT counts as a failure here. Each side runs with the
compiled accelerator and in pure-Python mode.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).parent
WSTEST = HERE.parent.parent / ".cache" / "autobahn" / "bin" / "wstest"
ALL = os.environ.get("OPENLINE_AUTOBAHN_ALL") == "1"
# Importing a module set to None in sys.modules raises ImportError: this runs
# openline with the pure-Python masking fallback even where _speedups is built.
PURE = "import sys; sys.modules['openline.protocol._speedups'] = None; "

pytestmark = [
    pytest.mark.autobahn,
    pytest.mark.skipif(not WSTEST.exists(), reason="run tests/autobahn/install.sh first"),
]

MODES = ["compiled", "pure-python"]


def _python(mode: str, code: str) -> list[str]:
    prefix = PURE if mode == "pure-python" else ""
    return [sys.executable, "-c", prefix + code]


def _run(side: str, command: list[str], timeout: float) -> None:
    args = [
        sys.executable,
        str(HERE / "run.py"),
        side,
        "--strict-close",
        "--timeout",
        str(int(timeout)),
    ]
    if ALL:
        args.append("--all")
    args += ["--", *command]
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 60)
    print(result.stdout)
    print(result.stderr, file=sys.stderr)
    assert result.returncode == 0, f"autobahn {side} side failed:\n{result.stdout[-4000:]}"


@pytest.mark.parametrize("mode", MODES)
def test_server_passes_autobahn(mode: str) -> None:
    code = (
        "import sys; from openline.cli import main; "
        "sys.exit(main(['serve', '--echo', '--host', '127.0.0.1', '--port', '{port}', "
        "'--max-size', '32MiB', '--ping-interval', 'off']))"
    )
    _run("server", _python(mode, code), timeout=3600 if ALL else 300)


def test_uvicorn_engine_passes_autobahn() -> None:
    """An ASGI echo app under uvicorn with ``--ws openline.uvicorn:WebSocketProtocol``."""
    code = (
        "import runpy, sys; sys.argv = ['uvicorn_echo', '{port}']; "
        f"runpy.run_path({str(HERE / 'uvicorn_echo.py')!r}, run_name='__main__')"
    )
    _run("server", _python("compiled", code), timeout=3600 if ALL else 300)


@pytest.mark.parametrize("mode", MODES)
def test_client_passes_autobahn(mode: str) -> None:
    code = (
        "import runpy, sys; sys.argv = ['client_driver', '--url', '{url}']; "
        f"runpy.run_path({str(HERE / 'client_driver.py')!r}, run_name='__main__')"
    )
    _run("client", _python(mode, code), timeout=3600 if ALL else 300)
