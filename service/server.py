"""The HTTP server ``ecgk serve`` runs: uvicorn's h11 protocol with a cap on the request head and a deadline
for it, so the service is safe to expose without a proxy in front.

- A request head (request line and headers) over ``max_header_bytes`` gets **431** and the connection is
  closed, before the app or any key check runs; the bytes are never buffered beyond the cap.
- A connection that has not sent a complete head within ``header_timeout_s`` of opening (or of the end of
  its previous response) gets **408** and is closed: trickling headers cannot hold a connection open.
- The body's own deadline (408), size limit (413) and encoding (415) are the app's body guard
  (:class:`service.limits.BodySizeLimitMiddleware`), which audits them.

An idle keep-alive connection is still closed quietly after uvicorn's ``timeout_keep_alive`` (5 s).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_END = b"\r\n\r\n"


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a capped, timed request head (:func:`guarded_protocol` sets the limits)."""

    max_header_bytes: int = 16 * 2**10
    header_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._head_too_large(data):
            self._refuse(431, b"request header fields too large")
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()

    def _head_too_large(self, data: bytes) -> bool:
        """Whether the head being received (buffered bytes plus ``data``) passes the cap."""
        buffered = self.conn.trailing_data[0]
        if len(buffered) + len(data) <= self.max_header_bytes:
            return False
        pending = buffered + data[: self.max_header_bytes + len(HEAD_END)]
        end = pending.find(HEAD_END, 0, self.max_header_bytes + len(HEAD_END))
        return end < 0 or end + len(HEAD_END) > self.max_header_bytes

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self.head_deadline = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_timed_out(self) -> None:
        self.head_deadline = None
        if self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE \
                and not self.transport.is_closing():
            self._refuse(408, b"request head not complete in time")

    def _refuse(self, status_code: int, message: bytes) -> None:
        """Answer ``status_code`` with ``message`` as plain text and close the connection."""
        self._disarm_head_deadline()
        self._unset_keepalive_if_required()
        head = (f"HTTP/1.1 {status_code} {h11_reason(status_code)}\r\ncontent-type: text/plain; charset=utf-8\r\n"
                f"content-length: {len(message)}\r\nconnection: close\r\n\r\n").encode()
        self.transport.write(head + message)
        self.transport.close()


def h11_reason(status_code: int) -> str:
    """The reason phrase of the two statuses this layer sends."""
    return {408: "Request Timeout", 431: "Request Header Fields Too Large"}[status_code]


def guarded_protocol(max_header_bytes: int, header_timeout_s: float) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` with these limits, for ``uvicorn.run(..., http=...)``."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"max_header_bytes": max_header_bytes, "header_timeout_s": header_timeout_s})
