"""Declare the optional C accelerator; all other metadata lives in pyproject.toml.

The environment variable ``OPENLINE_BUILD_EXTENSION`` decides what happens:

- ``yes``: build ``openline.protocol._speedups``; a failure fails the build (CI wheels).
- ``no``: do not build it (a pure-Python wheel).
- unset or empty: try to build it; if that fails, for example because there is
  no C compiler, warn and install the pure-Python fallback.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

ENV_VAR = "OPENLINE_BUILD_EXTENSION"

# Everything a missing or broken toolchain can raise while building one extension.
BUILD_ERRORS = (CCompilerError, ExecError, PlatformError, OSError)

SPEEDUPS = Extension(
    "openline.protocol._speedups",
    sources=["src/openline/protocol/_speedups.c"],
)


class BuildExt(build_ext):
    """``build_ext`` that optimises hard on gcc and clang."""

    def build_extensions(self) -> None:
        # "unix" covers gcc and clang (and cc wrappers that accept their flags);
        # MSVC already optimises with /Ox in release builds.
        if self.compiler.compiler_type in ("unix", "mingw32", "cygwin"):
            for extension in self.extensions:
                extension.extra_compile_args.append("-O3")
        super().build_extensions()


class OptionalBuildExt(BuildExt):
    """``BuildExt`` that falls back to pure Python when the C build fails."""

    def run(self) -> None:
        # PlatformError is raised here, before any compiling, when no compiler exists.
        try:
            super().run()
        except BUILD_ERRORS as exc:
            self._warn(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except BUILD_ERRORS as exc:
            self._warn(exc)

    #: Set when the extension could not be built: the wheel is then pure Python.
    failed = False

    @classmethod
    def _warn(cls, exc: Exception) -> None:
        cls.failed = True
        print(
            f"WARNING: could not build the optional C extension ({exc}); "
            f"openline will use its pure-Python frame path (masking, parsing, serializing), "
            f"which is slower. "
            f"Set {ENV_VAR}=yes to make this an error or {ENV_VAR}=no to skip the attempt.",
            file=sys.stderr,
        )


class OptionalBdistWheel(bdist_wheel):
    """``bdist_wheel`` that tags the wheel pure (``py3-none-any``) when the C build failed.

    The tag is decided before the build from ``ext_modules`` alone, so a machine without a
    compiler would otherwise get a platform-tagged wheel with no compiled code in it.
    """

    def get_tag(self) -> tuple[str, str, str]:
        if OptionalBuildExt.failed:
            self.root_is_pure = True
        return super().get_tag()

    def write_wheelfile(self, *args: object, **kwargs: object) -> None:
        if OptionalBuildExt.failed:
            self.root_is_pure = True
        super().write_wheelfile(*args, **kwargs)  # type: ignore[arg-type]


def configure() -> dict[str, object]:
    """Return the ``setup()`` arguments selected by ``OPENLINE_BUILD_EXTENSION``."""
    mode = os.environ.get(ENV_VAR, "").strip().lower()
    if mode == "no":
        return {"ext_modules": []}
    if mode == "yes":
        return {"ext_modules": [SPEEDUPS], "cmdclass": {"build_ext": BuildExt}}
    if mode == "":
        return {
            "ext_modules": [SPEEDUPS],
            "cmdclass": {"build_ext": OptionalBuildExt, "bdist_wheel": OptionalBdistWheel},
        }
    raise SystemExit(f"{ENV_VAR} must be 'yes', 'no' or unset, got {mode!r}")


setup(**configure())
