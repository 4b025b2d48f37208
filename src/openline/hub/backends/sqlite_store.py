"""The sqlite engine's storage: blocking calls on one connection, from one thread.

Three tables: ``channels`` (epoch, last offset, last use), ``messages`` (the
history window) and ``ids`` (the idempotency window). A publish reads the
channel, checks the id, inserts and trims; the caller (:mod:`.sqlite_writer`)
wraps calls in transactions and savepoints with the methods below. The file is
in WAL mode with ``synchronous=NORMAL`` (a commit survives the process being
killed; the last commits before a power cut may not) and ``locking_mode=EXCLUSIVE``
(one process per file: a second one is refused rather than serving a split hub).

Times are the injected clock's seconds (wall-clock by default, so that the
windows keep their meaning across restarts). Within a channel, offsets and
storage times grow together, so a time trim deletes a prefix of offsets: it
finds the first message still young enough, reading only the expired ones, and
deletes what lies before it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from .base import HistoryResult, Message, PublishResult

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "Store", "check_database"]

#: Written into the file's header (``PRAGMA application_id``): "OPLN".
APPLICATION_ID = 0x4F504C4E
#: The layout of the tables below (``PRAGMA user_version``).
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (
    ch TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    last INTEGER NOT NULL,
    touched REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    ch TEXT NOT NULL,
    msg_offset INTEGER NOT NULL,
    stored REAL NOT NULL,
    data BLOB NOT NULL,
    meta TEXT,
    PRIMARY KEY (ch, msg_offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ids (
    ch TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    msg_offset INTEGER NOT NULL,
    stored REAL NOT NULL,
    PRIMARY KEY (ch, msg_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ids_by_offset ON ids (ch, msg_offset);
"""

# Delete the prefix of a channel's rows older than a time: everything before the
# first row still young enough (or every row, when none is).
# Named parameters: Python 3.12 deprecates numbered ones (?1) bound from a sequence, and
# 3.14 refuses them.
_TRIM_BY_TIME = """
DELETE FROM {table} WHERE ch = :ch AND msg_offset < coalesce(
    (SELECT msg_offset FROM {table} WHERE ch = :ch AND stored > :before
     ORDER BY msg_offset LIMIT 1),
    :end)
"""

Windows = tuple[int | None, float | None, int | None, float | None]


def check_database(path: str, *, timeout: float = 1.0) -> None:
    """Open the file at ``path`` as an openline database, create it if needed, and close it.

    Raises:
        ValueError: The file isn't an sqlite database, belongs to another
            application, has a newer layout, or is in use by another process.
        OSError: The file can't be created or opened.
    """
    store = Store(path, (0, None, 0, None), None, lambda: 0.0, timeout=timeout)
    try:
        store.open()
    finally:
        store.close()


class Store:
    """The blocking half of the sqlite engine; every method runs on its one thread.

    Args:
        path: The database file.
        windows: ``(history_size, history_ttl, id_size, id_ttl)``, checked.
        channel_ttl: Seconds after its last use at which an empty channel is
            forgotten (its next use starts a new epoch); ``None``: never.
        clock: Seconds, for the windows.
        timeout: Seconds to wait for a lock held by another process.
    """

    def __init__(
        self,
        path: str,
        windows: Windows,
        channel_ttl: float | None,
        clock: Callable[[], float],
        *,
        timeout: float = 1.0,
    ) -> None:
        self.path = path
        self._history_size, self._history_ttl, self._id_size, self._id_ttl = windows
        self._channel_ttl = channel_ttl
        self._clock = clock
        self._timeout = timeout
        self._db: sqlite3.Connection | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        """Open the file (once), check it is ours, and create the tables.

        Raises:
            ValueError: See :func:`check_database`.
            OSError: The file can't be created or opened.
        """
        if self._db is not None:
            return
        if os.path.isdir(self.path):
            raise ValueError(f"{self.path} is a directory, not a database file")
        try:
            db = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise OSError(f"cannot open {self.path}: {exc}") from None
        try:
            _prepare(db, self.path)
        except BaseException:
            db.close()
            raise
        self._db = db

    def close(self) -> None:
        """Close the file; the WAL is checkpointed into it."""
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- transactions ------------------------------------------------------------------

    def begin(self) -> None:
        """Start a write transaction."""
        self._connection().execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        """Commit the transaction."""
        self._connection().execute("COMMIT")

    def rollback(self) -> None:
        """Undo the transaction, if one is open; never raises."""
        db = self._db
        if db is not None and db.in_transaction:
            # sqlite may have rolled back already (after an I/O error, for instance).
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")

    def savepoint(self) -> None:
        """Mark a point inside the transaction that :meth:`rollback_savepoint` returns to."""
        self._connection().execute("SAVEPOINT call")

    def release_savepoint(self) -> None:
        """Keep what was done since :meth:`savepoint`."""
        self._connection().execute("RELEASE call")

    def rollback_savepoint(self) -> None:
        """Undo what was done since :meth:`savepoint`."""
        db = self._connection()
        db.execute("ROLLBACK TO call")
        db.execute("RELEASE call")

    # --- messages ----------------------------------------------------------------------

    def publish(
        self, ch: str, data: bytes | str, msg_id: str | None, meta: Mapping[str, str] | None
    ) -> tuple[PublishResult, Message | None]:
        """Store a message in one transaction; see :meth:`.base.Engine.publish`.

        Returns:
            The result, and the message stored (``None`` for a duplicate).

        Raises:
            sqlite3.Error: The file can't be read or written.
        """
        db = self._connection()
        now = self._clock()
        epoch, last = self._channel(db, ch, now)
        if msg_id is not None:
            offset = self._known_id(db, ch, msg_id, now)
            if offset is not None:
                return PublishResult(epoch, offset, duplicate=True), None
        last += 1
        meta_text = None if meta is None else json.dumps(dict(meta), separators=(",", ":"))
        db.execute("UPDATE channels SET last = ? WHERE ch = ?", (last, ch))
        db.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?)", (ch, last, now, data, meta_text))
        if msg_id is not None:
            db.execute("INSERT OR REPLACE INTO ids VALUES (?, ?, ?, ?)", (ch, msg_id, last, now))
        self._trim(db, ch, last, now, ids=msg_id is not None)
        return PublishResult(epoch, last), Message(ch, epoch, last, data, meta)

    def history(self, ch: str, since: int | None, epoch: str | None) -> HistoryResult:
        """Read the position and the messages after ``since``; see :meth:`.base.Engine.history`."""
        db = self._connection()
        now = self._clock()
        current, last = self._channel(db, ch, now)
        self._trim(db, ch, last, now, ids=False)
        row = db.execute("SELECT min(msg_offset) FROM messages WHERE ch = ?", (ch,)).fetchone()
        first = last + 1 if row[0] is None else int(row[0])
        if since is None:
            return HistoryResult(current, last, first, (), recovered=False)
        recovered = epoch == current and first - 1 <= since <= last
        start = since + 1 if recovered else first
        rows = db.execute(
            "SELECT msg_offset, data, meta FROM messages WHERE ch = ? AND msg_offset >= ?"
            " ORDER BY msg_offset",
            (ch, start),
        ).fetchall()
        messages = [Message(ch, current, offset, data, _meta(text)) for offset, data, text in rows]
        return HistoryResult(current, last, first, messages, recovered=recovered)

    def sweep(self, active: Callable[[str], bool]) -> int:
        """Trim every channel's windows; forget empty channels unused for ``channel_ttl``.

        Args:
            active: Whether this process has callbacks or presence on a
                channel; an active channel is never forgotten.

        Returns:
            How many channels were forgotten.
        """
        db = self._connection()
        now = self._clock()
        forgotten = 0
        channels = db.execute("SELECT ch, last, touched FROM channels").fetchall()
        for ch, last, touched in channels:
            self._trim(db, ch, last, now, ids=True)
            if self._is_forgettable(db, ch, touched, now) and not active(ch):
                db.execute("DELETE FROM channels WHERE ch = ?", (ch,))
                forgotten += 1
        return forgotten

    # --- private -----------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        self.open()
        assert self._db is not None
        return self._db

    def _channel(self, db: sqlite3.Connection, ch: str, now: float) -> tuple[str, int]:
        """The channel's epoch and last offset, created with a new epoch if missing."""
        row = db.execute("SELECT epoch, last FROM channels WHERE ch = ?", (ch,)).fetchone()
        if row is None:
            # 12 random bytes: two databases (or a forgotten channel) never share an epoch.
            epoch = secrets.token_hex(12)
            db.execute("INSERT INTO channels VALUES (?, ?, 0, ?)", (ch, epoch, now))
            return epoch, 0
        db.execute("UPDATE channels SET touched = ? WHERE ch = ?", (now, ch))
        return str(row[0]), int(row[1])

    def _known_id(self, db: sqlite3.Connection, ch: str, msg_id: str, now: float) -> int | None:
        """The offset stored under ``msg_id`` if it is still in the idempotency window."""
        row = db.execute(
            "SELECT msg_offset, stored FROM ids WHERE ch = ? AND msg_id = ?", (ch, msg_id)
        ).fetchone()
        if row is None:
            return None
        ttl = self._id_ttl
        if ttl is not None and row[1] <= now - ttl:
            return None
        return int(row[0])

    def _trim(self, db: sqlite3.Connection, ch: str, last: int, now: float, *, ids: bool) -> None:
        """Trim the channel's history (and, with ``ids``, its id table) to their windows."""
        tables = [("messages", self._history_size, self._history_ttl)]
        if ids:
            # The id table is bounded by offsets: it remembers the ids of the last
            # id_size messages, so it never holds more than id_size rows per channel.
            tables.append(("ids", self._id_size, self._id_ttl))
        for table, size, ttl in tables:
            if size is not None:
                db.execute(
                    f"DELETE FROM {table} WHERE ch = ? AND msg_offset <= ?",
                    (ch, last - size),
                )
            if ttl is not None:
                db.execute(
                    _TRIM_BY_TIME.format(table=table),
                    {"ch": ch, "before": now - ttl, "end": last + 1},
                )

    def _is_forgettable(self, db: sqlite3.Connection, ch: str, touched: float, now: float) -> bool:
        if self._channel_ttl is None or now - touched < self._channel_ttl:
            return False
        for table in ("messages", "ids"):
            query = f"SELECT 1 FROM {table} WHERE ch = ? LIMIT 1"
            if db.execute(query, (ch,)).fetchone() is not None:
                return False
        return True


class _transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, or ``ROLLBACK`` on an exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *rest: Any) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _prepare(db: sqlite3.Connection, path: str) -> None:
    """Check the file is an openline database of a known layout; set it up.

    Raises:
        ValueError: It isn't, or another process holds it.
    """
    try:
        _check_header(db, path)
        # One process per file: the exclusive lock is taken by the first write
        # below and held until close.
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        with _transaction(db):
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            raise ValueError(f"{path} is in use by another process") from None
        raise
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path} is not an sqlite database ({exc})") from None


def _check_header(db: sqlite3.Connection, path: str) -> None:
    application = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if application not in (0, APPLICATION_ID):
        raise ValueError(f"{path} is an sqlite database of another application")
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"{path} has layout {version}, newer than this openline's {SCHEMA_VERSION}"
        )


def _meta(text: str | None) -> Mapping[str, str] | None:
    if text is None:
        return None
    meta: dict[str, str] = json.loads(text)
    return meta
