"""A client of the HTTP server API, for publishing from any process.

Standard library only, sync (:class:`APIClient`, on ``urllib.request``) and
async (:class:`AsyncAPIClient`, on asyncio streams)::

    from openline.api import APIClient

    api = APIClient("http://127.0.0.1:8765", key="...")
    api.publish("news", {"title": "hi"})

Every publish carries a message id, a random one unless given, so that the
client's own retries (after a connection error or a 5xx, with a short bounded
backoff) store the message once. Pass your own ``id`` to make retries by your
code (a Celery task that runs again) safe too. See docs/server-api.md.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from .exceptions import OpenlineError
from .hub.backends.base import PublishResult
from .protocol.http11 import Headers, Request, parse_response

__all__ = ["APIClient", "APIError", "AsyncAPIClient"]

#: Default seconds one HTTP request may take.
DEFAULT_TIMEOUT = 10.0
#: Default retries after the first attempt, on connection errors and 5xx.
DEFAULT_RETRIES = 3
#: Largest answer read, in bytes.
MAX_ANSWER = 8 * 1_048_576


class APIError(OpenlineError):
    """The server API refused a call, or couldn't be reached.

    Attributes:
        status: The HTTP status; 0 when no answer came (connection error).
        error: The server's ``error`` text, or what went wrong.
    """

    def __init__(self, status: int, error: str) -> None:
        super().__init__(status, error)
        self.status = status
        self.error = error

    def __str__(self) -> str:
        if self.status == 0:
            return f"server API unreachable: {self.error}"
        return f"server API answered {self.status}: {self.error}"


class _Base:
    """What both clients share: arguments, requests, answers, the retry policy."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: tuple[float, float] = (0.1, 2.0),
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http://host[:port] or https://..., got {url!r}")
        if not key:
            raise ValueError("key must not be empty")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        if type(retries) is not int or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if not 0 < backoff[0] <= backoff[1]:
            raise ValueError(f"backoff must be (first, cap) with 0 < first <= cap, got {backoff!r}")
        self.url = url.rstrip("/")
        self._parts = parts
        self._key = key
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._ssl = ssl_context

    def _publish_args(self, ch: str, data: Any, id: str | None) -> dict[str, Any]:
        return {"ch": ch, "data": data, "id": secrets.token_hex(12) if id is None else id}

    def _body(self, arguments: Mapping[str, Any]) -> bytes:
        return json.dumps(arguments, ensure_ascii=False, separators=(",", ":")).encode()

    def _headers(self, body: bytes) -> dict[str, str]:
        return {
            "Authorization": f"apikey {self._key}",
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
        }

    def _delay(self, attempt: int) -> float:
        """Full jitter under an exponential bound: attempt 0 waits up to ``first``."""
        first, cap = self._backoff
        return random.uniform(0, min(cap, first * 2**attempt))

    @staticmethod
    def _answer(status: int, body: bytes) -> dict[str, Any]:
        """The result of a 200; raises :class:`APIError` otherwise."""
        try:
            value = json.loads(body) if body else {}
        except ValueError:
            value = {"error": body[:200].decode("utf-8", "replace")}
        if not isinstance(value, dict):
            value = {"error": repr(value)[:200]}
        if status != 200:
            raise APIError(status, str(value.get("error", "")))
        return value

    @staticmethod
    def _retryable(exc: APIError) -> bool:
        return exc.status == 0 or exc.status >= 500


class APIClient(_Base):
    """A blocking client of ``POST /api/<method>``.

    Args:
        url: The server, ``http://host:port`` or ``https://...``.
        key: The API key (``openline serve --api-key``).
        timeout: Seconds one request may take.
        retries: Retries after a connection error or a 5xx; 0 disables them.
            A 4xx is never retried.
        backoff: ``(first, cap)``: the bounds of the jittered delay before the
            first retry, doubling up to ``cap``.
        ssl_context: For ``https``: the TLS context; the default one when ``None``.

    Raises:
        ValueError: An argument is out of range.
    """

    def call(self, method: str, **arguments: Any) -> dict[str, Any]:
        """Call ``/api/<method>`` with ``arguments`` as the JSON body.

        Raises:
            APIError: The server refused (4xx), or still failed after the retries.
        """
        body = self._body(arguments)
        for attempt in range(self._retries + 1):
            try:
                return self._request(method, body)
            except APIError as exc:
                if not self._retryable(exc) or attempt == self._retries:
                    raise
            time.sleep(self._delay(attempt))
        raise AssertionError("unreachable")

    def publish(self, ch: str, data: Any, *, id: str | None = None) -> PublishResult:
        """Publish ``data`` to ``ch``; stored once however often it is retried with the same id.

        Raises:
            APIError: As :meth:`call`.
        """
        answer = self.call("publish", **self._publish_args(ch, data, id))
        return PublishResult(answer["epoch"], answer["offset"], answer["duplicate"])

    def _request(self, method: str, body: bytes) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/api/{method}", data=body, headers=self._headers(body), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout, context=self._ssl) as reply:
                return self._answer(reply.status, reply.read(MAX_ANSWER))
        except urllib.error.HTTPError as exc:
            return self._answer(exc.code, exc.read(MAX_ANSWER))
        except (urllib.error.URLError, OSError) as exc:
            raise APIError(0, str(getattr(exc, "reason", exc))) from exc


class AsyncAPIClient(_Base):
    """The same client for asyncio code; one connection per call.

    Takes the arguments of :class:`APIClient`.
    """

    async def call(self, method: str, **arguments: Any) -> dict[str, Any]:
        """Call ``/api/<method>`` with ``arguments`` as the JSON body.

        Raises:
            APIError: The server refused (4xx), or still failed after the retries.
        """
        body = self._body(arguments)
        for attempt in range(self._retries + 1):
            try:
                return await self._request(method, body)
            except APIError as exc:
                if not self._retryable(exc) or attempt == self._retries:
                    raise
            await asyncio.sleep(self._delay(attempt))
        raise AssertionError("unreachable")

    async def publish(self, ch: str, data: Any, *, id: str | None = None) -> PublishResult:
        """Publish ``data`` to ``ch``; see :meth:`APIClient.publish`.

        Raises:
            APIError: As :meth:`call`.
        """
        answer = await self.call("publish", **self._publish_args(ch, data, id))
        return PublishResult(answer["epoch"], answer["offset"], answer["duplicate"])

    async def _request(self, method: str, body: bytes) -> dict[str, Any]:
        try:
            raw = await asyncio.wait_for(self._exchange(method, body), self._timeout)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
            raise APIError(0, repr(exc)) from exc
        parsed = parse_response(raw, max_body=MAX_ANSWER)
        if parsed is None:
            raise APIError(0, "the connection closed before the whole answer")
        response, _ = parsed
        return self._answer(response.status, response.body)

    async def _exchange(self, method: str, body: bytes) -> bytes:
        parts = self._parts
        secure = parts.scheme == "https"
        host = parts.hostname
        assert host is not None
        port = parts.port or (443 if secure else 80)
        context = (self._ssl or ssl.create_default_context()) if secure else None
        reader, writer = await asyncio.open_connection(host, port, ssl=context)
        try:
            headers = Headers(self._headers(body))
            headers["Host"] = parts.netloc
            headers["Connection"] = "close"
            path = (parts.path.rstrip("/") or "") + f"/api/{method}"
            writer.write(Request(path, headers, "POST").serialize() + body)
            # The server closes the connection after its answer: read until EOF.
            answer = bytearray()
            while chunk := await reader.read(65536):
                answer += chunk
                if len(answer) > MAX_ANSWER + 65536:
                    raise OSError(f"answer exceeds {MAX_ANSWER} bytes")
            return bytes(answer)
        finally:
            writer.close()
