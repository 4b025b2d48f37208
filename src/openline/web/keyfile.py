"""A signing key kept in a file, so that the demo's tokens outlive a restart.

With ``openline serve --data PATH`` and no ``--secret``, the key that signs the
demo's tokens is kept next to the database (``PATH.key``, readable by its
owner only): after a restart the pages' tokens stay valid, so each page keeps
its user id, and with it the scope of its message ids. A publish retried across
the restart is then recognised and stored once.
"""

from __future__ import annotations

import os
import secrets

from .tokens import MIN_SECRET

__all__ = ["load_or_create_key"]

#: Random bytes in a new key (hex-encoded in the file).
KEY_BYTES = 32


def load_or_create_key(path: str) -> str:
    """The key in the file at ``path``, created with a random key (mode 0600) if missing.

    Raises:
        OSError: The file can't be read or created.
        ValueError: The file holds a key shorter than :data:`~.tokens.MIN_SECRET` bytes.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, encoding="ascii") as file:
            key = file.read().strip()
        if len(key.encode()) < MIN_SECRET:
            raise ValueError(
                f"{path} holds a key of {len(key.encode())} bytes, less than {MIN_SECRET}"
            ) from None
        return key
    key = secrets.token_hex(KEY_BYTES)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(key + "\n")
    return key
