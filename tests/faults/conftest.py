"""Fixtures of the fault tests: every engine, as in the hub tests."""

from __future__ import annotations

from tests.hub.conftest import engine, make_engine

__all__ = ["engine", "make_engine"]
