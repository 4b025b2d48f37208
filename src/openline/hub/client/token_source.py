"""Where the hub client gets its tokens: the ``get_token`` callback, and what follows from it.

The client calls ``get_token()`` before each dial and when the hub sends
``refresh``; a connection closed with a code in ``token_close_codes`` (4001,
token expired) is redialled, and that dial calls it again.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from ...asyncio.backoff import Classify
from ...exceptions import ConnectionClosed, HubError
from ..policy import POLICY

__all__ = ["GetToken", "TokenUnavailable", "fetch_token", "with_token_codes"]

#: ``get_token() -> str | None``, plain or ``async``: a fresh token, or ``None`` for none.
GetToken = Callable[[], "str | Awaitable[str | None] | None"]


class TokenUnavailable(HubError):
    """``get_token`` failed or returned something that isn't a token; the client retries."""


async def fetch_token(get_token: GetToken) -> str | None:
    """Call ``get_token`` and check what it returns.

    Raises:
        TokenUnavailable: It raised, or returned neither a non-empty ``str`` nor ``None``.
    """
    try:
        token = get_token()
        if inspect.isawaitable(token):
            token = await token
    except Exception as exc:
        raise TokenUnavailable(f"get_token failed: {exc!r:.200}") from exc
    if token is not None and (not isinstance(token, str) or not token):
        raise TokenUnavailable(f"get_token must return a non-empty str or None, got {token!r:.80}")
    return token


def with_token_codes(classify: Classify) -> Classify:
    """Extend a classifier: redial after a token expired, or when ``get_token`` failed."""

    def classify_tokens(exc: Exception) -> float | None:
        if isinstance(exc, TokenUnavailable):
            return 0.0
        if isinstance(exc, ConnectionClosed) and exc.code in POLICY.token_close_codes:
            return 0.0
        return classify(exc)

    return classify_tokens
