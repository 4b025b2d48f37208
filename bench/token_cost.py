"""Cost of checking one connection token, in µs: the demo's signed tokens against JWTs.

``PYTHONPATH=src python bench/token_cost.py [--count 2000]``

Each line times ``verify`` of one token, ``--count`` times after one warm-up
call: the demo's ``TokenSigner`` (HMAC-SHA256 over JSON, the default of
``openline serve``), then ``JwtAuth`` with HS256, RS256 (2048-bit key) and
ES256 (P-256), each with a ``channels`` claim. The hub pays this once per
handshake and once per ``token`` refresh.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from openline.hub.jwt_auth import JwtAuth
from openline.web.tokens import TokenSigner


def per_call(verify: Callable[[str], Any], token: str, count: int) -> float:
    """Microseconds per ``verify(token)``, averaged over ``count`` calls."""
    verify(token)
    start = time.perf_counter()
    for _ in range(count):
        verify(token)
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    count = parser.parse_args().count
    signer = TokenSigner("x" * 32)
    results = {"demo TokenSigner": per_call(signer.verify, signer.issue("Ada").token, count)}
    claims = {"sub": "ada", "exp": int(time.time()) + 3600, "channels": {"subscribe": ["room:*"]}}
    secret = "s" * 32
    hs256 = jwt.encode(claims, secret, algorithm="HS256")
    results["JwtAuth HS256"] = per_call(JwtAuth(secret=secret).verify, hs256, count)
    keys: list[tuple[str, Any]] = [
        ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ES256", ec.generate_private_key(ec.SECP256R1())),
    ]
    for algorithm, key in keys:
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        token = jwt.encode(claims, key, algorithm=algorithm)
        results[f"JwtAuth {algorithm}"] = per_call(JwtAuth(public_key=pem).verify, token, count)
    for name, micros in results.items():
        print(f"{name:20s} {micros:8.1f} µs per token")


if __name__ == "__main__":
    main()
