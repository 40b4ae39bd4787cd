"""The service's WebSocket protocol as the client sees it: URLs, control and server messages.

docs/protocol.md is the reference; this module only builds what the client sends and reads
what the server answers.
"""

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from client.errors import ClientError, ServerError

ENDPOINTS = ("decode", "encode", "loopback")
DEFAULT_SERVER = "ws://127.0.0.1:8000"


def endpoint_url(server: str, endpoint: str, **params: object) -> str:
    """`ws://host:port/v1/ENDPOINT?params` from a server address (ws, wss, http, https or host:port)."""
    if endpoint not in ENDPOINTS:
        raise ClientError(f"unknown endpoint {endpoint!r}; one of {', '.join(ENDPOINTS)}")
    if "://" not in server:
        server = "ws://" + server
    parts = urlsplit(server)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ClientError(f"bad server address {server!r}: expected ws://HOST:PORT or http://HOST:PORT")
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return urlunsplit((scheme, parts.netloc, f"{parts.path.rstrip('/')}/v1/{endpoint}", query, ""))


def http_url(server: str, path: str) -> str:
    """`http://host:port/PATH` of a server address given in any of the accepted forms."""
    if "://" not in server:
        server = "ws://" + server
    parts = urlsplit(server)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, f"{parts.path.rstrip('/')}/{path.lstrip('/')}", "", ""))


@dataclass(frozen=True)
class Ready:
    """The server's first message on every stream."""

    session: str
    sample_rate: int
    hop_ms: float
    mode: str | None
    algorithmic_latency_ms: float
    synthesizer: str
    extra: dict[str, Any] = field(default_factory=dict)
    """Any other fields the server sent."""

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> "Ready":
        """Parse a `ready` message; `ClientError` when a field is missing."""
        known = ("session", "sample_rate", "hop_ms", "mode", "algorithmic_latency_ms", "synthesizer")
        try:
            return cls(session=str(message["session"]), sample_rate=int(message["sample_rate"]),
                       hop_ms=float(message["hop_ms"]), mode=message.get("mode"),
                       algorithmic_latency_ms=float(message["algorithmic_latency_ms"]),
                       synthesizer=str(message.get("synthesizer", "?")),
                       extra={k: v for k, v in message.items() if k not in (*known, "type")})
        except (KeyError, TypeError, ValueError) as error:
            raise ClientError(f"malformed ready message from the server ({error}): {message}") from None


def parse_text(text: str) -> dict[str, Any]:
    """A server text message as a dict with a `type`; an `error` message raises `ServerError`."""
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        raise ClientError(f"server sent text that is not JSON: {text[:80]!r}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ClientError(f"server sent a message without a type: {text[:80]!r}")
    if message["type"] == "error":
        raise ServerError(str(message.get("code", "?")), str(message.get("detail", "")))
    return message


def control(kind: str, **fields: object) -> str:
    """A control message from the client: flush, mode or stats."""
    if kind not in ("flush", "mode", "stats"):
        raise ClientError(f"unknown control message {kind!r}")
    return json.dumps({"type": kind, **fields})
