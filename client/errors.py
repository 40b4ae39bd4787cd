"""Errors of the client library; each message says what went wrong and what to do about it."""

from streaming_core.errors import HopcodecError

CLOSE_MEANINGS: dict[int, tuple[str, bool]] = {
    1000: ("the server ended the stream normally", False),
    1001: ("the server is going away (restart or shutdown)", True),
    1006: ("the connection dropped without a close frame", True),
    1009: ("a message was larger than the server accepts", False),
    1011: ("internal server error", True),
    1012: ("the server is restarting", True),
    1013: ("the server is full: too many streams, try again later", True),
    4400: ("bad query parameters (mode, rate, frames_per_packet)", False),
    4401: ("unauthorized: missing or wrong token (--token or HOPCODEC_TOKEN)", False),
    4408: ("idle timeout: nothing was sent for too long", True),
    4409: ("this client read replies too slowly", True),
    4422: ("too many malformed messages in a row", False),
    4429: ("sending faster than the server allows (a multiple of real time)", True),
}
"""Close code -> (what it means, whether reconnecting may help). docs/protocol.md has the server's table."""


class ClientError(HopcodecError):
    """A problem talking to the hopcodec service."""


class ServerUnreachable(ClientError):
    """The server could not be reached at all (refused, unknown host, timeout)."""


class StreamClosed(ClientError):
    """The server closed the stream (or the connection dropped); `code` says why."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        meaning, self.retryable = CLOSE_MEANINGS.get(code or 1006, ("unknown close code", False))
        detail = f" ({reason})" if reason and reason not in meaning else ""
        super().__init__(f"stream closed by the server with code {code or 1006}: {meaning}{detail}")


class ServerError(ClientError):
    """The server answered with an `{"type": "error"}` message."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"server error {code}: {detail}")


class HandshakeRejected(ClientError):
    """The server refused the WebSocket upgrade with an HTTP status."""

    def __init__(self, status: int, url: str) -> None:
        self.status = status
        self.retryable = status in (429, 502, 503, 504)
        hints = {401: "unauthorized: missing or wrong token (--token or HOPCODEC_TOKEN)",
                 403: "forbidden (wrong token?)", 404: "no such endpoint: is this a hopcodec server?",
                 429: "too many requests", 503: "server unavailable or full"}
        super().__init__(f"{url}: server refused the connection with HTTP {status}: "
                         f"{hints.get(status, 'unexpected status')}")
