#!/usr/bin/env python3
"""Run the Autobahn|Testsuite against a WebSocket server or client, on 127.0.0.1 only.

Server side (wstest's fuzzingclient attacks an echo server that you start)::

    python tests/autobahn/run.py server [--cases 1.*,2.*] -- CMD ... {port} ...

``{port}`` in CMD is replaced by a free TCP port on 127.0.0.1; CMD must start a
WebSocket echo server listening there.

Client side (wstest's fuzzingserver; your client driver connects to it)::

    python tests/autobahn/run.py client [--cases ...] -- CMD ... {url} ...

``{url}`` is replaced by ``ws://127.0.0.1:PORT``.  The driver connects to
``{url}/getCaseCount`` (one text message: the number of cases N), then for
each case i in 1..N to ``{url}/runCase?case=i&agent=openline``, echoing every
text/binary message back until the connection closes, and finally to
``{url}/updateReports?agent=openline``.  (run.py requests updateReports
itself as well once the driver has exited, so partial runs still report.)

If CMD is a single argument containing whitespace it is split like a shell
would (``shlex``), so ``-- "python echo.py --port {port}"`` works too.

Cases default to every case except sections 12 and 13 (permessage-deflate,
slow); ``--all`` runs those too; ``--cases`` replaces the default selection
(then nothing is excluded unless ``--exclude`` says so).  Patterns are
wstest's: ``*`` is a wildcard, anything else an exact case ID.

Exit status: 0 all selected cases passed; 1 some case FAILED, UNIMPLEMENTED or
NON-STRICT (unless ``--allow-non-strict``), a close behavior FAILED or
UNIMPLEMENTED, a selected case has no result, or the client driver failed;
2 the run itself could not be done (wstest not installed, testee did not
start, timeout, no report).

Reports (HTML + JSON) and logs stay in ``.cache/autobahn/reports/{server,client}``.
Needs ``tests/autobahn/install.sh`` to have been run first.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CACHE = REPO / ".cache" / "autobahn"
DEFAULT_WSTEST = CACHE / "bin" / "wstest"
HOST = "127.0.0.1"
DEFAULT_AGENT = "openline"
DEFAULT_EXCLUDE = ("12.*", "13.*")

BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "FAILED", "UNIMPLEMENTED")
# wstest's closing behaviors (autobahntestsuite/case/case.py).
CLOSE_BEHAVIORS = (
    "OK",
    "INFORMATIONAL",
    "WRONG CODE",
    "UNCLEAN",
    "FAILED BY CLIENT",
    "FAILED",
    "UNIMPLEMENTED",
)
PASSING = frozenset({"OK", "INFORMATIONAL"})
HARD_FAILURES = frozenset({"FAILED", "UNIMPLEMENTED"})

# WebSocket framing (RFC 6455), for the small updateReports client.
OPCODE_CLOSE = 0x8
LENGTH_16BIT = 126
LENGTH_64BIT = 127

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ERROR = 2


class RunError(Exception):
    """The test run itself could not be carried out (exit status 2)."""


class Deadline:
    """The hard overall time limit of one run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise RunError(f"overall timeout of {self.seconds:g} s exceeded")
        return left


class Children:
    """Child processes, each in its own process group, killed on exit."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            try:
                proc = subprocess.Popen(
                    list(argv),
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise RunError(f"cannot start {argv[0]!r}: {exc}") from exc
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
        """SIGTERM the child's process group, SIGKILL it after `grace` seconds."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
                # The leader is gone; take any of its group left behind too.
                os.killpg(proc.pid, signal.SIGKILL)
            except subprocess.TimeoutExpired:
                continue
            except (ProcessLookupError, PermissionError):
                pass
            return

    def stop_all(self) -> None:
        while self._procs:
            self.stop(self._procs.pop())


@dataclass(frozen=True)
class CaseResult:
    case: str
    behavior: str
    behavior_close: str
    duration_ms: int | None
    close_code: int | None


@dataclass(frozen=True)
class Policy:
    allow_non_strict: bool
    strict_close: bool

    def is_failure(self, result: CaseResult) -> bool:
        if result.behavior in HARD_FAILURES or result.behavior_close in HARD_FAILURES:
            return True
        if result.behavior == "NON-STRICT" and not self.allow_non_strict:
            return True
        if result.behavior not in PASSING and result.behavior != "NON-STRICT":
            return True  # a behavior this script does not know about
        return self.strict_close and result.behavior_close not in PASSING


def case_key(case: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in case.split("."))
    except ValueError:
        return (1 << 30,)


def split_patterns(values: Sequence[str]) -> list[str]:
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes], what: str, limit: float, deadline: Deadline
) -> None:
    """Wait until 127.0.0.1:port accepts a TCP connection."""
    end = time.monotonic() + min(limit, deadline.remaining())
    while True:
        if proc.poll() is not None:
            raise RunError(
                f"{what} exited with status {proc.returncode} before listening on {HOST}:{port}"
            )
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            pass
        if time.monotonic() >= end:
            deadline.remaining()
            raise RunError(f"{what} did not accept connections on {HOST}:{port} within {limit:g} s")
        time.sleep(0.1)


def wait_for_exit(proc: subprocess.Popen[bytes], what: str, deadline: Deadline) -> int:
    try:
        return proc.wait(timeout=deadline.remaining())
    except subprocess.TimeoutExpired:
        deadline.remaining()  # raises
        raise RunError(f"{what} did not finish") from None


def substitute(command: Sequence[str], key: str, value: str) -> list[str]:
    if len(command) == 1 and any(c.isspace() for c in command[0]):
        command = shlex.split(command[0])
    if not command:
        raise RunError("no command given after '--'")
    if not any(key in arg for arg in command):
        raise RunError(f"the command after '--' must contain {key}")
    return [arg.replace(key, value) for arg in command]


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def resolve_cases(wstest: Path, spec_path: Path, workdir: Path, deadline: Deadline) -> list[str]:
    """Ask the installed suite which case IDs a spec selects (in run order)."""
    out = workdir / "cases.json"
    try:
        proc = subprocess.run(
            [str(wstest), "--list-cases", str(spec_path), str(out)],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=min(60.0, deadline.remaining()),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RunError("wstest --list-cases did not finish") from None
    except OSError as exc:
        raise RunError(f"cannot run {wstest}: {exc}") from exc
    if proc.returncode != 0 or not out.is_file():
        detail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RunError("wstest --list-cases failed: " + " | ".join(detail))
    listing = json.loads(out.read_text())
    if listing["unknown"]:
        raise RunError("unknown case IDs: " + ", ".join(listing["unknown"]))
    cases = [str(c) for c in listing["cases"]]
    if not cases:
        raise RunError("the case selection matches no case")
    return cases


def read_index(outdir: Path, agent: str) -> dict[str, CaseResult]:
    index = outdir / "index.json"
    if not index.is_file():
        raise RunError(f"wstest wrote no report ({index} is missing)")
    try:
        data = json.loads(index.read_text())
    except ValueError as exc:
        raise RunError(f"cannot parse {index}: {exc}") from exc
    if agent not in data:
        agents = ", ".join(sorted(data)) or "none"
        raise RunError(f"{index} has no results for agent {agent!r} (agents: {agents})")
    results: dict[str, CaseResult] = {}
    for case, entry in data[agent].items():
        results[case] = CaseResult(
            case=case,
            behavior=str(entry.get("behavior")),
            behavior_close=str(entry.get("behaviorClose")),
            duration_ms=entry.get("duration"),
            close_code=entry.get("remoteCloseCode"),
        )
    return results


def counts_line(label: str, counter: Counter[str], known: Sequence[str]) -> str:
    names = list(known) + sorted(set(counter) - set(known))
    return f"{label} " + " ".join(f"{name}={counter.get(name, 0)}" for name in names)


@dataclass(frozen=True)
class Outcome:
    side: str
    expected: Sequence[str]
    results: dict[str, CaseResult]
    outdir: Path
    elapsed: float


def summarize(outcome: Outcome, policy: Policy) -> bool:
    """Print the summary; return True when the run meets the bar."""
    side, expected, results = outcome.side, outcome.expected, outcome.results
    outdir, elapsed = outcome.outdir, outcome.elapsed
    missing = [c for c in expected if c not in results]
    behavior = Counter(r.behavior for r in results.values())
    closing = Counter(r.behavior_close for r in results.values())
    print(f"autobahn {side}: {len(results)} of {len(expected)} cases ran in {elapsed:.1f} s")
    print(counts_line("behavior:", behavior, BEHAVIORS) + f" MISSING={len(missing)}")
    print(counts_line("behaviorClose:", closing, CLOSE_BEHAVIORS))
    noteworthy = sorted(
        (
            r
            for r in results.values()
            if r.behavior not in PASSING or r.behavior_close not in PASSING
        ),
        key=lambda r: case_key(r.case),
    )
    failures = [r for r in noteworthy if policy.is_failure(r)]
    if noteworthy or missing:
        print("cases not OK/INFORMATIONAL (case, behavior, behaviorClose, remote close code):")
        for r in noteworthy:
            mark = "FAIL" if policy.is_failure(r) else "note"
            print(f"  {mark} {r.case:<10} {r.behavior:<14} {r.behavior_close:<17} {r.close_code}")
        if missing:
            listing = textwrap.fill(
                ", ".join(missing), width=100, initial_indent="    ", subsequent_indent="    "
            )
            print(f"  FAIL {len(missing)} case(s) MISSING (no result):\n{listing}")
    ok = not failures and not missing
    verdict = "PASS" if ok else f"FAIL ({len(failures)} failing, {len(missing)} missing)"
    print(f"autobahn {side}: {verdict}; report: {outdir / 'index.html'}")
    return ok


def base_spec(cases: list[str], exclude: list[str], outdir: Path) -> dict[str, object]:
    return {
        "outdir": str(outdir),
        "cases": cases,
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
        "options": {"failByDrop": False},
    }


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def run_server_side(
    args: argparse.Namespace, command: list[str], children: Children, deadline: Deadline
) -> int:
    outdir = fresh_dir(CACHE / "reports" / "server")
    port = free_port()
    argv = substitute(command, "{port}", str(port))
    with tempfile.TemporaryDirectory(prefix="autobahn-server-") as tmp:
        work = Path(tmp)
        spec = base_spec(args.case_patterns, args.exclude_patterns, outdir)
        spec["servers"] = [{"agent": args.agent, "url": f"ws://{HOST}:{port}"}]
        spec_path = work / "fuzzingclient.json"
        write_json(spec_path, spec)
        expected = resolve_cases(args.wstest, spec_path, work, deadline)

        testee_log = outdir / "testee.log"
        testee = children.start(argv, testee_log, Path.cwd())
        try:
            wait_for_port(port, testee, "the server under test", args.startup_timeout, deadline)
        except RunError:
            print(f"server log ({testee_log}):\n{tail(testee_log)}", file=sys.stderr)
            raise
        print(f"autobahn server: {len(expected)} cases against {' '.join(argv)}", flush=True)

        started = time.monotonic()
        wstest_log = outdir / "wstest.log"
        fuzzer = children.start(
            [str(args.wstest), "-m", "fuzzingclient", "-s", str(spec_path)], wstest_log, work
        )
        status = wait_for_exit(fuzzer, "wstest fuzzingclient", deadline)
        elapsed = time.monotonic() - started
        if status != 0:
            print(f"wstest log ({wstest_log}):\n{tail(wstest_log)}", file=sys.stderr)
            raise RunError(f"wstest fuzzingclient exited with status {status}")
        if testee.poll() is not None:
            print(
                f"warning: the server under test exited early (status {testee.returncode});"
                f" see {testee_log}"
            )
        results = read_index(outdir, args.agent)
    ok = summarize(Outcome("server", expected, results, outdir, elapsed), args.policy)
    return EXIT_OK if ok else EXIT_FAILED


def recv_exact(sock: socket.socket, n: int, buf: bytearray) -> bytes:
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    data = bytes(buf[:n])
    del buf[:n]
    return data


def request_update_reports(port: int, agent: str, timeout: float) -> None:
    """Minimal WebSocket client: open /updateReports, wait for wstest to close.

    wstest writes the reports before it sends its close frame.
    """
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /updateReports?agent={quote(agent)} HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request.encode())
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("connection closed during the handshake")
            buf += chunk
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in f"{status_line} ":
            raise ConnectionError(f"handshake refused: {status_line}")
        buf = bytearray(rest)
        while True:
            b0, b1 = recv_exact(sock, 2, buf)
            length = b1 & 0x7F
            if length == LENGTH_16BIT:
                length = int.from_bytes(recv_exact(sock, 2, buf), "big")
            elif length == LENGTH_64BIT:
                length = int.from_bytes(recv_exact(sock, 8, buf), "big")
            mask = recv_exact(sock, 4, buf) if b1 & 0x80 else b""
            payload = recv_exact(sock, length, buf)
            if b0 & 0x0F == OPCODE_CLOSE:  # close: echo the status code, masked
                code = (
                    payload[:2]
                    if not mask
                    else bytes(p ^ mask[i % 4] for i, p in enumerate(payload[:2]))
                )
                our_mask = os.urandom(4)
                masked = bytes(c ^ our_mask[i % 4] for i, c in enumerate(code))
                sock.sendall(bytes([0x88, 0x80 | len(code)]) + our_mask + masked)
                break
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass


def run_client_side(
    args: argparse.Namespace, command: list[str], children: Children, deadline: Deadline
) -> int:
    outdir = fresh_dir(CACHE / "reports" / "client")
    port = free_port()
    url = f"ws://{HOST}:{port}"
    argv = substitute(command, "{url}", url)
    with tempfile.TemporaryDirectory(prefix="autobahn-client-") as tmp:
        work = Path(tmp)
        spec = base_spec(args.case_patterns, args.exclude_patterns, outdir)
        spec["url"] = url
        spec_path = work / "fuzzingserver.json"
        write_json(spec_path, spec)
        expected = resolve_cases(args.wstest, spec_path, work, deadline)

        wstest_log = outdir / "wstest.log"
        fuzzer = children.start(
            [str(args.wstest), "-m", "fuzzingserver", "-s", str(spec_path), "--webport=0"],
            wstest_log,
            work,
        )
        try:
            wait_for_port(port, fuzzer, "wstest fuzzingserver", args.startup_timeout, deadline)
        except RunError:
            print(f"wstest log ({wstest_log}):\n{tail(wstest_log)}", file=sys.stderr)
            raise
        print(f"autobahn client: {len(expected)} cases, driver: {' '.join(argv)}", flush=True)

        started = time.monotonic()
        driver_log = outdir / "testee.log"
        driver = children.start(argv, driver_log, Path.cwd())
        driver_ok = True
        timed_out: RunError | None = None
        try:
            status = wait_for_exit(driver, "the client driver", deadline)
            if status != 0:
                driver_ok = False
                print(f"client driver exited with status {status}; log ({driver_log}):")
                print(tail(driver_log))
        except RunError as exc:
            timed_out = exc
            children.stop(driver)
        elapsed = time.monotonic() - started
        if fuzzer.poll() is not None:
            print(f"wstest log ({wstest_log}):\n{tail(wstest_log)}", file=sys.stderr)
            raise RunError(f"wstest fuzzingserver exited early with status {fuzzer.returncode}")
        # Regenerate the reports ourselves so that they cover every case run so
        # far, even when the driver stopped early; allow a little time past the
        # deadline for it when the run timed out.
        budget = 30.0 if timed_out else max(min(120.0, deadline.end - time.monotonic()), 5.0)
        try:
            request_update_reports(port, args.agent, budget)
        except OSError as exc:
            raise RunError(f"updateReports request failed: {exc}") from exc
        results = read_index(outdir, args.agent)
    ok = summarize(Outcome("client", expected, results, outdir, elapsed), args.policy)
    if not driver_ok:
        print("autobahn client: FAIL (the client driver exited with an error)")
    if timed_out:
        raise timed_out
    return EXIT_OK if ok and driver_ok else EXIT_FAILED


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        split = argv.index("--")
        own, command = argv[:split], argv[split + 1 :]
    else:
        own, command = argv, []
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="Run the Autobahn|Testsuite (wstest) on 127.0.0.1.",
        epilog="The testee command follows '--'. See the module docstring for details.",
    )
    parser.add_argument(
        "side", choices=("server", "client"), help="which side of the testee to test"
    )
    parser.add_argument(
        "--cases",
        action="append",
        default=[],
        help="comma-separated case patterns (default: all but 12.*, 13.*)",
    )
    parser.add_argument(
        "--exclude", action="append", default=[], help="comma-separated case patterns to skip"
    )
    parser.add_argument(
        "--all", action="store_true", help="run every case, sections 12 and 13 included"
    )
    parser.add_argument(
        "--allow-non-strict", action="store_true", help="do not fail on NON-STRICT cases"
    )
    parser.add_argument(
        "--strict-close",
        action="store_true",
        help="also fail on closing behaviors other than OK and INFORMATIONAL (WRONG CODE, ...)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="hard overall limit in seconds (default 600)"
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for a listener (default 30)",
    )
    parser.add_argument(
        "--agent",
        default=DEFAULT_AGENT,
        help=f"agent name in the reports (default {DEFAULT_AGENT})",
    )
    parser.add_argument("--wstest", type=Path, default=DEFAULT_WSTEST, help="wstest executable")
    args = parser.parse_args(own)
    if not command:
        parser.error("give the testee command after '--'")
    if args.all and args.cases:
        parser.error("--all and --cases exclude each other")
    args.case_patterns = split_patterns(args.cases) or ["*"]
    default_exclude = [] if args.all or args.cases else list(DEFAULT_EXCLUDE)
    args.exclude_patterns = default_exclude + split_patterns(args.exclude)
    args.policy = Policy(allow_non_strict=args.allow_non_strict, strict_close=args.strict_close)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args, command


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def exit_on_signals() -> Iterator[None]:
    previous = {sig: signal.signal(sig, _raise_exit) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    args, command = parse_args(sys.argv[1:] if argv is None else argv)
    if not os.access(args.wstest, os.X_OK):
        print(
            f"run.py: error: {args.wstest} not found; run tests/autobahn/install.sh first",
            file=sys.stderr,
        )
        return EXIT_ERROR
    deadline = Deadline(args.timeout)
    children = Children()
    runner = run_server_side if args.side == "server" else run_client_side
    with exit_on_signals():
        try:
            return runner(args, command, children, deadline)
        except RunError as exc:
            print(f"run.py: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print("run.py: interrupted", file=sys.stderr)
            return 130
        finally:
            children.stop_all()


if __name__ == "__main__":
    sys.exit(main())
