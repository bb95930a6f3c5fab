"""Per-connection limits of `digest serve`: what one client may cost the server.

uvicorn's httptools protocol buffers a request head of any size (httptools
joins the pieces of a header value in memory) and waits for it forever, so
one client could hold memory without bound or a connection open for good.
:class:`LimitedHttpToolsProtocol` adds, per connection:

* at most MAX_HEAD_BYTES of request line and headers: more gets 431 and the
  connection is closed (nothing beyond the limit is handed to the parser);
* after a 431 or 408 the server stops sending and reads and drops what the
  client still sends, for up to LINGER_SECONDS and MAX_DRAIN_BYTES, then
  closes: closing at once with unread data would reset the connection and
  the client might never read the answer;
* HEAD_TIMEOUT seconds for a request head to arrive complete, counted from
  the connection (or the end of the previous request): then 408 and close
  (or a silent close if nothing of a next request came);
* BODY_TIMEOUT seconds for a request body to arrive complete: then the
  connection is closed (with 408 if no answer was started);
* a body the application did not read (it answered first: 413 for a form
  over MAX_BODY, 405 for a POST to a file) is read and dropped up to
  MAX_DRAIN_BYTES, so the client sees the answer rather than a reset; past
  that the connection is closed.

The body itself is held by uvicorn at most to its flow-control high-water
mark (64 KiB) before reading pauses; the routes read at most MAX_BODY
bytes (:mod:`digest.serve_signup`). A front proxy should add its own limits
too (see "Request limits" in the README).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY = 4096
MAX_DRAIN_BYTES = 1024 * 1024  # dropped, not kept: costs time (bounded), not memory
LINGER_SECONDS = 2.0
HEAD_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0


def _answer(status: bytes, text: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n"
            + text)


HEAD_TOO_LARGE = _answer(b"431 Request Header Fields Too Large",
                         b"The request headers are too large.\n")
HEAD_TOO_SLOW = _answer(b"408 Request Timeout", b"The request took too long to arrive.\n")


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of the module doc."""

    max_head_bytes = MAX_HEAD_BYTES
    head_timeout = HEAD_TIMEOUT
    body_timeout = BODY_TIMEOUT

    def __init__(self, config: Config, server_state: ServerState,
                 app_state: dict[str, Any], _loop: asyncio.AbstractEventLoop | None = None,
                 ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._head_left: int | None = self.max_head_bytes  # None: reading a body
        self._head_started = False  # bytes of the next head arrived
        self._message_done = True
        self._drain_left: int | None = None  # answered, the rest of the body is dropped
        self._linger_left: int | None = None  # refused: everything is dropped
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._linger_left is not None:
            self._linger_left -= len(data)
            if self._linger_left < 0:
                self.transport.close()
            return
        while data and not self.transport.is_closing():
            if self._head_left is None:  # in a body: uvicorn's flow control bounds it
                if self._drain_left is not None:
                    self._drain_left -= len(data)
                    if self._drain_left < 0:
                        self._disarm()
                        self.transport.close()
                        return
                super().data_received(data)
                return
            self._head_started = True
            piece, data = data[:self._head_left], data[self._head_left:]
            self._head_left -= len(piece)
            super().data_received(piece)  # callbacks below may reset _head_left
            if self._head_left == 0 and not self.transport.is_closing():
                self._refuse(HEAD_TOO_LARGE)
                return

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._message_done = False

    def on_headers_complete(self) -> None:
        self._head_left = None
        self._arm(self.body_timeout, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._message_done = True
        self._drain_left = None
        self._head_left = self.max_head_bytes
        self._head_started = False
        self._arm(self.head_timeout, self._head_timed_out)
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if not self._message_done:  # answered before the body came: drop it, bounded
            self._drain_left = MAX_DRAIN_BYTES
        super().on_response_complete()

    # -- timers -------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self._head_left is None or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm(self.head_timeout, self._head_timed_out)  # count from its answer
        elif self._head_started:
            self._refuse(HEAD_TOO_SLOW)
        else:
            self.transport.close()  # idle: uvicorn's keep-alive timeout usually came first

    def _body_timed_out(self) -> None:
        self._timer = None
        if self._message_done or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_started:
            self._refuse(HEAD_TOO_SLOW)
        else:
            self.transport.close()

    def _refuse(self, answer: bytes) -> None:
        """Send `answer`, then read and drop input for a while (see the module doc)."""
        self._disarm()
        self.transport.write(answer)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._linger_left = MAX_DRAIN_BYTES
        self._timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        self.flow.resume_reading()
