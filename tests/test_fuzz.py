"""The fuzz harnesses' own tests: every seed holds the contract, the corpus is current.

``make fuzz`` explores for a bounded time with atheris; this replays the
committed seeds (and a short seeded fallback run) on every test run, so that a
change that breaks a harness's contract, or the harness itself, fails here.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

FUZZ = Path(__file__).parent.parent / "fuzz"
HARNESSES = ("connection", "handshake", "wire", "hub", "deflate")
#: Seeded mutations per harness; the hub runs a whole connection per input.
MUTATIONS = {"hub": 300}
#: The committed corpus stays small: it is replayed by every test run.
MAX_CORPUS_BYTES = 300_000

sys.path.insert(0, str(FUZZ))
harness = importlib.import_module("harness")
make_corpus = importlib.import_module("make_corpus")


def load(name: str) -> ModuleType:
    return importlib.import_module(f"fuzz_{name}")


def seed_files() -> list[tuple[str, Path]]:
    return [
        (name, path) for name in HARNESSES for path in sorted((FUZZ / "corpus" / name).iterdir())
    ]


@pytest.mark.parametrize(("name", "path"), seed_files(), ids=lambda v: getattr(v, "name", v))
def test_seed_holds_the_contract(name: str, path: Path) -> None:
    load(name).check(path.read_bytes())


@pytest.mark.parametrize("name", HARNESSES)
def test_seeded_mutations_hold_the_contract(name: str) -> None:
    check = load(name).check
    runs = MUTATIONS.get(name, 2000)
    count = 0
    for data in harness.fallback_inputs(name, runs, seed=1):
        check(data)
        count += 1
    assert count == runs + len(harness.seeds(name))


@pytest.mark.parametrize("name", HARNESSES)
def test_committed_corpus_is_what_make_corpus_writes(name: str, tmp_path: Path) -> None:
    written = make_corpus.write(tmp_path, make_corpus.HARNESSES[name]())
    committed = sorted((FUZZ / "corpus" / name).glob("*.bin"))
    assert written == len(committed) > 10
    for path in committed:
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def test_corpus_holds_only_generated_seeds_and_regressions() -> None:
    # libFuzzer writes what it finds into its first corpus folder: never this one.
    for path in (FUZZ / "corpus").rglob("*"):
        if path.is_file():
            assert path.suffix == ".bin" or path.name.startswith("regression-"), path


def test_corpus_is_small() -> None:
    size = sum(path.stat().st_size for path in (FUZZ / "corpus").rglob("*") if path.is_file())
    print(f"corpus: {size} bytes")
    assert size < MAX_CORPUS_BYTES


def test_fallback_reports_the_failing_input(capsys: pytest.CaptureFixture[str]) -> None:
    def check(data: bytes) -> None:
        if b"publish" in data:
            raise AssertionError("contract broken")

    with pytest.raises(AssertionError, match="contract broken"):
        harness._run_fallback("wire", check, ["-runs=10"])
    assert 'failing input: b\'\\x00{"type":"publish"' in capsys.readouterr().err


def test_mutations_are_reproducible() -> None:
    first = list(harness.fallback_inputs("deflate", 50, seed=7))
    again = list(harness.fallback_inputs("deflate", 50, seed=7))
    other = list(harness.fallback_inputs("deflate", 50, seed=8))
    assert first == again != other


@pytest.mark.parametrize("name", HARNESSES)
def test_harness_runs_as_a_script(name: str, tmp_path: Path) -> None:
    # With atheris this is libFuzzer for 100 inputs from the seeds (new inputs go
    # to the first folder: tmp_path, never the committed corpus); without it, the
    # fallback (which CI=true refuses: the environment is cleared of it).
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(FUZZ.parent / "src"), env.get("PYTHONPATH")])
    )
    result = subprocess.run(
        [
            sys.executable,
            str(FUZZ / f"fuzz_{name}.py"),
            "-runs=100",
            str(tmp_path),
            str(FUZZ / "corpus" / name),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Done 100 runs" in output or "contract held" in output, output
