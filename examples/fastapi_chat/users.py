"""The example's users: a fixed set, passwords stored as salted PBKDF2 hashes.

A real application keeps its users in a database; a fixed set keeps this
example to one file of state (the hub's history). The passwords are in the
README. To add a user, print its line with::

    python users.py NAME PASSWORD

and paste it into ``USERS``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys

ITERATIONS = 200_000

#: User id -> (display name, salt, PBKDF2-SHA256 hash), both in hex.
USERS: dict[str, tuple[str, str, str]] = {
    "ada": (
        "Ada",
        "b56187ab106eea8cbaba46aa7e1ec3d2",
        "2969b9b37ea3af11aab508800109d8ef37e5d342c5872bfbb96efdc4a8cbeaf5",
    ),
    "grace": (
        "Grace",
        "4ecc2d5d3db2d7df133c5bd49d40ab0c",
        "aa2f49856f5f2a38f84b26923eea9b45505ac95abeba2bf6811bb64c7fe3497e",
    ),
    "linus": (
        "Linus",
        "44ff96d95893b74e764e6f8bd0cf6262",
        "de1ded321ad64ecd6649009dbc8380f4fb0faf7e999b9279745ec9d7d3f16794",
    ),
}


def _hash(password: str, salt: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), ITERATIONS).hex()


def check_password(user: str, password: str) -> bool:
    """Whether ``password`` is ``user``'s; slow on purpose (run it off the event loop)."""
    entry = USERS.get(user)
    if entry is None:
        # Hash anyway, so that a wrong name takes as long as a wrong password.
        _hash(password, "00" * 16)
        return False
    _, salt, expected = entry
    return hmac.compare_digest(_hash(password, salt), expected)


def display_name(user: str) -> str:
    """The name shown next to ``user``'s messages."""
    return USERS[user][0]


if __name__ == "__main__":
    name, password = sys.argv[1:3]
    salt = secrets.token_hex(16)
    print(f'    "{name}": ("{name.title()}", "{salt}", "{_hash(password, salt)}"),')
