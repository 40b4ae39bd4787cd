"""WebSocket close codes of the service, each with its reason and its metrics label.

docs/protocol.md lists the same table; keep the two in step.
"""

from dataclasses import dataclass

MAX_REASON_BYTES = 123
"""A close frame's reason is at most 123 bytes of UTF-8 (RFC 6455, 5.5.1)."""


@dataclass(frozen=True)
class CloseCode:
    """A close code, the label it is counted under, and the start of its reason string."""

    code: int
    kind: str
    reason: str

    def reason_with(self, detail: str = "") -> str:
        """The reason string, with `detail` appended, cut to what a close frame holds."""
        text = f"{self.reason}: {detail}" if detail else self.reason
        data = text.encode()[:MAX_REASON_BYTES]
        return data.decode(errors="ignore")


NORMAL = CloseCode(1000, "normal", "done")
INTERNAL = CloseCode(1011, "internal", "internal server error")
MESSAGE_TOO_BIG = CloseCode(1009, "message_size", "message too big")
SERVER_FULL = CloseCode(1013, "streams", "server full, try again later")
BAD_QUERY = CloseCode(4400, "bad_query", "bad query parameters")
UNAUTHORIZED = CloseCode(4401, "unauthorized", "unauthorized: missing or wrong token")
IDLE = CloseCode(4408, "idle", "idle timeout")
SLOW_READER = CloseCode(4409, "slow_reader", "client reads too slowly: send queue full")
MALFORMED = CloseCode(4422, "bad_messages", "too many malformed messages in a row")
RATE = CloseCode(4429, "rate", "sending faster than allowed")

ALL = (NORMAL, INTERNAL, MESSAGE_TOO_BIG, SERVER_FULL, BAD_QUERY, UNAUTHORIZED, IDLE, SLOW_READER,
       MALFORMED, RATE)
"""Every code the server closes with."""
