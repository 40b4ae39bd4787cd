"""Service settings: limits, auth token, worker threads; from flags or HOPCODEC_* variables."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

ENV_PREFIX = "HOPCODEC_"


@dataclass(frozen=True)
class Settings:
    """Everything an operator can set; each field is also HOPCODEC_<FIELD NAME IN CAPITALS>."""

    max_streams: int = 256
    """WebSocket streams open at once in one server process; more are closed with 1013."""
    max_message_bytes: int = 65_536
    """Largest WebSocket message accepted; bigger ones close the stream with 1009."""
    rate_multiple: float = 2.0
    """Audio a stream may send, as a multiple of real time (token bucket refill rate)."""
    rate_burst_seconds: float = 5.0
    """Audio seconds a stream may send ahead of that rate (token bucket size)."""
    idle_timeout: float = 30.0
    """Seconds without a message from the client before the stream is closed with 4408."""
    max_bad_messages: int = 20
    """Malformed messages in a row before the stream is closed with 4422."""
    send_queue_bytes: int = 1024 * 1024
    """Reply bytes waiting for a client that does not read before its stream is closed with 4409
    (32 s of 16 kHz PCM: a network stall of a few seconds is ridden out, memory stays bounded)."""
    max_upload_bytes: int = 20 * 1024 * 1024
    """Largest body of POST /v1/encode and POST /v1/decode (413 beyond)."""
    max_upload_seconds: float = 600.0
    """Longest audio an upload may hold or decode to (413 beyond)."""
    max_uploads: int = 4
    """POST /v1/encode and /v1/decode requests in progress at once (503 beyond); they are coded
    one at a time in a thread of their own, apart from the streams' hop threads."""
    hop_threads: int = 2
    """Threads doing the per-message codec work; 0 runs it on the event loop."""
    token: str | None = None
    """Bearer token required on /v1/ endpoints; None: no auth."""

    def __post_init__(self) -> None:
        positive = ("max_streams", "max_message_bytes", "rate_multiple", "rate_burst_seconds",
                    "idle_timeout", "max_bad_messages", "send_queue_bytes", "max_upload_bytes",
                    "max_upload_seconds", "max_uploads")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.hop_threads < 0:
            raise ValueError(f"hop_threads must be 0 or more, got {self.hop_threads}")
        if self.token == "":
            raise ValueError("token must not be empty (leave it unset for no auth)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        """Settings from HOPCODEC_* variables; `overrides` that are not None win."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is None or raw == "":
                continue
            kind = field.type if field.type in (int, float) else str
            try:
                values[field.name] = kind(raw)
            except ValueError:
                raise ValueError(f"{ENV_PREFIX}{field.name.upper()}={raw!r} is not a valid {kind.__name__}") \
                    from None
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The HOPCODEC_* variables that reproduce these settings (for worker processes)."""
        return {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name))
                for f in fields(self) if getattr(self, f.name) is not None}

    @property
    def protocol_max_message_bytes(self) -> int:
        """The WebSocket layer's own message limit (uvicorn ws_max_size): twice the service's,
        so a moderately oversized message gets the service's close reason, and memory stays
        bounded for any message."""
        return 2 * self.max_message_bytes + 1024

    def public(self) -> dict[str, object]:
        """The limits a client may see (everything but the token)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "token"}
