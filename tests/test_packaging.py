"""What the sdist and the wheels carry: the sdist runs its own tests, and a wheel built
without a C compiler is a pure wheel (not a platform wheel with nothing compiled in it)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import zipfile

ROOT = pathlib.Path(__file__).parent.parent
#: What goes into a source tree for the builds (the rest of the clone is not needed).
SOURCES = ("setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in")
TIMEOUT = 300


def _build(tree: pathlib.Path, kind: str, out: pathlib.Path, env: dict[str, str]) -> pathlib.Path:
    result = subprocess.run(
        [sys.executable, "-m", "build", kind, "--outdir", str(out), str(tree)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (built,) = out.iterdir()
    return built


def _copy_sources(tmp_path: pathlib.Path) -> pathlib.Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in SOURCES:
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(
        ROOT / "src",
        tree / "src",
        ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info"),
    )
    return tree


def test_a_wheel_built_without_a_compiler_is_pure(tmp_path: pathlib.Path) -> None:
    tree = _copy_sources(tmp_path)
    # An unset OPENLINE_BUILD_EXTENSION means "try": the failing compiler must not fail the
    # build, and the wheel must then say it holds no compiled code.
    env = {"CC": "/bin/false", "OPENLINE_BUILD_EXTENSION": ""}
    wheel = _build(tree, "--wheel", tmp_path / "dist", env)
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [name for name in names if name.endswith(".dist-info/WHEEL")]
        assert "Root-Is-Purelib: true" in archive.read(metadata).decode()
    assert not [name for name in names if name.endswith((".so", ".pyd"))]
    assert "openline/protocol/_mask.py" in names


def test_the_sdist_carries_a_test_suite_that_runs(tmp_path: pathlib.Path) -> None:
    sdist = _build(ROOT, "--sdist", tmp_path / "dist", {})
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (tree,) = (tmp_path / "unpacked").iterdir()
    for needed in ("tests/conftest.py", "examples/chat_server.py", "Makefile", "fuzz"):
        assert (tree / needed).exists(), needed
    assert not list(tree.rglob("node_modules")) and not list(tree.rglob("*.so"))
    # A slice of the suite, run from the unpacked sdist (pure Python: nothing is compiled).
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/protocol/test_frames.py",
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        env={**_outside_ci_and_coverage(), "PYTHONPATH": str(tree / "src")},
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout


def _outside_ci_and_coverage() -> dict[str, str]:
    """This environment without CI's rules and without coverage's subprocess measuring.

    Nothing is compiled in the unpacked sdist, and CI's rules make the compiled variants
    of the tests fail rather than skip; and when the suite runs under coverage, the
    unpacked copy of the package is not the code being measured.
    """
    return {
        name: value
        for name, value in os.environ.items()
        if name != "CI" and not name.startswith("COVERAGE_")
    }
