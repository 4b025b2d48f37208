"""Fixtures for the interop tests: certificates, the Node ``ws`` server, our echo server.

Every test module here sets ``pytestmark = pytest.mark.interop``. Tests are
parametrised over compression (``deflate`` / ``no-deflate``) and transport
(``ws`` / ``wss``) through the ``compression`` and ``tls`` fixtures, which the
server fixtures and the tests share.

Without Node or its ``node_modules`` the Node tests skip with a reason, except in
CI (``CI=true``), where they fail: there a skipped interop test would hide a gap.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import trustme

from .helpers import Compression, EchoServer, NodeServer, node_missing, skip_or_fail
from .openline_side import start_echo_server

# --- parameters ----------------------------------------------------------------------


@pytest.fixture(params=["deflate", None], ids=["deflate", "no-deflate"])
def compression(request: pytest.FixtureRequest) -> Compression:
    """``"deflate"`` to negotiate permessage-deflate, ``None`` to offer no extension."""
    value: Compression = request.param
    return value


@pytest.fixture(params=[False, True], ids=["ws", "wss"])
def tls(request: pytest.FixtureRequest) -> bool:
    """Whether the connection runs over TLS."""
    value: bool = request.param
    return value


@pytest.fixture
def conn_id() -> str:
    """A unique id for the test's connection, sent as the ``id`` query parameter."""
    return uuid.uuid4().hex


# --- TLS -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_certificate(certificate_authority: trustme.CA) -> trustme.LeafCert:
    return certificate_authority.issue_cert("127.0.0.1", "localhost")


@pytest.fixture(scope="session")
def tls_files(
    tmp_path_factory: pytest.TempPathFactory,
    certificate_authority: trustme.CA,
    server_certificate: trustme.LeafCert,
) -> dict[str, str]:
    """PEM files for peers that take paths: ``ca``, ``cert`` (with its chain) and ``key``."""
    directory = tmp_path_factory.mktemp("tls")
    files = {
        "ca": directory / "ca.pem",
        "cert": directory / "cert.pem",
        "key": directory / "key.pem",
    }
    certificate_authority.cert_pem.write_to_path(str(files["ca"]))
    for blob in server_certificate.cert_chain_pems:
        blob.write_to_path(str(files["cert"]), append=True)
    server_certificate.private_key_pem.write_to_path(str(files["key"]))
    return {name: str(path) for name, path in files.items()}


@pytest.fixture(scope="session")
def _server_ssl(server_certificate: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_certificate.configure_cert(context)
    return context


@pytest.fixture(scope="session")
def _client_ssl(certificate_authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    certificate_authority.configure_trust(context)
    return context


@pytest.fixture
def server_ssl(tls: bool, _server_ssl: ssl.SSLContext) -> ssl.SSLContext | None:
    """The server's TLS context when ``tls`` is on, else ``None``."""
    return _server_ssl if tls else None


@pytest.fixture
def client_ssl(tls: bool, _client_ssl: ssl.SSLContext) -> ssl.SSLContext | None:
    """A client TLS context trusting the test CA when ``tls`` is on, else ``None``."""
    return _client_ssl if tls else None


@pytest.fixture
def ca_file(tls: bool, tls_files: dict[str, str]) -> str | None:
    """The test CA as a PEM file when ``tls`` is on, else ``None``."""
    return tls_files["ca"] if tls else None


# --- Node ws -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node() -> None:
    """Skip (fail in CI) when Node.js or the ws package is missing."""
    reason = node_missing()
    if reason is not None:
        skip_or_fail(reason)


@pytest.fixture(scope="session")
def _node_servers(node: None) -> Iterator[dict[tuple[bool, bool], NodeServer]]:
    """Node servers started on first use, one per (deflate, tls) pair, for the session."""
    servers: dict[tuple[bool, bool], NodeServer] = {}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def node_server(
    _node_servers: dict[tuple[bool, bool], NodeServer],
    tls_files: dict[str, str],
    compression: Compression,
    tls: bool,
) -> NodeServer:
    """A ``ws`` echo server (``ws_server.mjs``) configured like the test."""
    key = (compression is not None, tls)
    if key not in _node_servers:
        _node_servers[key] = NodeServer(
            deflate=key[0],
            cert_file=tls_files["cert"] if tls else None,
            key_file=tls_files["key"] if tls else None,
        )
    return _node_servers[key]


# --- openline ------------------------------------------------------------------------


@pytest.fixture
async def openline_server(
    compression: Compression, server_ssl: ssl.SSLContext | None
) -> AsyncIterator[EchoServer]:
    """Our echo server on 127.0.0.1, an ephemeral port, configured like the test."""
    async with start_echo_server(compression=compression, ssl=server_ssl) as server:
        yield server
