"""How uvicorn runs the app: the one place `digest serve` and the tests take their server options from.

uvicorn starts its idle timer only after a first response, so a client that opens a connection and sends
its headers a byte at a time (or never) holds that connection for as long as it likes; a few hundred such
clients exhaust a server. `HeaderDeadlineH11` gives every connection a deadline for its first complete
request head. Bodies have their own deadline (`digest.web.security.BODY_READ_SECONDS`). A proxy in front
should bound both as well (deploy/README.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from digest.config import Settings

HEADER_SECONDS = 10.0


class HeaderDeadlineH11(H11Protocol):
    """Closes a connection that has not sent a whole request head within HEADER_SECONDS of opening."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline = self.loop.call_later(HEADER_SECONDS, self._head_too_slow)

    def _head_too_slow(self) -> None:
        if self.cycle is None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_deadline.cancel()
        super().connection_lost(exc)


def server_options(settings: Settings) -> dict[str, Any]:
    return {
        "proxy_headers": True,
        "forwarded_allow_ips": settings.trusted_proxies,
        "http": HeaderDeadlineH11,
        # Idle keep-alive connections close after 5 s.
        "timeout_keep_alive": 5,
    }
