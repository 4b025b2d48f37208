"""``openline serve --data PATH``: the flag's checks, its engine and its signing key.

Kept apart from :mod:`.serve` so that the command only calls these. Each
function raises :class:`~openline.cli.UsageError`, which the command prints as
one line before exiting with status 2.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .options import UsageError

if TYPE_CHECKING:
    from ..hub.backends.base import Engine

__all__ = ["check_flags", "signing_key", "sqlite_engine"]


def check_flags(args: argparse.Namespace) -> None:
    """Refuse ``--data`` with the flags it can't work with.

    Raises:
        UsageError: ``--data`` with ``--redis``, or with ``--workers`` above 1.
    """

    if not hasattr(args, "data") or args.echo:
        return
    if hasattr(args, "redis"):
        raise UsageError("--data and --redis are two engines: give one")
    if args.workers > 1:
        raise UsageError(
            f"--workers {args.workers} can't share --data: one process writes the file "
            "(use --redis to scale out)"
        )


def sqlite_engine(path: str, options: dict[str, Any]) -> Engine:
    """An sqlite engine on the file ``--data`` names, checked now.

    Raises:
        UsageError: A directory can't be created, or the file can't be used (not
            a database, another application's, a newer layout, in use).
    """
    from ..hub.backends.sqlite import SqliteEngine, check_database, data_file

    try:
        path = data_file(path)
        check_database(path)
        return SqliteEngine(path, **options)
    except OSError as exc:
        raise UsageError(f"--data {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"--data: {exc}") from None


def signing_key(args: argparse.Namespace) -> str | None:
    """With ``--data``: the demo's signing key kept next to the database file, else ``None``.

    Raises:
        UsageError: The key file can't be read or created, or holds a short key.
    """
    from ..hub.backends.sqlite import data_file
    from ..web.keyfile import load_or_create_key

    if not hasattr(args, "data"):
        return None
    try:
        return load_or_create_key(data_file(args.data) + ".key")
    except (OSError, ValueError) as exc:
        raise UsageError(f"--data: {exc}") from None
