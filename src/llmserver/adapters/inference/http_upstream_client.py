"""The HTTP client the remote backend calls its upstreams with: one aiohttp session.

aiohttp, chosen by measurement (``python -m bench.upstream_clients``): against an instant
upstream on loopback a call costs the client about a sixth of the CPU it cost through
httpx, or through httpcore used directly (both spend it in anyio's streams and h11). The
session keeps a pool of
keep-alive connections per upstream (host, port, TLS). It is set up for a gateway, not a
browser: no cookies are kept, redirects are not followed, and the environment's proxy
settings are read once per upstream (``env_proxy``) rather than on every request, which is
what aiohttp's ``trust_env`` would do, through a thread each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

MAX_CONNECTIONS_PER_UPSTREAM = 100
KEEPALIVE_S = 4.0
"""How long an idle connection is kept: under the 5 s that uvicorn (vLLM's server among
them) keeps one, so that we never send on a connection the upstream is closing."""

END_WAIT_S = 0.05
"""How long ``wait_for_end`` waits for the end of an answer that has said all it has."""

TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)
"""What sending a request or reading an answer raises when the network or the upstream
fails (aiohttp's timeouts are ``TimeoutError`` s as well as ``ClientError`` s)."""


def open_session(trace_configs: list[aiohttp.TraceConfig] | None = None) -> aiohttp.ClientSession:
    """A session for every upstream; call it in a running event loop, close it when done."""
    connector = aiohttp.TCPConnector(
        limit=0,  # no cap over all upstreams: each has its own
        limit_per_host=MAX_CONNECTIONS_PER_UPSTREAM,
        keepalive_timeout=KEEPALIVE_S,
        ssl=_tls_context(),
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),  # each backend passes its own
        trace_configs=trace_configs,
    )


def timeouts(*, connect_s: float, read_s: float) -> aiohttp.ClientTimeout:
    """``connect_s`` to connect; ``read_s`` for a pool slot and for each read of the
    answer, from its head to its last byte; no bound on the whole answer."""
    return aiohttp.ClientTimeout(
        total=None, connect=read_s, sock_connect=connect_s, sock_read=read_s
    )


def is_read_timeout(exc: BaseException) -> bool:
    """A timeout once connected: the upstream has the request and is slow."""
    return isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ConnectionTimeoutError)


def env_proxy(url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``, netrc)
    names for ``url``, and its credentials; ``(None, None)`` for none."""
    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None


async def wait_for_end(response: aiohttp.ClientResponse) -> None:
    """Waits a moment for the end of an answer whose content we have all (a stream's
    ``[DONE]``): a server ends a chunked body in a write of its own, often after the last
    event has reached us, and only an answer that has ended gives its connection back to
    the pool; one closed before its end costs a new connection for the next request."""
    with contextlib.suppress(*TRANSPORT_ERRORS):
        async with asyncio.timeout(END_WAIT_S):
            await response.content.wait_eof()


def _tls_context() -> ssl.SSLContext:
    """The CA files the environment names (``SSL_CERT_FILE``, ``SSL_CERT_DIR``), else
    certifi's bundle, as httpx did before: a Python without a system store (python.org
    and uv builds on macOS) still verifies hosted APIs."""
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context()
    import certifi

    return ssl.create_default_context(cafile=certifi.where())
